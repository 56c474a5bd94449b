//! The in-memory system of record: every store port, as documented in `ports.rs`.

use super::*;

/// One fenced ledger write that was accepted, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryWrite {
    pub fence: u64,
    pub row: Delivery,
}

/// The in-memory `Db`: users, content, mailings with their ledger, update ids and billing,
/// behind one mutex (every call is one transaction).
///
/// Semantics, as every backend must have them:
/// - at most one active (running or paused) mailing per profile: `create_mailing` and a
///   status change back to active answer `AlreadyActive`;
/// - a new mailing has fence 0; `claim_mailing` raises it (equal is fine, lower is
///   `StaleFence`); row writes and status changes carry a fence and are refused with
///   `StaleFence` unless it is the mailing's current one; a missing mailing or row is
///   `NotFound`;
/// - a group listed twice gets one row; positions are dense in list order.
#[derive(Default)]
pub struct InMemDb {
    inner: Mutex<DbInner>,
}

/// A Telegram update taken for handling.
struct UpdateRow {
    claimed_at: i64,
    done: bool,
}

#[derive(Default)]
struct DbInner {
    users: BTreeMap<UserId, UserRecord>,
    texts: HashMap<UserId, String>,
    groups: HashMap<UserId, Vec<GroupEntry>>,
    /// Named group sets, by (user, name): a BTreeMap lists them by name.
    group_sets: BTreeMap<(UserId, String), Vec<GroupEntry>>,
    mailings: BTreeMap<MailingId, Mailing>,
    rows: BTreeMap<MailingId, Vec<Delivery>>,
    last_mailing: i64,
    updates: HashMap<i64, UpdateRow>,
    invoices: BTreeMap<i64, (Invoice, Option<i64>)>,
    last_invoice: i64,
    reminders: HashSet<(UserId, String, i64)>,
    images: BTreeMap<ImageId, StoredImage>,
    photo_sets: HashMap<UserId, Vec<ImageId>>,
    collages: HashMap<UserId, (ImageId, bool)>,
    /// Per user: the newest preview's number, its digest and skip (`None` once taken).
    previews: HashMap<UserId, (u64, Option<(String, String)>)>,
    /// How many times `get_image` was called (the engine reads each image once per drive).
    image_reads: usize,
    /// How many of the next `update_delivery` calls fail with a backend error.
    fail_update_delivery: usize,
    writes: Vec<DeliveryWrite>,
    refused_writes: Vec<DeliveryWrite>,
    /// Scheduled series (`last_date` is derived from `runs` when read) and their deleted flag.
    series: BTreeMap<SeriesId, (Series, bool)>,
    last_series: i64,
    /// Mailings whose delivery audit was taken.
    audited: HashSet<MailingId>,
    /// What the audits saw of each group: (user, group) → (status, misses).
    group_delivery: HashMap<(UserId, GroupJid), (String, u32)>,
    /// Every decided run: (series, local date) → (outcome, mailing).
    runs: BTreeMap<(SeriesId, NaiveDate), (RunOutcome, Option<MailingId>)>,
    /// What the audit read back of a mailing's post in a group.
    post_status: HashMap<(MailingId, GroupJid), String>,
}

impl DbInner {
    fn other_active(&self, profile: &ProfileId, except: Option<MailingId>) -> bool {
        self.mailings
            .values()
            .any(|m| &m.profile_id == profile && m.status.is_active() && Some(m.id) != except)
    }

    /// `Ok(())` when `fence` is the mailing's fence.
    fn check_fence(&self, id: MailingId, fence: u64) -> Result<(), DbError> {
        match self.mailings.get(&id) {
            None => Err(DbError::NotFound),
            Some(m) if m.fence != fence => Err(DbError::StaleFence),
            Some(_) => Ok(()),
        }
    }

