-- groupcast schema, version 9: the pre-flight check of a preview. Same rules as 0001: SQLite
-- dialect valid for D1, no PRAGMA, no BEGIN/COMMIT.

-- The groups the user's newest preview leaves out of the mailing its ✅ starts (found doubtful
-- by the pre-flight check: JSON `[["<jid>", "left" | "admins_only" | "unresolved"], …]`);
-- NULL or '[]' = none. Taken together with the preview.
ALTER TABLE users ADD COLUMN preview_skip TEXT;
