//! Every text the bot shows, in Russian (first) and English, in one place so that wording that
//! users and scripts rely on (CONTRACT.md: "токен"/"token", "профиль"/"profile", "до"/"until",
//! the ✅ / ⚠️ report prefixes) is easy to keep stable.

use crate::model::lang::Lang;
use crate::model::ledger::Tally;
use crate::model::pacing::pace::{PaceError, PaceSettings, Preset, Risk};
use crate::model::pacing::plan::Hold;
use chrono::TimeZone;
use chrono_tz::Tz;

pub mod followup;
pub mod history;
pub mod schedule;

/// Named group sets (`/sets`, `/saveset`).
pub mod sets {
    use crate::model::lang::Lang;

    pub fn none(l: Lang) -> String {
        l.pick(
            "📚 Наборов групп пока нет. Вставьте список групп (/groups) и сохраните его: /saveset Москва",
            "📚 No group sets yet. Paste a group list (/groups) and save it: /saveset Moscow",
        )
        .into()
    }

    pub fn card(l: Lang, name: &str, groups: &[String]) -> String {
        let n = groups.len();
        let mut list: Vec<&str> = groups.iter().take(5).map(String::as_str).collect();
        if n > 5 {
            list.push("…");
        }
        let list = list.join(", ");
        l.pick(
            format!("📚 «{name}»: {n} групп — {list}"),
            format!("📚 “{name}”: {n} groups — {list}"),
        )
    }

    pub fn name_needed(l: Lang, max: usize) -> String {
        l.pick(
            format!("Напишите имя набора после команды, до {max} символов: /saveset Москва"),
            format!(
                "Write the set's name after the command, up to {max} characters: /saveset Moscow"
            ),
        )
    }

    pub fn saved(l: Lang, name: &str, n: usize) -> String {
        l.pick(
            format!("📚 Набор «{name}» сохранён: {n} групп. Все наборы: /sets"),
            format!("📚 Set “{name}” saved: {n} groups. All sets: /sets"),
        )
    }

    pub fn used(l: Lang, name: &str, n: usize) -> String {
        l.pick(
            format!("📂 Теперь список групп — набор «{name}» ({n} групп): его получат следующая рассылка и расписание."),
            format!("📂 The group list is now set “{name}” ({n} groups): the next mailing and schedule take it."),
        )
    }

    pub fn deleted(l: Lang, name: &str) -> String {
        l.pick(
            format!("🗑 Набор «{name}» удалён."),
            format!("🗑 Set “{name}” deleted."),
        )
    }

    pub fn gone(l: Lang) -> String {
        l.pick(
            "Этого набора уже нет. Список: /sets",
            "This set no longer exists. The list: /sets",
        )
        .into()
    }

    pub fn use_button(l: Lang) -> &'static str {
        l.pick("📂 Использовать", "📂 Use")
    }

    pub fn delete_button(l: Lang) -> &'static str {
        l.pick("🗑 Удалить", "🗑 Delete")
    }
}

/// Reply-keyboard buttons. Each has a slash-command twin (see `dialogue::Intent`).
pub mod button {
    use crate::model::lang::Lang;
    pub fn mailing_data(l: Lang) -> &'static str {
        l.pick("📬 Данные рассылки", "📬 Mailing data")
    }
    pub fn start(l: Lang) -> &'static str {
        l.pick("🚀 Начать рассылку", "🚀 Start mailing")
    }
    pub fn subscription(l: Lang) -> &'static str {
        l.pick("💎 Подписка", "💎 Subscription")
    }
    pub fn cancel(l: Lang) -> &'static str {
        l.pick("⛔ Остановить рассылку", "⛔ Stop mailing")
    }
    pub fn text(l: Lang) -> &'static str {
        l.pick("📝 Текст", "📝 Text")
    }
    pub fn groups(l: Lang) -> &'static str {
        l.pick("👥 Группы", "👥 Groups")
    }
    pub fn back(l: Lang) -> &'static str {
        l.pick("⬅️ Назад", "⬅️ Back")
    }
    pub fn images(l: Lang) -> &'static str {
        l.pick("🖼️ Фото", "🖼️ Photos")
    }
    pub fn pace(l: Lang) -> &'static str {
        l.pick("🐢 Темп", "🐢 Pace")
    }
}

pub fn ask_token(l: Lang) -> String {
    l.pick(
        "👋 Добро пожаловать в groupcast!\n\nШаг 1 из 2. Пришлите API-токен Wappi (личный кабинет wappi.pro → Настройки → API-токен).",
        "👋 Welcome to groupcast!\n\nStep 1 of 2. Send your Wappi API token (wappi.pro dashboard → Settings → API token).",
    )
    .into()
}

pub fn bad_token_format(l: Lang) -> String {
    l.pick(
        "❗ Это не похоже на токен Wappi: он состоит из латинских букв и цифр без пробелов. Пришлите токен ещё раз.",
        "❗ That does not look like a Wappi token: it is letters and digits without spaces. Send the token again.",
    )
    .into()
}

pub fn ask_profile(l: Lang, masked: &str) -> String {
    l.pick(
        format!("Токен принят ({masked}).\n\nШаг 2 из 2. Пришлите ID профиля Wappi (например 2f099bc3-478d) — он на странице профиля в кабинете."),
        format!("Token received ({masked}).\n\nStep 2 of 2. Send your Wappi profile ID (for example 2f099bc3-478d): it is on the profile page of the dashboard."),
    )
}

pub fn bad_profile_format(l: Lang) -> String {
    l.pick(
        "❗ ID профиля — это буквы, цифры и дефис, например 2f099bc3-478d. Пришлите ID профиля ещё раз.",
        "❗ A profile ID is letters, digits and a dash, for example 2f099bc3-478d. Send the profile ID again.",
    )
    .into()
}

pub fn token_refused(l: Lang) -> String {
    l.pick(
        "❌ Wappi не принял токен. Проверьте его в кабинете и пришлите токен ещё раз.",
        "❌ Wappi refused the token. Check it in the dashboard and send the token again.",
    )
    .into()
}

pub fn profile_not_found(l: Lang) -> String {
    l.pick(
        "❌ Wappi не знает такой профиль. Проверьте ID профиля и пришлите его ещё раз.",
        "❌ Wappi does not know this profile. Check the profile ID and send it again.",
    )
    .into()
}

pub fn profile_not_authorized(l: Lang) -> String {
    l.pick(
        "❌ WhatsApp не подключён к этому профилю: отсканируйте QR-код в кабинете Wappi и пришлите ID профиля ещё раз.",
        "❌ WhatsApp is not connected on this profile: scan the QR code in the Wappi dashboard and send the profile ID again.",
    )
    .into()
}

pub fn profile_not_paid(l: Lang) -> String {
    l.pick(
        "❌ Профиль Wappi не оплачен. Продлите его в кабинете Wappi и пришлите ID профиля ещё раз.",
        "❌ The Wappi profile is not paid. Renew it in the Wappi dashboard and send the profile ID again.",
    )
    .into()
}

pub fn wappi_unreachable(l: Lang) -> String {
    l.pick(
        "⚠️ Wappi сейчас не отвечает. Попробуйте ещё раз через минуту.",
        "⚠️ Wappi is not answering right now. Try again in a minute.",
    )
    .into()
}

pub fn registered(l: Lang, phone: Option<&str>) -> String {
    let phone = phone.map(|p| format!(" (+{p})")).unwrap_or_default();
    l.pick(
        format!("✔️ Готово! WhatsApp{phone} подключён. Теперь задайте текст и группы в «📬 Данные рассылки»."),
        format!("✔️ Done! WhatsApp{phone} is connected. Now set the text and groups under «📬 Mailing data»."),
    )
}

pub fn finish_registration_first(l: Lang) -> String {
    l.pick(
        "Сначала завершите регистрацию: /start",
        "Please finish registration first: /start",
    )
    .into()
}

pub fn main_menu(l: Lang) -> String {
    l.pick("Главное меню.", "Main menu.").into()
}

pub fn mailing_data(l: Lang, text: Option<&str>, groups: usize) -> String {
    let text = match text {
        Some(t) => {
            let short: String = t.chars().take(300).collect();
            let more = if t.chars().count() > 300 { "…" } else { "" };
            format!("{short}{more}")
        }
        None => l.pick("— не задан —", "— not set —").into(),
    };
    l.pick(
        format!("📬 Данные рассылки\n\n📝 Текст:\n{text}\n\n👥 Групп: {groups}"),
        format!("📬 Mailing data\n\n📝 Text:\n{text}\n\n👥 Groups: {groups}"),
    )
}

