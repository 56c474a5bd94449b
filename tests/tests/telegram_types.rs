//! Our own Bot API types (`groupcast_core::telegram`, written by hand because teloxide-core
//! does not build for wasm32) against teloxide-core's, on the same payloads shaped as the
//! Bot API sends them (`tests/fixtures/telegram/`). Every field our types read must come out
//! the same from both; a field we rename or mistype by accident fails here.
//!
//! teloxide-core is a dev-dependency of this crate only: it never reaches the product crates
//! or the Worker's wasm32 build.

use groupcast_core::ports::TgFile;
use groupcast_core::telegram::{self as ours, api, TelegramError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use teloxide_core::types::{self as tx, MessageEntityKind, UpdateKind};
use teloxide_core::{ApiError, RequestError};

// ---------------------------------------------------------------------------------------------
// Reading the fixtures

fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/telegram/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Parses one payload into a value, naming the fixture and the reader when it does not parse.
fn parse<T: DeserializeOwned>(name: &str, json: &str, reader: &str) -> T {
    serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("{name}: {reader} could not parse it: {e}"))
}

/// One update as both sides read it (a webhook body has this shape).
fn both_updates(name: &str) -> (ours::Update, tx::Update) {
    let json = fixture(name);
    (
        parse(name, &json, "groupcast"),
        parse(name, &json, "teloxide"),
    )
}

/// The answer envelope as teloxide-core reads it. Its own envelope type is crate-private, so
/// this one is built from its public parts the same way: `description` is an [`ApiError`],
/// `parameters` a [`tx::ResponseParameters`]; it does not read `error_code`.
#[derive(Deserialize)]
struct TeloxideAnswer<R> {
    ok: bool,
    result: Option<R>,
    description: Option<ApiError>,
    parameters: Option<tx::ResponseParameters>,
}

impl<R> TeloxideAnswer<R> {
    /// What a teloxide request returns for this answer: the result, or the error it raises
    /// (parameters first, as teloxide-core decides).
    fn outcome(self) -> Result<R, RequestError> {
        match (self.ok, self.result, self.parameters, self.description) {
            (true, Some(result), _, _) => Ok(result),
            (false, _, Some(tx::ResponseParameters::RetryAfter(secs)), _) => {
                Err(RequestError::RetryAfter(secs))
            }
            (false, _, Some(tx::ResponseParameters::MigrateToChatId(to)), _) => {
                Err(RequestError::MigrateToChatId(to))
            }
            (false, _, None, Some(error)) => Err(RequestError::Api(error)),
            _ => panic!("teloxide: an answer neither ok with a result nor an error"),
        }
    }
}

