-- groupcast schema, version 7: the user's pace and time zone. Same rules as 0001: SQLite
-- dialect valid for D1, no PRAGMA, no BEGIN/COMMIT.

-- The account's pace as JSON of `pacing::pace::PaceSettings`; NULL = the operator's
-- DEFAULT_PACE preset.
ALTER TABLE users ADD COLUMN pace TEXT;
-- The user's time zone (an IANA name such as 'Europe/Moscow' or 'Etc/GMT-7'); NULL = DEFAULT_TZ.
ALTER TABLE users ADD COLUMN tz TEXT;
-- When WhatsApp was linked to the account's Wappi profile (unix ms, from get/status
-- `authorized_at`, read at registration and at every preview); NULL = unknown. A young number
-- gets the warm-up cap.
ALTER TABLE users ADD COLUMN number_since INTEGER;

-- When the mailing was last resumed after a pause (unix ms; 0 = never): its first posts
-- afterwards go at half pace.
ALTER TABLE mailings ADD COLUMN resumed_at INTEGER NOT NULL DEFAULT 0;

-- The account's recent posts (caps and gaps count all its mailings) are read by the time of
-- their first attempt.
CREATE INDEX IF NOT EXISTS deliveries_by_first_attempt
    ON deliveries (first_attempt_at) WHERE first_attempt_at > 0;