pub fn ask_text(l: Lang) -> String {
    l.pick(
        "📝 Пришлите текст рассылки одним сообщением. Жирный, курсив, зачёркнутый и моноширинный шрифт сохранятся в WhatsApp.",
        "📝 Send the mailing text as one message. Bold, italic, strikethrough and monospace carry over to WhatsApp.",
    )
    .into()
}

pub fn text_empty(l: Lang) -> String {
    l.pick(
        "❗ Текст пустой. Пришлите текст рассылки.",
        "❗ The text is empty. Send the mailing text.",
    )
    .into()
}

pub fn text_too_long(l: Lang, len: usize, max: usize) -> String {
    l.pick(
        format!("❗ Текст слишком длинный: {len} символов, максимум {max}. Сократите и пришлите ещё раз."),
        format!("❗ The text is too long: {len} characters, at most {max}. Shorten it and send it again."),
    )
}

pub fn text_not_text(l: Lang) -> String {
    l.pick(
        "❗ Нужен текст. Пришлите текст рассылки одним сообщением (или /menu для выхода).",
        "❗ A text is needed. Send the mailing text as one message (or /menu to leave).",
    )
    .into()
}

pub fn text_saved(l: Lang, preview: &str) -> String {
    l.pick(
        format!("✔️ Текст сохранён. Так он будет выглядеть в WhatsApp:\n\n{preview}"),
        format!("✔️ Text saved. This is how it goes to WhatsApp:\n\n{preview}"),
    )
}

pub fn ask_groups(l: Lang, max: usize) -> String {
    l.pick(
        format!("👥 Пришлите ID групп WhatsApp, по одному в строке (120363…@g.us или только цифры), до {max} групп. Или импортируйте группы из аккаунта кнопкой ниже."),
        format!("👥 Send the WhatsApp group IDs, one per line (120363…@g.us or just digits), up to {max} groups. Or import the groups from the account with the button below."),
    )
}

pub fn import_button(l: Lang) -> &'static str {
    l.pick("📥 Импорт из WhatsApp", "📥 Import from WhatsApp")
}

pub fn groups_none_valid(l: Lang, invalid: &[(usize, String)]) -> String {
    let mut s = l
        .pick(
            "❗ Не нашёл ни одного ID группы. Пришлите список ещё раз, по одному ID в строке.",
            "❗ Found no group ID. Send the list again, one ID per line.",
        )
        .to_string();
    s.push_str(&invalid_lines(l, invalid));
    s
}

pub fn groups_too_many(l: Lang, count: usize, max: usize) -> String {
    l.pick(
        format!("❗ Слишком много групп: {count}, максимум {max}. Список не изменён."),
        format!("❗ Too many groups: {count}, at most {max}. The list was not changed."),
    )
}

fn invalid_lines(l: Lang, invalid: &[(usize, String)]) -> String {
    if invalid.is_empty() {
        return String::new();
    }
    let mut s = l
        .pick("\n\nНе распознаны строки:", "\n\nLines not recognised:")
        .to_string();
    for (line, text) in invalid.iter().take(20) {
        s.push_str(&format!("\n• {line}: {text}"));
    }
    if invalid.len() > 20 {
        s.push_str(&format!("\n… +{}", invalid.len() - 20));
    }
    s
}

pub fn groups_saved(
    l: Lang,
    count: usize,
    duplicates: usize,
    invalid: &[(usize, String)],
) -> String {
    let mut s = l.pick(
        format!("✔️ Сохранено групп: {count}."),
        format!("✔️ Groups saved: {count}."),
    );
    if duplicates > 0 {
        s.push_str(&l.pick(
            format!("\nПовторы пропущены: {duplicates}."),
            format!("\nDuplicates skipped: {duplicates}."),
        ));
    }
    s.push_str(&invalid_lines(l, invalid));
    s
}

pub fn import_loading_failed(l: Lang, reason: &str) -> String {
    l.pick(
        format!("❌ Не удалось получить список чатов из WhatsApp: {reason}"),
        format!("❌ Could not get the chat list from WhatsApp: {reason}"),
    )
}

pub fn import_no_groups(l: Lang) -> String {
    l.pick(
        "В аккаунте WhatsApp не найдено групп.",
        "No groups were found in the WhatsApp account.",
    )
    .into()
}

pub fn import_header(l: Lang, total: usize, selected: usize, page: usize, pages: usize) -> String {
    l.pick(
        format!("📥 Группы аккаунта: {total}. Выбрано: {selected}. Страница {page}/{pages}.\nНажмите на группу, чтобы выбрать или снять её, затем «Сохранить»."),
        format!("📥 Groups of the account: {total}. Selected: {selected}. Page {page}/{pages}.\nTap a group to select or unselect it, then «Save»."),
    )
}

/// The search line of the import picker: how to search, or what the search found.
pub fn import_search(l: Lang, filter: &str, found: usize) -> String {
    if filter.is_empty() {
        l.pick(
            "🔎 Напишите слово, чтобы найти группу по названию.",
            "🔎 Write a word to find a group by name.",
        )
        .into()
    } else {
        l.pick(
            format!("🔎 «{filter}»: найдено {found}. Другое слово — новый поиск, * — все группы."),
            format!("🔎 “{filter}”: {found} found. Another word searches again, * shows all."),
        )
    }
}

pub fn import_save(l: Lang, n: usize) -> String {
    l.pick(format!("💾 Сохранить ({n})"), format!("💾 Save ({n})"))
}

pub fn import_all(l: Lang) -> &'static str {
    l.pick("☑️ Все", "☑️ All")
}

pub fn import_none(l: Lang) -> &'static str {
    l.pick("⬜ Ни одной", "⬜ None")
}

pub fn import_closed(l: Lang) -> String {
    l.pick("Импорт закрыт.", "Import closed.").into()
}

pub fn need_text(l: Lang) -> String {
    l.pick(
        "❗ Сначала задайте текст рассылки: /text",
        "❗ Set the mailing text first: /text",
    )
    .into()
}

pub fn need_groups(l: Lang) -> String {
    l.pick(
        "❗ Сначала задайте группы: /groups",
        "❗ Set the groups first: /groups",
    )
    .into()
}

pub fn need_subscription(l: Lang) -> String {
    l.pick(
        "🔒 Подписка не активна, поэтому рассылку запустить нельзя. Оформите подписку: /subscribe",
        "🔒 Your subscription is not active, so a mailing cannot start. Subscribe: /subscribe",
    )
    .into()
}

pub fn already_running(l: Lang) -> String {
    l.pick(
        "⏳ Рассылка с этого номера уже идёт. Дождитесь её окончания или остановите: /cancel",
        "⏳ A mailing from this number is already running. Wait for it to end or stop it: /cancel",
    )
    .into()
}

/// Seconds as a short human duration: `45 с`, `3 мин 20 с`, `1 ч 5 мин`.
pub fn duration(l: Lang, secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let (hu, mu, su) = l.pick(("ч", "мин", "с"), ("h", "min", "s"));
    if h > 0 {
        format!("{h} {hu} {m} {mu}")
    } else if m > 0 {
        format!("{m} {mu} {s} {su}")
    } else {
        format!("{s} {su}")
    }
}

/// What a preview says of the time a mailing takes: its length, when it ends (in the user's
/// zone) and the pace it goes at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    pub secs: u64,
    /// `завтра в 11:40`, when the pace plans the posts (see [`when`]).
    pub finish: Option<String>,
    /// The pace in force (see [`pace_summary`]).
    pub pace: String,
    /// Further lines: the warm-up of a young number, the risk (see [`warmup_note`],
    /// [`risk_note`]).
    pub notes: Vec<String>,
}

/// The time and pace lines of a preview.
fn estimate_lines(l: Lang, e: &Estimate) -> String {
    let eta = duration(l, e.secs);
    let finish = e
        .finish
        .as_deref()
        .map(|w| l.pick(format!(", завершится {w}"), format!(", ends {w}")))
        .unwrap_or_default();
    let mut lines = l.pick(
        format!("⏱ Примерное время: {eta}{finish}\n{}", e.pace),
        format!("⏱ Estimated time: {eta}{finish}\n{}", e.pace),
    );
    for note in &e.notes {
        lines.push('\n');
        lines.push_str(note);
    }
    lines
}

/// A young number's warm-up cap, in the preview.
pub fn warmup_note(l: Lang, cap: u32, day: i64) -> String {
    l.pick(
        format!("🌱 Номер подключён недавно (день {day}): до {cap} постов в день, лимит растёт каждый день."),
        format!("🌱 The number was linked recently (day {day}): at most {cap} posts a day, growing every day."),
    )
}

