//! Reading a group's Wappi history back to a moment, page by page: what settles an `in_doubt`
//! row, of a post (`settle`) or of a follow-up (`followup`).

use crate::model::ids::GroupJid;
use crate::services::EngineServices;
use crate::wappi::{ChatMessage, WappiCreds, WappiError};
use std::collections::HashSet;

/// How far before a row's first attempt (by our clock) a message still counts as possibly
/// ours: WhatsApp's timestamps and our clock may differ a little.
pub(super) const CLOCK_SKEW_MS: i64 = 60_000;

/// What was read of a group's history, newest first.
pub(super) struct History {
    pub messages: Vec<ChatMessage>,
    /// Why the read did not reach back to `since` (`None`: it did, or it read it all).
    pub partial: Option<String>,
    pub pages: u32,
}

/// Reads the group's history page by page, newest first, until it reaches before `since`
/// (unix ms), or its end, or [`EngineConfig::history_max_pages`](crate::config::EngineConfig).
///
/// Defensive about paging, which the spec only sketches (`offset` from the newest, `limit`,
/// `total_count`): the offset advances by what each page gave; the end is an empty page or
/// `total_count` reached; a later page with nothing new means `offset` is ignored, so the
/// history cannot be paged, unless the first page already held less than a full page (then
/// it was all there is). A message without a readable time does not count for reaching back.
pub(super) async fn read_back(
    svc: &EngineServices,
    creds: &WappiCreds,
    group: &GroupJid,
    since: i64,
) -> Result<History, WappiError> {
    let cfg = &svc.settings.engine;
    let limit = cfg.history_page.max(1);
    let mut h = History {
        messages: Vec::new(),
        partial: None,
        pages: 0,
    };
    let mut ids = HashSet::new();
    let mut offset: u32 = 0;
    let mut first_full = false;
    while h.pages < cfg.history_max_pages.max(1) {
        let page = svc.wappi.chat_messages(creds, group, limit, offset).await?;
        h.pages += 1;
        let got = (page.messages.len() + page.skipped) as u32;
        if got == 0 {
            return Ok(h); // the end of the history
        }
        if h.pages == 1 {
            first_full = got >= limit;
        }
        let before = h.messages.len();
        for msg in page.messages {
            if msg.id.is_empty() || ids.insert(msg.id.clone()) {
                h.messages.push(msg);
            }
        }
        if h.pages > 1 && h.messages.len() == before {
            if first_full {
                h.partial = Some("the group's history cannot be paged back".into());
            }
            return Ok(h);
        }
        let reached = h.messages[before..]
            .iter()
            .any(|msg| msg.time > 0 && msg.time.saturating_mul(1000) < since);
        let at_end = page
            .total_count
            .is_some_and(|t| u64::from(offset) + u64::from(got) >= t);
        if reached || at_end {
            return Ok(h);
        }
        offset = offset.saturating_add(got);
    }
    h.partial = Some(format!(
        "the {} newest messages of the group do not reach back to the send",
        h.messages.len()
    ));
    Ok(h)
}
