//! Groups that really get the post (issue 15) against the real binary: the pre-flight check
//! of the preview. The same scenario runs on the Worker (`worker_groups_check.rs`).

use groupcast_e2e::scenarios;
use groupcast_e2e::world::World;

#[tokio::test]
async fn the_preflight_check_leaves_out_groups_that_would_not_get_the_post() {
    let w = World::start().await;
    scenarios::the_preflight_check_leaves_out_groups_that_would_not_get_the_post(&w, 7501).await;
}

/// A canary start stops at undelivered first posts; ▶️ sends the rest (`CANARY_WAIT_SECS` is
/// two seconds here).
#[tokio::test]
async fn a_canary_whose_first_posts_stay_undelivered_stops_the_rest() {
    let w = World::start_with(|env| {
        env.insert("CANARY_WAIT_SECS".into(), "2".into());
    })
    .await;
    scenarios::a_canary_whose_first_posts_stay_undelivered_stops_the_rest(&w, 7502).await;
}

/// Named group sets (issue 15): two lists saved under names, the second one picked for a
/// schedule; the schedule snapshots that set's groups and the first set stays as it was.
#[tokio::test]
async fn a_second_group_set_is_used_by_a_schedule() {
    use groupcast_e2e::world::Person;
    let w = World::start().await;
    let (p, _, jids) = w.ready(7503, 163, 4, "Пост для наборов").await;
    p.says("/saveset Москва");
    p.hears("Набор «Москва» сохранён: 4 групп").await;
    p.sets_groups(&jids[2..]).await;
    p.says("/saveset Новосибирск");
    p.hears("Набор «Новосибирск» сохранён: 2 групп").await;
    p.says("/sets");
    let moscow = p.hears("«Москва»: 4 групп").await;
    let nsk = p.hears("«Новосибирск»: 2 групп").await;
    p.presses(moscow.message_id, &Person::button(&moscow, "📂"));
    p.hears("набор «Москва» (4 групп)").await;
    p.says("/schedule 23:59 repeat daily");
    p.hears("🕒 Запланировано (#1)").await;
    p.presses(nsk.message_id, &Person::button(&nsk, "📂"));
    p.hears("набор «Новосибирск» (2 групп)").await;
    p.says("/schedule 23:58 repeat daily");
    let answer = p.hears("🕒 Запланировано (#2)").await;
    assert!(answer.text.contains("2 групп"), "{}", answer.text);
    let db = w.server.db();
    let groups_of = |id: i64| -> Vec<String> {
        let json: String = db
            .query_row("SELECT groups FROM series WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        serde_json::from_str(&json).unwrap()
    };
    assert_eq!(groups_of(1), jids);
    assert_eq!(groups_of(2), jids[2..].to_vec());
    // The first set is untouched by the later paste.
    p.says("/sets");
    p.hears("«Москва»: 4 групп").await;
}

/// The delivery audit (issue 15): a second after the mailing the user gets the counts by
/// `delivery_status` and the groups that did not deliver; the next preview leaves those out.
#[tokio::test]
async fn the_delivery_audit_counts_what_was_delivered_and_the_next_preview_skips_the_rest() {
    use groupcast_e2e::fake_wappi::DeliveryPlan;
    use std::time::Duration;
    let w = World::start_with(|env| {
        env.insert("DELIVERY_AUDIT_DELAY_SECS".into(), "1".into());
    })
    .await;
    let (p, _, jids) = w.ready(7504, 164, 4, "Пост с проверкой доставки").await;
    w.wappi.set_group_delivery(
        &jids[0],
        DeliveryPlan::delivered_after(Duration::ZERO).read_after(Duration::ZERO),
    );
    w.wappi
        .set_group_delivery(&jids[2], DeliveryPlan::undeliverable());
    w.wappi
        .set_group_delivery(&jids[3], DeliveryPlan::pending_forever());
    let id = p.starts_mailing().await;
    p.hears(&format!("✅ Рассылка #{id}")).await;
    let audit = p.hears("📬 Доставка рассылки").await;
    assert!(
        audit.text.starts_with(&format!(
            "📬 Доставка рассылки #{id}: доставлено 1, прочитано 1, ожидают 1, не доставлено 1."
        )),
        "{}",
        audit.text
    );
    assert!(
        audit.text.contains(&format!("Группа 164-2 ({})", jids[2])),
        "{}",
        audit.text
    );
    p.says("/mailing");
    let preview = p.hears("Предпросмотр").await;
    assert!(preview.text.contains("Групп: 2"), "{}", preview.text);
    for jid in &jids[2..] {
        assert!(
            preview.text.contains(&format!(
                "({jid}) — в прошлый раз пост сюда не был доставлен"
            )),
            "{}",
            preview.text
        );
    }
}