/// The risk line of a preview, with a suggestion when it is high.
pub fn risk_note(l: Lang, risk: Risk, young: bool) -> String {
    match risk {
        Risk::Low => l.pick("🟢 Риск блокировки: низкий.", "🟢 Ban risk: low.").into(),
        Risk::Medium => l
            .pick(
                "🟡 Риск блокировки: средний (много групп, один и тот же текст, быстрый темп).",
                "🟡 Ban risk: medium (many groups, one identical text, a fast pace).",
            )
            .into(),
        Risk::High if young => l
            .pick(
                "🔴 Риск блокировки: высокий. Номер молодой: разбейте рассылку на несколько дней и выберите /pace careful.",
                "🔴 Ban risk: high. The number is young: split the mailing over several days and choose /pace careful.",
            )
            .into(),
        Risk::High => l
            .pick(
                "🔴 Риск блокировки: высокий. Выберите бережный темп (/pace careful) или меньше групп за раз.",
                "🔴 Ban risk: high. Choose the careful pace (/pace careful) or fewer groups at a time.",
            )
            .into(),
    }
}

pub fn preview(l: Lang, text: &str, groups: usize, e: &Estimate) -> String {
    let time = estimate_lines(l, e);
    l.pick(
        format!("👀 Предпросмотр. Это сообщение получит каждая группа:\n\n{text}\n\n———\n👥 Групп: {groups}\n{time}\n\nНачать рассылку?"),
        format!("👀 Preview. Every group gets this message:\n\n{text}\n\n———\n👥 Groups: {groups}\n{time}\n\nStart the mailing?"),
    )
}

/// The pace in one line: its preset (or "custom") and every rule in force.
pub fn pace_summary(l: Lang, pace: &PaceSettings, floor_ms: u64) -> String {
    let name = match pace.preset() {
        Some(Preset::Careful) => l.pick("🐢 бережный", "🐢 careful"),
        Some(Preset::Normal) => l.pick("🚶 обычный", "🚶 normal"),
        Some(Preset::Fast) => l.pick("⚡ быстрый", "⚡ fast"),
        None => l.pick("⚙️ свой", "⚙️ custom"),
    };
    let mut rules = Vec::new();
    if pace.gap.hi == 0 {
        rules.push(l.pick(
            format!("пост раз в {} (потолок сервиса)", seconds(l, floor_ms)),
            format!(
                "a post every {} (the service's ceiling)",
                seconds(l, floor_ms)
            ),
        ));
    } else {
        let gap = span_of(l, pace.gap.lo, pace.gap.hi);
        rules.push(l.pick(format!("пауза {gap}"), format!("gap {gap}")));
    }
    if let Some(b) = pace.batch {
        let n = if b.lo == b.hi {
            b.lo.to_string()
        } else {
            format!("{}–{}", b.lo, b.hi)
        };
        let pause = span_of(l, pace.pause.lo, pace.pause.hi);
        rules.push(l.pick(
            format!("перерыв {pause} после {n} постов"),
            format!("a {pause} break after {n} posts"),
        ));
    }
    if let Some(w) = pace.window {
        let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        let (a, b) = (hm(w.start_min), hm(w.end_min));
        rules.push(l.pick(format!("окно {a}–{b}"), format!("window {a}-{b}")));
    }
    if let Some(h) = pace.hour {
        rules.push(l.pick(format!("до {h} в час"), format!("at most {h} an hour")));
    }
    if let Some(d) = pace.day {
        rules.push(l.pick(format!("до {d} в день"), format!("at most {d} a day")));
    }
    let head = l.pick("Темп", "Pace");
    format!("{head}: {name} — {}", rules.join(", "))
}

/// `20–60 с`, `5–15 мин`, `0.3–0.8 с`: a span of ms in the largest unit that reads whole.
fn span_of(l: Lang, lo: u64, hi: u64) -> String {
    let (h, min, s) = l.pick(("ч", "мин", "с"), ("h", "min", "s"));
    // The unit that reads the smaller value whole; both values in it.
    let base = if lo > 0 { lo } else { hi };
    let (scale, unit) = if base >= 3_600_000 && base % 3_600_000 == 0 {
        (3_600_000.0, h)
    } else if base >= 60_000 && base % 60_000 == 0 {
        (60_000.0, min)
    } else {
        (1000.0, s)
    };
    let num = |ms: u64| {
        let x = ms as f64 / scale;
        if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            format!("{x}")
        }
    };
    if lo == hi {
        format!("{} {unit}", num(lo))
    } else {
        format!("{}–{} {unit}", num(lo), num(hi))
    }
}

/// `1 s`, `0.5 s`.
fn seconds(l: Lang, ms: u64) -> String {
    span_of(l, ms, ms)
}

/// `/pace`: the pace in force, how to change it.
pub fn pace_shown(l: Lang, summary: &str) -> String {
    l.pick(
        format!("{summary}\n\nВыберите готовый темп кнопкой или задайте свой, например:\n/pace gap=20-60s batch=15-25 pause=5-15m window=09:00-21:00 hour=60 day=150\n(off выключает batch, window, hour, day)"),
        format!("{summary}\n\nPick a preset with a button or set your own, for example:\n/pace gap=20-60s batch=15-25 pause=5-15m window=09:00-21:00 hour=60 day=150\n(off turns batch, window, hour, day off)"),
    )
}

/// `/pace` with values the bot cannot use: what is wrong, and that nothing changed.
pub fn pace_refused(l: Lang, e: &PaceError, summary: &str) -> String {
    let why = match e {
        PaceError::Unreadable(v) => {
            l.pick(format!("не понимаю «{v}»"), format!("cannot read «{v}»"))
        }
        PaceError::UnknownKey(k) => l.pick(
            format!("нет настройки «{k}» (есть gap, batch, pause, window, hour, day)"),
            format!("there is no setting «{k}» (there are gap, batch, pause, window, hour, day)"),
        ),
        PaceError::Reversed { key } => l.pick(
            format!("в {key} первое значение больше второго"),
            format!("in {key} the first value is above the second"),
        ),
        PaceError::BelowFloor { floor_ms } => l.pick(
            format!(
                "пауза короче {} не разрешена этим сервисом",
                seconds(l, *floor_ms)
            ),
            format!(
                "a gap below {} is not allowed on this service",
                seconds(l, *floor_ms)
            ),
        ),
        PaceError::NoPause => l.pick(
            "для пачек нужен перерыв (pause=…)".to_string(),
            "batches need a break (pause=…)".to_string(),
        ),
    };
    l.pick(
        format!("⚠️ Темп не изменён: {why}.\n{summary}"),
        format!("⚠️ The pace is unchanged: {why}.\n{summary}"),
    )
}

pub fn pace_set(l: Lang, summary: &str) -> String {
    l.pick(format!("✅ {summary}"), format!("✅ {summary}"))
}

pub fn preset_button(l: Lang, p: Preset) -> &'static str {
    match p {
        Preset::Careful => l.pick("🐢 Бережно", "🐢 Careful"),
        Preset::Normal => l.pick("🚶 Обычно", "🚶 Normal"),
        Preset::Fast => l.pick("⚡ Быстро", "⚡ Fast"),
    }
}

/// `/tz`: the zone in force and how to change it.
pub fn tz_shown(l: Lang, zone: &str) -> String {
    l.pick(
        format!("🕒 Часовой пояс: {zone}\nВыберите кнопкой или напишите, например: /tz Asia/Novosibirsk или /tz UTC+7"),
        format!("🕒 Time zone: {zone}\nPick one with a button or write, for example: /tz Asia/Novosibirsk or /tz UTC+7"),
    )
}

pub fn tz_set(l: Lang, zone: &str) -> String {
    l.pick(
        format!("✅ Часовой пояс: {zone}. Все времена показываются в нём."),
        format!("✅ Time zone: {zone}. Every time is shown in it."),
    )
}

pub fn tz_refused(l: Lang, typed: &str, zone: &str) -> String {
    l.pick(
        format!("⚠️ Не знаю часовой пояс «{typed}». Напишите название вроде Europe/Moscow или смещение UTC+7. Пояс не изменён: {zone}."),
        format!("⚠️ Unknown time zone «{typed}». Write a name such as Europe/Moscow or an offset such as UTC+7. The zone is unchanged: {zone}."),
    )
}

pub fn pause_button(l: Lang) -> &'static str {
    l.pick("⏸ Пауза", "⏸ Pause")
}

