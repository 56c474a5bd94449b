-- groupcast schema, version 14: the start message on its way. Same rules as 0001: SQLite
-- dialect valid for D1, no PRAGMA, no BEGIN/COMMIT.

-- A new mailing is handed to the runners before its start message is sent (its first post
-- never waits for Telegram). Until this time (Unix ms), or until the start message is recorded
-- or has failed (`progress_at` stamped), the engine keeps its own messages to the chat back,
-- so none of them overtakes the start message. 0: no start message is coming.
ALTER TABLE mailings ADD COLUMN announce_until INTEGER NOT NULL DEFAULT 0;
