//! Subscription payments through Robokassa, shared by both runtimes: the signed link for an
//! invoice, and the handling of Robokassa's ResultURL notification — the only thing that
//! marks an invoice paid. The notification is verified (Password #2), matched to our invoice
//! (exists, same plan, same amount as an exact decimal), and settled in one guarded
//! transaction, so a replay answers `OK{InvId}` and changes nothing.

use crate::model::billing::Plan;
use crate::model::ids::ChatId;
use crate::ports::{DbError, Invoice, Settlement};
use crate::robokassa::{self, Amount, PaymentRequest, Receipt};
use crate::services::Services;
use crate::texts::{self, Lang};

/// The `Shp_` parameter naming the plan an invoice is for (signed with the link and the
/// notification).
pub const PLAN_PARAM: &str = "Shp_plan";

pub use crate::config::Payments;

/// The signed payment link of an invoice.
pub fn payment_link(p: &Payments, invoice: &Invoice, l: Lang) -> String {
    let amount = Amount::from_kopecks(invoice.amount_kopecks.max(0) as u64);
    let description = texts::billing::description(l, invoice.plan_days);
    let req = PaymentRequest {
        inv_id: invoice.id,
        out_sum: amount,
        receipt: p
            .receipt
            .then(|| Receipt::service(&description, amount, &p.receipt_tax, None)),
        description,
        culture: l,
        shp: vec![(PLAN_PARAM.to_string(), invoice.plan_days.to_string())],
        email: None,
    };
    robokassa::payment_url(&p.merchant, &req)
}

/// What to answer Robokassa.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    fn refuse(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_string(),
        }
    }
}

/// Handles a ResultURL notification (GET query or POST form pairs, decoded once).
pub async fn on_result(svc: &Services, params: &[(String, String)]) -> Reply {
    let Some(p) = svc.settings.payments.as_ref() else {
        return Reply::refuse(404, "payments are not configured");
    };
    let notice = match robokassa::verify_result(&p.merchant, params) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "robokassa notification refused");
            return Reply::refuse(400, "bad notification");
        }
    };
    let inv_id = notice.inv_id;
    let invoice = match svc.db.get_invoice(inv_id).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            tracing::warn!(inv_id, "robokassa notification for an unknown invoice");
            return Reply::refuse(404, "unknown invoice");
        }
        Err(e) => return storage_failure(inv_id, &e),
    };
    let expected = Amount::from_kopecks(invoice.amount_kopecks.max(0) as u64);
    if notice.out_sum != expected {
        tracing::error!(inv_id, received = %notice.out_sum_raw, expected = %expected, "robokassa amount does not match the invoice");
        return Reply::refuse(400, "amount mismatch");
    }
    if notice.shp_value(PLAN_PARAM) != Some(invoice.plan_days.to_string().as_str()) {
        tracing::error!(
            inv_id,
            "robokassa plan parameter does not match the invoice"
        );
        return Reply::refuse(400, "plan mismatch");
    }
    match svc
        .db
        .settle_invoice(inv_id, &notice.out_sum_raw, svc.now_ms())
        .await
    {
        Ok(Settlement::Applied { until }) => {
            tracing::info!(inv_id, user = invoice.user_id.0, until, "payment accepted");
            let lang = svc
                .db
                .get_user(invoice.user_id)
                .await
                .ok()
                .flatten()
                .map(|u| u.lang)
                .unwrap_or_default();
            if let Err(e) = svc
                .telegram
                .send_message(
                    ChatId(invoice.user_id.0),
                    &texts::billing::paid(lang, until),
                    None,
                )
                .await
            {
                tracing::warn!(inv_id, error = %e, "could not tell the user about the payment");
            }
        }
        Ok(Settlement::AlreadyPaid { .. }) => {
            tracing::info!(inv_id, "repeated robokassa notification: already paid");
        }
        Err(e) => return storage_failure(inv_id, &e),
    }
    Reply {
        status: 200,
        body: robokassa::result_ok_body(inv_id),
    }
}

/// Not recorded: a non-OK answer makes Robokassa notify again later.
fn storage_failure(inv_id: i64, e: &DbError) -> Reply {
    tracing::error!(inv_id, error = %e, "could not record a payment");
    Reply::refuse(500, "temporary failure")
}

