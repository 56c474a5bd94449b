-- groupcast schema, version 12: /history and its CSV. Same rules as 0001: SQLite dialect
-- valid for D1, no PRAGMA, no BEGIN/COMMIT.

-- What the delivery audit read back for this mailing's post in this group (Wappi's
-- `delivery_status`: delivered, read, pending, undelivered, …), written on every row of the
-- group; NULL = not audited (or the group's history could not be read).
ALTER TABLE deliveries ADD COLUMN delivery_status TEXT;

-- /history names the series a mailing was a run of.
CREATE INDEX IF NOT EXISTS series_runs_by_mailing ON series_runs (mailing_id)
    WHERE mailing_id IS NOT NULL;
