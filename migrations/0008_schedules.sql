-- groupcast schema, version 8: scheduled and repeating mailings. Same rules as 0001: SQLite
-- dialect valid for D1, no PRAGMA, no BEGIN/COMMIT.

-- A series: the post and the groups as they were when the user scheduled them (a snapshot),
-- run on the dates of its rule at a local wall-clock time in the user's time zone. A one-off
-- is a series with rule 'once'.
CREATE TABLE IF NOT EXISTS series (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL,
    -- The Telegram chat that gets each run's progress and report.
    chat_id      INTEGER NOT NULL,
    profile_id   TEXT    NOT NULL,
    -- JSON of `ledger::Content` (the text and image ids: image rows never change).
    content      TEXT    NOT NULL,
    -- JSON array of group ids, in order.
    groups       TEXT    NOT NULL,
    -- The first run's local date 'YYYY-MM-DD' and the local time 'HH:MM:SS' of every run.
    first_date   TEXT    NOT NULL,
    at_time      TEXT    NOT NULL,
    -- `schedule::Rule::code`: 'once', 'daily', 'weekdays', 'weekly', 'days:mon,fri', 'every:3'.
    rule         TEXT    NOT NULL,
    -- The last local date a run may happen on; NULL = no end.
    until_date   TEXT,
    paused       INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    deleted      INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    -- Runs due before this (unix ms) never run: the time of scheduling, then of every resume.
    not_before   INTEGER NOT NULL,
    -- The local date of a due run the user was told waits for the account's active mailing.
    waiting_date TEXT,
    -- When the next run is due, as last computed (a hint for finding due series; the run's
    -- time is computed again from the rule and the user's zone when it is due). NULL = no
    -- more runs.
    next_due_at  INTEGER,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS series_due ON series (next_due_at)
    WHERE paused = 0 AND deleted = 0 AND next_due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS series_by_user ON series (user_id, id);

-- Every decided run of a series, one per (series, local date): the key that makes a run
-- happen at most once whatever restarts, redelivered alarms, overlapping crons or second
-- processes come around it. A started run is written in the same transaction as its mailing.
CREATE TABLE IF NOT EXISTS series_runs (
    series_id  INTEGER NOT NULL REFERENCES series (id),
    run_date   TEXT    NOT NULL,
    -- When it was due (unix ms).
    due_at     INTEGER NOT NULL,
    outcome    TEXT    NOT NULL
               CHECK (outcome IN ('started', 'skipped', 'missed', 'no_subscription')),
    mailing_id INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (series_id, run_date)
) STRICT;

-- A new kind of reminder: 'run', the subscription ends before a scheduled run in the next
-- 24 hours (once per subscription end). SQLite cannot change a CHECK, so the table is copied.
CREATE TABLE reminders_v8 (
    user_id INTEGER NOT NULL,
    -- '3d' and '1d' before the end, 'expired' after it, 'run' before a scheduled run.
    kind    TEXT    NOT NULL CHECK (kind IN ('3d', '1d', 'expired', 'run')),
    -- The subscription end (unix seconds) the reminder is about.
    until   INTEGER NOT NULL,
    sent_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, kind, until)
) STRICT;
INSERT INTO reminders_v8 (user_id, kind, until, sent_at)
    SELECT user_id, kind, until, sent_at FROM reminders;
DROP TABLE reminders;
ALTER TABLE reminders_v8 RENAME TO reminders;