/// `application/x-www-form-urlencoded` (a query string or a form body) into pairs, decoded
/// once (`+` is a space). Robokassa sends its parameters either way.
pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    let decode = |v: &str| {
        let v = v.replace('+', " ");
        urlencoding::decode(&v).map(|c| c.into_owned()).unwrap_or(v)
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The payer's page for what Robokassa sent to the Success or Fail URL: the language from
/// `Culture`, the invoice from `InvId` (names matched without regard to case; `inv_id` too).
pub fn landing_page_for(
    pairs: &[(String, String)],
    success: bool,
    bot_url: Option<&str>,
) -> String {
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    };
    let lang = get("Culture").map(Lang::parse).unwrap_or_default();
    let inv_id = get("InvId")
        .or_else(|| get("inv_id"))
        .and_then(|v| v.parse().ok());
    landing_page(lang, success, inv_id, bot_url)
}

/// The small page the payer's browser lands on after paying (or not). It never changes
/// anything: only the ResultURL notification does.
pub fn landing_page(l: Lang, success: bool, inv_id: Option<i64>, bot_url: Option<&str>) -> String {
    let (title, text) = match (success, l) {
        (true, Lang::Ru) => ("Оплата принята", "Спасибо! Как только Robokassa подтвердит платёж, бот пришлёт сообщение, и подписка продлится."),
        (true, Lang::En) => ("Payment received", "Thank you! As soon as Robokassa confirms the payment, the bot sends you a message and the subscription is extended."),
        (false, Lang::Ru) => ("Оплата не завершена", "Платёж отменён или не прошёл. Деньги не списаны; попробуйте ещё раз из бота: /subscribe."),
        (false, Lang::En) => ("Payment not completed", "The payment was cancelled or failed. Nothing was charged; try again from the bot: /subscribe."),
    };
    let invoice = inv_id
        .map(|id| format!("<p>{} {id}</p>", l.pick("Счёт №", "Invoice #")))
        .unwrap_or_default();
    let back = bot_url
        .map(|u| {
            format!(
                "<p><a href=\"{}\">{}</a></p>",
                html_escape(u),
                l.pick("Вернуться в бот", "Back to the bot")
            )
        })
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p>{invoice}{back}</body></html>",
        l.code()
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plan of `days`, if on sale.
pub fn plan(svc: &Services, days: u32) -> Option<Plan> {
    svc.settings.plans.iter().find(|p| p.days == days).copied()
}

/// Sends the subscription reminders that are due (3 days and 1 day before the end, and at
/// the end), each exactly once per subscription end: it is recorded before it is sent, so a
/// crash can lose one but never repeat one. Returns how many were sent.
pub async fn send_due_reminders(svc: &Services) -> Result<usize, DbError> {
    use crate::model::billing::{due_reminder, DAY_SECS, EXPIRED_GRACE_SECS};
    let now = svc.now_ms();
    let now_secs = now / 1000;
    let mut sent = 0;
    for (user, lang, until) in svc
        .db
        .subscriptions_ending(now_secs, 3 * DAY_SECS, EXPIRED_GRACE_SECS)
        .await?
    {
        let Some(kind) = due_reminder(until, now_secs) else {
            continue;
        };
        if !svc
            .db
            .record_reminder(user, kind.code(), until, now)
            .await?
        {
            continue;
        }
        match svc
            .telegram
            .send_message(
                ChatId(user.0),
                &texts::billing::reminder(lang, kind, until),
                None,
            )
            .await
        {
            Ok(_) => sent += 1,
            Err(e) => tracing::warn!(user = user.0, error = %e, "reminder not delivered"),
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let pairs =
            form_pairs("OutSum=490.000000&InvId=7&Shp_plan=30&Description=%D0%9F+x&empty=&flag");
        assert_eq!(pairs[0], ("OutSum".into(), "490.000000".into()));
        assert_eq!(pairs[3], ("Description".into(), "П x".into()));
        assert_eq!(pairs[4], ("empty".into(), "".into()));
        assert_eq!(pairs[5], ("flag".into(), "".into()));
    }

    #[test]
    fn landing_reads_culture_and_invoice() {
        let page = landing_page_for(&form_pairs("culture=en&invid=42"), true, None);
        assert_eq!(page, landing_page(Lang::En, true, Some(42), None));
        let page = landing_page_for(&form_pairs("inv_id=9"), false, Some("https://t.me/b"));
        assert_eq!(
            page,
            landing_page(Lang::Ru, false, Some(9), Some("https://t.me/b"))
        );
    }
}
