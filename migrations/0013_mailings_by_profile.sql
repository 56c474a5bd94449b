-- groupcast schema, version 13: the account's mailings by profile. Same rules as 0001: SQLite
-- dialect valid for D1, no PRAGMA, no BEGIN/COMMIT.

-- The plan of every post reads the account's recent posts (all its mailings); without this
-- index that read scanned the whole ledger of every account, once per post.
CREATE INDEX IF NOT EXISTS mailings_by_profile ON mailings (profile_id, id);