/// The reason of a pause by the ban-signal breaker.
pub fn breaker(l: Lang, failures: u32) -> String {
    l.pick(
        format!("{failures} групп подряд не получили пост. Так бывает перед блокировкой номера: проверьте WhatsApp на телефоне и список групп, прежде чем продолжать"),
        format!("{failures} groups in a row did not get the post. This is how a number looks before a ban: check WhatsApp on the phone and the group list before going on"),
    )
}

/// The reason of a pause for WhatsApp's `temporary ban` delivery status.
pub fn temporary_ban(l: Lang) -> String {
    l.pick(
        "WhatsApp временно ограничил отправку с этого номера (статус доставки «temporary ban»). Подождите, пока ограничение снимется (обычно от нескольких часов до суток), не перепривязывайте номер, затем продолжите: первые посты пойдут в половинном темпе",
        "WhatsApp has restricted sending from this number for a while (delivery status «temporary ban»). Wait until it lifts (usually hours to a day), do not re-link the number, then resume: the first posts go at half pace",
    )
    .into()
}

/// The reason of a pause the user asked for.
pub fn paused_by_user(l: Lang) -> String {
    l.pick("по вашей просьбе", "at your request").into()
}

pub fn nothing_to_pause(l: Lang) -> String {
    l.pick(
        "Сейчас нет идущей рассылки, которую можно приостановить.",
        "There is no running mailing to pause.",
    )
    .into()
}

pub fn nothing_to_resume(l: Lang) -> String {
    l.pick("Нет рассылки на паузе.", "There is no paused mailing.")
        .into()
}

/// The frame of a preview whose post, sent just before it as its own message(s), is too long
/// to be quoted inside: the images line, the groups, the time, the question.
pub fn preview_frame(
    l: Lang,
    content: &crate::model::ledger::Content,
    groups: usize,
    e: &Estimate,
) -> String {
    let time = estimate_lines(l, e);
    let images = post_images(l, content)
        .map(|i| format!("{i}\n"))
        .unwrap_or_default();
    l.pick(
        format!("👀 Предпросмотр. Каждая группа получит сообщение выше, в точности как оно показано.\n{images}———\n👥 Групп: {groups}\n{time}\n\nНачать рассылку?"),
        format!("👀 Preview. Every group gets the message above, exactly as shown.\n{images}———\n👥 Groups: {groups}\n{time}\n\nStart the mailing?"),
    )
}

/// A group as the user reads it: `Name (id)`, or the id alone when it has no name.
pub fn group_label(jid: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{name} ({jid})"),
        None => jid.to_string(),
    }
}

/// Why the pre-flight check leaves a group out, as the preview and the report say it.
pub fn doubt_reason(l: Lang, why: crate::model::groups::Doubt) -> String {
    use crate::model::groups::Doubt;
    match why {
        Doubt::Left => l.pick(
            "номер больше не участник группы",
            "the number is no longer in the group",
        ),
        Doubt::AdminsOnly => l.pick(
            "писать могут только админы, а номер не админ",
            "only admins may post and the number is not one",
        ),
        Doubt::Unresolved => l.pick("группа с таким id не найдена", "no group has this id"),
        Doubt::NotDelivered => l.pick(
            "в прошлый раз пост сюда не был доставлен",
            "the last post here was not delivered",
        ),
    }
    .into()
}

/// The pre-flight lines of a preview: the doubtful groups with their reasons (left out, or
/// `included` after ➕), and how many could not be checked.
pub fn preflight_note(
    l: Lang,
    doubtful: &[(String, crate::model::groups::Doubt)],
    unknown: usize,
    included: bool,
) -> String {
    let mut out = String::new();
    if !doubtful.is_empty() {
        let n = doubtful.len();
        out.push_str(&match included {
            false => l.pick(
                format!("⚠️ Проверка групп: {n} не получат пост и будут пропущены:"),
                format!("⚠️ Group check: {n} would not get the post and are left out:"),
            ),
            true => l.pick(
                format!("⚠️ Проверка групп: {n} вряд ли получат пост, но включены:"),
                format!("⚠️ Group check: {n} will hardly get the post but are included:"),
            ),
        });
        for (group, why) in doubtful.iter().take(10) {
            out.push_str(&format!("\n• {group} — {}", doubt_reason(l, *why)));
        }
        if n > 10 {
            out.push_str(&l.pick(
                format!("\n… и ещё {}", n - 10),
                format!("\n… and {} more", n - 10),
            ));
        }
    }
    if unknown > 0 {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&l.pick(
            format!("❔ Не удалось проверить групп: {unknown} (они в рассылке)."),
            format!("❔ Groups that could not be checked: {unknown} (they are in the mailing)."),
        ));
    }
    out
}

/// The pause of a canary start whose first groups did not all show the post delivered:
/// `lines` are (group, status) of those that did not.
pub fn canary_failed(
    l: Lang,
    delivered: usize,
    checked: usize,
    lines: &[(String, String)],
) -> String {
    let mut out = l.pick(
        format!("🐤 Проверка первых групп: доставлено {delivered} из {checked}. Остальные группы пока не получили пост."),
        format!("🐤 Check of the first groups: {delivered} of {checked} delivered. The other groups have not got the post yet."),
    );
    for (group, status) in lines {
        out.push_str(&format!("\n• {group}: {status}"));
    }
    out.push_str(l.pick(
        "\n▶️ — отправить остальным всё равно, ⛔ — остановить.",
        "\n▶️ sends to the others anyway, ⛔ stops.",
    ));
    out
}

/// The delivery audit of mailing `id`: `counts` are (delivered, read, pending, not
/// delivered, not read back); `undelivered` names the groups that did not deliver.
pub fn audit(l: Lang, id: i64, counts: &[u32; 5], undelivered: &[String]) -> String {
    let [delivered, read, pending, missed, unknown] = *counts;
    let mut out = l.pick(
        format!("📬 Доставка рассылки #{id}: доставлено {delivered}, прочитано {read}, ожидают {pending}, не доставлено {missed}."),
        format!("📬 Delivery of mailing #{id}: delivered {delivered}, read {read}, pending {pending}, not delivered {missed}."),
    );
    if unknown > 0 {
        out.push_str(&l.pick(
            format!(" Не удалось проверить: {unknown}."),
            format!(" Could not be checked: {unknown}."),
        ));
    }
    if !undelivered.is_empty() {
        out.push_str(l.pick("\nНе доставлено:", "\nNot delivered:"));
        for g in undelivered.iter().take(20) {
            out.push_str(&format!("\n• {g}"));
        }
        if undelivered.len() > 20 {
            let more = undelivered.len() - 20;
            out.push_str(&l.pick(format!("\n… и ещё {more}"), format!("\n… and {more} more")));
        }
        out.push_str(l.pick(
            "\nСледующий предпросмотр предложит пропустить эти группы.",
            "\nThe next preview offers to leave these groups out.",
        ));
    }
    out
}

/// The preview's line about the canary start.
pub fn canary_note(l: Lang, on: bool, first: u32) -> String {
    match on {
        true => l.pick(
            format!("🐤 Сначала {first} группы, проверка доставки, затем остальные."),
            format!("🐤 First {first} groups, a delivery check, then the others."),
        ),
        false => l.pick(
            "🐤 Проверка первых групп выключена: пост уйдёт всем сразу по темпу.".to_string(),
            "🐤 The check of the first groups is off: the post goes to all at the pace."
                .to_string(),
        ),
    }
}

pub fn canary_off_button(l: Lang) -> &'static str {
    l.pick(
        "🐤 Без проверки первых групп",
        "🐤 No check of the first groups",
    )
}

pub fn canary_on_button(l: Lang) -> &'static str {
    l.pick("🐤 С проверкой первых групп", "🐤 Check the first groups")
}

pub fn include_doubtful_button(l: Lang) -> &'static str {
    l.pick("➕ Включить их всё равно", "➕ Include them anyway")
}

pub fn leave_out_doubtful_button(l: Lang) -> &'static str {
    l.pick("➖ Пропустить их", "➖ Leave them out")
}

/// ✅ of a preview that no longer holds (a newer one was shown, the post or the groups
/// changed, or it was used already).
pub fn preview_void(l: Lang) -> String {
    l.pick(
        "🔄 Этот предпросмотр устарел: после него показан новый, изменились текст, фото или группы, либо рассылка по нему уже запущена. Ничего не отправлено. Посмотрите актуальный предпросмотр:",
        "🔄 This preview is out of date: a newer one was shown, the text, photos or groups changed, or it was used already. Nothing was sent. See an up-to-date preview:",
    )
    .into()
}

pub fn fresh_preview_button(l: Lang) -> &'static str {
    l.pick("🚀 Новый предпросмотр", "🚀 Fresh preview")
}

/// Telegram's limit on a message text, in UTF-16 units.
const TELEGRAM_MAX_UTF16: usize = 4096;

