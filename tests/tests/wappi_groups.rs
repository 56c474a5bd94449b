//! The fake Wappi's groups and delivery states, on their own (no bot): `chats/get` with
//! `group` objects, `contact/info` of a group the account is in, has left, or never had, sends
//! into groups the account cannot post in, and `delivery_status` moving over time. Straight
//! HTTP (reqwest) for the wire shapes, and groupcast's own client for what it reads of them.

use std::time::Duration;

use groupcast_core::ports::WappiApi;
use groupcast_core::wappi::{GroupFacts, WappiCreds};
use groupcast_core::{GroupJid, ProfileId, Secret};
use groupcast_e2e::fake_wappi::{DeliveryPlan, FakeWappi, Outcome};
use groupcast_server::wappi::HttpWappi;
use serde_json::Value;

const PROFILE: &str = "2f099bc3-478d";
const TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";
const MEMBER: &str = "120363025246125486@g.us";
const ANNOUNCE: &str = "120363025246125487@g.us";
const LEFT: &str = "120363025246125488@g.us";
const UNKNOWN: &str = "120363099999999999@g.us";

struct Setup {
    fake: FakeWappi,
    client: HttpWappi,
    creds: WappiCreds,
    /// The account's phone, as `get/status` reports it.
    phone: String,
}

/// A profile in three groups: an ordinary one, an announcement-only one where it is no admin,
/// and one it has left.
async fn setup() -> Setup {
    let fake = FakeWappi::start().await;
    fake.add_profile(PROFILE, TOKEN);
    fake.add_group(PROFILE, MEMBER, "Квартиры СПб");
    fake.add_group(PROFILE, ANNOUNCE, "Объявления");
    fake.set_announce(PROFILE, ANNOUNCE, true, false);
    fake.add_group(PROFILE, LEFT, "Бывшая группа");
    fake.leave_group(PROFILE, LEFT);
    let client = HttpWappi::new(&fake.url(), Duration::from_secs(2));
    let creds = WappiCreds {
        token: Secret::new(TOKEN),
        profile_id: ProfileId::parse(PROFILE).unwrap(),
    };
    let status = get(&fake, "/api/sync/get/status", "").await.1;
    let phone = status["phone"].as_str().unwrap().to_string();
    assert_eq!(fake.phone(PROFILE).as_deref(), Some(phone.as_str()));
    Setup {
        fake,
        client,
        creds,
        phone,
    }
}

/// `GET <path>?profile_id=…<query>` with the token: the status and the JSON answer.
async fn get(fake: &FakeWappi, path: &str, query: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}?profile_id={PROFILE}{query}", fake.url()))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn contact_info(fake: &FakeWappi, id: &str) -> (u16, Value) {
    let query = format!("&user_id={}", urlencoding::encode(id));
    get(fake, "/api/sync/contact/info", &query).await
}

/// The `delivery_status` of the newest message in `jid` (ours), as `messages/get` shows it.
async fn newest_status(s: &Setup, jid: &str) -> String {
    let page = s
        .client
        .chat_messages(&s.creds, &group(jid), 1, 0)
        .await
        .unwrap();
    let m = &page.messages[0];
    assert!(m.from_me);
    m.delivery_status.clone()
}

fn group(jid: &str) -> GroupJid {
    GroupJid::parse(jid).unwrap()
}

/// The `JID`s of a `group` object's participants, and which of them are admins.
fn participants(group: &Value) -> (Vec<String>, Vec<String>) {
    let list = group["Participants"].as_array().unwrap();
    let jid = |p: &Value| p["JID"].as_str().unwrap().to_string();
    let all = list.iter().map(jid).collect();
    let admins = list
        .iter()
        .filter(|p| p["IsAdmin"] == true)
        .map(jid)
        .collect();
    (all, admins)
}

#[tokio::test]
async fn chats_get_lists_the_groups_the_account_is_in_with_their_group_objects() {
    let s = setup().await;
    let me = format!("{}@s.whatsapp.net", s.phone);
    let (status, chats) = get(&s.fake, "/api/sync/chats/get", "&limit=100").await;
    assert_eq!(status, 200);
    let dialogs = chats["dialogs"].as_array().unwrap();
    let ids: Vec<&str> = dialogs.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["79115576367@c.us", MEMBER, ANNOUNCE, "79602041980@c.us"],
        "the group the account left is not listed"
    );
    assert!(dialogs[0].get("group").is_none(), "a person has no group");

    let member = &dialogs[1]["group"];
    assert_eq!(member["Name"], "Квартиры СПб");
    assert_eq!(member["IsAnnounce"], false);
    let (all, admins) = participants(member);
    assert_eq!(all.len(), 3);
    assert!(all.contains(&me), "{all:?}");
    assert!(!admins.contains(&me) && admins.len() == 1, "{admins:?}");
    assert_eq!(member["Participants"][0]["IsSuperAdmin"], true);

    let announce = &dialogs[2]["group"];
    assert_eq!(announce["IsAnnounce"], true);
    assert!(participants(announce).0.contains(&me));

    // What groupcast reads of them.
    let dialogs = s.client.list_chats(&s.creds, 100, 0).await.unwrap();
    let facts: Vec<GroupFacts> = dialogs.iter().filter_map(|d| d.group_facts()).collect();
    assert_eq!(facts.len(), 2);
    assert_eq!(facts[0].name.as_deref(), Some("Квартиры СПб"));
    assert_eq!(facts[0].has_member(&s.phone), Some(true));
    assert_eq!(facts[0].may_post(&s.phone), Some(true));
    assert_eq!(facts[1].may_post(&s.phone), Some(false));

    // Admin rights in the announcement-only group: it may post.
    s.fake.set_announce(PROFILE, ANNOUNCE, true, true);
    let dialogs = s.client.list_chats(&s.creds, 100, 0).await.unwrap();
    let facts = dialogs[2].group_facts().unwrap();
    assert_eq!(
        (facts.announce, facts.may_post(&s.phone)),
        (Some(true), Some(true))
    );
    assert_eq!(s.fake.group_phones(PROFILE, ANNOUNCE).len(), 3);
}

