//! Registration: the Wappi token, then the profile id, both checked against Wappi
//! `get/status` before anything is saved; bad credentials are asked for again.

use groupcast_e2e::scenarios;
use groupcast_e2e::world::{Account, World};

#[tokio::test]
async fn good_credentials_register_and_are_stored_encrypted() {
    let w = World::start().await;
    let acc = Account::numbered(1);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let alice = w.person(1001);

    alice.says("/start");
    alice.hears("токен").await;
    alice.says(&acc.token);
    let masked = alice.hears("профиля").await;
    assert!(
        !masked.text.contains(&acc.token),
        "the token is shown only masked"
    );
    assert!(masked.text.contains(&acc.token[..4]));
    alice.says(&acc.profile);
    let done = alice.hears("✔️").await;
    assert!(
        done.reply_markup.as_ref().unwrap()["keyboard"].is_array(),
        "main menu keyboard"
    );

    // Wappi saw get/status for exactly this profile with this token.
    let status: Vec<_> = w
        .wappi
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/get/status"))
        .collect();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].profile_id, acc.profile);
    assert_eq!(status[0].token, acc.token);

    // The token is not in the database file in clear.
    let bytes = std::fs::read(w.server.data.join("groupcast.db")).unwrap();
    let wal = std::fs::read(w.server.data.join("groupcast.db-wal")).unwrap_or_default();
    let hay = [bytes, wal].concat();
    assert!(
        !hay.windows(acc.token.len())
            .any(|win| win == acc.token.as_bytes()),
        "token stored in clear"
    );
    let (enc, profile): (String, String) = w
        .server
        .db()
        .query_row(
            "SELECT wappi_token_enc, profile_id FROM users WHERE id = 1001",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(!enc.is_empty());
    assert_eq!(profile, acc.profile);

    // A registered user's /start is the menu, not registration.
    alice.says("/start");
    alice.hears("Главное меню").await;
    w.server.assert_no_secrets_in_logs(&[&acc.token]);
}

#[tokio::test]
async fn bad_credentials_are_refused_and_asked_again() {
    let w = World::start().await;
    let acc = Account::numbered(2);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let bob = w.person(1002);

    bob.says("/start");
    bob.hears("токен").await;
    bob.says("not a token!");
    bob.hears("не похоже на токен").await;

    // Wrong token for a real profile: refused, asked for the token again.
    bob.says(&Account::numbered(99).token);
    bob.hears("профиля").await;
    bob.says(&acc.profile);
    bob.hears("не принял токен").await;

    // Right token, unknown profile: asked for the profile again.
    bob.says(&acc.token);
    bob.hears("профиля").await;
    bob.says("deadbeef-0000");
    bob.hears("не знает такой профиль").await;

    // WhatsApp not connected: refused, profile asked again; once connected it works.
    w.wappi.set_authorized(&acc.profile, false);
    bob.says(&acc.profile);
    bob.hears("не подключён").await;
    w.wappi.set_authorized(&acc.profile, true);
    bob.says(&acc.profile);
    bob.hears("✔️").await;

    // Before registration completed nothing was saved.
    let saved: i64 = w
        .server
        .db()
        .query_row(
            "SELECT COUNT(*) FROM users WHERE id = 1002 AND profile_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(saved, 1);
}

#[tokio::test]
async fn commands_wait_for_registration() {
    let w = World::start().await;
    scenarios::commands_wait_for_registration(&w, 1003).await;
}

#[tokio::test]
async fn a_missing_setting_stops_start_up_with_one_line() {
    let out = std::process::Command::new(groupcast_e2e::harness::binary())
        .arg("serve")
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("TELEGRAM_BOT_TOKEN"), "{err}");
}