/// The text Telegram sent in `description`, as teloxide keeps it.
fn description_text(error: &ApiError) -> String {
    match error {
        ApiError::Unknown(text) => text.clone(),
        known => known.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// teloxide's values in our shapes, so whole values can be compared

fn their_user_id(user: &tx::User) -> i64 {
    i64::try_from(user.id.0).expect("user id fits i64")
}

/// The Bot API's `type` of a chat.
fn their_chat_type(chat: &tx::Chat) -> &'static str {
    if chat.is_private() {
        "private"
    } else if chat.is_group() {
        "group"
    } else if chat.is_supergroup() {
        "supergroup"
    } else if chat.is_channel() {
        "channel"
    } else {
        "unknown"
    }
}

/// An entity as our type holds it: the wire `type` name, offsets and lengths in UTF-16 code
/// units, and the url of a `text_link`.
fn their_entity(entity: &tx::MessageEntity) -> ours::MessageEntity {
    let tagged = serde_json::to_value(&entity.kind).expect("entity kind serialises");
    let kind = tagged["type"]
        .as_str()
        .expect("entity kind has a type")
        .to_string();
    let url = match &entity.kind {
        MessageEntityKind::TextLink { url } => Some(url.to_string()),
        _ => None,
    };
    ours::MessageEntity {
        kind,
        offset: entity.offset,
        length: entity.length,
        url,
    }
}

fn their_entities(entities: Option<&[tx::MessageEntity]>) -> Vec<ours::MessageEntity> {
    entities
        .unwrap_or_default()
        .iter()
        .map(their_entity)
        .collect()
}

fn their_photo_size(size: &tx::PhotoSize) -> ours::PhotoSize {
    ours::PhotoSize {
        file_id: size.file.id.0.clone(),
        file_unique_id: size.file.unique_id.0.clone(),
        width: size.width,
        height: size.height,
        // teloxide puts u32::MAX where Telegram sent no size.
        file_size: (size.file.size != u32::MAX).then_some(u64::from(size.file.size)),
    }
}

// ---------------------------------------------------------------------------------------------
// Field-by-field agreement

fn assert_user(ours: &ours::User, theirs: &tx::User) {
    assert_eq!(ours.id.0, their_user_id(theirs), "user id");
    assert_eq!(ours.is_bot, theirs.is_bot, "user is_bot");
    assert_eq!(ours.first_name, theirs.first_name, "user first_name");
    assert_eq!(ours.username, theirs.username, "user username");
    assert_eq!(
        ours.language_code, theirs.language_code,
        "user language_code"
    );
}

fn assert_chat(ours: &ours::Chat, theirs: &tx::Chat) {
    assert_eq!(ours.id.0, theirs.id.0, "chat id");
    assert_eq!(ours.kind, their_chat_type(theirs), "chat type");
}

fn assert_document(ours: Option<&ours::Document>, theirs: Option<&tx::Document>) {
    let ours = ours.map(|d| (d.file_id.clone(), d.file_name.clone(), d.mime_type.clone()));
    let theirs = theirs.map(|d| {
        (
            d.file.id.0.clone(),
            d.file_name.clone(),
            d.mime_type.as_ref().map(ToString::to_string),
        )
    });
    assert_eq!(ours, theirs, "document (file_id, file_name, mime_type)");
}

/// Every field of our `Message`.
fn assert_message(ours: &ours::Message, theirs: &tx::Message) {
    assert_eq!(ours.message_id, i64::from(theirs.id.0), "message_id");
    match (&ours.from, theirs.from.as_ref()) {
        (Some(o), Some(t)) => assert_user(o, t),
        (None, None) => {}
        (o, t) => panic!("from: groupcast {o:?}, teloxide {t:?}"),
    }
    assert_chat(&ours.chat, &theirs.chat);
    assert_eq!(ours.date, theirs.date.timestamp(), "date");
    assert_eq!(ours.text.as_deref(), theirs.text(), "text");
    assert_eq!(ours.entities, their_entities(theirs.entities()), "entities");
    assert_eq!(ours.caption.as_deref(), theirs.caption(), "caption");
    assert_eq!(
        ours.caption_entities,
        their_entities(theirs.caption_entities()),
        "caption_entities"
    );
    let their_photo: Vec<_> = theirs
        .photo()
        .unwrap_or_default()
        .iter()
        .map(their_photo_size)
        .collect();
    assert_eq!(ours.photo, their_photo, "photo sizes");
    assert_eq!(
        ours.media_group_id.as_deref(),
        theirs.media_group_id().map(|id| id.0.as_str()),
        "media_group_id"
    );
    assert_document(ours.document.as_ref(), theirs.document());
}

fn assert_callback(ours: &ours::CallbackQuery, theirs: &tx::CallbackQuery) {
    assert_eq!(ours.id, theirs.id.0, "callback id");
    assert_user(&ours.from, &theirs.from);
    assert_eq!(ours.data, theirs.data, "callback data");
    match (&ours.message, theirs.regular_message()) {
        (Some(o), Some(t)) => assert_message(o, t),
        (None, None) => {}
        (o, t) => panic!("callback message: groupcast {o:?}, teloxide {t:?}"),
    }
}

/// Our `Update` keeps `message` and `callback_query`; every other kind reads as neither.
fn assert_update(ours: &ours::Update, theirs: &tx::Update) {
    assert_eq!(ours.update_id, i64::from(theirs.id.0), "update_id");
    match &theirs.kind {
        UpdateKind::Message(t) => {
            let o = ours.message.as_ref().expect("groupcast read no message");
            assert_message(o, t);
            assert!(
                ours.callback_query.is_none(),
                "a message read as a callback"
            );
        }
        UpdateKind::CallbackQuery(t) => {
            let o = ours
                .callback_query
                .as_ref()
                .expect("groupcast read no callback_query");
            assert_callback(o, t);
            assert!(ours.message.is_none(), "a callback read as a message");
        }
        UpdateKind::Error(raw) => panic!("teloxide could not read the update: {raw}"),
        _ => assert!(
            ours.message.is_none() && ours.callback_query.is_none(),
            "an update of a kind we do not handle was read as one we do"
        ),
    }
}

/// Our reading of an error answer (the envelope and `api::decode`'s verdict) against teloxide's.
fn assert_error_answer(name: &str, status: u16) -> (TelegramError, RequestError) {
    let json = fixture(name);
    let envelope: ours::ApiResponse<serde_json::Value> = parse(name, &json, "groupcast");
    let answer: TeloxideAnswer<serde_json::Value> = parse(name, &json, "teloxide");
    let raw: serde_json::Value = parse(name, &json, "serde_json");

    assert_eq!(envelope.ok, answer.ok, "ok");
    assert!(!envelope.ok, "{name} is an error answer");
    assert!(
        envelope.result.is_none() && answer.result.is_none(),
        "result"
    );
    assert_eq!(
        envelope.description,
        answer.description.as_ref().map(description_text),
        "description"
    );
    // teloxide does not read error_code: ours against the payload itself.
    assert_eq!(
        envelope.error_code,
        raw["error_code"].as_i64(),
        "error_code"
    );
    let params = envelope.parameters.clone().unwrap_or_default();
    let (retry_after, migrate_to) = match answer.parameters {
        Some(tx::ResponseParameters::RetryAfter(secs)) => (Some(u64::from(secs.seconds())), None),
        Some(tx::ResponseParameters::MigrateToChatId(chat)) => (None, Some(chat.0)),
        None => (None, None),
    };
    assert_eq!(params.retry_after, retry_after, "parameters.retry_after");
    assert_eq!(
        params.migrate_to_chat_id, migrate_to,
        "parameters.migrate_to_chat_id"
    );

    let ours = api::decode::<serde_json::Value>("sendMessage", status, json.as_bytes())
        .expect_err("an error answer decodes to an error");
    let theirs = answer
        .outcome()
        .expect_err("an error answer is an error for teloxide");
    (ours, theirs)
}

// ---------------------------------------------------------------------------------------------
// Updates

#[test]
fn text_message_with_entities() {
    let (ours, theirs) = both_updates("update_text_entities.json");
    assert_update(&ours, &theirs);

    let m = ours.message.expect("a message");
    assert_eq!(m.chat.kind, "private");
    assert_eq!(m.from.and_then(|u| u.language_code).as_deref(), Some("ru"));
    let kinds: Vec<_> = m.entities.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["bold", "text_link", "mention"]);
    assert_eq!(
        m.entities[1].url.as_deref(),
        Some("https://example.com/sale?utm=tg")
    );
    // Offsets count UTF-16 code units: the leading emoji takes two.
    assert_eq!((m.entities[0].offset, m.entities[0].length), (3, 10));
}

