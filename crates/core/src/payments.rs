//! Subscription payments through Robokassa, shared by both runtimes: the signed link for an
//! invoice, and the handling of Robokassa's ResultURL notification — the only thing that
//! marks an invoice paid. The notification is verified (Password #2), matched to our invoice
//! (exists, same plan, same amount as an exact decimal), and settled in one guarded
//! transaction, so a replay answers `OK{InvId}` and changes nothing.

use crate::config::Payments;
use crate::model::billing::Plan;
use crate::model::billing::{Invoice, Settlement};
use crate::model::ids::ChatId;
use crate::model::lang::Lang;
use crate::ports::DbError;
use crate::robokassa::{self, Amount, PaymentRequest, Receipt};
use crate::services::Services;
use crate::texts::{self};
use crate::Secret;

/// The `Shp_` parameter naming the plan an invoice is for (signed with the link and the
/// notification).
pub const PLAN_PARAM: &str = "Shp_plan";

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
    /// The received signature once it verified (whatever came after: an unknown invoice, a
    /// replay): the one caller-sent value a log redaction list may take. `None` when it did
    /// not verify, since then it is any text the caller chose, a word of the logs included.
    pub verified_signature: Option<Secret>,
}

impl Reply {
    fn refuse(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            verified_signature: None,
        }
    }

    fn signed(self, signature: &Secret) -> Reply {
        Reply {
            verified_signature: Some(signature.clone()),
            ..self
        }
    }
}

/// Handles a ResultURL notification (GET query or POST form pairs, decoded once, within the
/// limits of [`call_pairs`]).
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
    let signature = notice.signature.clone();
    settle(svc, notice).await.signed(&signature)
}

/// A verified notification: matched to its invoice and recorded.
async fn settle(svc: &Services, notice: robokassa::ResultNotice) -> Reply {
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
            let user = svc.db.get_user(invoice.user_id).await.ok().flatten();
            let lang = user.as_ref().map(|u| u.lang).unwrap_or_default();
            let tz = svc.user_zone(user.as_ref());
            if let Err(e) = svc
                .telegram
                .send_message(
                    ChatId(invoice.user_id.0),
                    &texts::billing::paid(lang, until, tz),
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
        verified_signature: None,
    }
}

/// Not recorded: a non-OK answer makes Robokassa notify again later.
fn storage_failure(inv_id: i64, e: &DbError) -> Reply {
    tracing::error!(inv_id, error = %e, "could not record a payment");
    Reply::refuse(500, "temporary failure")
}

/// The most bytes a Robokassa call may carry, query string and form body together. A live
/// ResultURL notification is about 15 fields in some 400 bytes (spec §3.1: the legacy
/// duplicates, the fee, the e-mail and our one `Shp_plan`), a SuccessURL or FailURL redirect
/// less. 16 KiB leaves room for long e-mail addresses and more `Shp_` parameters, and bounds
/// what any caller can make us decode, sort and hash before a signature is checked to a few
/// microseconds: small enough to do on the async runtime's threads.
pub const MAX_CALL_BYTES: usize = 16 * 1024;

/// The most `key=value` fields a Robokassa call may carry (a live notification has about 15).
pub const MAX_CALL_FIELDS: usize = 64;

/// Why a call to a Robokassa endpoint was refused before it was decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallRefusal {
    /// Over [`MAX_CALL_BYTES`] (a declared `Content-Length`, or what arrived).
    #[error("too large")]
    TooLarge,
    /// Over [`MAX_CALL_FIELDS`].
    #[error("too many fields")]
    TooManyFields,
}

impl CallRefusal {
    /// The HTTP status to answer: 413 for the size, 400 for the fields.
    pub fn status(self) -> u16 {
        match self {
            CallRefusal::TooLarge => 413,
            CallRefusal::TooManyFields => 400,
        }
    }

    /// The short answer, also the `reason` of the operator's log line.
    pub fn text(self) -> &'static str {
        match self {
            CallRefusal::TooLarge => "too large",
            CallRefusal::TooManyFields => "too many fields",
        }
    }

    /// The limit that was passed.
    pub fn limit(self) -> usize {
        match self {
            CallRefusal::TooLarge => MAX_CALL_BYTES,
            CallRefusal::TooManyFields => MAX_CALL_FIELDS,
        }
    }
}

/// Refuses a call whose declared size (query string plus `Content-Length`) is over
/// [`MAX_CALL_BYTES`], before a byte of its body is read.
pub fn check_call_size(query_len: usize, content_length: Option<u64>) -> Result<(), CallRefusal> {
    let body = content_length.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    if query_len.saturating_add(body) > MAX_CALL_BYTES {
        return Err(CallRefusal::TooLarge);
    }
    Ok(())
}

