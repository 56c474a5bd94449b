-- groupcast schema, version 3: photos and collages in mailings.
-- Same rules as 0001: SQLite dialect valid for D1, no PRAGMA, no BEGIN/COMMIT.
--
-- Images are stored normalised (a JPEG of at most 1600 px on the long side and 1 MB, EXIF
-- orientation applied), never the raw upload, so a row stays well under D1's 2 MB limit.
-- Rows never change once written: a mailing's content snapshot (mailings.content, e.g.
-- {"text":"…","images":[12,13]}) refers to them by id, and a photo removed or replaced after
-- the start does not reach the mailing.

-- One stored image: a user's photo, or a collage built from the user's photos.
CREATE TABLE IF NOT EXISTS images (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL,
    -- The normalised JPEG.
    jpeg       BLOB    NOT NULL CHECK (length(jpeg) > 0),
    width      INTEGER NOT NULL CHECK (width > 0),
    height     INTEGER NOT NULL CHECK (height > 0),
    -- A Telegram file_id showing this image (the user's upload, or the collage preview the bot
    -- sent), so previews go by id instead of a new upload; NULL when unknown.
    tg_file_id TEXT,
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS images_by_user ON images (user_id, id);

-- A user's current photo set, in upload order (at most 10, enforced by the insert).
CREATE TABLE IF NOT EXISTS photo_sets (
    user_id  INTEGER NOT NULL,
    -- 0-based order within the set.
    position INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images (id),
    PRIMARY KEY (user_id, position)
) STRICT;

-- A user's collage of the current set: built by 🌅, used by mailings once confirmed (✅).
CREATE TABLE IF NOT EXISTS collages (
    user_id    INTEGER PRIMARY KEY,
    image_id   INTEGER NOT NULL REFERENCES images (id),
    confirmed  INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1)),
    updated_at INTEGER NOT NULL
) STRICT;
