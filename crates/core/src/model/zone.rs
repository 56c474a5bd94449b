//! The user's time zone: an IANA name (`Europe/Moscow`, `Asia/Novosibirsk`) or a fixed offset
//! written `UTC+7` (kept as the IANA `Etc/GMT-7`, whose sign is inverted by convention), read
//! and shown through chrono-tz.

use chrono_tz::Tz;

/// A zone from what the user typed: an IANA name (any case) or `UTC±H` / `GMT±H`.
pub fn parse(s: &str) -> Option<Tz> {
    let s = s.trim();
    if let Ok(tz) = s.parse::<Tz>() {
        return Some(tz);
    }
    if let Ok(tz) = Tz::from_str_insensitive(s) {
        return Some(tz);
    }
    let upper = s.to_uppercase();
    let rest = upper
        .strip_prefix("UTC")
        .or_else(|| upper.strip_prefix("GMT"))?
        .trim();
    if rest.is_empty() || rest == "0" || rest == "+0" {
        return Some(Tz::UTC);
    }
    let hours: i32 = rest.parse().ok()?;
    if !(-12..=14).contains(&hours) {
        return None;
    }
    // Etc/GMT-7 is seven hours *ahead* of UTC.
    let name = format!("Etc/GMT{:+}", -hours);
    name.parse().ok()
}

/// How a zone is shown: `UTC+7` for a fixed offset, else its IANA name.
pub fn label(tz: Tz) -> String {
    let name = tz.name();
    match name.strip_prefix("Etc/GMT") {
        Some("") | Some("0") | Some("+0") | Some("-0") => "UTC".into(),
        Some(off) => match off.parse::<i32>() {
            Ok(h) => format!("UTC{:+}", -h),
            Err(_) => name.into(),
        },
        None => name.into(),
    }
}

/// The usual Russian zones, offered as buttons by `/tz`.
pub const USUAL: [&str; 8] = [
    "Europe/Kaliningrad",
    "Europe/Moscow",
    "Europe/Samara",
    "Asia/Yekaterinburg",
    "Asia/Omsk",
    "Asia/Novosibirsk",
    "Asia/Irkutsk",
    "Asia/Vladivostok",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_offsets() {
        for (typed, name, shown) in [
            ("Europe/Moscow", "Europe/Moscow", "Europe/Moscow"),
            ("asia/novosibirsk", "Asia/Novosibirsk", "Asia/Novosibirsk"),
            ("UTC+7", "Etc/GMT-7", "UTC+7"),
            ("utc-3", "Etc/GMT+3", "UTC-3"),
            ("GMT+3", "Etc/GMT-3", "UTC+3"),
            ("UTC", "UTC", "UTC"),
        ] {
            let tz = parse(typed).unwrap_or_else(|| panic!("{typed}"));
            assert_eq!((tz.name(), label(tz).as_str()), (name, shown), "{typed}");
        }
        for bad in ["Mars/Olympus", "UTC+15", "UTC+x", ""] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        for name in USUAL {
            assert!(parse(name).is_some(), "{name}");
        }
    }
}