/// The pairs of a Robokassa call, the query string's then the form body's, each decoded once.
/// Refused undecoded when the two together are over [`MAX_CALL_BYTES`] or hold more than
/// [`MAX_CALL_FIELDS`] fields (counted by their `&`, one pass).
pub fn call_pairs(query: &str, body: &[u8]) -> Result<Vec<(String, String)>, CallRefusal> {
    check_call_size(query.len(), Some(body.len() as u64))?;
    let body = String::from_utf8_lossy(body);
    let fields = |s: &str| s.split('&').filter(|p| !p.is_empty()).count();
    if fields(query) + fields(&body) > MAX_CALL_FIELDS {
        return Err(CallRefusal::TooManyFields);
    }
    let mut pairs = form_pairs(query);
    pairs.extend(form_pairs(&body));
    Ok(pairs)
}

/// `application/x-www-form-urlencoded` (a query string or a form body) into pairs, decoded
/// once (`+` is a space), in one pass. Robokassa sends its parameters either way; its
/// endpoints go through [`call_pairs`], which bounds the input first.
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
        let tz = svc.user_zone(svc.db.get_user(user).await?.as_ref());
        match svc
            .telegram
            .send_message(
                ChatId(user.0),
                &texts::billing::reminder(lang, kind, until, tz),
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
    fn calls_over_the_limits_are_refused_undecoded() {
        let live = "out_summ=69.000000&OutSum=69.000000&inv_id=16799&InvId=16799&crc=502F0B19&SignatureValue=502F0B19&PaymentMethod=BankCard&IncSum=69.000000&IncCurrLabel=BankCardPSR&EMail=a%40b.c&Fee=2.690000&Shp_days=30&Shp_id=610893809";
        let pairs = call_pairs("", live.as_bytes()).unwrap();
        assert_eq!(pairs.len(), 13);
        assert_eq!(pairs[9], ("EMail".into(), "a@b.c".into()));
        let both = call_pairs("InvId=5&Culture=en", b"OutSum=1").unwrap();
        assert_eq!(both.len(), 3);
        assert_eq!(both[2], ("OutSum".into(), "1".into()));

        // Exactly at the limits: taken.
        let fields: Vec<String> = (0..MAX_CALL_FIELDS).map(|i| format!("f{i}=1")).collect();
        assert_eq!(
            call_pairs("", fields.join("&").as_bytes()).unwrap().len(),
            64
        );
        let (q, b) = fields.split_at(10);
        assert_eq!(
            call_pairs(&q.join("&"), b.join("&").as_bytes())
                .unwrap()
                .len(),
            64
        );
        let full = format!("a={}", "x".repeat(MAX_CALL_BYTES - 2));
        assert_eq!(full.len(), MAX_CALL_BYTES);
        assert!(call_pairs("", full.as_bytes()).is_ok());

        // One more: refused, whether in the query, the body or split between them.
        let over = format!("{}&f=1", fields.join("&"));
        assert_eq!(
            call_pairs("", over.as_bytes()),
            Err(CallRefusal::TooManyFields)
        );
        assert_eq!(call_pairs(&over, b""), Err(CallRefusal::TooManyFields));
        assert_eq!(
            call_pairs("g=1", fields.join("&").as_bytes()),
            Err(CallRefusal::TooManyFields)
        );
        let big = format!("{full}x");
        assert_eq!(call_pairs("", big.as_bytes()), Err(CallRefusal::TooLarge));
        assert_eq!(call_pairs(&big, b""), Err(CallRefusal::TooLarge));
        assert_eq!(
            call_pairs("q=1", full.as_bytes()),
            Err(CallRefusal::TooLarge)
        );
        // Empty segments are no fields.
        assert!(call_pairs("", "&".repeat(1000).as_bytes())
            .unwrap()
            .is_empty());

        // A declared length is judged before the body is read.
        assert_eq!(check_call_size(0, Some(MAX_CALL_BYTES as u64)), Ok(()));
        assert_eq!(check_call_size(0, None), Ok(()));
        assert_eq!(
            check_call_size(1, Some(MAX_CALL_BYTES as u64)),
            Err(CallRefusal::TooLarge)
        );
        assert_eq!(
            check_call_size(0, Some(u64::MAX)),
            Err(CallRefusal::TooLarge)
        );
        for (r, status, text) in [
            (CallRefusal::TooLarge, 413, "too large"),
            (CallRefusal::TooManyFields, 400, "too many fields"),
        ] {
            assert_eq!(
                (r.status(), r.text(), r.to_string()),
                (status, text, text.into())
            );
        }
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
