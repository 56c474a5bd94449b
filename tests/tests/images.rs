//! Photos and collages end to end, against the real binary: photos uploaded as an album through
//! the fake Telegram (`getFile` and the file download), the collage previewed with `sendPhoto`
//! and confirmed, and the mailing received by the fake Wappi — per group, images whose base64
//! decodes to the expected picture, the caption or the text after them, in order; and a set
//! cleared after the start that does not change the running mailing.

use base64::Engine as _;
use groupcast_core::collage::fixtures::synthetic_jpeg;
use groupcast_core::collage::{plan_layout, CollageOptions};
use groupcast_e2e::fake_telegram::SentMessage;
use groupcast_e2e::fake_wappi::Request;
use groupcast_e2e::world::{Bot, Person, World};

/// The picture a request carried, decoded.
fn picture(r: &Request) -> image::DynamicImage {
    let b64 = r.b64.as_deref().expect("an img/send with b64_file");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("valid base64");
    image::load_from_memory(&bytes).expect("a decodable image")
}

/// What one send to a group was: an image?, its decoded size, the text of a text send.
type Received<'a> = (bool, Option<(u32, u32)>, Option<&'a str>);

fn is_image(r: &Request) -> bool {
    r.path.ends_with("/message/img/send")
}

/// The user's album of three landscape photos, answered by one message; returns it.
async fn uploads_three(w: &World, p: &Person<'_>) -> SentMessage {
    p.says("/images");
    p.hears("Пришлите до 10 фото").await;
    let photos: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("AgACalbum{}_{i}", p.id),
                synthetic_jpeg(1280, 960, i, 8, 1),
            )
        })
        .collect();
    w.sends_album(p.id, &format!("album-{}", p.id), &photos);
    let answer = p.hears("Фото сохранено").await;
    w.shows(p.id, answer.message_id, "Фото сохранено: 3 из 10")
        .await;
    let shown = w.tg.current_text(p.id, answer.message_id).unwrap();
    assert_eq!(shown.matches("1280×960").count(), 3, "{shown}");
    // Each photo was fetched through getFile and the file download.
    let fetched =
        w.tg.calls_of("getFile")
            .iter()
            .filter(|c| {
                c.body["file_id"]
                    .as_str()
                    .is_some_and(|f| f.starts_with(&format!("AgACalbum{}_", p.id)))
            })
            .count();
    assert_eq!(fetched, 3);
    answer
}

#[tokio::test]
async fn an_album_merged_into_a_collage_goes_to_every_group_with_the_text_as_caption() {
    let w = World::start().await;
    let text = "Продаётся дом у озера, 120 м²";
    let (p, acc, jids) = w.ready(5001, 1, 4, text).await;
    let answer = uploads_three(&w, &p).await;

    // 🌅: the collage comes back as an uploaded photo, ✅ / ❌ added to it.
    p.presses(answer.message_id, &Person::button(&answer, "🌅"));
    let preview = p.hears("Коллаж готов").await;
    let file_id = preview.photo.clone().expect("the preview is a photo");
    let uploads = w.tg.calls_of("sendPhoto");
    assert!(
        uploads
            .iter()
            .any(|c| c.body["photo"]["size"].as_u64() > Some(0)),
        "the collage was uploaded as multipart: {uploads:?}"
    );
    let confirm = w.current_button(p.id, &preview, "✅").await;
    p.presses(preview.message_id, &confirm);
    p.hears("Группы получат коллаж").await;

    // 🚀: the preview shows the collage by its file_id, with the text as its caption.
    let (_id, _) = p.starts_mailing_msg().await;
    let shown =
        w.tg.sent_to(p.id)
            .into_iter()
            .filter(|m| m.photo.as_deref() == Some(file_id.as_str()))
            .count();
    assert!(
        shown >= 2,
        "the preview before start re-sent the collage by file_id"
    );
    let report = p.hears("Рассылка #").await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
    assert!(report.text.contains("отправлено 4 из 4"), "{}", report.text);

    // Every group: exactly one image, the collage (the planned size), the text as caption.
    let planned = plan_layout(&[(1280, 960); 3], &CollageOptions::default());
    for jid in &jids {
        let got: Vec<Request> = w.wappi.deliveries_to(jid);
        assert_eq!(got.len(), 1, "{jid}: {got:?}");
        assert!(is_image(&got[0]));
        assert_eq!(got[0].caption.as_deref(), Some(text));
        assert_eq!(got[0].token, acc.token);
        let img = picture(&got[0]);
        assert_eq!((img.width(), img.height()), (planned.width, planned.height));
        assert!(img.width().max(img.height()) <= 1600);
    }
    // The same base64 for every group (made once per mailing).
    let all: Vec<String> = w
        .sends(&acc.profile)
        .iter()
        .filter_map(|r| r.b64.clone())
        .collect();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|p| p[0] == p[1]));
}

