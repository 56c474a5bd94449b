-- groupcast schema, version 4: a preview's ✅ starts what it showed, at most once.
-- Same rules as 0001: SQLite dialect valid for D1, no PRAGMA, no BEGIN/COMMIT.
--
-- Every preview the bot shows gets the next number of its user (carried in the ✅ button's
-- callback_data) and records a digest of what it showed (text, images, groups). A press is
-- honoured only for the newest preview, while the digest still matches what a mailing
-- started now would send, and only once: taking the preview clears the digest in the same
-- conditional UPDATE, so a second press or a redelivered update starts nothing.

-- The number of the user's newest preview; 0 = none shown yet (an old "go" button counts as 0).
ALTER TABLE users ADD COLUMN preview_seq INTEGER NOT NULL DEFAULT 0;
-- The digest of what the newest preview showed; NULL once its ✅ was taken (or never shown).
ALTER TABLE users ADD COLUMN preview_digest TEXT;
