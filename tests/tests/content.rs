//! Mailing content: the text (Telegram formatting to WhatsApp markup, limits) and the groups
//! (pasted with duplicates and junk reported, or imported from the WhatsApp account).

use groupcast_e2e::scenarios;
use groupcast_e2e::world::{Account, Person, World};

async fn registered(w: &World, id: i64, n: u32) -> (Person<'_>, Account) {
    let acc = Account::numbered(n);
    w.wappi.add_profile(&acc.profile, &acc.token);
    let p = w.person(id);
    p.registers(&acc).await;
    (p, acc)
}

#[tokio::test]
async fn text_formatting_becomes_whatsapp_markup() {
    let w = World::start().await;
    let (p, _) = registered(&w, 2001, 1).await;
    scenarios::text_formatting_becomes_whatsapp_markup(&w, &p).await;
}

#[tokio::test]
async fn bad_text_is_refused_and_the_old_text_kept() {
    let w = World::start().await;
    let (p, _) = registered(&w, 2002, 2).await;
    p.sets_text("Первый текст").await;
    p.says("/text");
    p.hears("📝").await;
    p.says("   ");
    p.hears("пустой").await;
    p.says(&"а".repeat(4097));
    p.hears("слишком длинный").await;
    let stored: String = w
        .server
        .db()
        .query_row("SELECT body FROM texts WHERE user_id = 2002", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "Первый текст");
}

#[tokio::test]
async fn pasted_groups_report_duplicates_and_junk() {
    let w = World::start().await;
    let (p, _) = registered(&w, 2003, 3).await;
    scenarios::pasted_groups_report_duplicates_and_junk(&w, &p).await;
}

#[tokio::test]
async fn group_cap_is_enforced() {
    let w = World::start_with(|env| {
        env.insert("MAX_GROUPS_PER_USER".into(), "3".into());
    })
    .await;
    let (p, _) = registered(&w, 2004, 4).await;
    p.says("/groups");
    p.hears("👥").await;
    p.says("1203630001\n1203630002\n1203630003\n1203630004");
    p.hears("Слишком много групп: 4, максимум 3").await;
}

#[tokio::test]
async fn groups_are_imported_from_the_whatsapp_account() {
    let w = World::start().await;
    let (p, acc) = registered(&w, 2005, 5).await;
    let groups = w.groups(&acc, 11, 7);
    p.says("/groups");
    let ask = p.hears("👥").await;
    p.presses(ask.message_id, &Person::button(&ask, "Импорт"));
    let picker = p.hears("Группы аккаунта: 11").await;
    assert!(picker.text.contains("Страница 1/2"), "{}", picker.text);
    // Tick the first group on page 1, go to page 2, tick the last group, save.
    p.presses(picker.message_id, &Person::button(&picker, "Группа 7-0"));
    w.tg.wait_until(
        |tg| {
            tg.current_text(2005, picker.message_id)
                .is_some_and(|t| t.contains("Выбрано: 1"))
        },
        groupcast_e2e::world::STEP,
    )
    .await
    .unwrap();
    p.presses(picker.message_id, "impp:1");
    w.tg.wait_until(
        |tg| {
            tg.current_text(2005, picker.message_id)
                .is_some_and(|t| t.contains("Страница 2/2"))
        },
        groupcast_e2e::world::STEP,
    )
    .await
    .unwrap();
    let markup = w.tg.current_markup(2005, picker.message_id).unwrap();
    assert!(markup.to_string().contains("Группа 7-10"), "{markup}");
    p.presses(picker.message_id, "impt:10");
    w.tg.wait_until(
        |tg| {
            tg.current_text(2005, picker.message_id)
                .is_some_and(|t| t.contains("Выбрано: 2"))
        },
        groupcast_e2e::world::STEP,
    )
    .await
    .unwrap();
    p.presses(picker.message_id, "imp:save");
    p.hears("Сохранено групп: 2").await;
    let (jids, names): (Vec<String>, Vec<String>) = {
        let db = w.server.db();
        let mut st = db
            .prepare("SELECT jid, name FROM groups WHERE user_id = 2005 ORDER BY position")
            .unwrap();
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(Result::unwrap).unzip()
    };
    assert_eq!(jids, vec![groups[0].clone(), groups[10].clone()]);
    assert_eq!(names, vec!["Группа 7-0", "Группа 7-10"]);
}

/// Issue 15: typing a word while the picker is open shows only the groups whose name holds
/// it; ticking and saving from the search keeps the right group.
#[tokio::test]
async fn the_import_picker_searches_by_name() {
    let w = World::start().await;
    let (p, acc) = registered(&w, 2006, 6).await;
    let groups = w.groups(&acc, 11, 8);
    w.wappi
        .add_group(&acc.profile, "120363999000000001@g.us", "Аренда Химки");
    p.says("/groups");
    let ask = p.hears("👥").await;
    p.presses(ask.message_id, &Person::button(&ask, "Импорт"));
    p.hears("Группы аккаунта: 12").await;
    p.says("химки");
    let found = p.hears("«химки»: найдено 1").await;
    let markup = found.reply_markup.clone().unwrap().to_string();
    assert!(
        markup.contains("Аренда Химки") && !markup.contains("Группа 8-"),
        "{markup}"
    );
    p.presses(found.message_id, &Person::button(&found, "Аренда Химки"));
    p.says("8-1");
    let second = p.hears("«8-1»: найдено 2").await;
    p.presses(second.message_id, &Person::button(&second, "Группа 8-10"));
    w.tg.wait_until(
        |tg| {
            tg.current_text(2006, second.message_id)
                .is_some_and(|t| t.contains("Выбрано: 2"))
        },
        groupcast_e2e::world::STEP,
    )
    .await
    .unwrap();
    p.presses(second.message_id, "imp:save");
    p.hears("Сохранено групп: 2").await;
    let db = w.server.db();
    let mut st = db
        .prepare("SELECT jid FROM groups WHERE user_id = 2006 ORDER BY position")
        .unwrap();
    let jids: Vec<String> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        jids,
        vec![groups[10].clone(), "120363999000000001@g.us".to_string()]
    );
}

/// Issue 15: a pasted id is stored (and shown) with its name from the account's chat list.
#[tokio::test]
async fn pasted_groups_get_their_names_from_the_chat_list() {
    let w = World::start().await;
    let (p, acc) = registered(&w, 2007, 7).await;
    let groups = w.groups(&acc, 2, 9);
    p.sets_groups(&[groups[1].clone(), "120363777000000001@g.us".to_string()])
        .await;
    let db = w.server.db();
    let mut st = db
        .prepare("SELECT jid, name FROM groups WHERE user_id = 2007 ORDER BY position")
        .unwrap();
    let rows: Vec<(String, Option<String>)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        vec![
            (groups[1].clone(), Some("Группа 9-1".to_string())),
            ("120363777000000001@g.us".to_string(), None)
        ]
    );
}
