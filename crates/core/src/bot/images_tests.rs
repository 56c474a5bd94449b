//! Photos in mailings over the in-memory fakes: the upload flow of the bot (albums, the cap,
//! refusals that keep the set, clearing, the collage and its confirmation, the snapshot at
//! start) and the engine's sending of multi-part posts (order, base64 once, resume after a
//! crash between parts without repeating one, in-doubt image parts).

use crate::bot::dialogue::DialogueState;
use crate::bot::handle_update;
use crate::collage::fixtures::synthetic_jpeg;
use crate::config::CoreSettings;
use crate::mailing::{Cursor, EngineError, Step};
use crate::model::ids::{ChatId, GroupJid, MailingId, UserId};
use crate::model::lang::Lang;
use crate::model::ledger::{Content, DeliveryState, MailingStatus, NewMailing};
use crate::ports::{GroupEntry, Lease, NewImage};
use crate::services::{EngineServices, Services};
use crate::telegram::callback::Callback;
use crate::telegram::{MessageId, ReplyMarkup, Update};
use crate::testing::*;
use crate::texts::{self};
use base64::Engine as _;
use serde_json::json;
use std::sync::atomic::{AtomicI64, Ordering};

const OLGA: i64 = 6_200_300_400;

static UPDATE_IDS: AtomicI64 = AtomicI64::new(1);

fn next_id() -> i64 {
    UPDATE_IDS.fetch_add(1, Ordering::SeqCst)
}

fn from() -> serde_json::Value {
    json!({"id": OLGA, "is_bot": false, "first_name": "Olga", "language_code": "en"})
}

fn message(fields: serde_json::Value) -> Update {
    let id = next_id();
    let mut msg = json!({"message_id": id, "from": from(), "chat": {"id": OLGA, "type": "private"},
                         "date": 1_700_000_000});
    for (k, v) in fields.as_object().unwrap() {
        msg[k] = v.clone();
    }
    serde_json::from_value(json!({"update_id": id, "message": msg})).unwrap()
}

fn text(body: &str) -> Update {
    message(json!({ "text": body }))
}

/// A photo whose largest size is `file_id` (a small thumbnail size comes first, as Telegram
/// sends them).
fn photo(file_id: &str, album: Option<&str>) -> Update {
    let mut fields = json!({"photo": [
        {"file_id": format!("{file_id}-s"), "file_unique_id": "s", "width": 90, "height": 67, "file_size": 1000},
        {"file_id": file_id, "file_unique_id": "l", "width": 1280, "height": 960, "file_size": 90000}
    ]});
    if let Some(g) = album {
        fields["media_group_id"] = json!(g);
    }
    message(fields)
}

fn press(data: &str, on: MessageId) -> Update {
    let id = next_id();
    serde_json::from_value(json!({"update_id": id, "callback_query": {"id": format!("cb{id}"),
        "from": from(), "data": data,
        "message": {"message_id": on.0, "chat": {"id": OLGA, "type": "private"}, "date": 1_700_000_000}}}))
    .unwrap()
}

async fn say(svc: &Services, u: Update) {
    handle_update(svc, &u).await.expect("handle_update");
}

fn texts_to(f: &Fakes) -> Vec<String> {
    f.telegram.sent_texts(ChatId(OLGA))
}

/// A registered user with a text and two groups, waiting for photos (after /images).
async fn world() -> (Services, Fakes) {
    let (svc, f) = services(CoreSettings::default());
    register_user(&svc, UserId(OLGA), &profile("0badc0de-0001"), Lang::En).await;
    svc.db
        .set_text(UserId(OLGA), "Flat for sale", 0)
        .await
        .unwrap();
    let groups: Vec<GroupEntry> = jids(2)
        .into_iter()
        .map(|jid| GroupEntry { jid, name: None })
        .collect();
    svc.db.set_groups(UserId(OLGA), &groups).await.unwrap();
    say(&svc, text("/images")).await;
    (svc, f)
}