#[tokio::test]
async fn contact_info_resolves_member_and_left_groups_and_refuses_unknown_ones() {
    let s = setup().await;
    let me = format!("{}@s.whatsapp.net", s.phone);

    let (status, member) = contact_info(&s.fake, MEMBER).await;
    assert_eq!(status, 200);
    assert_eq!(member["status"], "done");
    assert_eq!(member["profile"]["id"], MEMBER);
    assert_eq!(member["profile"]["is_group"], true);
    assert_eq!(member["profile"]["group"]["Name"], "Квартиры СПб");
    assert!(participants(&member["profile"]["group"]).0.contains(&me));

    let (status, left) = contact_info(&s.fake, LEFT).await;
    assert_eq!(status, 200);
    assert_eq!(left["profile"]["is_group"], true);
    assert_eq!(left["profile"]["group"]["Name"], "Бывшая группа");
    let (all, _) = participants(&left["profile"]["group"]);
    assert!(!all.is_empty() && !all.contains(&me), "{all:?}");
    assert!(!s.fake.group_phones(PROFILE, LEFT).contains(&s.phone));

    // INVENTED answer for an id that is no group of the account.
    let (status, unknown) = contact_info(&s.fake, UNKNOWN).await;
    assert_eq!(status, 400);
    assert_eq!(unknown["status"], "error");
    assert_eq!(unknown["detail"], "Contact not found");

    let (status, person) = contact_info(&s.fake, "79115576367").await;
    assert_eq!(status, 200);
    assert_eq!(person["profile"]["is_group"], false);
    assert_eq!(person["profile"]["id"], "79115576367@c.us");
    let (status, _) = get(&s.fake, "/api/sync/contact/info", "").await;
    assert_eq!(status, 400, "user_id is required");

    let asked: Vec<Option<String>> = s
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/api/sync/contact/info")
        .map(|r| r.user_id.clone())
        .collect();
    assert_eq!(asked[..2], [Some(MEMBER.into()), Some(LEFT.into())]);

    // What groupcast reads of them.
    let facts = s
        .client
        .group_info(&s.creds, &group(MEMBER))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.has_member(&s.phone), Some(true));
    assert_eq!(facts.may_post(&s.phone), Some(true));
    let facts = s
        .client
        .group_info(&s.creds, &group(LEFT))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.has_member(&s.phone), Some(false));
    let facts = s
        .client
        .group_info(&s.creds, &group(ANNOUNCE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.may_post(&s.phone), Some(false));
    assert_eq!(
        s.client.group_info(&s.creds, &group(UNKNOWN)).await,
        Ok(None)
    );

    // Joining again puts the account back.
    s.fake.add_group(PROFILE, LEFT, "Снова с нами");
    let facts = s
        .client
        .group_info(&s.creds, &group(LEFT))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.name.as_deref(), Some("Снова с нами"));
    assert_eq!(facts.has_member(&s.phone), Some(true));
    assert_eq!(
        s.client.list_chats(&s.creds, 100, 0).await.unwrap().len(),
        5
    );

    // Not authorized: refused like the other reads.
    s.fake.set_authorized(PROFILE, false);
    assert_eq!(
        s.client.group_info(&s.creds, &group(MEMBER)).await,
        Err(groupcast_core::wappi::WappiError::NotAuthorized)
    );
}