    /// `create_mailing` under the lock already held.
    fn new_mailing(&mut self, new: &NewMailing) -> Result<MailingId, DbError> {
        let inner = self;
        if inner.other_active(&new.profile_id, None) {
            return Err(DbError::AlreadyActive);
        }
        inner.last_mailing += 1;
        let id = MailingId(inner.last_mailing);
        inner.mailings.insert(
            id,
            Mailing {
                id,
                user_id: new.user_id,
                chat_id: new.chat_id,
                profile_id: new.profile_id.clone(),
                status: MailingStatus::Running,
                content: new.content.clone(),
                created_at: new.now,
                finished_at: None,
                fence: 0,
                cancel_requested: false,
                progress_message_id: None,
                progress_at: 0,
                resumed_at: 0,
                pause_reason: None,
                announce_until: new.announce_until,
            },
        );
        let mut seen = HashSet::new();
        let parts = new.content.part_numbers();
        let rows = new
            .groups
            .iter()
            .filter(|g| seen.insert((*g).clone()))
            .enumerate()
            .flat_map(|(position, g)| {
                parts.iter().map(move |part| Delivery {
                    mailing_id: id,
                    group: g.clone(),
                    part: *part,
                    position: position as u32,
                    state: DeliveryState::Pending,
                    attempts: 0,
                    checks: 0,
                    first_attempt_at: 0,
                    next_attempt_at: 0,
                    message_id: None,
                    error: None,
                    updated_at: new.now,
                })
            })
            .collect();
        let mut rows: Vec<Delivery> = rows;
        for row in &mut rows {
            if let Some((_, reason)) = new.skipped.iter().find(|(g, _)| *g == row.group) {
                row.state = DeliveryState::Failed;
                row.error = Some(reason.clone());
            }
        }
        inner.rows.insert(id, rows);
        Ok(id)
    }

    /// A series as read: `last_date` from its runs.
    fn series_view(&self, series: &Series) -> Series {
        let mut s = series.clone();
        s.last_date = self
            .runs
            .range((series.id, NaiveDate::MIN)..=(series.id, NaiveDate::MAX))
            .map(|((_, d), _)| *d)
            .next_back();
        s
    }

    /// A run refers to its series (a foreign key in SQL backends).
    fn series_exists(&self, id: SeriesId) -> Result<(), DbError> {
        match self.series.contains_key(&id) {
            true => Ok(()),
            false => Err(DbError::Backend(format!("series {}: no such series", id.0))),
        }
    }

    /// The live (not deleted) series `id` of `user`.
    fn users_series_mut(&mut self, id: SeriesId, user: UserId) -> Option<&mut Series> {
        match self.series.get_mut(&id) {
            Some((s, false)) if s.user_id == user => Some(s),
            _ => None,
        }
    }

    fn user_mut(&mut self, id: UserId) -> Result<&mut UserRecord, DbError> {
        self.users.get_mut(&id).ok_or(DbError::NotFound)
    }
}

impl InMemDb {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, DbInner> {
        lock(&self.inner)
    }

    /// A mailing as stored (panics if there is none: a test bug).
    pub fn mailing(&self, id: MailingId) -> Mailing {
        self.lock()
            .mailings
            .get(&id)
            .cloned()
            .expect("no such mailing")
    }

    /// A mailing's ledger rows, in sending order.
    pub fn rows(&self, id: MailingId) -> Vec<Delivery> {
        self.lock().rows.get(&id).cloned().unwrap_or_default()
    }

    /// The row of `group` in mailing `id` (panics if there is none).
    pub fn row(&self, id: MailingId, group: &GroupJid) -> Delivery {
        self.rows(id)
            .into_iter()
            .find(|r| &r.group == group)
            .expect("no such row")
    }

    pub fn user(&self, id: UserId) -> Option<UserRecord> {
        self.lock().users.get(&id).cloned()
    }

    /// Every accepted `update_delivery`, in order.
    pub fn delivery_writes(&self) -> Vec<DeliveryWrite> {
        self.lock().writes.clone()
    }

    /// Every `update_delivery` refused with `StaleFence`, in order.
    pub fn refused_writes(&self) -> Vec<DeliveryWrite> {
        self.lock().refused_writes.clone()
    }

    /// Makes the next `n` `update_delivery` calls fail with a backend error (a lost
    /// connection, a crash between the Wappi call and the ledger write).
    pub fn fail_update_delivery(&self, n: usize) {
        self.lock().fail_update_delivery = n;
    }

    /// How many mailings exist.
    pub fn mailing_count(&self) -> usize {
        self.lock().mailings.len()
    }

    /// How many times `get_image` was called.
    pub fn image_reads(&self) -> usize {
        self.lock().image_reads
    }

    /// How many image rows exist.
    pub fn image_count(&self) -> usize {
        self.lock().images.len()
    }
}