/// `s` in pieces of at most `max` UTF-16 units each, cut at line ends where one is near
/// (never inside a character); the pieces joined give `s` back.
pub fn split_utf16(s: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    while rest.encode_utf16().count() > max {
        let mut units = 0;
        let mut cut = 0;
        let mut newline = None;
        for (i, c) in rest.char_indices() {
            if units + c.len_utf16() > max {
                break;
            }
            units += c.len_utf16();
            cut = i + c.len_utf8();
            if c == '\n' {
                newline = Some(cut);
            }
        }
        // A line end in the last quarter is a nicer cut than the middle of a line.
        let cut = newline.filter(|n| *n * 4 >= cut * 3).unwrap_or(cut);
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest);
    }
    parts
}

/// `s` shortened to fit one Telegram message, with a clear marker where it was cut.
pub fn fit(l: Lang, s: &str) -> String {
    if s.encode_utf16().count() <= TELEGRAM_MAX_UTF16 {
        return s.to_string();
    }
    let marker = l.pick("\n… (сокращено)", "\n… (shortened)");
    let room = TELEGRAM_MAX_UTF16 - marker.encode_utf16().count();
    let head = split_utf16(s, room)[0];
    format!("{head}{marker}")
}

pub fn confirm_yes(l: Lang) -> &'static str {
    l.pick("✅ Начать", "✅ Start")
}

pub fn confirm_no(l: Lang) -> &'static str {
    l.pick("❌ Отмена", "❌ Cancel")
}

pub fn start_declined(l: Lang) -> String {
    l.pick("Рассылка не запущена.", "The mailing was not started.")
        .into()
}

pub fn started(l: Lang, id: i64, groups: usize, eta_secs: u64) -> String {
    let eta = duration(l, eta_secs);
    l.pick(
        format!("🚀 Рассылка #{id} запущена: {groups} групп, примерно {eta}."),
        format!("🚀 Mailing #{id} started: {groups} groups, about {eta}."),
    )
}

fn bar(t: &Tally) -> String {
    let width = 10u32;
    let settled = t.done() + t.in_doubt;
    let filled = (settled * width).checked_div(t.total).unwrap_or(width);
    let pct = (settled * 100).checked_div(t.total).unwrap_or(100);
    format!(
        "{}{} {pct}%",
        "▓".repeat(filled as usize),
        "░".repeat((width - filled.min(width)) as usize)
    )
}

pub fn progress(l: Lang, id: i64, t: &Tally, eta_secs: u64, waiting_until: Option<&str>) -> String {
    let eta = duration(l, eta_secs);
    let mut s = l.pick(
        format!(
            "⏳ Рассылка #{id}\n{}\nОтправлено: {} · Ошибок: {} · Осталось: {}\nОсталось примерно: {eta}",
            bar(t), t.sent, t.failed, t.left + t.in_doubt
        ),
        format!(
            "⏳ Mailing #{id}\n{}\nSent: {} · Failed: {} · Left: {}\nTime left: about {eta}",
            bar(t), t.sent, t.failed, t.left + t.in_doubt
        ),
    );
    if let Some(w) = waiting_until {
        s.push_str(&l.pick(
            format!("\n⏸ Пауза по требованию WhatsApp до {w}"),
            format!("\n⏸ Paused at WhatsApp's request until {w}"),
        ));
    }
    s
}

/// The progress message while the pace holds the mailing back: it starts with ⏸ and says why
/// and when it goes on (by itself).
pub fn held(l: Lang, id: i64, t: &Tally, hold: Hold, until: &str, eta_secs: u64) -> String {
    let eta = duration(l, eta_secs);
    let why = match hold {
        Hold::BatchPause => l.pick("перерыв между пачками", "a break between batches"),
        Hold::Window => l.pick("вне окна отправки", "outside the sending window"),
        Hold::HourCap => l.pick("достигнут лимит постов в час", "the hourly cap is reached"),
        Hold::DayCap => l.pick("достигнут лимит постов в день", "the daily cap is reached"),
        Hold::Gap | Hold::None => l.pick("пауза между постами", "the gap between posts"),
    };
    l.pick(
        format!(
            "⏸ Рассылка #{id}: {why}, продолжится {until}\n{}\nОтправлено: {} · Ошибок: {} · Осталось: {}\nОсталось примерно: {eta}",
            bar(t), t.sent, t.failed, t.left + t.in_doubt
        ),
        format!(
            "⏸ Mailing #{id}: {why}, goes on {until}\n{}\nSent: {} · Failed: {} · Left: {}\nTime left: about {eta}",
            bar(t), t.sent, t.failed, t.left + t.in_doubt
        ),
    )
}

pub fn progress_final(l: Lang, id: i64, t: &Tally) -> String {
    l.pick(
        format!(
            "📊 Рассылка #{id}\n{}\nОтправлено: {} · Ошибок: {} · Под вопросом: {}",
            bar(t),
            t.sent,
            t.failed,
            t.in_doubt
        ),
        format!(
            "📊 Mailing #{id}\n{}\nSent: {} · Failed: {} · In doubt: {}",
            bar(t),
            t.sent,
            t.failed,
            t.in_doubt
        ),
    )
}

pub fn cancel_button(l: Lang) -> &'static str {
    l.pick("⛔ Остановить", "⛔ Stop")
}

pub fn resume_button(l: Lang) -> &'static str {
    l.pick("▶️ Продолжить", "▶️ Resume")
}

pub fn cancelling(l: Lang, id: i64) -> String {
    l.pick(
        format!("⏹ Останавливаю рассылку #{id}…"),
        format!("⏹ Stopping mailing #{id}…"),
    )
}

pub fn nothing_to_cancel(l: Lang) -> String {
    l.pick(
        "Сейчас нет активной рассылки.",
        "There is no active mailing.",
    )
    .into()
}

pub fn paused(l: Lang, id: i64, reason: &str) -> String {
    l.pick(
        format!("⏸ Рассылка #{id} приостановлена: {reason}\nИсправьте и нажмите «Продолжить» — уже отправленные группы не получат сообщение повторно."),
        format!("⏸ Mailing #{id} is paused: {reason}\nFix it and press «Resume»: groups already sent to will not get the message again."),
    )
}

pub fn resumed(l: Lang, id: i64) -> String {
    l.pick(
        format!("▶️ Рассылка #{id} продолжается."),
        format!("▶️ Mailing #{id} continues."),
    )
}

/// A readable reason for a Wappi account problem.
pub fn account_problem(l: Lang, e: &crate::wappi::WappiError) -> String {
    use crate::wappi::WappiError as E;
    match e {
        E::NotAuthorized => l.pick(
            "WhatsApp не подключён к профилю Wappi (отсканируйте QR-код)",
            "WhatsApp is not connected on the Wappi profile (scan the QR code)",
        ),
        E::BadToken => l.pick("Wappi не принимает токен", "Wappi refuses the token"),
        E::ProfileNotFound => l.pick("профиль Wappi не найден", "the Wappi profile was not found"),
        E::NotPaid => l.pick("профиль Wappi не оплачен", "the Wappi profile is not paid"),
        _ => l.pick("ошибка Wappi", "Wappi error"),
    }
    .into()
}

/// One failed or in-doubt group in a report.
pub struct ReportLine<'a> {
    pub group: &'a str,
    pub name: Option<&'a str>,
    pub reason: &'a str,
}