#[test]
fn photo_message_with_caption_entities() {
    let (ours, theirs) = both_updates("update_photo.json");
    assert_update(&ours, &theirs);

    let m = ours.message.expect("a message");
    assert_eq!(m.photo.len(), 4);
    assert_eq!((m.photo[3].width, m.photo[3].height), (1280, 960));
    assert_eq!(
        m.caption.as_deref(),
        Some("Новая коллекция 🧥 — смотрите каталог")
    );
    assert_eq!(m.caption_entities.len(), 2);
    assert!(m.text.is_none() && m.entities.is_empty());
}

#[test]
fn album_arrives_as_updates_sharing_a_media_group_id() {
    let name = "get_updates_album.json";
    let json = fixture(name);
    let ours = api::decode::<Vec<ours::Update>>("getUpdates", 200, json.as_bytes())
        .unwrap_or_else(|e| panic!("{name}: groupcast: {e}"));
    let theirs = parse::<TeloxideAnswer<Vec<tx::Update>>>(name, &json, "teloxide")
        .outcome()
        .unwrap_or_else(|e| panic!("{name}: teloxide: {e}"));

    assert_eq!(ours.len(), 2);
    assert_eq!(ours.len(), theirs.len(), "number of updates");
    for (o, t) in ours.iter().zip(&theirs) {
        assert_update(o, t);
    }
    let groups: Vec<_> = ours
        .iter()
        .map(|u| u.message.as_ref().and_then(|m| m.media_group_id.as_deref()))
        .collect();
    assert_eq!(groups, [Some("13812345678901234"); 2]);
}

#[test]
fn callback_query_with_its_message() {
    let (ours, theirs) = both_updates("update_callback_query.json");
    assert_update(&ours, &theirs);

    let q = ours.callback_query.expect("a callback query");
    assert_eq!(q.id, "4382061798347718144");
    assert_eq!(q.data.as_deref(), Some("mailing:start:17"));
    let m = q.message.expect("the message with the button");
    assert!(m.from.expect("sent by the bot").is_bot);
}

#[test]
fn edited_message_is_not_read_as_a_new_one() {
    let (ours, theirs) = both_updates("update_edited_message.json");
    assert!(matches!(theirs.kind, UpdateKind::EditedMessage(_)));
    assert_update(&ours, &theirs);
    assert!(ours.message.is_none() && ours.callback_query.is_none());
}

