//! Subscription rules: the plans on sale (`SUBSCRIPTION_PLANS`), how a payment or a grant
//! extends access, and which reminder is due when. Pure: times come in as values.

use crate::model::ids::UserId;
use chrono::{DateTime, Datelike};
use serde::{Deserialize, Serialize};

pub const DAY_SECS: i64 = 86_400;

/// A plan: days of access for a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub days: u32,
    pub price_kopecks: i64,
}

impl Plan {
    /// The price as roubles for people: `490 ₽`, `1290.50 ₽`.
    pub fn price_text(&self) -> String {
        rub(self.price_kopecks)
    }
}

/// Kopecks as roubles: `490`, `1290.50`.
pub fn rub(kopecks: i64) -> String {
    if kopecks % 100 == 0 {
        format!("{} ₽", kopecks / 100)
    } else {
        format!("{}.{:02} ₽", kopecks / 100, kopecks % 100)
    }
}

/// Parses `days:price_rub` items separated by commas (`30:490,90:1290`, prices may have up
/// to two decimals). The error names the bad item.
pub fn parse_plans(s: &str) -> Result<Vec<Plan>, String> {
    let mut plans = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = || format!("{item:?} is not days:price_rub (e.g. 30:490)");
        let (days, price) = item.split_once(':').ok_or_else(bad)?;
        let days: u32 = days
            .trim()
            .parse()
            .ok()
            .filter(|d| *d > 0 && *d <= 3660)
            .ok_or_else(bad)?;
        let price_kopecks = parse_rub(price.trim()).filter(|p| *p > 0).ok_or_else(bad)?;
        if plans.iter().any(|p: &Plan| p.days == days) {
            return Err(format!("the plan of {days} days is listed twice"));
        }
        plans.push(Plan {
            days,
            price_kopecks,
        });
    }
    if plans.is_empty() {
        return Err("no plan given".into());
    }
    Ok(plans)
}

/// `490`, `490.5`, `490.50` → kopecks; anything else (more decimals, signs, junk) is `None`.
pub fn parse_rub(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || whole.len() > 9 {
        return None;
    }
    if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = format!("{frac:0<2}");
    Some(whole.parse::<i64>().ok()? * 100 + frac.parse::<i64>().ok()?)
}

/// The new end of access after buying or being granted `days`: counted from the later of now
/// and the current end, so paying early never loses days.
pub fn extend(current_until: i64, now_secs: i64, days: u32) -> i64 {
    current_until.max(now_secs) + days as i64 * DAY_SECS
}

/// The reminders about the end of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reminder {
    ThreeDays,
    OneDay,
    Expired,
}

impl Reminder {
    pub fn code(self) -> &'static str {
        match self {
            Reminder::ThreeDays => "3d",
            Reminder::OneDay => "1d",
            Reminder::Expired => "expired",
        }
    }
}

/// How long after the end the "expired" reminder may still go out (a server that was down
/// for a while does not greet a long-gone user).
pub const EXPIRED_GRACE_SECS: i64 = 7 * DAY_SECS;

/// The reminder due now for a subscription ending at `until`, if any. Each is sent once per
/// `until` (the store remembers), so only the current window matters.
pub fn due_reminder(until: i64, now_secs: i64) -> Option<Reminder> {
    if until <= 0 {
        return None;
    }
    let left = until - now_secs;
    if left <= 0 {
        (left > -EXPIRED_GRACE_SECS).then_some(Reminder::Expired)
    } else if left <= DAY_SECS {
        Some(Reminder::OneDay)
    } else if left <= 3 * DAY_SECS {
        Some(Reminder::ThreeDays)
    } else {
        None
    }
}

/// Unix seconds of 00:00 UTC of the day of `secs`.
pub fn day_start(secs: i64) -> i64 {
    secs.div_euclid(DAY_SECS) * DAY_SECS
}

/// Unix seconds of 00:00 UTC of the first day of the month of `secs`.
pub fn month_start(secs: i64) -> i64 {
    DateTime::from_timestamp(secs, 0)
        .and_then(|t| t.date_naive().with_day(1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(day_start(secs), |t| t.and_utc().timestamp())
}

/// A Robokassa invoice (its id is the InvId).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: i64,
    pub user_id: UserId,
    pub plan_days: u32,
    pub amount_kopecks: i64,
    pub paid: bool,
    pub created_at: i64,
    /// The subscription end (unix s) the payment produced, once paid.
    pub extended_until: Option<i64>,
}

/// What recording a verified payment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The invoice was pending: now paid, access extended to this end (unix s).
    Applied { until: i64 },
    /// The invoice was already paid (a replayed notification): nothing changed.
    AlreadyPaid { until: i64 },
}

/// Figures for the operator's `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub users: u64,
    pub active_subscriptions: u64,
    pub revenue_month_kopecks: i64,
    pub mailings_today: u64,
    pub messages_sent_today: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        assert_eq!(
            parse_plans("30:490, 90:1290.5").unwrap(),
            vec![
                Plan {
                    days: 30,
                    price_kopecks: 49_000
                },
                Plan {
                    days: 90,
                    price_kopecks: 129_050
                }
            ]
        );
        for bad in [
            "",
            "30",
            "30:",
            "x:490",
            "0:490",
            "30:-1",
            "30:4.999",
            "30:490,30:500",
            "30:0",
        ] {
            assert!(parse_plans(bad).is_err(), "{bad}");
        }
        assert_eq!(rub(49_000), "490 ₽");
        assert_eq!(rub(129_050), "1290.50 ₽");
    }

    #[test]
    fn extension_counts_from_the_later_of_now_and_the_end() {
        let now = 1_000_000;
        assert_eq!(extend(0, now, 30), now + 30 * DAY_SECS);
        assert_eq!(extend(now - 5, now, 1), now + DAY_SECS);
        assert_eq!(extend(now + 10 * DAY_SECS, now, 30), now + 40 * DAY_SECS);
    }

    #[test]
    fn reminders() {
        let now = 10_000_000;
        let cases = [
            (0, None),
            (now + 4 * DAY_SECS, None),
            (now + 3 * DAY_SECS, Some(Reminder::ThreeDays)),
            (now + DAY_SECS + 1, Some(Reminder::ThreeDays)),
            (now + DAY_SECS, Some(Reminder::OneDay)),
            (now + 1, Some(Reminder::OneDay)),
            (now, Some(Reminder::Expired)),
            (now - 6 * DAY_SECS, Some(Reminder::Expired)),
            (now - 8 * DAY_SECS, None),
        ];
        for (until, want) in cases {
            assert_eq!(due_reminder(until, now), want, "{}", until - now);
        }
    }

    #[test]
    fn calendar() {
        // 2026-11-26 12:00 UTC
        let t = 1_795_694_400;
        assert_eq!(day_start(t), 1_795_651_200); // 2026-11-26 00:00 UTC
        assert_eq!(day_start(t) % DAY_SECS, 0);
        assert_eq!(month_start(t), 1_793_491_200); // 2026-11-01 00:00 UTC
        assert_eq!(month_start(0), 0);
        assert_eq!(
            month_start(11_017 * DAY_SECS + 14 * DAY_SECS),
            11_017 * DAY_SECS
        ); // 2000-03-01
    }
}