pub fn report(
    l: Lang,
    id: i64,
    t: &Tally,
    cancelled: bool,
    failed: &[ReportLine<'_>],
    in_doubt: &[ReportLine<'_>],
) -> String {
    let clean = !cancelled && t.failed == 0 && t.in_doubt == 0 && t.left == 0;
    let s = if clean {
        l.pick(
            format!(
                "✅ Рассылка #{id} завершена: отправлено {} из {}.",
                t.sent, t.total
            ),
            format!("✅ Mailing #{id} finished: sent {} of {}.", t.sent, t.total),
        )
    } else if cancelled {
        l.pick(
            format!("⚠️ Рассылка #{id} остановлена.\nОтправлено: {} · Ошибок: {} · Под вопросом: {} · Не отправлено: {}", t.sent, t.failed, t.in_doubt, t.left),
            format!("⚠️ Mailing #{id} was stopped.\nSent: {} · Failed: {} · In doubt: {} · Not sent: {}", t.sent, t.failed, t.in_doubt, t.left),
        )
    } else {
        l.pick(
            format!("⚠️ Рассылка #{id} завершена с ошибками.\nОтправлено: {} · Ошибок: {} · Под вопросом: {}", t.sent, t.failed, t.in_doubt),
            format!("⚠️ Mailing #{id} finished with errors.\nSent: {} · Failed: {} · In doubt: {}", t.sent, t.failed, t.in_doubt),
        )
    };
    with_report_lists(l, s, failed, in_doubt)
}

/// A report's headline `s` followed by its lists of the groups that failed and those in doubt.
pub fn with_report_lists(
    l: Lang,
    mut s: String,
    failed: &[ReportLine<'_>],
    in_doubt: &[ReportLine<'_>],
) -> String {
    // Each list gets half of what is left of Telegram's limit (the in-doubt one also what
    // the failed one left over), so the report always fits and both lists show.
    let failed_title = l.pick("Не доставлено:", "Not delivered:");
    let doubt_title = l.pick(
        "Под вопросом (Wappi не подтвердил отправку, проверьте вручную):",
        "In doubt (Wappi did not confirm the send, please check by hand):",
    );
    let room = TELEGRAM_MAX_UTF16.saturating_sub(s.encode_utf16().count());
    let share = if in_doubt.is_empty() { room } else { room / 2 };
    let first = report_list(l, failed_title, failed, share);
    let second = report_list(
        l,
        doubt_title,
        in_doubt,
        room.saturating_sub(first.encode_utf16().count()),
    );
    s.push_str(&first);
    s.push_str(&second);
    s
}

/// The longest a report line's reason or group name is shown (they come from Wappi and from
/// WhatsApp admins, and can be any length).
const REPORT_FIELD_CHARS: usize = 200;

/// A titled list of report lines in at most `room` UTF-16 units (empty when there are no
/// lines): at most 30 lines, as many as fit, then "… and N more".
fn report_list(l: Lang, title: &str, lines: &[ReportLine<'_>], room: usize) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let more = |n: usize| l.pick(format!("\n… и ещё {n}"), format!("\n… and {n} more"));
    // The marker's room is kept whatever happens, so it always fits after the last line.
    let reserve = more(lines.len()).encode_utf16().count();
    let mut s = format!("\n\n{title}");
    let mut shown = 0;
    for line in lines.iter().take(30) {
        let reason = clip(line.reason, REPORT_FIELD_CHARS);
        let item = match line.name {
            Some(n) => format!(
                "\n• {} ({}) — {reason}",
                clip(n, REPORT_FIELD_CHARS),
                line.group
            ),
            None => format!("\n• {} — {reason}", line.group),
        };
        let used = s.encode_utf16().count() + item.encode_utf16().count();
        if used + reserve > room {
            break;
        }
        s.push_str(&item);
        shown += 1;
    }
    if shown < lines.len() {
        s.push_str(&more(lines.len() - shown));
    }
    if s.encode_utf16().count() > room {
        return String::new(); // not even the title fits
    }
    s
}

/// `s` cut to `max` characters, with "…" when it was cut.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

pub fn no_mailings(l: Lang) -> String {
    l.pick("Рассылок ещё не было.", "No mailings yet.").into()
}

/// `dd.mm.yyyy` of a unix-seconds instant, in the user's zone.
pub fn date(secs: i64, tz: Tz) -> String {
    match tz.timestamp_opt(secs, 0).single() {
        Some(t) => t.format("%d.%m.%Y").to_string(),
        None => String::from("?"),
    }
}

/// A coming moment as the user reads it, in their zone: `в 11:40` today, `завтра в 11:40`,
/// else `06.12 в 11:40` (`at 11:40`, `tomorrow at 11:40`, `06.12 at 11:40`).
pub fn when(l: Lang, tz: Tz, at_ms: i64, now_ms: i64) -> String {
    let (Some(at), Some(now)) = (
        tz.timestamp_millis_opt(at_ms).single(),
        tz.timestamp_millis_opt(now_ms).single(),
    ) else {
        return String::from("?");
    };
    let time = at.format("%H:%M");
    let days = (at.date_naive() - now.date_naive()).num_days();
    match days {
        0 => l.pick(format!("в {time}"), format!("at {time}")),
        1 => l.pick(format!("завтра в {time}"), format!("tomorrow at {time}")),
        _ => {
            let date = at.format("%d.%m");
            l.pick(format!("{date} в {time}"), format!("{date} at {time}"))
        }
    }
}

/// `HH:MM:SS` of a unix-ms instant in the user's zone.
pub fn clock_time(ms: i64, tz: Tz) -> String {
    match tz.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%H:%M:%S").to_string(),
        None => String::from("?"),
    }
}

pub fn subscription(l: Lang, until: i64, now: i64, tz: Tz) -> String {
    if until > now {
        l.pick(
            format!("💎 Подписка активна до {}.", date(until, tz)),
            format!("💎 Subscription active until {}.", date(until, tz)),
        )
    } else {
        l.pick("💎 Подписка не активна.", "💎 Subscription is not active.")
            .into()
    }
}

pub fn payments_unavailable(l: Lang) -> String {
    l.pick(
        "Оплата пока не настроена оператором бота.",
        "Payments are not configured by the bot's operator yet.",
    )
    .into()
}

pub fn choose_lang() -> String {
    "🌐 Выберите язык / Choose the language".into()
}

pub fn lang_set(l: Lang) -> String {
    l.pick("Язык: русский.", "Language: English.").into()
}

pub fn help(l: Lang) -> String {
    l.pick(
        "groupcast рассылает один пост во множество групп WhatsApp через ваш профиль Wappi.\n\n\
         1. /start — подключить Wappi (токен и ID профиля)\n\
         2. /text — текст рассылки\n\
         3. /groups — список групп (вставкой или импортом из WhatsApp)\n\
         4. /mailing — предпросмотр и запуск\n\
         /status — ход рассылки, /pause и /resume — пауза, /cancel — остановить\n\
         /history — прошлые рассылки, у каждой 📄 CSV по группам\n\
         ✏️ / 🗑 под отчётом — исправить текст или удалить пост во всех группах\n\
         /schedule — запланировать пост (в том числе ежедневно), /schedules — расписания\n\
         /pace — темп, /tz — часовой пояс, /sets и /saveset — наборы групп\n\
         /subscribe — подписка, /lang — язык\n\n\
         Сообщения уходят с безопасной паузой между ними, каждая группа получает пост ровно один раз — даже после сбоя.",
        "groupcast posts one message into many WhatsApp groups through your Wappi profile.\n\n\
         1. /start — connect Wappi (token and profile ID)\n\
         2. /text — the mailing text\n\
         3. /groups — the group list (paste it or import it from WhatsApp)\n\
         4. /mailing — preview and start\n\
         /status — progress, /pause and /resume — pause, /cancel — stop\n\
         /history — past mailings, each with a 📄 CSV by group\n\
         ✏️ / 🗑 under a report — fix the text or delete the post in every group\n\
         /schedule — schedule the post (daily too), /schedules — schedules\n\
         /pace — pace, /tz — time zone, /sets and /saveset — group sets\n\
         /subscribe — subscription, /lang — language\n\n\
         Messages go out with a safe pause between them, and every group gets the post exactly once, even after a crash.",
    )
    .into()
}

pub fn unknown_input(l: Lang) -> String {
    l.pick(
        "Не понял. Выберите действие в меню или /help.",
        "I did not understand. Pick an action from the menu or see /help.",
    )
    .into()
}

// ---------------------------------------------------------------------------------------------
// Photos and collages

/// `1.4 МБ` / `210 КБ`.
fn file_size(l: Lang, bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        let mb = format!("{:.1}", bytes as f64 / (1024.0 * 1024.0));
        l.pick(format!("{} МБ", mb.replace('.', ",")), format!("{mb} MB"))
    } else {
        let kb = bytes.div_ceil(1024);
        l.pick(format!("{kb} КБ"), format!("{kb} KB"))
    }
}

/// The photo set as held now: count, each photo's size, and the collage state.
/// `collage`: `None` without a collage, `Some(confirmed)` with one.
pub fn photos_held(
    l: Lang,
    photos: &[(u32, u32, u64)],
    max: usize,
    collage: Option<bool>,
) -> String {
    if photos.is_empty() {
        return l
            .pick(
                format!("🖼️ Пришлите до {max} фото одним альбомом или по одному. Сейчас фото нет: рассылка уйдёт текстом."),
                format!("🖼️ Send up to {max} photos, as one album or one by one. No photos now: the mailing goes as text."),
            );
    }
    let mut s = l.pick(
        format!("🖼️ Фото сохранено: {} из {max}", photos.len()),
        format!("🖼️ Photos saved: {} of {max}", photos.len()),
    );
    for (i, (w, h, size)) in photos.iter().enumerate() {
        s.push_str(&format!("\n{}. {w}×{h}, {}", i + 1, file_size(l, *size)));
    }
    s.push_str("\n\n");
    s.push_str(match collage {
        Some(true) => l.pick(
            "🌅 В рассылке будет коллаж, текст — подписью к нему.",
            "🌅 The mailing sends the collage, with the text as its caption.",
        ),
        _ => l.pick(
            "Каждое фото уйдёт отдельным сообщением, затем текст. 🌅 соберёт их в один коллаж.",
            "Each photo goes as its own message, then the text. 🌅 merges them into one collage.",
        ),
    });
    s
}

pub fn collage_button(l: Lang) -> &'static str {
    l.pick("🌅 Коллаж", "🌅 Collage")
}

pub fn clear_photos_button(l: Lang) -> &'static str {
    l.pick("🗑 Очистить", "🗑 Clear")
}

pub fn photos_full(l: Lang, max: usize) -> String {
    l.pick(
        format!("⚠️ Уже сохранено {max} фото — это максимум, это фото не добавлено. 🗑 очистит набор."),
        format!("⚠️ {max} photos are saved already, the maximum: this one was not added. 🗑 clears the set."),
    )
}

pub fn not_a_photo(l: Lang) -> String {
    l.pick(
        "⚠️ Это не фото. Пришлите изображение как фото (не файлом); видео, документы и стикеры не подходят. Сохранённые фото не изменились.",
        "⚠️ That is not a photo. Send the picture as a photo (not as a file); videos, documents and stickers do not fit. The saved photos are unchanged.",
    )
    .into()
}

pub fn photo_download_failed(l: Lang) -> String {
    l.pick(
        "⚠️ Не удалось загрузить фото из Telegram. Сохранённые фото не изменились; пришлите это фото ещё раз.",
        "⚠️ Could not download the photo from Telegram. The saved photos are unchanged; please send this photo again.",
    )
    .into()
}

pub fn photo_too_big(l: Lang) -> String {
    l.pick(
        "⚠️ Фото больше 20 МБ: Telegram не даёт ботам такие файлы. Сохранённые фото не изменились.",
        "⚠️ The photo is over 20 MB, which Telegram does not give to bots. The saved photos are unchanged.",
    )
    .into()
}

pub fn photo_unreadable(l: Lang) -> String {
    l.pick(
        "⚠️ Не получилось прочитать это изображение. Сохранённые фото не изменились.",
        "⚠️ Could not read this image. The saved photos are unchanged.",
    )
    .into()
}

pub fn photos_cleared(l: Lang) -> String {
    l.pick(
        "🗑 Фото удалены: рассылка уйдёт текстом. Уже запущенная рассылка не изменится.",
        "🗑 Photos removed: the mailing goes as text. A mailing already running is not affected.",
    )
    .into()
}

pub fn no_photos(l: Lang) -> String {
    l.pick(
        "Фото нет. Нажмите 🖼️ Фото и пришлите их.",
        "No photos. Press 🖼️ Photos and send them.",
    )
    .into()
}

pub fn collage_failed(l: Lang) -> String {
    l.pick(
        "⚠️ Не удалось собрать коллаж. Фото сохранены и уйдут по отдельности.",
        "⚠️ Could not build the collage. The photos are kept and go one by one.",
    )
    .into()
}

/// The caption of the collage preview.
/// 🌅 on the Worker: the collage is built in the background and arrives as its own message.
pub fn collage_building(l: Lang) -> String {
    l.pick(
        "🌅 Собираю коллаж… Он придёт следующим сообщением.",
        "🌅 Building the collage… It will arrive in the next message.",
    )
    .into()
}

pub fn collage_preview(l: Lang) -> String {
    l.pick(
        "🌅 Коллаж готов. Отправлять его в группы вместо отдельных фото?",
        "🌅 The collage is ready. Send it to the groups instead of the separate photos?",
    )
    .into()
}

pub fn collage_use(l: Lang) -> &'static str {
    l.pick("✅ Использовать", "✅ Use it")
}