#[tokio::test]
async fn sends_the_account_cannot_make_are_accepted_but_never_delivered() {
    let s = setup().await;
    for jid in [LEFT, ANNOUNCE] {
        let sent = s
            .client
            .send_text(&s.creds, &group(jid), "Сдаю квартиру")
            .await
            .expect("accepted: status done");
        assert!(sent.message_id.is_some());
        assert!(s.fake.deliveries_to(jid).is_empty(), "{jid}");
        // INVENTED: the post shows in the history, in `error`.
        assert_eq!(newest_status(&s, jid).await, "error", "{jid}");
    }
    let outcomes: Vec<Outcome> = s
        .fake
        .sends_for_profile(PROFILE)
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes, vec![Outcome::AcceptedNotDelivered; 2]);
    assert!(s.fake.deliveries().is_empty());

    // The silent drop instead: pending for ever.
    s.fake
        .set_undeliverable_plan(DeliveryPlan::pending_forever());
    s.client
        .send_text(&s.creds, &group(LEFT), "Ещё раз")
        .await
        .unwrap();
    assert_eq!(newest_status(&s, LEFT).await, "pending");

    // An admin of the announcement-only group posts; so does a member of an ordinary one.
    s.fake.set_announce(PROFILE, ANNOUNCE, true, true);
    for jid in [ANNOUNCE, MEMBER] {
        s.client
            .send_text(&s.creds, &group(jid), "Сдаю квартиру")
            .await
            .unwrap();
        assert_eq!(s.fake.deliveries_to(jid).len(), 1, "{jid}");
        assert_eq!(newest_status(&s, jid).await, "delivered", "{jid}");
    }
}

#[tokio::test]
async fn delivery_status_moves_over_time() {
    let s = setup().await;
    // Default: delivered at once.
    s.client
        .send_text(&s.creds, &group(MEMBER), "1")
        .await
        .unwrap();
    assert_eq!(newest_status(&s, MEMBER).await, "delivered");

    // pending → delivered → read.
    s.fake.set_delivery_plan(
        PROFILE,
        DeliveryPlan::delivered_after(Duration::from_millis(400))
            .read_after(Duration::from_millis(1200)),
    );
    s.client
        .send_text(&s.creds, &group(MEMBER), "2")
        .await
        .unwrap();
    assert_eq!(newest_status(&s, MEMBER).await, "pending");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(newest_status(&s, MEMBER).await, "delivered");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(newest_status(&s, MEMBER).await, "read");

    // A group's own plan wins over the profile's: pending for ever, or an end in undelivered.
    s.fake
        .set_group_delivery(MEMBER, DeliveryPlan::pending_forever());
    s.fake.set_delivery_status(PROFILE, "temporary ban");
    s.client
        .send_text(&s.creds, &group(MEMBER), "3")
        .await
        .unwrap();
    s.fake.set_group_delivery(
        MEMBER,
        DeliveryPlan::ends_in("undelivered", Duration::from_millis(300)),
    );
    s.client
        .send_text(&s.creds, &group(MEMBER), "4")
        .await
        .unwrap();
    let statuses = |page: groupcast_core::wappi::MessagesPage| -> Vec<(String, String)> {
        page.messages
            .into_iter()
            .map(|m| (m.body, m.delivery_status))
            .collect()
    };
    let page = s
        .client
        .chat_messages(&s.creds, &group(MEMBER), 2, 0)
        .await
        .unwrap();
    assert_eq!(
        statuses(page),
        [
            ("4".into(), "pending".into()),
            ("3".into(), "pending".into())
        ]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page = s
        .client
        .chat_messages(&s.creds, &group(MEMBER), 4, 0)
        .await
        .unwrap();
    assert_eq!(
        statuses(page),
        [
            ("4".into(), "undelivered".into()),
            ("3".into(), "pending".into()),
            ("2".into(), "read".into()),
            ("1".into(), "delivered".into()),
        ],
        "each post keeps the plan it was sent under"
    );

    // Without the group's plan, the profile's (a fixed `temporary ban`) again.
    s.fake.clear_group_delivery(MEMBER);
    s.client
        .send_text(&s.creds, &group(MEMBER), "5")
        .await
        .unwrap();
    assert_eq!(newest_status(&s, MEMBER).await, "temporary ban");
    let page = s
        .client
        .chat_messages(&s.creds, &group(MEMBER), 1, 0)
        .await
        .unwrap();
    assert!(page.messages[0].is_temporary_ban());
}

#[test]
fn delivery_plans() {
    let ms = Duration::from_millis;
    let plan = DeliveryPlan::delivered_after(ms(100)).read_after(ms(300));
    let at = |t| plan.status_at(ms(t)).to_string();
    assert_eq!(
        [at(0), at(99), at(100), at(299), at(300), at(10_000)],
        [
            "pending",
            "pending",
            "delivered",
            "delivered",
            "read",
            "read"
        ]
    );
    assert_eq!(DeliveryPlan::default().status_at(ms(0)), "delivered");
    assert_eq!(
        DeliveryPlan::pending_forever().status_at(ms(u32::MAX as u64)),
        "pending"
    );
    assert_eq!(DeliveryPlan::undeliverable().status_at(ms(0)), "error");
    assert_eq!(
        DeliveryPlan::fixed("temporary ban").status_at(ms(0)),
        "temporary ban"
    );
    let ends = DeliveryPlan::ends_in("undelivered", ms(50));
    assert_eq!(
        (ends.status_at(ms(49)), ends.status_at(ms(50))),
        ("pending", "undelivered")
    );
    // Steps in any order; the latest reached wins.
    let odd = DeliveryPlan::pending_forever()
        .step(ms(200), "error")
        .step(ms(100), "delivered");
    assert_eq!(
        (odd.status_at(ms(150)), odd.status_at(ms(250))),
        ("delivered", "error")
    );
}
