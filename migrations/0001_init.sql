-- groupcast schema, version 1.
--
-- One SQLite-dialect folder serves both runtimes: Cloudflare D1 applies it with
-- `wrangler d1 migrations apply` (recorded in `d1_migrations`), the self-hosted server with its
-- own runner (recorded in `_migrations`, see crates/server/src/db.rs). So this file holds no
-- PRAGMA and no BEGIN/COMMIT: each runner wraps the file in its own transaction.
--
-- Units: every `*_at` column is unix milliseconds as handed in by the caller, except
-- `users.subscription_until`, which is unix seconds. Booleans are INTEGER 0/1.

-- A Telegram user of the bot.
CREATE TABLE IF NOT EXISTS users (
    -- The Telegram user id (also the id of the private chat with the bot).
    id                 INTEGER PRIMARY KEY,
    -- Interface language code: 'ru' (default) or 'en'.
    lang               TEXT    NOT NULL DEFAULT 'ru' CHECK (lang IN ('ru', 'en')),
    -- The user's Wappi API token, encrypted by the application (never stored in clear);
    -- NULL until registration is complete.
    wappi_token_enc    TEXT,
    -- The Wappi profile id (one connected WhatsApp number); NULL until registration.
    profile_id         TEXT,
    -- End of the paid subscription, unix SECONDS; 0 = never subscribed.
    subscription_until INTEGER NOT NULL DEFAULT 0,
    -- The serialised dialogue state (JSON); '' = the initial state.
    dialogue           TEXT    NOT NULL DEFAULT '',
    created_at         INTEGER NOT NULL
) STRICT;

-- The mailing text a user has prepared (one per user), in WhatsApp markup.
CREATE TABLE IF NOT EXISTS texts (
    user_id    INTEGER PRIMARY KEY,
    body       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- A user's saved target groups, in the order the user gave them.
CREATE TABLE IF NOT EXISTS groups (
    user_id  INTEGER NOT NULL,
    -- WhatsApp group id, `<digits>@g.us` or `<digits>-<digits>@g.us`.
    jid      TEXT    NOT NULL,
    -- The group's display name when known (imported from the WhatsApp chat list).
    name     TEXT,
    -- 0-based order within the user's list.
    position INTEGER NOT NULL,
    PRIMARY KEY (user_id, jid)
) STRICT;

CREATE INDEX IF NOT EXISTS groups_by_user_position ON groups (user_id, position);

-- A mailing: one content snapshot sent from one Wappi profile to a list of groups.
CREATE TABLE IF NOT EXISTS mailings (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             INTEGER NOT NULL,
    -- The Telegram chat that receives progress and the final report.
    chat_id             INTEGER NOT NULL,
    -- The Wappi profile that sends; at most one active mailing per profile (index below).
    profile_id          TEXT    NOT NULL,
    -- running and paused are "active"; cancelled and done are final.
    status              TEXT    NOT NULL DEFAULT 'running'
                        CHECK (status IN ('running', 'paused', 'cancelled', 'done')),
    -- The content snapshot taken at start: JSON of `ledger::Content`, e.g. {"text":"..."}.
    content             TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    -- Set when the mailing reaches cancelled or done; NULL while active.
    finished_at         INTEGER,
    -- The highest lease fencing number that has claimed this mailing. Ledger writes carrying
    -- another number are refused, so a runner that lost its lease cannot write stale state.
    fence               INTEGER NOT NULL DEFAULT 0,
    -- 1 once the user asked to cancel; the runner checks it before every send.
    cancel_requested    INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    -- The Telegram message that shows live progress, once sent.
    progress_message_id INTEGER,
    -- When that message was last edited (throttles edits).
    progress_at         INTEGER NOT NULL DEFAULT 0,
    -- Why the engine paused the mailing, shown to the user; NULL otherwise.
    pause_reason        TEXT
) STRICT;

-- One active (running or paused) mailing per Wappi profile, enforced by the database itself:
-- a second start fails with a UNIQUE violation, which the adapters report as "already active".
CREATE UNIQUE INDEX IF NOT EXISTS mailings_one_active_per_profile
    ON mailings (profile_id) WHERE status IN ('running', 'paused');

CREATE INDEX IF NOT EXISTS mailings_by_user ON mailings (user_id, id);
CREATE INDEX IF NOT EXISTS mailings_by_status ON mailings (status);

-- The ledger: one row per (mailing, group, part), the system of record of what was sent
-- where. A row is set to 'sending' durably before the Wappi call; a row found in 'sending'
-- after a crash becomes 'in_doubt' and is settled by reading the chat before any resend.
CREATE TABLE IF NOT EXISTS deliveries (
    mailing_id      INTEGER NOT NULL REFERENCES mailings (id) ON DELETE CASCADE,
    group_jid       TEXT    NOT NULL,
    -- 0 = the text; further parts (images) get their own numbers.
    part            INTEGER NOT NULL DEFAULT 0,
    -- Order of sending within the mailing (the group's index in the mailing's list).
    position        INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'in_doubt')),
    -- Send attempts that reached Wappi or failed on the way.
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Not tried again before this time (backoff, settle retry); 0 = at once.
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    -- The WhatsApp message id Wappi returned, once sent.
    message_id      TEXT,
    -- A readable reason for 'failed' / 'in_doubt'.
    error           TEXT,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (mailing_id, group_jid, part)
) STRICT;

CREATE INDEX IF NOT EXISTS deliveries_by_position ON deliveries (mailing_id, position, part);

-- Telegram updates already accepted: a set of ids (never a high-water mark), so a redelivered
-- update is recognised and ignored, whatever order updates arrive in. Pruned by age.
CREATE TABLE IF NOT EXISTS telegram_updates (
    update_id   INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS telegram_updates_by_received ON telegram_updates (received_at);