/// Registers `n` JPEG files `p0..` of 1280×960 at the fake Telegram.
fn files(f: &Fakes, n: u32) {
    for i in 0..n {
        f.telegram
            .add_file(&format!("p{i}"), synthetic_jpeg(1280, 960, i, 8, 1));
    }
}

async fn set_len(svc: &Services) -> usize {
    svc.db.photo_set(UserId(OLGA)).await.unwrap().len()
}

#[tokio::test]
async fn an_album_becomes_one_set_answered_by_one_message() {
    let (svc, f) = world().await;
    assert_eq!(
        texts_to(&f).last().unwrap(),
        &texts::photos_held(Lang::En, &[], 10, None)
    );
    files(&f, 3);
    let before = texts_to(&f).len();
    for i in 0..3 {
        say(&svc, photo(&format!("p{i}"), Some("album-1"))).await;
    }
    assert_eq!(set_len(&svc).await, 3);
    // One new message for the album, edited for its second and third photo.
    let new: Vec<String> = texts_to(&f)[before..].to_vec();
    assert_eq!(new.len(), 1, "{new:?}");
    let (mid, _, _) = f.telegram.last_sent(ChatId(OLGA)).unwrap();
    let shown = f.telegram.message(ChatId(OLGA), mid).unwrap();
    assert!(
        shown.text.starts_with("🖼️ Photos saved: 3 of 10"),
        "{}",
        shown.text
    );
    assert_eq!(shown.text.matches("1280×960").count(), 3, "{}", shown.text);
    let buttons: Vec<String> = shown
        .keyboard
        .inline_keyboard
        .iter()
        .flatten()
        .filter_map(|b| b.callback_data.clone())
        .collect();
    assert_eq!(
        buttons,
        vec![Callback::MakeCollage.data(), Callback::ClearImages.data()]
    );
    // The largest size was downloaded, normalised (≤ 1600 px: unchanged size here).
    let set = svc.db.photo_set(UserId(OLGA)).await.unwrap();
    assert!(set.iter().all(|i| (i.width, i.height) == (1280, 960)));
    assert_eq!(set[0].tg_file_id.as_deref(), Some("p0"));
    // A single photo afterwards gets its own answer.
    files(&f, 4);
    say(&svc, photo("p3", None)).await;
    assert_eq!(texts_to(&f).len(), before + 2);
    assert_eq!(set_len(&svc).await, 4);
}

#[tokio::test]
async fn the_eleventh_photo_is_refused_and_the_ten_kept() {
    let (svc, f) = world().await;
    files(&f, 11);
    for i in 0..11 {
        say(&svc, photo(&format!("p{i}"), Some("big-album"))).await;
    }
    assert_eq!(set_len(&svc).await, 10);
    assert!(texts_to(&f).contains(&texts::photos_full(Lang::En, 10)));
    let downloads = f
        .telegram
        .calls()
        .iter()
        .filter(|c| matches!(c, TgCall::Download { .. }))
        .count();
    assert_eq!(downloads, 10, "the 11th is refused before downloading");
}

#[tokio::test]
async fn a_document_or_a_failed_download_keeps_the_set() {
    let (svc, f) = world().await;
    files(&f, 2);
    say(&svc, photo("p0", None)).await;
    assert_eq!(set_len(&svc).await, 1);

    say(
        &svc,
        message(json!({"document": {"file_id": "doc1", "file_name": "a.pdf"}})),
    )
    .await;
    assert_eq!(texts_to(&f).last().unwrap(), &texts::not_a_photo(Lang::En));
    say(&svc, message(json!({"sticker": {"file_id": "st1"}}))).await;
    assert_eq!(texts_to(&f).last().unwrap(), &texts::not_a_photo(Lang::En));

    f.telegram.fail_download("p1");
    say(&svc, photo("p1", None)).await;
    assert_eq!(
        texts_to(&f).last().unwrap(),
        &texts::photo_download_failed(Lang::En)
    );
    say(&svc, photo("unknown-file", None)).await;
    assert_eq!(
        texts_to(&f).last().unwrap(),
        &texts::photo_download_failed(Lang::En)
    );
    f.telegram.add_file("junk", b"not an image".to_vec());
    say(&svc, photo("junk", None)).await;
    assert_eq!(
        texts_to(&f).last().unwrap(),
        &texts::photo_unreadable(Lang::En)
    );
    assert_eq!(set_len(&svc).await, 1);
    assert!(matches!(
        DialogueState::load(&f.db.user(UserId(OLGA)).unwrap().dialogue),
        DialogueState::AwaitImages { .. }
    ));
}

