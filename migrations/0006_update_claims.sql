-- Telegram updates are recorded when taken for handling and marked when the handling ends, so a
-- crash or a deploy in between no longer turns Telegram's redelivery into a dropped duplicate:
-- an update taken but never finished is taken again (from its stored payload on the server).
--   payload    the update as received (JSON), for taking it again after a crash
--   claimed_at when a handler last took it (unix ms); 0 = handed back at a shutdown, free to take
--   done_at    when its handling ended (unix ms); NULL while taken and not finished
ALTER TABLE telegram_updates ADD COLUMN payload TEXT;
ALTER TABLE telegram_updates ADD COLUMN claimed_at INTEGER;
ALTER TABLE telegram_updates ADD COLUMN done_at INTEGER;

-- Updates recorded before this migration were handled as far as anyone can tell.
UPDATE telegram_updates SET claimed_at = received_at, done_at = received_at;

CREATE INDEX IF NOT EXISTS telegram_updates_unfinished
    ON telegram_updates (claimed_at) WHERE done_at IS NULL;
