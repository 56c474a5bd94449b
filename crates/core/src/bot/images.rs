//! The bot's photo flow (🖼️ / `/images`): photos arrive (an album is one update per photo),
//! are downloaded through `getFile`, normalised (≤ 1600 px, ≤ 1 MB JPEG, EXIF orientation
//! applied) and stored as immutable image rows in the user's photo set; 🌅 builds a collage,
//! shows it with `sendPhoto` and waits for ✅ / ❌; 🗑 clears the set. Where the runtime
//! defers long work (`Services::deferrer`, the Worker's Queue), 🌅 only hands a
//! [`CollageJob`] over and the runtime later runs [`run_collage_job`], the same build.
//!
//! An album is answered by one message, edited as its photos arrive (the dialogue state keeps
//! the album's id and that message). A refused photo (the 11th, a download failure, an
//! unreadable file) gets its own message and leaves the stored set as it was.

use crate::bot::ctx::{BotError, Ctx};
use crate::bot::dialogue::{AlbumAnswer, DialogueState};
use crate::collage::{self, CollageOptions};
use crate::model::ids::ImageId;
use crate::model::ids::{ChatId, UserId};
use crate::model::ledger::Content;
use crate::ports::CollageJob;
use crate::ports::{NewImage, PhotoInput, UpdateClaim};
use crate::services::Services;
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardMarkup, MessageId, PhotoSize, ReplyMarkup};
use crate::texts;

/// Photos per mailing.
pub const MAX_PHOTOS: usize = collage::MAX_PHOTOS;
/// The Bot API serves files up to this size to bots.
pub const TELEGRAM_DOWNLOAD_LIMIT: u64 = 20 * 1024 * 1024;
/// Stored images are at most this many pixels on the long side …
pub const STORED_MAX_SIDE: u32 = 1600;
/// … and this many bytes (a D1 row must stay under 2 MB).
pub const STORED_MAX_BYTES: usize = 1_000_000;

/// Why a photo was not added.
enum Refusal {
    Full,
    TooBig,
    Download,
    Unreadable,
}

/// The largest size Telegram will let us download (sizes without a known size count as
/// small enough; `getFile` says otherwise if not).
pub fn pick_size(sizes: &[PhotoSize]) -> Option<&PhotoSize> {
    sizes
        .iter()
        .filter(|s| s.file_size.is_none_or(|n| n <= TELEGRAM_DOWNLOAD_LIMIT))
        .max_by_key(|s| (u64::from(s.width) * u64::from(s.height), s.file_size))
}