#[tokio::test]
async fn clear_empties_the_set_and_deletes_unused_images() {
    let (svc, f) = world().await;
    files(&f, 2);
    say(&svc, photo("p0", None)).await;
    say(&svc, photo("p1", None)).await;
    assert_eq!(f.db.image_count(), 2);
    let (mid, _, _) = f.telegram.last_sent(ChatId(OLGA)).unwrap();
    say(&svc, press(&Callback::ClearImages.data(), mid)).await;
    assert_eq!(set_len(&svc).await, 0);
    assert_eq!(f.db.image_count(), 0);
    assert_eq!(
        texts_to(&f).last().unwrap(),
        &texts::photos_cleared(Lang::En)
    );
}

/// 🚀 then ✅: the mailing created from what the user holds now.
async fn start(svc: &Services, f: &Fakes) -> MailingId {
    say(svc, text("/mailing")).await;
    let (mid, _, markup) = f.telegram.last_sent(ChatId(OLGA)).unwrap();
    let Some(ReplyMarkup::Inline(kb)) = markup else {
        panic!("the preview has ✅ / ❌")
    };
    let go = kb.inline_keyboard[0][0].callback_data.clone().unwrap();
    assert!(matches!(Callback::parse(&go), Callback::ConfirmStart(_)));
    say(svc, press(&go, mid)).await;
    svc.db
        .latest_mailing(UserId(OLGA))
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn a_confirmed_collage_is_previewed_and_snapshotted() {
    let (svc, f) = world().await;
    files(&f, 3);
    for i in 0..3 {
        say(&svc, photo(&format!("p{i}"), Some("a"))).await;
    }
    let (summary, _, _) = f.telegram.last_sent(ChatId(OLGA)).unwrap();
    say(&svc, press(&Callback::MakeCollage.data(), summary)).await;
    let photos = f.telegram.photos_sent(ChatId(OLGA));
    assert_eq!(photos.len(), 1);
    assert!(photos[0].0.starts_with("upload:"), "uploaded: {photos:?}");
    assert_eq!(photos[0].1, Some(texts::collage_preview(Lang::En)));
    let collage = svc.db.collage(UserId(OLGA)).await.unwrap().unwrap();
    assert!(!collage.confirmed);
    assert!(collage.image.width <= 1600 && collage.image.height <= 1600);
    assert!(collage.image.size <= 1_000_000);
    let preview_msg = f
        .telegram
        .calls()
        .iter()
        .rev()
        .find_map(|c| match c {
            TgCall::Photo { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap();
    // The buttons were added to the preview, naming the collage.
    let shown = f.telegram.message(ChatId(OLGA), preview_msg).unwrap();
    let use_it = Callback::UseCollage(collage.image.id).data();
    assert!(shown
        .keyboard
        .inline_keyboard
        .iter()
        .flatten()
        .any(|b| b.callback_data.as_deref() == Some(use_it.as_str())));
    // A stale ✅ (another id) confirms nothing.
    say(
        &svc,
        press(
            &Callback::UseCollage(collage.image.id + 100).data(),
            preview_msg,
        ),
    )
    .await;
    assert_eq!(
        texts_to(&f).last().unwrap(),
        &texts::collage_outdated(Lang::En)
    );
    say(&svc, press(&use_it, preview_msg)).await;
    assert!(
        svc.db
            .collage(UserId(OLGA))
            .await
            .unwrap()
            .unwrap()
            .confirmed
    );

    // The preview before start shows the collage (by the file_id its preview got) with the
    // text as its caption, then the text preview with the ETA of one send per group.
    let id = start(&svc, &f).await;
    let photos = f.telegram.photos_sent(ChatId(OLGA));
    assert_eq!(
        photos.last().unwrap(),
        &(
            collage.image.tg_file_id.clone().unwrap(),
            Some("Flat for sale".to_string())
        )
    );
    let m = f.db.mailing(id);
    assert_eq!(
        m.content,
        Content::with_images("Flat for sale", vec![collage.image.id], true)
    );
    assert!(m.content.caption);
    assert_eq!(f.db.rows(id).len(), 2, "one part per group");

    // Clearing after the start leaves the running mailing's image in place.
    say(&svc, press(&Callback::ClearImages.data(), summary)).await;
    assert!(svc.db.get_image(collage.image.id).await.unwrap().is_some());
    assert_eq!(f.db.mailing(id).content, m.content);
}

#[tokio::test]
async fn separate_photos_make_parts_and_a_longer_eta() {
    let (svc, f) = world().await;
    files(&f, 2);
    say(&svc, photo("p0", None)).await;
    say(&svc, photo("p1", None)).await;
    let id = start(&svc, &f).await;
    let photos = f.telegram.photos_sent(ChatId(OLGA));
    assert_eq!(
        photos,
        vec![("p0".to_string(), None), ("p1".to_string(), None)],
        "the preview shows the photos as the groups get them"
    );
    let m = f.db.mailing(id);
    assert_eq!(m.content.images.len(), 2);
    assert!(!m.content.caption);
    assert_eq!(f.db.rows(id).len(), 6, "2 groups × (2 photos + text)");
    // 2 groups × 3 sends at 1/s.
    assert!(texts_to(&f).contains(&texts::started(Lang::En, id.0, 2, 6)));
}

// ---------------------------------------------------------------------------------------------
// The engine

struct Run {
    /// The engine's bundle (the mailing is created directly, not through the bot).
    svc: EngineServices,
    f: Fakes,
    groups: Vec<GroupJid>,
    images: Vec<i64>,
}

/// A mailing of `content(images)` to 3 groups, with two stored photos.
async fn run(content: impl FnOnce(Vec<i64>) -> Content) -> (Run, MailingId) {
    let (svc, f) = services(CoreSettings::default());
    let svc = f.engine(&svc);
    let user = UserId(OLGA);
    let prof = profile("0badc0de-0002");
    register_user(&svc, user, &prof, Lang::En).await;
    let mut images = Vec::new();
    for seed in 0..2 {
        let jpeg = synthetic_jpeg(64, 48, seed, 0, 1);
        let id = svc
            .db
            .insert_image(&NewImage {
                user_id: user,
                jpeg: &jpeg,
                width: 64,
                height: 48,
                tg_file_id: None,
                now: T0,
            })
            .await
            .unwrap();
        images.push(id);
    }
    let groups = jids(3);
    let id = svc
        .db
        .create_mailing(&NewMailing {
            user_id: user,
            chat_id: ChatId(OLGA),
            profile_id: prof,
            content: content(images.clone()),
            groups: groups.clone(),
            skipped: vec![],
            now: T0,
            announce_until: 0,
        })
        .await
        .unwrap();
    (
        Run {
            svc,
            f,
            groups,
            images,
        },
        id,
    )
}

impl Run {
    async fn b64(&self, id: i64) -> String {
        let img = self.svc.db.get_image(id).await.unwrap().unwrap();
        base64::engine::general_purpose::STANDARD.encode(img.jpeg)
    }

    /// Takes the mailing's driver lease, as a runner would.
    async fn lease(&self, id: MailingId) -> Lease {
        take_mailing(&self.svc, id, DRIVER_LEASE_TTL_MS).await
    }

    /// Steps the engine from a fresh cursor (a new driver) for at most `steps` steps.
    async fn drive(&self, id: MailingId, lease: &Lease, steps: usize) -> Result<Step, EngineError> {
        drive(
            &self.svc,
            &self.f.clock,
            id,
            lease,
            &mut Cursor::default(),
            steps,
        )
        .await
    }

    /// Asserts that every group received both photos, without captions, then `text` alone.
    async fn assert_photos_then_text(&self, text: &str) {
        let (a, b) = (
            self.b64(self.images[0]).await,
            self.b64(self.images[1]).await,
        );
        for g in &self.groups {
            assert_eq!(
                self.received(g),
                vec![
                    (Some(a.clone()), String::new()),
                    (Some(b.clone()), String::new()),
                    (None, text.to_string())
                ],
                "{g}"
            );
        }
    }

    /// The last message the bot sent the user (the mailing's report once it is over).
    fn last_report(&self) -> String {
        self.f
            .telegram
            .sent_texts(ChatId(OLGA))
            .last()
            .cloned()
            .unwrap()
    }

    /// What each group received: (image base64 or None, text/caption).
    fn received(&self, g: &GroupJid) -> Vec<(Option<String>, String)> {
        self.f
            .wappi
            .sends_to(g)
            .into_iter()
            .filter(|c| c.delivered)
            .map(|c| (c.image, c.text.unwrap_or_default()))
            .collect()
    }
}

#[tokio::test]
async fn photos_then_text_in_order_per_group_base64_once() {
    let (r, id) = run(|imgs| Content::with_images("Hello", imgs, false)).await;
    let lease = r.lease(id).await;
    let reads_before = r.f.db.image_reads();
    let step = r.drive(id, &lease, 500).await.unwrap();
    assert_eq!(step, Step::Finished);
    let reads = r.f.db.image_reads() - reads_before;
    assert_eq!(
        reads, 2,
        "each image read and encoded once, not once per group"
    );
    r.assert_photos_then_text("Hello").await;
    // Groups in list order, each group's parts together.
    let order: Vec<GroupJid> =
        r.f.wappi
            .sends()
            .iter()
            .map(|c| c.to.clone().unwrap())
            .collect();
    let want: Vec<GroupJid> = r.groups.iter().flat_map(|g| vec![g.clone(); 3]).collect();
    assert_eq!(order, want);
    // Paced as 9 separate sends at 1/s.
    let sends = r.f.wappi.sends();
    assert!(sends.windows(2).all(|w| w[1].at - w[0].at >= 1000));
    let m = r.f.db.mailing(id);
    assert_eq!(m.status, MailingStatus::Done);
    let report = r.last_report();
    assert!(report.starts_with('✅'), "{report}");
    assert!(
        report.contains("3 of 3") || report.contains("3 из 3"),
        "{report}"
    );
}

#[tokio::test]
async fn a_collage_goes_once_per_group_with_the_caption() {
    let (r, id) = run(|imgs| Content::with_images("Hello", vec![imgs[0]], true)).await;
    let lease = r.lease(id).await;
    r.drive(id, &lease, 200).await.unwrap();
    let a = r.b64(r.images[0]).await;
    for g in &r.groups {
        assert_eq!(r.received(g), vec![(Some(a.clone()), "Hello".into())]);
    }
    // Too long for a caption: the image, then the text.
    let long = "x".repeat(crate::model::ledger::MAX_CAPTION_CHARS + 1);
    let (r, id) = run(|imgs| Content::with_images(long.clone(), vec![imgs[0]], true)).await;
    let lease = r.lease(id).await;
    r.drive(id, &lease, 200).await.unwrap();
    let a = r.b64(r.images[0]).await;
    for g in &r.groups {
        assert_eq!(
            r.received(g),
            vec![(Some(a.clone()), String::new()), (None, long.clone())]
        );
    }
}

#[tokio::test]
async fn a_crash_between_parts_never_repeats_a_part() {
    let (r, id) = run(|imgs| Content::with_images("Hello", imgs, false)).await;
    let lease = r.lease(id).await;
    // The 2nd send (group 1, photo 2) reaches WhatsApp, then the process dies before the
    // ledger records it: the row stays `sending`.
    let db = r.f.db.clone();
    r.f.wappi.on_send(move |index, _| {
        if index == 1 {
            db.fail_update_delivery(1);
        }
    });
    let crashed = r.drive(id, &lease, 100).await;
    assert!(crashed.is_err(), "the ledger write failed: {crashed:?}");
    r.f.wappi.on_send(|_, _| {});
    let rows = r.f.db.rows(id);
    let sending: Vec<(GroupJid, u32)> = rows
        .iter()
        .filter(|x| x.state == DeliveryState::Sending)
        .map(|x| (x.group.clone(), x.part))
        .collect();
    assert_eq!(sending, vec![(r.groups[0].clone(), 2)]);

    // A new driver: the leftover is settled from the chat (2 of our images there, one part
    // before it recorded) and not sent again; the rest goes out once.
    let step = r.drive(id, &lease, 500).await.unwrap();
    assert_eq!(step, Step::Finished);
    r.assert_photos_then_text("Hello").await;
    assert!(r
        .f
        .db
        .rows(id)
        .iter()
        .all(|x| x.state == DeliveryState::Sent));
}

#[tokio::test]
async fn an_image_part_lost_before_whatsapp_is_sent_again_once() {
    let (r, id) = run(|imgs| Content::with_images("Hello", imgs, false)).await;
    let lease = r.lease(id).await;
    // Group 2's first photo: the call times out and nothing arrived.
    r.f.wappi
        .script_send_to(&r.groups[1], SendScript::unknown_not_delivered());
    let step = r.drive(id, &lease, 500).await.unwrap();
    assert_eq!(step, Step::Finished);
    r.assert_photos_then_text("Hello").await;
}

#[tokio::test]
async fn a_missing_image_fails_its_part_and_the_group() {
    let (r, id) = run(|imgs| Content::with_images("Hello", vec![imgs[0], 999_999], false)).await;
    let lease = r.lease(id).await;
    r.drive(id, &lease, 500).await.unwrap();
    let rows = r.f.db.rows(id);
    assert!(rows
        .iter()
        .filter(|x| x.part == 2)
        .all(|x| x.state == DeliveryState::Failed));
    let report = r.last_report();
    assert!(report.starts_with("⚠️"), "{report}");
    // The text still went to every group after the failed photo.
    for g in &r.groups {
        assert_eq!(r.received(g).last().unwrap().1, "Hello");
    }
}

#[tokio::test]
async fn a_photo_in_backoff_holds_back_its_group_only_and_nothing_spins() {
    let (r, id) = run(|imgs| Content::with_images("Hello", imgs, false)).await;
    let lease = r.lease(id).await;
    // Group 1's first photo meets a 5xx: it backs off; its second photo and text wait for it.
    r.f.wappi.script_send_to(
        &r.groups[0],
        SendScript::Fail(crate::wappi::WappiError::Temporary("http 502".into())),
    );
    // 9 sends and one retry; a driver spinning on a blocked group would use up the steps.
    let step = r.drive(id, &lease, 60).await.unwrap();
    assert_eq!(step, Step::Finished);
    r.assert_photos_then_text("Hello").await;
    // The other groups did not wait for the retry.
    let first_to_group2 = r.f.wappi.sends_to(&r.groups[1])[0].at;
    let group1_retry = r.f.wappi.sends_to(&r.groups[0])[1].at;
    assert!(first_to_group2 < group1_retry);
}