#[tokio::test]
async fn separate_photos_then_the_text_in_order_and_a_clear_after_the_start_changes_nothing() {
    // 1 send a second (9 sends), so the mailing is still running when the user clears the
    // photos: it starts at the ✅, and the bot's answers before the clear take a few seconds.
    let w = World::start_with(|env| {
        env.insert("PROFILE_RATE_PER_SEC".into(), "1".into());
    })
    .await;
    let text = "Скидки до пятницы";
    let (p, acc, jids) = w.ready(5002, 2, 3, text).await;
    p.says("/images");
    p.hears("Пришлите до 10 фото").await;
    // A landscape and a portrait photo, so the order shows in the decoded sizes.
    let landscape = synthetic_jpeg(1280, 960, 1, 8, 1);
    let portrait = synthetic_jpeg(720, 1280, 2, 8, 1);
    w.sends_album(
        p.id,
        "album-b",
        &[("AgACland", landscape), ("AgACport", portrait)],
    );
    let answer = p.hears("Фото сохранено").await;
    w.shows(p.id, answer.message_id, "Фото сохранено: 2 из 10")
        .await;

    let (id, _) = p.starts_mailing_msg().await;
    // The preview showed both photos by their file ids.
    let previewed: Vec<String> =
        w.tg.sent_to(p.id)
            .into_iter()
            .filter_map(|m| m.photo)
            .collect();
    assert_eq!(
        previewed,
        vec!["AgACland".to_string(), "AgACport".to_string()]
    );

    // Right after the start: 🗑, and a new photo.
    p.presses(answer.message_id, &Person::button(&answer, "🗑"));
    p.hears("Фото удалены").await;
    w.tg.add_file("AgACnew", synthetic_jpeg(640, 640, 3, 8, 1));
    w.server
        .deliver(&w.tg, w.tg.photo_message(p.id, "AgACnew", None));
    p.hears("Фото сохранено: 1 из 10").await;
    let status: String = w
        .server
        .db()
        .query_row("SELECT status FROM mailings WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "running", "cleared while the mailing runs");

    let report = p.hears(&format!("Рассылка #{id}")).await;
    assert!(report.text.starts_with('✅'), "{}", report.text);
    assert!(report.text.contains("отправлено 3 из 3"), "{}", report.text);

    // Every group: the landscape, the portrait, then the text, as at the start.
    for jid in &jids {
        let got = w.wappi.deliveries_to(jid);
        let kinds: Vec<Received<'_>> = got
            .iter()
            .map(|r| {
                let dims = is_image(r).then(|| {
                    let img = picture(r);
                    (img.width(), img.height())
                });
                (is_image(r), dims, r.body_text.as_deref())
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (true, Some((1280, 960)), None),
                (true, Some((720, 1280)), None),
                (false, None, Some(text)),
            ],
            "{jid}"
        );
        assert!(got[..2]
            .iter()
            .all(|r| r.caption.as_deref().unwrap_or("").is_empty()));
    }
    // Counted and paced as separate sends: 9 calls at 2/s. The span shows the pace; single
    // gaps only roughly: the fake stamps a request once its body is in, and the photo decoded
    // meanwhile (debug build, 2 cores) can hold one large image request back a little, making
    // the gap after it look short by as much.
    let sends = w.sends(&acc.profile);
    assert_eq!(sends.len(), 9);
    let gaps: Vec<i64> = sends.windows(2).map(|p| p[1].at_ms - p[0].at_ms).collect();
    let kinds: Vec<bool> = sends.iter().map(is_image).collect();
    assert!(
        gaps.iter().all(|g| *g >= 150),
        "gaps {gaps:?} for images {kinds:?}"
    );
    let span = sends[8].at_ms - sends[0].at_ms;
    assert!(span >= 8 * 500 - 150, "9 sends at 2/s took {span} ms");
}

#[tokio::test]
async fn refusals_keep_what_is_stored() {
    let w = World::start().await;
    let (p, _acc, _jids) = w.ready(5003, 3, 1, "Текст").await;
    p.says("/images");
    p.hears("Пришлите до 10 фото").await;
    w.tg.add_file("AgACok", synthetic_jpeg(800, 600, 1, 8, 1));
    w.server
        .deliver(&w.tg, w.tg.photo_message(p.id, "AgACok", None));
    p.hears("Фото сохранено: 1 из 10").await;

    // A document.
    let mut doc = w.tg.text_message(p.id, "x");
    doc["message"].as_object_mut().unwrap().remove("text");
    doc["message"]["document"] = serde_json::json!({"file_id": "BQACdoc", "file_name": "price.pdf", "mime_type": "application/pdf"});
    w.server.deliver(&w.tg, doc);
    p.hears("Это не фото").await;
    // A photo whose download fails (never registered: getFile answers 400).
    w.server
        .deliver(&w.tg, w.tg.photo_message(p.id, "AgACmissing", None));
    p.hears("Не удалось загрузить фото").await;
    let count: i64 = w
        .server
        .db()
        .query_row(
            "SELECT COUNT(*) FROM photo_sets WHERE user_id = 5003",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 1);
}
