//! The dialogue as a pure state machine: an incoming update is read into an [`Intent`], and
//! (stored [`DialogueState`], registered?, intent) is routed to a [`Route`] — the thing to do.
//! `bot` carries routes out through the ports. Everything here is table-tested.

use crate::model::lang::Lang;
use crate::telegram::callback::Callback;
use crate::telegram::{CallbackQuery, Message, MessageEntity, PhotoSize};
use crate::texts::button;
use serde::{Deserialize, Serialize};

/// What the bot waits for from this user, stored per user between updates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DialogueState {
    /// Nothing awaited: commands and menu buttons.
    #[default]
    Idle,
    /// Registration step 1: the Wappi token.
    AwaitToken,
    /// Registration step 2: the profile id; the token is kept encrypted meanwhile.
    AwaitProfile { token_enc: String },
    /// The next message is the mailing text.
    AwaitText,
    /// The next message is the group list.
    AwaitGroups,
    /// Operator: the next message is the broadcast to every user.
    AwaitBroadcast,
    /// Operator: a broadcast shown with ✅ / ❌, waiting for the press.
    ConfirmBroadcast { text: String },
    /// Picking groups imported from the WhatsApp account.
    Import(ImportState),
    /// 🕒 was pressed: the next message says when (`/schedule`'s words).
    AwaitSchedule,
    /// ✏️ under a report was pressed: the next message is the corrected text of that
    /// mailing's post.
    AwaitFix { of: i64 },
    /// Taking photos for the mailing (🖼️ / `/images`).
    AwaitImages {
        /// The album being received and the message that answers for all of it (edited as
        /// the album's photos arrive, so an album gets one answer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        album: Option<AlbumAnswer>,
    },
}

/// The one answer of an album: its `media_group_id` and the bot message showing the set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlbumAnswer {
    pub media_group_id: String,
    pub message_id: i64,
}

/// The import picker: the account's groups, which are ticked, the page shown.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImportState {
    /// (jid, name) of every group of the account.
    pub groups: Vec<(String, String)>,
    pub selected: Vec<bool>,
    pub page: usize,
    /// The message holding the picker keyboard.
    pub message_id: i64,
    /// The words typed to search the groups by name or id (empty: all are shown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
}

pub const IMPORT_PAGE_SIZE: usize = 8;

impl ImportState {
    /// The indices of the groups shown: those whose name or id holds the filter (any case).
    pub fn shown(&self) -> Vec<usize> {
        let needle = self.filter.to_lowercase();
        self.groups
            .iter()
            .enumerate()
            .filter(|(_, (jid, name))| {
                needle.is_empty() || name.to_lowercase().contains(&needle) || jid.contains(&needle)
            })
            .map(|(i, _)| i)
            .collect()
    }

    pub fn pages(&self) -> usize {
        self.shown().len().div_ceil(IMPORT_PAGE_SIZE).max(1)
    }
    pub fn selected_count(&self) -> usize {
        self.selected.iter().filter(|s| **s).count()
    }
}

impl DialogueState {
    /// Reads the stored form; anything unreadable (or empty) is `Idle`.
    pub fn load(stored: &str) -> DialogueState {
        serde_json::from_str(stored).unwrap_or_default()
    }

