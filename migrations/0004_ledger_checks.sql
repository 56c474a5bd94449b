-- groupcast schema, version 4: settling in-doubt rows counts its own tries and knows how far
-- back to read. Same rules as 0001: SQLite dialect valid for D1, no PRAGMA, no BEGIN/COMMIT.

-- Reads of the group's history that failed while settling the row, apart from `attempts`
-- (sends), so a row's failed checks never use up its sends (a rate-limited read counts as
-- neither).
ALTER TABLE deliveries ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;

-- Unix ms when the row was first marked 'sending' (0 = never, or a row from before this
-- version): settling reads the group's history back to before this time.
ALTER TABLE deliveries ADD COLUMN first_attempt_at INTEGER NOT NULL DEFAULT 0;