pub fn collage_discard(l: Lang) -> &'static str {
    l.pick("❌ Не нужно", "❌ Discard")
}

pub fn collage_confirmed(l: Lang) -> String {
    l.pick(
        format!("✅ Группы получат коллаж, текст — подписью к нему (текст длиннее {} символов уйдёт следующим сообщением).", crate::model::ledger::MAX_CAPTION_CHARS),
        format!("✅ The groups get the collage with the text as its caption (a text over {} characters follows as its own message).", crate::model::ledger::MAX_CAPTION_CHARS),
    )
}

pub fn collage_discarded(l: Lang) -> String {
    l.pick(
        "Коллаж не используется: фото уйдут по отдельности, затем текст.",
        "No collage: the photos go one by one, then the text.",
    )
    .into()
}

pub fn collage_outdated(l: Lang) -> String {
    l.pick(
        "Этот коллаж устарел (фото менялись). Нажмите 🌅 ещё раз.",
        "This collage is outdated (the photos changed). Press 🌅 again.",
    )
    .into()
}

/// The images line of the preview and of 📬: what goes before (or with) the text.
pub fn post_images(l: Lang, content: &crate::model::ledger::Content) -> Option<String> {
    let n = content.images.len();
    if n == 0 {
        return None;
    }
    Some(if content.caption {
        l.pick(
            "🌅 Коллаж, текст — подписью к нему".to_string(),
            "🌅 A collage with the text as its caption".to_string(),
        )
    } else if n == 1 && content.parts().len() == 2 && !content.text.is_empty() {
        l.pick(
            "🖼️ 1 изображение, затем текст".to_string(),
            "🖼️ 1 image, then the text".to_string(),
        )
    } else {
        l.pick(
            format!("🖼️ Фото: {n}, каждое отдельным сообщением, затем текст"),
            format!("🖼️ Photos: {n}, each as its own message, then the text"),
        )
    })
}

/// The preview of a post with images: the images line goes after the text.
pub fn preview_post(
    l: Lang,
    content: &crate::model::ledger::Content,
    groups: usize,
    e: &Estimate,
) -> String {
    match post_images(l, content) {
        None => preview(l, &content.text, groups, e),
        Some(images) => preview(l, &format!("{}\n\n{images}", content.text), groups, e),
    }
}

pub fn internal_error(l: Lang) -> String {
    l.pick(
        "⚠️ Что-то пошло не так на нашей стороне. Ваши данные сохранены; попробуйте ещё раз.",
        "⚠️ Something went wrong on our side. Your data is kept; please try again.",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(s: &str) -> usize {
        s.encode_utf16().count()
    }

    #[test]
    fn split_keeps_every_character_within_the_limit() {
        let text = "Квартира 🏠 у моря\n".repeat(400);
        for max in [4096, 100, 7] {
            let parts = split_utf16(&text, max);
            assert_eq!(parts.concat(), text);
            assert!(parts.iter().all(|p| units(p) <= max && !p.is_empty()));
        }
        assert_eq!(split_utf16("short", 4096), vec!["short"]);
        let long = "x".repeat(5000);
        assert_eq!(fit(Lang::En, "ok"), "ok");
        let fitted = fit(Lang::En, &long);
        assert!(units(&fitted) <= 4096 && fitted.ends_with("(shortened)"));
    }

    #[test]
    fn a_report_of_many_long_failures_fits_and_says_how_many_more() {
        let reason = "very long reason ".repeat(100);
        let name = "Группа ".repeat(100);
        let jids: Vec<String> = (0..200).map(|i| format!("1203630000{i:04}@g.us")).collect();
        let lines: Vec<ReportLine<'_>> = jids
            .iter()
            .map(|g| ReportLine {
                group: g,
                name: Some(&name),
                reason: &reason,
            })
            .collect();
        let t = Tally {
            total: 400,
            sent: 0,
            failed: 200,
            in_doubt: 200,
            left: 0,
        };
        for l in [Lang::Ru, Lang::En] {
            let r = report(l, 7, &t, false, &lines, &lines);
            assert!(units(&r) <= 4096, "{} units", units(&r));
            assert!(r.starts_with("⚠️"));
            let more = l.pick("… и ещё", "… and");
            assert_eq!(r.matches(more).count(), 2, "{r}");
            assert!(r.contains(l.pick("Под вопросом", "In doubt")));
        }
    }

    #[test]
    fn a_long_post_gets_a_frame_that_fits() {
        let content = crate::model::ledger::Content::text_only("д".repeat(4096));
        let eta = Estimate {
            secs: 60,
            finish: Some("завтра в 11:40".into()),
            pace: pace_summary(Lang::Ru, &Preset::Careful.settings(), 1000),
            notes: vec![risk_note(Lang::Ru, Risk::Low, false)],
        };
        let framed = preview_post(Lang::Ru, &content, 3, &eta);
        assert!(units(&framed) > 4096);
        let frame = preview_frame(Lang::Ru, &content, 3, &eta);
        assert!(frame.contains("завершится завтра в 11:40"), "{frame}");
        assert!(
            frame.contains("Темп: 🐢 бережный — пауза 20–60 с"),
            "{frame}"
        );
        assert!(frame.contains("Предпросмотр") && frame.contains("Групп: 3"));
        assert!(units(&frame) < 4096);
    }

    #[test]
    fn dates() {
        let utc = chrono_tz::UTC;
        assert_eq!(date(0, utc), "01.01.1970");
        assert_eq!(date(1_798_243_200, utc), "26.12.2026");
        assert_eq!(date(951_782_400, utc), "29.02.2000");
        // 26.12.2026 22:00 UTC is already the 27th in Moscow and Novosibirsk.
        let late = 1_798_243_200 + 22 * 3600;
        assert_eq!(date(late, utc), "26.12.2026");
        assert_eq!(date(late, chrono_tz::Europe::Moscow), "27.12.2026");
    }

    #[test]
    fn report_prefixes() {
        let clean = Tally {
            total: 2,
            sent: 2,
            ..Tally::default()
        };
        assert!(report(Lang::Ru, 1, &clean, false, &[], &[]).starts_with('✅'));
        let failed = Tally {
            total: 2,
            sent: 1,
            failed: 1,
            ..Tally::default()
        };
        assert!(report(Lang::En, 1, &failed, false, &[], &[]).starts_with('⚠'));
        assert!(report(Lang::Ru, 1, &clean, true, &[], &[]).starts_with('⚠'));
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Lang::Ru, 45), "45 с");
        assert_eq!(duration(Lang::En, 200), "3 min 20 s");
        assert_eq!(duration(Lang::Ru, 3900), "1 ч 5 мин");
    }
}