impl Ctx<'_> {
    /// 🖼️: shows the set and waits for photos.
    pub(super) async fn show_images(&mut self) -> Result<(), BotError> {
        self.set_state(&DialogueState::AwaitImages { album: None })
            .await?;
        let (text, kb) = self.photo_summary().await?;
        match kb {
            Some(kb) => self.say_with(&text, ReplyMarkup::Inline(kb)).await?,
            None => self.say(&text).await?,
        };
        Ok(())
    }

    /// The set as held now, with 🌅 / 🗑 when it is not empty.
    async fn photo_summary(&self) -> Result<(String, Option<InlineKeyboardMarkup>), BotError> {
        let l = self.lang();
        let set = self.svc.db.photo_set(self.user.id).await?;
        let collage = self.svc.db.collage(self.user.id).await?;
        let sizes: Vec<(u32, u32, u64)> = set.iter().map(|i| (i.width, i.height, i.size)).collect();
        let text = texts::photos_held(l, &sizes, MAX_PHOTOS, collage.map(|c| c.confirmed));
        let kb = (!set.is_empty()).then(|| {
            InlineKeyboardMarkup::rows(vec![vec![
                (texts::collage_button(l), Callback::MakeCollage.data()),
                (texts::clear_photos_button(l), Callback::ClearImages.data()),
            ]])
        });
        Ok((text, kb))
    }

    /// A photo: download, normalise, store, answer (once per album, by editing).
    pub(super) async fn take_photo(
        &mut self,
        sizes: &[PhotoSize],
        media_group_id: Option<String>,
        album: Option<AlbumAnswer>,
    ) -> Result<(), BotError> {
        let l = self.lang();
        match self.add_photo(sizes).await? {
            Ok(()) => {}
            Err(refusal) => {
                let text = match refusal {
                    Refusal::Full => texts::photos_full(l, MAX_PHOTOS),
                    Refusal::TooBig => texts::photo_too_big(l),
                    Refusal::Download => texts::photo_download_failed(l),
                    Refusal::Unreadable => texts::photo_unreadable(l),
                };
                self.say(&text).await?;
                // Keep answering the album in its message.
                self.set_state(&DialogueState::AwaitImages { album })
                    .await?;
                return Ok(());
            }
        }
        let (text, kb) = self.photo_summary().await?;
        let kb = kb.unwrap_or_default();
        if let Some(answer) = &album {
            let edited = self
                .svc
                .telegram
                .edit_message_text(self.chat, MessageId(answer.message_id), &text, Some(&kb))
                .await;
            match edited {
                Ok(()) => return Ok(()),
                Err(e) if e.is_not_modified() => return Ok(()),
                Err(e) => tracing::warn!(error = %e, "album answer edit failed"),
            }
        }
        let mid = self.say_with(&text, ReplyMarkup::Inline(kb)).await?;
        let album = media_group_id.map(|g| AlbumAnswer {
            media_group_id: g,
            message_id: mid.0,
        });
        self.set_state(&DialogueState::AwaitImages { album })
            .await?;
        Ok(())
    }

    /// Adds one photo to the set; the set is unchanged on any refusal.
    async fn add_photo(&mut self, sizes: &[PhotoSize]) -> Result<Result<(), Refusal>, BotError> {
        let user = self.user.id;
        if self.svc.db.photo_set(user).await?.len() >= MAX_PHOTOS {
            return Ok(Err(Refusal::Full));
        }
        let Some(size) = pick_size(sizes) else {
            return Ok(Err(Refusal::TooBig));
        };
        let file = match self.svc.telegram.get_file(&size.file_id).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(user = user.0, error = %e, "getFile failed");
                return Ok(Err(Refusal::Download));
            }
        };
        let Some(path) = file.file_path else {
            return Ok(Err(Refusal::TooBig));
        };
        let bytes = match self.svc.telegram.download_file(&path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(user = user.0, error = %e, "photo download failed");
                return Ok(Err(Refusal::Download));
            }
        };
        let normalised = self
            .svc
            .image_work
            .normalise(bytes, STORED_MAX_SIDE, STORED_MAX_BYTES)
            .await;
        let Ok(jpeg) = normalised else {
            return Ok(Err(Refusal::Unreadable));
        };
        let Ok(info) = collage::probe(&jpeg) else {
            return Ok(Err(Refusal::Unreadable));
        };
        let id = self
            .svc
            .db
            .insert_image(&NewImage {
                user_id: user,
                jpeg: &jpeg,
                width: info.width,
                height: info.height,
                tg_file_id: Some(&size.file_id),
                now: self.svc.now_ms(),
            })
            .await?;
        if self
            .svc
            .db
            .add_to_photo_set(user, id, MAX_PHOTOS)
            .await?
            .is_none()
        {
            return Ok(Err(Refusal::Full));
        }
        // A collage was built from the old set: it no longer shows what the user holds.
        if self.svc.db.collage(user).await?.is_some() {
            self.svc
                .db
                .set_collage(user, None, self.svc.now_ms())
                .await?;
        }
        tracing::info!(
            user = user.0,
            image = id,
            bytes = jpeg.len(),
            "photo stored"
        );
        Ok(Ok(()))
    }

    /// 🗑: forgets the set and its collage; image rows no mailing needs are deleted.
    pub(super) async fn clear_images(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        let user = self.user.id;
        self.svc.db.clear_photo_set(user).await?;
        self.prune_images().await?;
        self.close_buttons().await;
        self.set_state(&DialogueState::AwaitImages { album: None })
            .await?;
        self.say(&texts::photos_cleared(l)).await?;
        Ok(())
    }

    /// Deletes the user's image rows that neither the photo set, the collage, the active
    /// mailing (which keeps the images it started with) nor a scheduled series (its snapshot)
    /// uses any more.
    async fn prune_images(&self) -> Result<(), BotError> {
        let mut keep: Vec<ImageId> = self
            .active_mailing(None)
            .await?
            .map(|m| m.content.images)
            .unwrap_or_default();
        for series in self.svc.db.user_series(self.user.id).await? {
            keep.extend(series.content.images);
        }
        let deleted = self
            .svc
            .db
            .delete_images_except(self.user.id, &keep)
            .await?;
        if deleted > 0 {
            tracing::info!(user = self.user.id.0, deleted, "unused images deleted");
        }
        Ok(())
    }

    /// 🌅: builds the collage and previews it, or (where the runtime defers long work, the
    /// Worker) hands the build to the runtime and says it is on its way.
    pub(super) async fn make_collage(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        if self.svc.db.photo_set(self.user.id).await?.is_empty() {
            self.say(&texts::no_photos(l)).await?;
            return Ok(());
        }
        let Some(deferrer) = &self.svc.deferrer else {
            return self.build_collage_preview().await;
        };
        deferrer
            .defer(CollageJob {
                user_id: self.user.id.0,
                chat_id: self.chat.0,
                requested_at: self.svc.now_ms(),
            })
            .await?;
        self.say(&texts::collage_building(l)).await?;
        Ok(())
    }

    /// Builds the collage from the photo set and shows it (its `file_id` kept with the image)
    /// with ✅ / ❌.
    async fn build_collage_preview(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        let user = self.user.id;
        let set = self.svc.db.photo_set(user).await?;
        if set.is_empty() {
            self.say(&texts::no_photos(l)).await?;
            return Ok(());
        }
        let mut photos = Vec::with_capacity(set.len());
        for meta in &set {
            if let Some(img) = self.svc.db.get_image(meta.id).await? {
                photos.push(img.jpeg);
            }
        }
        let built = match self
            .svc
            .image_work
            .collage(photos, CollageOptions::default())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(user = user.0, error = %e, "collage failed");
                self.say(&texts::collage_failed(l)).await?;
                return Ok(());
            }
        };
        let sent = self
            .svc
            .telegram
            .send_photo(
                self.chat,
                PhotoInput::Jpeg(&built.jpeg),
                Some(&texts::collage_preview(l)),
                None,
            )
            .await?;
        let id = self
            .svc
            .db
            .insert_image(&NewImage {
                user_id: user,
                jpeg: &built.jpeg,
                width: built.width,
                height: built.height,
                tg_file_id: Some(&sent.file_id),
                now: self.svc.now_ms(),
            })
            .await?;
        self.svc
            .db
            .set_collage(user, Some((id, false)), self.svc.now_ms())
            .await?;
        self.prune_images().await?; // an earlier collage, if any
                                    // The buttons name the collage, so a stale preview cannot confirm a newer one.
        let kb = InlineKeyboardMarkup::rows(vec![vec![
            (texts::collage_use(l), Callback::UseCollage(id).data()),
            (
                texts::collage_discard(l),
                Callback::DiscardCollage(id).data(),
            ),
        ]]);
        self.svc
            .telegram
            .edit_message_reply_markup(self.chat, sent.message_id, &kb)
            .await?;
        tracing::info!(
            user = user.0,
            image = id,
            bytes = built.jpeg.len(),
            "collage built"
        );
        Ok(())
    }

    /// ✅ / ❌ under a collage preview.
    pub(super) async fn answer_collage(
        &mut self,
        id: ImageId,
        use_it: bool,
    ) -> Result<(), BotError> {
        let l = self.lang();
        let user = self.user.id;
        self.close_buttons().await;
        let current = self.svc.db.collage(user).await?;
        if current.as_ref().is_none_or(|c| c.image.id != id) {
            self.say(&texts::collage_outdated(l)).await?;
            return Ok(());
        }
        if use_it {
            self.svc
                .db
                .set_collage(user, Some((id, true)), self.svc.now_ms())
                .await?;
            self.say(&texts::collage_confirmed(l)).await?;
        } else {
            self.svc
                .db
                .set_collage(user, None, self.svc.now_ms())
                .await?;
            self.prune_images().await?;
            self.say(&texts::collage_discarded(l)).await?;
        }
        Ok(())
    }

    /// The images of the preview before start, as the groups will get them (by `file_id`, or
    /// uploaded when the image has none).
    pub(super) async fn preview_images(&self, content: &Content) -> Result<(), BotError> {
        for part in content.parts() {
            let Some(id) = part.image else { continue };
            let Some(img) = self.svc.db.get_image(id).await? else {
                continue;
            };
            let photo = match &img.tg_file_id {
                Some(file_id) => PhotoInput::FileId(file_id),
                None => PhotoInput::Jpeg(&img.jpeg),
            };
            // The caption shown is the one the groups get (none for separate photos).
            self.svc
                .telegram
                .send_photo(self.chat, photo, part.text, None)
                .await?;
        }
        Ok(())
    }
}

