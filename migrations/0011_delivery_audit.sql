-- groupcast schema, version 11: the delivery audit. Same rules as 0001: SQLite dialect valid
-- for D1, no PRAGMA, no BEGIN/COMMIT.

-- When the delivery audit of a finished mailing was taken (unix ms); NULL = not yet. Taken
-- once (a conditional write), so two processes never audit the same mailing.
ALTER TABLE mailings ADD COLUMN audited_at INTEGER;

CREATE INDEX IF NOT EXISTS mailings_to_audit ON mailings (finished_at)
    WHERE audited_at IS NULL AND status IN ('done', 'cancelled');

-- What the audits saw of each group of a user: its last delivery_status and how many audits
-- in a row found the post not delivered (the next preview leaves such a group out).
CREATE TABLE IF NOT EXISTS group_delivery (
    user_id    INTEGER NOT NULL,
    jid        TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    misses     INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, jid)
) STRICT;
