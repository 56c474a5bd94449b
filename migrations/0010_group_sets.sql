-- groupcast schema, version 10: named group sets. Same rules as 0001: SQLite dialect valid
-- for D1, no PRAGMA, no BEGIN/COMMIT.

-- A user's saved group lists ("Москва", "Новосибирск"): picking one makes it the list
-- (`groups`) the next mailing or schedule takes; the others stay as they are.
CREATE TABLE IF NOT EXISTS group_sets (
    user_id    INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    -- JSON array of {"jid": "...@g.us", "name": "..." | null}, in list order.
    groups     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, name)
) STRICT;