fn image_meta(img: &StoredImage) -> ImageMeta {
    ImageMeta {
        id: img.id,
        width: img.width,
        height: img.height,
        size: img.jpeg.len() as u64,
        tg_file_id: img.tg_file_id.clone(),
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl ImageStore for InMemDb {
    async fn insert_image(&self, image: &NewImage<'_>) -> Result<ImageId, DbError> {
        let mut inner = self.lock();
        let id = inner.images.keys().next_back().map_or(1, |last| last + 1);
        inner.images.insert(
            id,
            StoredImage {
                id,
                user_id: image.user_id,
                jpeg: image.jpeg.to_vec(),
                width: image.width,
                height: image.height,
                tg_file_id: image.tg_file_id.map(str::to_string),
                created_at: image.now,
            },
        );
        Ok(id)
    }

    async fn get_image(&self, id: ImageId) -> Result<Option<StoredImage>, DbError> {
        let mut inner = self.lock();
        inner.image_reads += 1;
        Ok(inner.images.get(&id).cloned())
    }

    async fn photo_set(&self, user: UserId) -> Result<Vec<ImageMeta>, DbError> {
        let inner = self.lock();
        Ok(inner
            .photo_sets
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.images.get(id).map(image_meta))
            .collect())
    }

    async fn add_to_photo_set(
        &self,
        user: UserId,
        image: ImageId,
        max: usize,
    ) -> Result<Option<usize>, DbError> {
        let mut inner = self.lock();
        let set = inner.photo_sets.entry(user).or_default();
        if set.len() >= max {
            return Ok(None);
        }
        set.push(image);
        Ok(Some(set.len()))
    }

    async fn clear_photo_set(&self, user: UserId) -> Result<(), DbError> {
        let mut inner = self.lock();
        inner.photo_sets.remove(&user);
        inner.collages.remove(&user);
        Ok(())
    }

    async fn collage(&self, user: UserId) -> Result<Option<CollageChoice>, DbError> {
        let inner = self.lock();
        Ok(inner.collages.get(&user).and_then(|(id, confirmed)| {
            inner.images.get(id).map(|img| CollageChoice {
                image: image_meta(img),
                confirmed: *confirmed,
            })
        }))
    }

    async fn set_collage(
        &self,
        user: UserId,
        collage: Option<(ImageId, bool)>,
        _now: i64,
    ) -> Result<(), DbError> {
        let mut inner = self.lock();
        match collage {
            Some(c) => inner.collages.insert(user, c),
            None => inner.collages.remove(&user),
        };
        Ok(())
    }

    async fn delete_images_except(&self, user: UserId, keep: &[ImageId]) -> Result<usize, DbError> {
        let mut inner = self.lock();
        let mut kept: HashSet<ImageId> = keep.iter().copied().collect();
        kept.extend(inner.photo_sets.get(&user).into_iter().flatten().copied());
        kept.extend(inner.collages.get(&user).map(|(id, _)| *id));
        let before = inner.images.len();
        inner
            .images
            .retain(|id, img| img.user_id != user || kept.contains(id));
        Ok(before - inner.images.len())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl UserStore for InMemDb {
    async fn get_user(&self, id: UserId) -> Result<Option<UserRecord>, DbError> {
        Ok(self.lock().users.get(&id).cloned())
    }

    async fn ensure_user(
        &self,
        id: UserId,
        lang: Lang,
        subscription_until: i64,
        now: i64,
    ) -> Result<UserRecord, DbError> {
        let mut inner = self.lock();
        let user = inner.users.entry(id).or_insert_with(|| UserRecord {
            id,
            lang,
            wappi_token_enc: None,
            profile_id: None,
            subscription_until,
            dialogue: String::new(),
            created_at: now,
            pace: None,
            tz: None,
            number_since: None,
        });
        Ok(user.clone())
    }

    async fn save_credentials(
        &self,
        id: UserId,
        token_enc: &str,
        profile: &ProfileId,
    ) -> Result<(), DbError> {
        let mut inner = self.lock();
        let user = inner.user_mut(id)?;
        user.wappi_token_enc = Some(token_enc.to_string());
        user.profile_id = Some(profile.clone());
        Ok(())
    }

    async fn set_lang(&self, id: UserId, lang: Lang) -> Result<(), DbError> {
        self.lock().user_mut(id)?.lang = lang;
        Ok(())
    }

    async fn set_dialogue(&self, id: UserId, dialogue: &str) -> Result<(), DbError> {
        self.lock().user_mut(id)?.dialogue = dialogue.to_string();
        Ok(())
    }

    async fn set_subscription_until(&self, id: UserId, until: i64) -> Result<(), DbError> {
        self.lock().user_mut(id)?.subscription_until = until;
        Ok(())
    }

    async fn set_pace(&self, id: UserId, pace: &str) -> Result<(), DbError> {
        self.lock().user_mut(id)?.pace = Some(pace.to_string());
        Ok(())
    }

    async fn set_tz(&self, id: UserId, tz: &str) -> Result<(), DbError> {
        self.lock().user_mut(id)?.tz = Some(tz.to_string());
        Ok(())
    }

    async fn set_number_since(&self, id: UserId, at: i64) -> Result<(), DbError> {
        self.lock().user_mut(id)?.number_since = Some(at);
        Ok(())
    }

    async fn begin_preview(&self, id: UserId, digest: &str, skip: &str) -> Result<u64, DbError> {
        let mut inner = self.lock();
        inner.user_mut(id)?;
        let p = inner.previews.entry(id).or_insert((0, None));
        *p = (p.0 + 1, Some((digest.to_string(), skip.to_string())));
        Ok(p.0)
    }

    async fn take_preview(
        &self,
        id: UserId,
        seq: u64,
        digest: &str,
    ) -> Result<Option<String>, DbError> {
        let mut inner = self.lock();
        match inner.previews.get_mut(&id) {
            Some((n, d)) if *n == seq && d.as_ref().is_some_and(|(d, _)| d == digest) => {
                Ok(d.take().map(|(_, skip)| skip))
            }
            _ => Ok(None),
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl ContentStore for InMemDb {
    async fn get_text(&self, user: UserId) -> Result<Option<String>, DbError> {
        Ok(self.lock().texts.get(&user).cloned())
    }

    async fn set_text(&self, user: UserId, text: &str, _now: i64) -> Result<(), DbError> {
        self.lock().texts.insert(user, text.to_string());
        Ok(())
    }

    async fn get_groups(&self, user: UserId) -> Result<Vec<GroupEntry>, DbError> {
        Ok(self.lock().groups.get(&user).cloned().unwrap_or_default())
    }

    async fn set_groups(&self, user: UserId, groups: &[GroupEntry]) -> Result<(), DbError> {
        // A repeated group keeps its first place (and name).
        let mut seen = HashSet::new();
        let list: Vec<GroupEntry> = groups
            .iter()
            .filter(|g| seen.insert(g.jid.clone()))
            .cloned()
            .collect();
        self.lock().groups.insert(user, list);
        Ok(())
    }

    async fn save_group_set(
        &self,
        user: UserId,
        name: &str,
        groups: &[GroupEntry],
        _now: i64,
    ) -> Result<(), DbError> {
        self.lock()
            .group_sets
            .insert((user, name.to_string()), groups.to_vec());
        Ok(())
    }

    async fn group_sets(&self, user: UserId) -> Result<Vec<GroupSet>, DbError> {
        Ok(self
            .lock()
            .group_sets
            .iter()
            .filter(|((u, _), _)| *u == user)
            .map(|((_, name), groups)| GroupSet {
                name: name.clone(),
                groups: groups.clone(),
            })
            .collect())
    }

    async fn delete_group_set(&self, user: UserId, name: &str) -> Result<bool, DbError> {
        Ok(self
            .lock()
            .group_sets
            .remove(&(user, name.to_string()))
            .is_some())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl MailingStore for InMemDb {
    async fn create_mailing(&self, new: &NewMailing) -> Result<MailingId, DbError> {
        self.lock().new_mailing(new)
    }

    async fn get_mailing(&self, id: MailingId) -> Result<Option<Mailing>, DbError> {
        Ok(self.lock().mailings.get(&id).cloned())
    }

    async fn latest_mailing(&self, user: UserId) -> Result<Option<Mailing>, DbError> {
        Ok(self
            .lock()
            .mailings
            .values()
            .rev()
            .find(|m| m.user_id == user)
            .cloned())
    }

    async fn running_mailings(&self) -> Result<Vec<Mailing>, DbError> {
        Ok(self
            .lock()
            .mailings
            .values()
            .filter(|m| m.status == MailingStatus::Running)
            .cloned()
            .collect())
    }

    async fn claim_mailing(&self, id: MailingId, fence: u64) -> Result<(), DbError> {
        let mut inner = self.lock();
        let m = inner.mailings.get_mut(&id).ok_or(DbError::NotFound)?;
        if fence < m.fence {
            return Err(DbError::StaleFence);
        }
        m.fence = fence;
        Ok(())
    }

    async fn deliveries(&self, id: MailingId) -> Result<Vec<Delivery>, DbError> {
        let mut rows = self.lock().rows.get(&id).cloned().unwrap_or_default();
        rows.sort_by(|a, b| (a.position, a.part, &a.group).cmp(&(b.position, b.part, &b.group)));
        Ok(rows)
    }

    async fn update_delivery(&self, row: &Delivery, fence: u64) -> Result<(), DbError> {
        let mut inner = self.lock();
        if inner.fail_update_delivery > 0 {
            inner.fail_update_delivery -= 1;
            return Err(DbError::Backend("injected failure: update_delivery".into()));
        }
        if let Err(e) = inner.check_fence(row.mailing_id, fence) {
            if e == DbError::StaleFence {
                inner.refused_writes.push(DeliveryWrite {
                    fence,
                    row: row.clone(),
                });
            }
            return Err(e);
        }
        let stored = inner
            .rows
            .get_mut(&row.mailing_id)
            .and_then(|rows| {
                rows.iter_mut()
                    .find(|r| r.group == row.group && r.part == row.part)
            })
            .ok_or(DbError::NotFound)?;
        stored.state = row.state;
        stored.attempts = row.attempts;
        stored.checks = row.checks;
        stored.first_attempt_at = row.first_attempt_at;
        stored.next_attempt_at = row.next_attempt_at;
        stored.message_id = row.message_id.clone();
        stored.error = row.error.clone();
        stored.updated_at = row.updated_at;
        let written = stored.clone();
        inner.writes.push(DeliveryWrite {
            fence,
            row: written,
        });
        Ok(())
    }

    async fn set_mailing_status(
        &self,
        id: MailingId,
        status: MailingStatus,
        reason: Option<&str>,
        fence: u64,
        now: i64,
    ) -> Result<(), DbError> {
        let mut inner = self.lock();
        inner.check_fence(id, fence)?;
        let profile = inner.mailings[&id].profile_id.clone();
        if status.is_active() && inner.other_active(&profile, Some(id)) {
            return Err(DbError::AlreadyActive);
        }
        let m = inner.mailings.get_mut(&id).expect("checked above");
        m.status = status;
        m.pause_reason = reason.map(str::to_string);
        m.finished_at =
            matches!(status, MailingStatus::Cancelled | MailingStatus::Done).then_some(now);
        Ok(())
    }

    async fn request_cancel(&self, id: MailingId) -> Result<(), DbError> {
        self.lock()
            .mailings
            .get_mut(&id)
            .ok_or(DbError::NotFound)?
            .cancel_requested = true;
        Ok(())
    }

    async fn resume_mailing(&self, id: MailingId, now: i64) -> Result<bool, DbError> {
        let mut inner = self.lock();
        let Some(m) = inner.mailings.get(&id) else {
            return Ok(false);
        };
        if m.status != MailingStatus::Paused {
            return Ok(false);
        }
        let profile = m.profile_id.clone();
        if inner.other_active(&profile, Some(id)) {
            return Err(DbError::AlreadyActive);
        }
        let m = inner.mailings.get_mut(&id).expect("checked above");
        m.status = MailingStatus::Running;
        m.pause_reason = None;
        m.resumed_at = now;
        Ok(true)
    }

    async fn pause_mailing(&self, id: MailingId, reason: &str) -> Result<bool, DbError> {
        let mut inner = self.lock();
        match inner.mailings.get_mut(&id) {
            Some(m) if m.status == MailingStatus::Running => {
                m.status = MailingStatus::Paused;
                m.pause_reason = Some(reason.to_string());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn recent_posts(&self, profile: &ProfileId, since: i64) -> Result<Vec<i64>, DbError> {
        let inner = self.lock();
        let mut firsts: HashMap<(MailingId, &str), i64> = HashMap::new();
        for (id, m) in &inner.mailings {
            if &m.profile_id != profile {
                continue;
            }
            for r in inner.rows.get(id).into_iter().flatten() {
                if r.first_attempt_at > 0 {
                    let t = firsts.entry((*id, r.group.as_str())).or_insert(i64::MAX);
                    *t = (*t).min(r.first_attempt_at);
                }
            }
        }
        let mut posts: Vec<i64> = firsts.into_values().filter(|&t| t >= since).collect();
        posts.sort_unstable();
        Ok(posts)
    }

    async fn set_progress(
        &self,
        id: MailingId,
        message_id: Option<i64>,
        at: i64,
    ) -> Result<(), DbError> {
        let mut inner = self.lock();
        let m = inner.mailings.get_mut(&id).ok_or(DbError::NotFound)?;
        if message_id.is_some() {
            m.progress_message_id = message_id;
        }
        m.progress_at = at;
        m.announce_until = 0;
        Ok(())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl ScheduleStore for InMemDb {
    async fn create_series(&self, new: &NewSeries) -> Result<SeriesId, DbError> {
        let mut inner = self.lock();
        inner.last_series += 1;
        let id = SeriesId(inner.last_series);
        let series = Series {
            id,
            user_id: new.user_id,
            chat_id: new.chat_id,
            profile_id: new.profile_id.clone(),
            content: new.content.clone(),
            groups: new.groups.clone(),
            schedule: new.schedule.clone(),
            paused: false,
            not_before: new.now,
            last_date: None,
            waiting_date: None,
            next_due_at: new.next_due_at,
            created_at: new.now,
        };
        inner.series.insert(id, (series, false));
        Ok(id)
    }

    async fn get_series(&self, id: SeriesId) -> Result<Option<Series>, DbError> {
        let inner = self.lock();
        Ok(match inner.series.get(&id) {
            Some((s, false)) => Some(inner.series_view(s)),
            _ => None,
        })
    }

    async fn user_series(&self, user: UserId) -> Result<Vec<Series>, DbError> {
        let inner = self.lock();
        Ok(inner
            .series
            .values()
            .filter(|(s, deleted)| !deleted && s.user_id == user && s.next_due_at.is_some())
            .map(|(s, _)| inner.series_view(s))
            .collect())
    }

    async fn due_series(&self, before: i64, limit: u32) -> Result<Vec<Series>, DbError> {
        let inner = self.lock();
        let mut due: Vec<Series> = inner
            .series
            .values()
            .filter(|(s, deleted)| !deleted && !s.paused)
            .filter(|(s, _)| s.next_due_at.is_some_and(|t| t <= before))
            .map(|(s, _)| inner.series_view(s))
            .collect();
        due.sort_by_key(|s| (s.next_due_at, s.id));
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn earliest_due(&self) -> Result<Option<i64>, DbError> {
        Ok(self
            .lock()
            .series
            .values()
            .filter(|(s, deleted)| !deleted && !s.paused)
            .filter_map(|(s, _)| s.next_due_at)
            .min())
    }

    async fn set_series_next(&self, id: SeriesId, next_due_at: Option<i64>) -> Result<(), DbError> {
        if let Some((s, _)) = self.lock().series.get_mut(&id) {
            s.next_due_at = next_due_at;
        }
        Ok(())
    }

    async fn set_series_paused(
        &self,
        id: SeriesId,
        user: UserId,
        paused: bool,
        now: i64,
    ) -> Result<bool, DbError> {
        let mut inner = self.lock();
        match inner.users_series_mut(id, user) {
            Some(s) if s.paused != paused => {
                s.paused = paused;
                if !paused {
                    s.not_before = now;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_series(&self, id: SeriesId, user: UserId) -> Result<bool, DbError> {
        let mut inner = self.lock();
        match inner.series.get_mut(&id) {
            Some((s, deleted)) if !*deleted && s.user_id == user => {
                *deleted = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn set_series_waiting(&self, id: SeriesId, date: NaiveDate) -> Result<bool, DbError> {
        match self.lock().series.get_mut(&id) {
            Some((s, _)) if s.waiting_date != Some(date) => {
                s.waiting_date = Some(date);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn record_run(
        &self,
        series: SeriesId,
        date: NaiveDate,
        _due_at: i64,
        outcome: RunOutcome,
        _now: i64,
    ) -> Result<bool, DbError> {
        let mut inner = self.lock();
        inner.series_exists(series)?;
        if inner.runs.contains_key(&(series, date)) {
            return Ok(false);
        }
        inner.runs.insert((series, date), (outcome, None));
        Ok(true)
    }

    async fn start_run(
        &self,
        series: SeriesId,
        date: NaiveDate,
        _due_at: i64,
        mailing: &NewMailing,
    ) -> Result<MailingId, DbError> {
        let mut inner = self.lock();
        inner.series_exists(series)?;
        if inner.runs.contains_key(&(series, date)) {
            return Err(DbError::RunTaken);
        }
        let id = inner.new_mailing(mailing)?;
        inner
            .runs
            .insert((series, date), (RunOutcome::Started, Some(id)));
        Ok(id)
    }

    async fn run_of(
        &self,
        series: SeriesId,
        date: NaiveDate,
    ) -> Result<Option<(RunOutcome, Option<MailingId>)>, DbError> {
        Ok(self.lock().runs.get(&(series, date)).copied())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl AuditStore for InMemDb {
    async fn mailings_to_audit(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<MailingId>, DbError> {
        let inner = self.lock();
        let mut due: Vec<(i64, MailingId)> = inner
            .mailings
            .values()
            .filter(|m| matches!(m.status, MailingStatus::Done | MailingStatus::Cancelled))
            .filter(|m| !inner.audited.contains(&m.id))
            .filter_map(|m| m.finished_at.map(|t| (t, m.id)))
            .filter(|(t, _)| (since..=until).contains(t))
            .collect();
        due.sort();
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|(_, id)| id)
            .collect())
    }

    async fn claim_audit(&self, id: MailingId, _now: i64) -> Result<bool, DbError> {
        Ok(self.lock().audited.insert(id))
    }

    async fn record_group_delivery(
        &self,
        user: UserId,
        group: &GroupJid,
        status: &str,
        delivered: bool,
        _now: i64,
    ) -> Result<(), DbError> {
        let mut inner = self.lock();
        let entry = inner
            .group_delivery
            .entry((user, group.clone()))
            .or_insert((String::new(), 0));
        entry.0 = status.to_string();
        entry.1 = if delivered { 0 } else { entry.1 + 1 };
        Ok(())
    }

    async fn undelivering_groups(&self, user: UserId) -> Result<Vec<GroupJid>, DbError> {
        let inner = self.lock();
        let mut out: Vec<GroupJid> = inner
            .group_delivery
            .iter()
            .filter(|((u, _), (_, misses))| *u == user && *misses > 0)
            .map(|((_, g), _)| g.clone())
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl HistoryStore for InMemDb {
    async fn mailing_history(&self, user: UserId, limit: u32) -> Result<Vec<PastMailing>, DbError> {
        let inner = self.lock();
        Ok(inner
            .mailings
            .values()
            .rev()
            .filter(|m| m.user_id == user)
            .take(limit as usize)
            .map(|m| PastMailing {
                mailing: m.clone(),
                series: inner
                    .runs
                    .iter()
                    .filter(|(_, (_, mailing))| *mailing == Some(m.id))
                    .map(|((series, _), _)| *series)
                    .min(),
            })
            .collect())
    }

    async fn record_post_status(
        &self,
        id: MailingId,
        group: &GroupJid,
        status: &str,
    ) -> Result<(), DbError> {
        let mut inner = self.lock();
        let has_group = inner
            .rows
            .get(&id)
            .is_some_and(|rows| rows.iter().any(|r| &r.group == group));
        if has_group {
            inner
                .post_status
                .insert((id, group.clone()), status.to_string());
        }
        Ok(())
    }

    async fn post_statuses(&self, id: MailingId) -> Result<Vec<(GroupJid, String)>, DbError> {
        let inner = self.lock();
        let mut groups: Vec<(u32, &GroupJid)> = Vec::new();
        for row in inner.rows.get(&id).into_iter().flatten() {
            if !groups.iter().any(|(_, g)| *g == &row.group) {
                groups.push((row.position, &row.group));
            }
        }
        groups.sort();
        Ok(groups
            .into_iter()
            .filter_map(|(_, g)| {
                let status = inner.post_status.get(&(id, g.clone()))?;
                Some((g.clone(), status.clone()))
            })
            .collect())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl UpdateLog for InMemDb {
    async fn claim_update(
        &self,
        update_id: i64,
        _payload: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<UpdateClaim, DbError> {
        let mut inner = self.lock();
        Ok(match inner.updates.get_mut(&update_id) {
            None => {
                inner.updates.insert(
                    update_id,
                    UpdateRow {
                        claimed_at: now,
                        done: false,
                    },
                );
                UpdateClaim::Taken
            }
            Some(row) if row.done => UpdateClaim::Handled,
            Some(row) if row.claimed_at < stale_before => {
                row.claimed_at = now;
                UpdateClaim::Taken
            }
            Some(_) => UpdateClaim::InHand,
        })
    }

    async fn finish_update(&self, update_id: i64, _now: i64) -> Result<(), DbError> {
        if let Some(row) = self.lock().updates.get_mut(&update_id) {
            row.done = true;
        }
        Ok(())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl BillingStore for InMemDb {
    async fn create_invoice(
        &self,
        user: UserId,
        plan_days: u32,
        amount_kopecks: i64,
        now: i64,
    ) -> Result<Invoice, DbError> {
        let mut inner = self.lock();
        inner.last_invoice += 1;
        let invoice = Invoice {
            id: inner.last_invoice,
            user_id: user,
            plan_days,
            amount_kopecks,
            paid: false,
            created_at: now,
            extended_until: None,
        };
        inner.invoices.insert(invoice.id, (invoice.clone(), None));
        Ok(invoice)
    }

    async fn get_invoice(&self, id: i64) -> Result<Option<Invoice>, DbError> {
        Ok(self.lock().invoices.get(&id).map(|(i, _)| i.clone()))
    }

    async fn settle_invoice(
        &self,
        id: i64,
        _out_sum_raw: &str,
        now: i64,
    ) -> Result<Settlement, DbError> {
        let mut inner = self.lock();
        let (invoice, _) = inner.invoices.get(&id).cloned().ok_or(DbError::NotFound)?;
        if invoice.paid {
            return Ok(Settlement::AlreadyPaid {
                until: invoice.extended_until.unwrap_or(0),
            });
        }
        let user = inner.user_mut(invoice.user_id)?;
        let until = billing::extend(user.subscription_until, now / 1000, invoice.plan_days);
        user.subscription_until = until;
        let entry = inner.invoices.get_mut(&id).expect("read above");
        entry.0.paid = true;
        entry.0.extended_until = Some(until);
        entry.1 = Some(now);
        Ok(Settlement::Applied { until })
    }

    async fn grant_days(&self, user: UserId, days: u32, now: i64) -> Result<i64, DbError> {
        let mut inner = self.lock();
        let user = inner.user_mut(user)?;
        user.subscription_until = billing::extend(user.subscription_until, now / 1000, days);
        Ok(user.subscription_until)
    }

    async fn subscriptions_ending(
        &self,
        now_secs: i64,
        window_secs: i64,
        grace_secs: i64,
    ) -> Result<Vec<(UserId, Lang, i64)>, DbError> {
        Ok(self
            .lock()
            .users
            .values()
            .filter(|u| {
                u.subscription_until > 0
                    && u.subscription_until <= now_secs + window_secs
                    && u.subscription_until > now_secs - grace_secs
            })
            .map(|u| (u.id, u.lang, u.subscription_until))
            .collect())
    }

    async fn record_reminder(
        &self,
        user: UserId,
        kind: &str,
        until: i64,
        _now: i64,
    ) -> Result<bool, DbError> {
        Ok(self
            .lock()
            .reminders
            .insert((user, kind.to_string(), until)))
    }

    async fn stats(&self, now: i64) -> Result<Stats, DbError> {
        let inner = self.lock();
        let secs = now / 1000;
        let day = billing::day_start(secs) * 1000;
        let month = billing::month_start(secs) * 1000;
        Ok(Stats {
            users: inner.users.len() as u64,
            active_subscriptions: inner
                .users
                .values()
                .filter(|u| u.subscription_until > secs)
                .count() as u64,
            revenue_month_kopecks: inner
                .invoices
                .values()
                .filter(|(i, paid_at)| i.paid && paid_at.is_some_and(|t| t >= month))
                .map(|(i, _)| i.amount_kopecks)
                .sum(),
            mailings_today: inner
                .mailings
                .values()
                .filter(|m| m.created_at >= day)
                .count() as u64,
            messages_sent_today: inner
                .rows
                .values()
                .flatten()
                .filter(|r| r.state == DeliveryState::Sent && r.updated_at >= day)
                .count() as u64,
        })
    }
}