#[test]
fn document_message() {
    let (ours, theirs) = both_updates("update_document.json");
    assert_update(&ours, &theirs);

    let m = ours.message.expect("a message");
    let d = m.document.expect("a document");
    assert_eq!(d.file_id, "BQACAgIAAxkBAAIBbGroupsCsv");
    assert_eq!(d.file_name.as_deref(), Some("groups.csv"));
    assert_eq!(d.mime_type.as_deref(), Some("text/csv"));
    assert_eq!(m.caption.as_deref(), Some("Список групп"));
}

/// We read no forward fields; a forwarded message must still read like any other.
#[test]
fn forwarded_message() {
    let (ours, theirs) = both_updates("update_forwarded.json");
    let UpdateKind::Message(their_message) = &theirs.kind else {
        panic!("teloxide read no message");
    };
    assert!(
        matches!(
            their_message.forward_origin(),
            Some(tx::MessageOrigin::Channel { chat, .. }) if chat.is_channel()
        ),
        "the fixture is a forward from a channel"
    );
    assert_update(&ours, &theirs);
    let m = ours.message.expect("a message");
    assert_eq!(m.text.as_deref(), Some("Новинки недели уже в продаже"));
}

// ---------------------------------------------------------------------------------------------
// Answers

#[test]
fn too_many_requests_answer() {
    let (ours, theirs) = assert_error_answer("answer_429.json", 429);
    assert_eq!(ours, TelegramError::RetryAfter(7));
    let RequestError::RetryAfter(secs) = theirs else {
        panic!("teloxide: {theirs:?}");
    };
    assert_eq!(u64::from(secs.seconds()), 7, "retry_after");
}

#[test]
fn chat_not_found_answer() {
    let (ours, theirs) = assert_error_answer("answer_400_chat_not_found.json", 400);
    let RequestError::Api(error) = theirs else {
        panic!("teloxide: {theirs:?}");
    };
    assert_eq!(error, ApiError::ChatNotFound);
    assert_eq!(
        ours,
        TelegramError::Api {
            code: 400,
            description: description_text(&error),
        }
    );
}

/// teloxide raises `MigrateToChatId`; our decode keeps it a plain API error, but the envelope
/// reads the same new chat id (checked in `assert_error_answer`).
#[test]
fn group_upgraded_answer() {
    let (ours, theirs) = assert_error_answer("answer_400_migrated.json", 400);
    let RequestError::MigrateToChatId(to) = theirs else {
        panic!("teloxide: {theirs:?}");
    };
    assert_eq!(to.0, -1001234567890);
    assert!(
        matches!(ours, TelegramError::Api { code: 400, .. }),
        "{ours:?}"
    );
}

#[test]
fn send_message_answer() {
    let name = "answer_send_message.json";
    let json = fixture(name);
    let ours = api::decode::<ours::Message>("sendMessage", 200, json.as_bytes())
        .unwrap_or_else(|e| panic!("{name}: groupcast: {e}"));
    let theirs = parse::<TeloxideAnswer<tx::Message>>(name, &json, "teloxide")
        .outcome()
        .unwrap_or_else(|e| panic!("{name}: teloxide: {e}"));
    assert_message(&ours, &theirs);
    // What the clients keep of it.
    assert_eq!(ours::MessageId(ours.message_id), ours::MessageId(4218));
}

/// The clients' `getFile` reading (`FileInfo`) is private to the server and Worker crates;
/// this one has its fields and goes through the same `api::decode` into the public `TgFile`.
#[derive(Deserialize)]
struct FileInfo {
    file_path: Option<String>,
    file_size: Option<u64>,
}

#[test]
fn get_file_answer() {
    let name = "answer_get_file.json";
    let json = fixture(name);
    let ours = api::decode::<FileInfo>("getFile", 200, json.as_bytes())
        .unwrap_or_else(|e| panic!("{name}: groupcast: {e}"));
    let theirs = parse::<TeloxideAnswer<tx::File>>(name, &json, "teloxide")
        .outcome()
        .unwrap_or_else(|e| panic!("{name}: teloxide: {e}"));

    let ours = TgFile {
        file_path: ours.file_path,
        file_size: ours.file_size,
    };
    let theirs = TgFile {
        file_path: Some(theirs.path),
        file_size: Some(u64::from(theirs.meta.size)),
    };
    assert_eq!(ours, theirs);
    assert_eq!(ours.file_path.as_deref(), Some("photos/file_12.jpg"));
}