    pub fn store(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What an incoming update asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Start,
    Menu,
    MailingData,
    EditText,
    EditImages,
    EditGroups,
    StartMailing,
    Cancel,
    Status,
    Subscribe,
    Lang,
    Help,
    /// `/pace [args]` (the raw arguments, possibly empty).
    Pace(String),
    /// `/tz [zone]`.
    Tz(String),
    /// `/pause`: pause the running mailing.
    Pause,
    /// `/resume`: resume the paused mailing.
    Resume,
    /// `/schedule [args]` (the raw arguments, possibly empty).
    Schedule(String),
    /// `/schedules`: the scheduled series.
    Schedules,
    /// `/sets`: the saved group sets.
    Sets,
    /// `/saveset <name>` (the raw arguments).
    SaveSet(String),
    /// `/history`: the user's past mailings.
    History,
    /// Operator: figures.
    Stats,
    /// Operator: `/grant <user_id> <days>` (the raw arguments).
    Grant(String),
    /// Operator: `/broadcast [text]` (the text, possibly empty).
    Broadcast(String),
    /// Free text (with its formatting).
    Text {
        text: String,
        entities: Vec<MessageEntity>,
    },
    /// A photo (one update per photo; an album's share a `media_group_id`).
    Photo {
        sizes: Vec<PhotoSize>,
        media_group_id: Option<String>,
    },
    /// A document, video, sticker or anything else without text.
    NonText,
    /// An inline button press.
    Callback(Callback),
}

impl Intent {
    /// Reads a message: slash commands (with an optional `@botname`), the menu buttons of
    /// either language (exact labels only, so a post starting with 🚀 is still a post), or
    /// free text.
    pub fn from_message(msg: &Message) -> Intent {
        if !msg.photo.is_empty() {
            return Intent::Photo {
                sizes: msg.photo.clone(),
                media_group_id: msg.media_group_id.clone(),
            };
        }
        let Some(text) = msg.text.as_deref() else {
            return Intent::NonText;
        };
        let trimmed = text.trim();
        if let Some(cmd) = trimmed.strip_prefix('/') {
            let word = cmd.split_whitespace().next().unwrap_or("");
            let word = word.split('@').next().unwrap_or("");
            let args = || {
                cmd.split_once(char::is_whitespace)
                    .map_or("", |(_, args)| args.trim())
                    .to_string()
            };
            let intent = match word {
                "start" => Some(Intent::Start),
                "menu" => Some(Intent::Menu),
                "text" => Some(Intent::EditText),
                "images" => Some(Intent::EditImages),
                "groups" => Some(Intent::EditGroups),
                "mailing" => Some(Intent::StartMailing),
                "cancel" => Some(Intent::Cancel),
                "status" => Some(Intent::Status),
                "subscribe" => Some(Intent::Subscribe),
                "lang" => Some(Intent::Lang),
                "help" => Some(Intent::Help),
                "stats" => Some(Intent::Stats),
                "grant" => Some(Intent::Grant(args())),
                "broadcast" => Some(Intent::Broadcast(args())),
                "pace" => Some(Intent::Pace(args())),
                "tz" => Some(Intent::Tz(args())),
                "pause" => Some(Intent::Pause),
                "resume" => Some(Intent::Resume),
                "schedule" => Some(Intent::Schedule(args())),
                "schedules" => Some(Intent::Schedules),
                "sets" => Some(Intent::Sets),
                "saveset" => Some(Intent::SaveSet(args())),
                "history" => Some(Intent::History),
                _ => None,
            };
            if let Some(i) = intent {
                return i;
            }
        }
        for lang in [Lang::Ru, Lang::En] {
            let pairs: [(&str, Intent); 9] = [
                (button::mailing_data(lang), Intent::MailingData),
                (button::start(lang), Intent::StartMailing),
                (button::subscription(lang), Intent::Subscribe),
                (button::cancel(lang), Intent::Cancel),
                (button::text(lang), Intent::EditText),
                (button::groups(lang), Intent::EditGroups),
                (button::images(lang), Intent::EditImages),
                (button::back(lang), Intent::Menu),
                (button::pace(lang), Intent::Pace(String::new())),
            ];
            for (label, intent) in pairs {
                if trimmed == label {
                    return intent;
                }
            }
        }
        Intent::Text {
            text: text.to_string(),
            entities: msg.entities.clone(),
        }
    }

    pub fn from_callback(q: &CallbackQuery) -> Intent {
        Intent::Callback(Callback::parse(q.data.as_deref().unwrap_or("")))
    }
}

/// What to do with an intent in a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Begin registration: ask for the token.
    AskToken,
    /// The message is the token (registration step 1).
    TakeToken(String),
    /// The message is the profile id (registration step 2).
    TakeProfile {
        token_enc: String,
        profile: String,
    },
    /// A command other than /start, /lang, /help during registration.
    FinishRegistrationFirst,
    /// The corrected text of mailing `of`'s post (after ✏️ under its report).
    TakeFix {
        of: i64,
        text: String,
        entities: Vec<MessageEntity>,
    },
    ShowMenu,
    ShowMailingData,
    AskText,
    TakeText {
        text: String,
        entities: Vec<MessageEntity>,
    },
    TextExpected,
    AskGroups,
    TakeGroups(String),
    Preview,
    Cancel,
    Status,
    Subscribe,
    ChooseLang,
    Help,
    /// `/pace [args]`.
    Pace(String),
    /// `/tz [zone]`.
    Tz(String),
    /// `/pause`.
    Pause,
    /// `/resume`.
    Resume,
    /// `/schedule [args]`, or the answer to 🕒.
    Schedule(String),
    /// `/schedules`.
    Schedules,
    /// `/sets`.
    Sets,
    /// `/saveset <name>`.
    SaveSet(String),
    /// `/history`.
    History,
    /// 🖼️: show the photo set and wait for photos.
    Images,
    /// A photo to add to the set (`album`: the answer of the album it belongs to, if that
    /// album is already being answered).
    TakePhoto {
        photo: Vec<PhotoSize>,
        media_group_id: Option<String>,
        album: Option<AlbumAnswer>,
    },
    /// A document, video or sticker while photos are awaited.
    NotAPhoto,
    Stats,
    Grant(String),
    /// Operator: `/broadcast [text]`.
    Broadcast(String),
    /// Operator: the broadcast text arrived.
    TakeBroadcast(String),
    /// Words typed while the import picker is open: search the groups.
    ImportSearch(String),
    Callback(Callback),
    Unknown,
}