/// What [`run_collage_job`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollageOutcome {
    /// The collage was built and previewed (or the user was told why not).
    Built,
    /// This job, or a later 🌅, was already run: nothing was sent.
    AlreadyDone,
    /// The user is not in the database any more.
    NoUser,
}

/// Runs a deferred 🌅 (the Worker's queue consumer): builds the collage and previews it, as
/// the server does inline. A job runs at most once: it claims its key in the update log (a
/// negative id, so it never meets a Telegram `update_id`) before it builds, so the same job
/// delivered twice, even at once, previews once. A job is also done when the user already
/// holds a collage built at or after the job's `requested_at` (🌅 pressed twice). If the
/// build fails after the claim, the user is told and can press 🌅 again.
pub async fn run_collage_job(svc: &Services, job: &CollageJob) -> Result<CollageOutcome, BotError> {
    let Some(user) = svc.db.get_user(UserId(job.user_id)).await? else {
        return Ok(CollageOutcome::NoUser);
    };
    if let Some(current) = svc.db.collage(user.id).await? {
        let built_at = svc
            .db
            .get_image(current.image.id)
            .await?
            .map(|img| img.created_at);
        if built_at.is_some_and(|t| t >= job.requested_at) {
            return Ok(CollageOutcome::AlreadyDone);
        }
    }
    let key = collage_job_key(job);
    let now = svc.now_ms();
    if svc
        .db
        .claim_update(key, "", now, now - COLLAGE_JOB_STALE_MS)
        .await?
        != UpdateClaim::Taken
    {
        return Ok(CollageOutcome::AlreadyDone);
    }
    let mut ctx = Ctx {
        svc,
        user,
        chat: ChatId(job.chat_id),
        callback_message: None,
    };
    let built = ctx.build_collage_preview().await;
    if built.is_err() {
        let _ = ctx.say(&texts::collage_failed(ctx.lang())).await;
    }
    // A failure was told to the user (who can press 🌅 again): the job is over either way.
    svc.db.finish_update(key, svc.now_ms()).await?;
    built.map(|()| CollageOutcome::Built)
}

/// A collage job taken and not finished this long ago was cut off (its worker died): a
/// redelivery of it builds the collage.
const COLLAGE_JOB_STALE_MS: i64 = 120_000;

/// The job's key in the update log: negative (Telegram's update ids are positive) and within
/// ±2^53 (D1 carries numbers as JavaScript doubles), derived from the user and the moment 🌅
/// was pressed.
pub fn collage_job_key(job: &CollageJob) -> i64 {
    let packed = (job.user_id as u64).rotate_left(32) ^ (job.requested_at as u64);
    // An odd multiplier spreads every input bit into the high bits kept below.
    let mixed = packed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    -((mixed >> 12) as i64) - 1
}
