-- groupcast schema, version 2: subscriptions paid through Robokassa.
-- Same rules as 0001: SQLite dialect valid for D1, no PRAGMA, no BEGIN/COMMIT.

-- One invoice per payment link. Its id is the Robokassa InvId; the amount is the server's
-- price for the plan at the time the link was made (a callback must match it exactly).
CREATE TABLE IF NOT EXISTS invoices (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        INTEGER NOT NULL,
    -- Days of access the plan buys.
    plan_days      INTEGER NOT NULL CHECK (plan_days > 0),
    -- The price in kopecks.
    amount_kopecks INTEGER NOT NULL CHECK (amount_kopecks > 0),
    -- pending until Robokassa's ResultURL notification is verified; paid exactly once.
    status         TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid')),
    created_at     INTEGER NOT NULL,
    paid_at        INTEGER,
    -- OutSum exactly as Robokassa sent it in the accepted notification.
    paid_out_sum   TEXT,
    -- The subscription end (unix seconds) this payment produced.
    extended_until INTEGER
) STRICT;

CREATE INDEX IF NOT EXISTS invoices_by_user ON invoices (user_id, id);
CREATE INDEX IF NOT EXISTS invoices_by_paid_at ON invoices (status, paid_at);

-- Subscription reminders already sent: at most one of each kind per subscription end, so a
-- reminder goes out exactly once even when the job runs often or on several processes.
CREATE TABLE IF NOT EXISTS reminders (
    user_id INTEGER NOT NULL,
    -- '3d' and '1d' before the end, 'expired' after it.
    kind    TEXT    NOT NULL CHECK (kind IN ('3d', '1d', 'expired')),
    -- The subscription end (unix seconds) the reminder is about.
    until   INTEGER NOT NULL,
    sent_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, kind, until)
) STRICT;