/// The routing table. Commands and menu buttons always win over an awaited input, so a user
/// can leave any step; during registration only /start, /lang and /help are open.
pub fn route(state: &DialogueState, registered: bool, intent: &Intent) -> Route {
    use Intent as I;
    match (state, intent) {
        (_, I::Start) if !registered => Route::AskToken,
        (_, I::Lang) => Route::ChooseLang,
        (_, I::Help) => Route::Help,
        // Operator commands do not need a Wappi account (the bot checks the operator list).
        (_, I::Stats) => Route::Stats,
        (_, I::Grant(args)) => Route::Grant(args.clone()),
        (_, I::Broadcast(args)) => Route::Broadcast(args.clone()),
        (DialogueState::AwaitBroadcast, I::Text { text, .. }) => Route::TakeBroadcast(text.clone()),
        (_, I::Callback(cb @ (Callback::BroadcastGo | Callback::BroadcastNo))) => {
            Route::Callback(cb.clone())
        }
        (_, I::Callback(Callback::SetLang(l))) => Route::Callback(Callback::SetLang(*l)),
        (DialogueState::AwaitToken, I::Text { text, .. }) => {
            Route::TakeToken(text.trim().to_string())
        }
        (DialogueState::AwaitProfile { token_enc }, I::Text { text, .. }) => Route::TakeProfile {
            token_enc: token_enc.clone(),
            profile: text.trim().to_string(),
        },
        (_, _) if !registered => Route::FinishRegistrationFirst,
        (_, I::Start | I::Menu) => Route::ShowMenu,
        (_, I::MailingData) => Route::ShowMailingData,
        (_, I::EditText) => Route::AskText,
        (_, I::EditGroups) => Route::AskGroups,
        (_, I::EditImages) => Route::Images,
        (_, I::StartMailing) => Route::Preview,
        (_, I::Cancel) => Route::Cancel,
        (_, I::Pause) => Route::Pause,
        (_, I::Resume) => Route::Resume,
        (_, I::Schedule(args)) => Route::Schedule(args.clone()),
        (_, I::Schedules) => Route::Schedules,
        (_, I::Sets) => Route::Sets,
        (_, I::SaveSet(name)) => Route::SaveSet(name.clone()),
        (_, I::History) => Route::History,
        (DialogueState::AwaitSchedule, I::Text { text, .. }) => Route::Schedule(text.clone()),
        (DialogueState::AwaitFix { of }, I::Text { text, entities }) => Route::TakeFix {
            of: *of,
            text: text.clone(),
            entities: entities.clone(),
        },
        (DialogueState::AwaitFix { .. }, I::NonText | I::Photo { .. }) => Route::TextExpected,
        (_, I::Pace(args)) => Route::Pace(args.clone()),
        (_, I::Tz(args)) => Route::Tz(args.clone()),
        (_, I::Status) => Route::Status,
        (_, I::Subscribe) => Route::Subscribe,
        (DialogueState::AwaitText, I::Text { text, entities }) => Route::TakeText {
            text: text.clone(),
            entities: entities.clone(),
        },
        (DialogueState::AwaitText, I::NonText | I::Photo { .. }) => Route::TextExpected,
        (
            DialogueState::Idle | DialogueState::AwaitImages { .. },
            I::Photo {
                sizes,
                media_group_id,
            },
        ) => {
            let album = match state {
                DialogueState::AwaitImages { album } => album
                    .clone()
                    .filter(|a| Some(&a.media_group_id) == media_group_id.as_ref()),
                _ => None,
            };
            Route::TakePhoto {
                photo: sizes.clone(),
                media_group_id: media_group_id.clone(),
                album,
            }
        }
        (DialogueState::AwaitImages { .. }, I::NonText) => Route::NotAPhoto,
        (DialogueState::AwaitGroups, I::Text { text, .. }) => Route::TakeGroups(text.clone()),
        (DialogueState::Import(_), I::Text { text, .. }) => Route::ImportSearch(text.clone()),
        (_, I::Callback(cb)) => Route::Callback(cb.clone()),
        _ => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::{ChatId, UserId};
    use crate::telegram::{Chat, User};

    fn msg(text: &str) -> Message {
        Message {
            message_id: 1,
            from: Some(User {
                id: UserId(7),
                is_bot: false,
                first_name: "A".into(),
                username: None,
                language_code: None,
            }),
            chat: Chat {
                id: ChatId(7),
                kind: "private".into(),
            },
            date: 0,
            text: Some(text.into()),
            entities: vec![],
            caption: None,
            caption_entities: vec![],
            photo: vec![],
            media_group_id: None,
            document: None,
        }
    }

    fn text(t: &str) -> Intent {
        Intent::Text {
            text: t.into(),
            entities: vec![],
        }
    }

    #[test]
    fn intents() {
        let cases = [
            ("/start", Intent::Start),
            ("/mailing@groupcast_bot", Intent::StartMailing),
            ("🚀 Начать рассылку", Intent::StartMailing),
            ("🚀 Start mailing", Intent::StartMailing),
            (
                "🚀 Начать рассылку сегодня!",
                text("🚀 Начать рассылку сегодня!"),
            ),
            ("⛔ Остановить рассылку", Intent::Cancel),
            ("📝 Text", Intent::EditText),
            ("/unknown", text("/unknown")),
            ("/stats", Intent::Stats),
            ("/grant 42 30", Intent::Grant("42 30".into())),
            ("/pace", Intent::Pace(String::new())),
            ("🐢 Темп", Intent::Pace(String::new())),
            (
                "/pace gap=1-2s  day=off",
                Intent::Pace("gap=1-2s  day=off".into()),
            ),
            ("/tz UTC+7", Intent::Tz("UTC+7".into())),
            ("/pause", Intent::Pause),
            ("/resume@groupcast_bot", Intent::Resume),
            (
                "/schedule 10:00 repeat daily",
                Intent::Schedule("10:00 repeat daily".into()),
            ),
            ("/schedule", Intent::Schedule(String::new())),
            ("/schedules", Intent::Schedules),
            ("/sets", Intent::Sets),
            ("/history", Intent::History),
            ("/history@groupcast_bot", Intent::History),
            (
                "/saveset Москва центр",
                Intent::SaveSet("Москва центр".into()),
            ),
            ("hello", text("hello")),
        ];
        for (input, want) in cases {
            assert_eq!(Intent::from_message(&msg(input)), want, "{input}");
        }
    }

    #[test]
    fn routing_table() {
        use DialogueState as S;
        let profile = S::AwaitProfile {
            token_enc: "enc".into(),
        };
        let cases: Vec<(S, bool, Intent, Route)> = vec![
            (S::Idle, false, Intent::Start, Route::AskToken),
            (
                S::AwaitToken,
                false,
                text(" tok "),
                Route::TakeToken("tok".into()),
            ),
            (
                profile.clone(),
                false,
                text("2f099bc3-478d"),
                Route::TakeProfile {
                    token_enc: "enc".into(),
                    profile: "2f099bc3-478d".into(),
                },
            ),
            (profile, false, Intent::Start, Route::AskToken),
            (
                S::AwaitToken,
                false,
                Intent::StartMailing,
                Route::FinishRegistrationFirst,
            ),
            (S::Idle, false, text("hi"), Route::FinishRegistrationFirst),
            (S::AwaitToken, false, Intent::Help, Route::Help),
            (S::Idle, true, Intent::Start, Route::ShowMenu),
            (
                S::AwaitText,
                true,
                text("*x*"),
                Route::TakeText {
                    text: "*x*".into(),
                    entities: vec![],
                },
            ),
            (S::AwaitText, true, Intent::NonText, Route::TextExpected),
            (S::AwaitText, true, Intent::Menu, Route::ShowMenu),
            (S::AwaitText, true, Intent::StartMailing, Route::Preview),
            (
                S::AwaitGroups,
                true,
                text("1203630001@g.us"),
                Route::TakeGroups("1203630001@g.us".into()),
            ),
            (S::Idle, true, text("random"), Route::Unknown),
            (
                S::AwaitSchedule,
                true,
                text("завтра 10:00 повтор ежедневно"),
                Route::Schedule("завтра 10:00 повтор ежедневно".into()),
            ),
            (S::AwaitSchedule, true, Intent::Menu, Route::ShowMenu),
            (
                S::AwaitFix { of: 4 },
                true,
                text("Цена 90"),
                Route::TakeFix {
                    of: 4,
                    text: "Цена 90".into(),
                    entities: vec![],
                },
            ),
            (
                S::AwaitFix { of: 4 },
                true,
                Intent::NonText,
                Route::TextExpected,
            ),
            (S::AwaitFix { of: 4 }, true, Intent::Cancel, Route::Cancel),
            (
                S::Idle,
                true,
                Intent::Schedule("+1m".into()),
                Route::Schedule("+1m".into()),
            ),
            (
                S::Idle,
                false,
                Intent::Schedules,
                Route::FinishRegistrationFirst,
            ),
            (
                S::Idle,
                true,
                Intent::Callback(Callback::ConfirmStart(1)),
                Route::Callback(Callback::ConfirmStart(1)),
            ),
            (S::Idle, true, Intent::Cancel, Route::Cancel),
            (S::Idle, true, Intent::History, Route::History),
            (S::AwaitText, true, Intent::History, Route::History),
            (
                S::Idle,
                false,
                Intent::History,
                Route::FinishRegistrationFirst,
            ),
            (
                S::Idle,
                true,
                Intent::Callback(Callback::HistoryCsv(3)),
                Route::Callback(Callback::HistoryCsv(3)),
            ),
            (S::Idle, false, Intent::Lang, Route::ChooseLang),
            (S::AwaitToken, false, Intent::Stats, Route::Stats),
        ];
        for (state, registered, intent, want) in cases {
            assert_eq!(
                route(&state, registered, &intent),
                want,
                "{state:?} {intent:?}"
            );
        }
    }

    #[test]
    fn photos_route_to_the_set() {
        use DialogueState as S;
        let size = PhotoSize {
            file_id: "f".into(),
            file_unique_id: "u".into(),
            width: 10,
            height: 10,
            file_size: Some(100),
        };
        let photo = |g: Option<&str>| Intent::Photo {
            sizes: vec![size.clone()],
            media_group_id: g.map(str::to_string),
        };
        let answer = AlbumAnswer {
            media_group_id: "g1".into(),
            message_id: 5,
        };
        let awaiting = S::AwaitImages {
            album: Some(answer.clone()),
        };
        let take = |g: Option<&str>, album: Option<AlbumAnswer>| Route::TakePhoto {
            photo: vec![size.clone()],
            media_group_id: g.map(str::to_string),
            album,
        };
        // The next photo of the same album is answered by the same message; another album or
        // a single photo gets a new answer.
        assert_eq!(
            route(&awaiting, true, &photo(Some("g1"))),
            take(Some("g1"), Some(answer))
        );
        assert_eq!(
            route(&awaiting, true, &photo(Some("g2"))),
            take(Some("g2"), None)
        );
        assert_eq!(route(&awaiting, true, &photo(None)), take(None, None));
        assert_eq!(route(&S::Idle, true, &photo(None)), take(None, None));
        assert_eq!(route(&awaiting, true, &Intent::NonText), Route::NotAPhoto);
        assert_eq!(
            route(&S::AwaitText, true, &photo(None)),
            Route::TextExpected
        );
        assert_eq!(
            route(&S::Idle, false, &photo(None)),
            Route::FinishRegistrationFirst
        );
        let mut m = msg("x");
        m.text = None;
        m.photo = vec![size.clone()];
        m.media_group_id = Some("g1".into());
        assert_eq!(Intent::from_message(&m), photo(Some("g1")));
        assert_eq!(Intent::from_message(&msg("🖼️ Фото")), Intent::EditImages);
        assert_eq!(DialogueState::load(&awaiting.store()), awaiting);
    }

    #[test]
    fn state_storage() {
        let s = DialogueState::AwaitProfile {
            token_enc: "abc".into(),
        };
        assert_eq!(DialogueState::load(&s.store()), s);
        assert_eq!(DialogueState::load(""), DialogueState::Idle);
        assert_eq!(DialogueState::load("garbage"), DialogueState::Idle);
    }
}