/// Texts of subscriptions, payments and the operator's commands.
pub mod billing {
    use super::date;
    use crate::model::billing::{rub, Plan, Reminder};
    use crate::model::lang::Lang;
    use chrono_tz::Tz;

    pub fn plans_header(l: Lang) -> String {
        l.pick("Выберите срок подписки:", "Choose a subscription period:")
            .into()
    }

    pub fn plan_button(l: Lang, p: &Plan) -> String {
        l.pick(
            format!("💳 {} дн. — {}", p.days, p.price_text()),
            format!("💳 {} days — {}", p.days, p.price_text()),
        )
    }

    pub fn pay_link(l: Lang, p: &Plan, inv_id: i64) -> String {
        l.pick(
            format!("💳 Счёт №{inv_id}: подписка на {} дн. за {}.\nНажмите «Оплатить», чтобы перейти на страницу Robokassa. Подписка продлится сразу после оплаты.", p.days, p.price_text()),
            format!("💳 Invoice #{inv_id}: {} days of subscription for {}.\nPress «Pay» to open the Robokassa page. The subscription is extended as soon as the payment arrives.", p.days, p.price_text()),
        )
    }

    pub fn pay_button(l: Lang) -> &'static str {
        l.pick("Оплатить", "Pay")
    }

    pub fn description(l: Lang, days: u32) -> String {
        l.pick(
            format!("Подписка groupcast на {days} дн."),
            format!("groupcast subscription, {days} days"),
        )
    }

    pub fn paid(l: Lang, until: i64, tz: Tz) -> String {
        l.pick(
            format!(
                "💎 Оплата получена, спасибо! Подписка активна до {}.",
                date(until, tz)
            ),
            format!(
                "💎 Payment received, thank you! Subscription active until {}.",
                date(until, tz)
            ),
        )
    }

    pub fn reminder(l: Lang, kind: Reminder, until: i64, tz: Tz) -> String {
        match kind {
            Reminder::ThreeDays => l.pick(
                format!(
                    "🔔 Подписка заканчивается через 3 дня ({}). Продлить: /subscribe",
                    date(until, tz)
                ),
                format!(
                    "🔔 Your subscription ends in 3 days ({}). Renew: /subscribe",
                    date(until, tz)
                ),
            ),
            Reminder::OneDay => l.pick(
                format!(
                    "🔔 Подписка заканчивается завтра ({}). Продлить: /subscribe",
                    date(until, tz)
                ),
                format!(
                    "🔔 Your subscription ends tomorrow ({}). Renew: /subscribe",
                    date(until, tz)
                ),
            ),
            Reminder::Expired => l.pick(
                "🔒 Подписка закончилась: новые рассылки недоступны. Продлить: /subscribe"
                    .to_string(),
                "🔒 Your subscription has ended: new mailings are unavailable. Renew: /subscribe"
                    .to_string(),
            ),
        }
    }

    pub fn not_admin(l: Lang) -> String {
        l.pick(
            "Эта команда только для оператора.",
            "This command is for the operator only.",
        )
        .into()
    }

    pub fn stats(l: Lang, s: &crate::model::billing::Stats) -> String {
        l.pick(
            format!(
                "📈 Пользователей: {}\nАктивных подписок: {}\nВыручка за месяц: {}\nРассылок сегодня: {}\nСообщений отправлено сегодня: {}",
                s.users, s.active_subscriptions, rub(s.revenue_month_kopecks), s.mailings_today, s.messages_sent_today
            ),
            format!(
                "📈 Users: {}\nActive subscriptions: {}\nRevenue this month: {}\nMailings today: {}\nMessages sent today: {}",
                s.users, s.active_subscriptions, rub(s.revenue_month_kopecks), s.mailings_today, s.messages_sent_today
            ),
        )
    }

    pub fn grant_usage(l: Lang) -> String {
        l.pick(
            "Использование: /grant <user_id> <дней>",
            "Usage: /grant <user_id> <days>",
        )
        .into()
    }

    pub fn granted(l: Lang, user: i64, days: u32, until: i64, tz: Tz) -> String {
        l.pick(
            format!(
                "✔️ Пользователю {user} добавлено {days} дн.: подписка до {}.",
                date(until, tz)
            ),
            format!(
                "✔️ User {user} got {days} days: subscription until {}.",
                date(until, tz)
            ),
        )
    }

    pub fn unknown_user(l: Lang, user: i64) -> String {
        l.pick(
            format!("Пользователь {user} не найден."),
            format!("User {user} not found."),
        )
    }

    pub fn gift(l: Lang, days: u32, until: i64, tz: Tz) -> String {
        l.pick(
            format!(
                "🎁 Оператор добавил вам {days} дн. подписки: активна до {}.",
                date(until, tz)
            ),
            format!(
                "🎁 The operator added {days} days to your subscription: active until {}.",
                date(until, tz)
            ),
        )
    }
}

/// The operator's `/broadcast` to every bot user.
pub mod broadcast {
    use crate::model::lang::Lang;

    pub fn ask(l: Lang) -> String {
        l.pick(
            "📣 Пришлите сообщение для всех пользователей бота (или /menu для отмены).",
            "📣 Send the message for every user of the bot (or /menu to cancel).",
        )
        .into()
    }

    pub fn confirm(l: Lang, users: u64, text: &str) -> String {
        l.pick(
            format!("📣 Отправить это сообщение всем пользователям ({users})?\n\n{text}"),
            format!("📣 Send this message to every user ({users})?\n\n{text}"),
        )
    }

    pub fn confirm_button(l: Lang, users: u64) -> String {
        l.pick(
            format!("✅ Отправить ({users})"),
            format!("✅ Send ({users})"),
        )
    }

    pub fn decline_button(l: Lang) -> String {
        l.pick("❌ Отмена", "❌ Cancel").into()
    }

    pub fn started(l: Lang) -> String {
        l.pick(
            "📣 Рассылка пользователям запущена. По окончании придёт отчёт.",
            "📣 Broadcast started. A report follows when it is done.",
        )
        .into()
    }

    pub fn declined(l: Lang) -> String {
        l.pick("Рассылка пользователям отменена.", "Broadcast cancelled.")
            .into()
    }

    pub fn unavailable(l: Lang) -> String {
        l.pick(
            "Рассылка пользователям здесь недоступна.",
            "Broadcasts are not available here.",
        )
        .into()
    }

    pub fn report(l: Lang, sent: u64, failed: u64) -> String {
        l.pick(
            format!(
                "📣 Рассылка пользователям завершена: отправлено {sent}, не доставлено {failed}."
            ),
            format!("📣 Broadcast finished: sent {sent}, failed {failed}."),
        )
    }
}
