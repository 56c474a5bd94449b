//! The pre-flight check of a preview: before the user presses ✅, each group of the list is
//! looked up in what Wappi tells of the account's groups (the chat list's `group` objects, and
//! `contact/info` for a group missing from it). A group the number is no longer in, an
//! announcement-only group where it is not an admin, and an id that does not resolve are
//! named with the reason and left out of the mailing unless the user includes them anyway.
//! A fact Wappi did not give is unknown, never guessed; a check that could not run blocks
//! nothing.

use crate::bot::ctx::Ctx;
use crate::model::groups::Doubt;
use crate::model::ids::GroupJid;
use crate::wappi::{GroupFacts, WappiCreds, WappiError};
use std::collections::HashMap;

/// Chats read per `chats/get` page, and the most pages read.
pub(super) const CHATS_PAGE: u32 = 100;
pub(super) const CHATS_PAGES: u32 = 50;
/// The most groups missing from the chat list looked up one by one (`contact/info`).
const LOOKUPS: usize = 30;

/// A group among the account's chats: its id, its name, and what its `group` object says.
#[derive(Debug, Clone)]
pub(super) struct AccountGroup {
    pub jid: GroupJid,
    pub name: String,
    pub facts: Option<GroupFacts>,
}

/// What the check found for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    Doubtful(Doubt),
    /// Wappi did not say (or the check failed): the group stays in.
    Unknown,
}

/// The check of a whole list: the doubtful groups in list order with their reason, and how
/// many could not be checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preflight {
    pub doubtful: Vec<(GroupJid, Doubt)>,
    pub unknown: usize,
}

/// What a preview's ✅ starts beyond the post and the groups: the groups it leaves out and
/// whether it is a canary start. Stored with the preview as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct PreviewChoice {
    #[serde(default)]
    pub skip: Vec<(GroupJid, Doubt)>,
    #[serde(default)]
    pub canary: bool,
}

impl PreviewChoice {
    pub fn store(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The inverse of [`PreviewChoice::store`]; what does not read leaves nothing out.
    pub fn load(stored: &str) -> PreviewChoice {
        serde_json::from_str(stored).unwrap_or_default()
    }
}

/// The verdict on one group from what is known of it. `listed`: the group is among the
/// account's chats (`Some(facts)` when its `group` object came with it); `looked_up`: the
/// `contact/info` answer for a group not listed (`Ok(None)`: it does not resolve).
pub fn verdict(
    phone: Option<&str>,
    listed: Option<Option<&GroupFacts>>,
    looked_up: Option<&Result<Option<GroupFacts>, WappiError>>,
) -> Verdict {
    let facts = match (listed, looked_up) {
        (Some(facts), _) => facts,
        (None, Some(Ok(None))) => return Verdict::Doubtful(Doubt::Unresolved),
        (None, Some(Ok(Some(facts)))) => Some(facts),
        (None, Some(Err(_)) | None) => return Verdict::Unknown,
    };
    let (Some(facts), Some(phone)) = (facts, phone) else {
        // Listed and nothing more known: a chat of the account, taken as fine.
        return match listed {
            Some(_) => Verdict::Fine,
            None => Verdict::Unknown,
        };
    };
    match (facts.has_member(phone), facts.may_post(phone)) {
        (Some(false), _) => Verdict::Doubtful(Doubt::Left),
        (_, Some(false)) => Verdict::Doubtful(Doubt::AdminsOnly),
        (Some(true), _) => Verdict::Fine,
        (None, _) if listed.is_some() => Verdict::Fine,
        (None, _) => Verdict::Unknown,
    }
}

impl Ctx<'_> {
    /// Every group among the account's chats, each once, page by page.
    pub(super) async fn account_groups(
        &self,
        creds: &WappiCreds,
    ) -> Result<Vec<AccountGroup>, WappiError> {
        let mut groups: Vec<AccountGroup> = Vec::new();
        for page in 0..CHATS_PAGES {
            let dialogs = self
                .svc
                .wappi
                .list_chats(creds, CHATS_PAGE, page * CHATS_PAGE)
                .await?;
            let n = dialogs.len();
            for d in dialogs {
                if let Some(jid) = d.group() {
                    if !groups.iter().any(|g| g.jid == jid) {
                        groups.push(AccountGroup {
                            jid,
                            name: d.display_name(),
                            facts: d.group_facts(),
                        });
                    }
                }
            }
            if n < CHATS_PAGE as usize {
                break;
            }
        }
        Ok(groups)
    }

    /// Adds the groups whose last audited post was not delivered (best effort), in list order.
    async fn add_not_delivered(&self, groups: &[GroupJid], out: &mut Preflight) {
        let missed = match self.svc.db.undelivering_groups(self.user.id).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(user = self.user.id.0, error = %e, "pre-flight: audits not read");
                return;
            }
        };
        for jid in groups {
            if missed.contains(jid) && !out.doubtful.iter().any(|(j, _)| j == jid) {
                out.doubtful.push((jid.clone(), Doubt::NotDelivered));
            }
        }
        let order = |j: &GroupJid| groups.iter().position(|g| g == j);
        out.doubtful.sort_by_key(|(j, _)| order(j));
    }

    /// Checks `groups` against what Wappi tells; also returns the names the chat list gave.
    /// Never fails: a check that cannot run leaves every group in (counted unknown).
    pub(super) async fn preflight(
        &self,
        groups: &[GroupJid],
        phone: Option<&str>,
    ) -> (Preflight, HashMap<GroupJid, String>) {
        let mut out = Preflight::default();
        let Some(creds) = self.svc.creds_of(&self.user) else {
            out.unknown = groups.len();
            return (out, HashMap::new());
        };
        let listed: HashMap<GroupJid, AccountGroup> = match self.account_groups(&creds).await {
            Ok(list) => list.into_iter().map(|g| (g.jid.clone(), g)).collect(),
            Err(e) => {
                tracing::info!(user = self.user.id.0, error = %e, "pre-flight: chat list not read");
                out.unknown = groups.len();
                self.add_not_delivered(groups, &mut out).await;
                return (out, HashMap::new());
            }
        };
        let mut lookups = 0;
        for jid in groups {
            let looked_up = match listed.get(jid) {
                Some(_) => None,
                None if lookups < LOOKUPS => {
                    lookups += 1;
                    Some(self.svc.wappi.group_info(&creds, jid).await)
                }
                None => None,
            };
            let entry = listed.get(jid).map(|g| g.facts.as_ref());
            match verdict(phone, entry, looked_up.as_ref()) {
                Verdict::Fine => {}
                Verdict::Doubtful(why) => out.doubtful.push((jid.clone(), why)),
                Verdict::Unknown => out.unknown += 1,
            }
        }
        let names = listed.into_iter().map(|(j, g)| (j, g.name)).collect();
        self.add_not_delivered(groups, &mut out).await;
        (out, names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "79990001122";

    fn facts(announce: Option<bool>, members: &[&str], admins: &[&str]) -> GroupFacts {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        GroupFacts {
            name: Some("Аренда".into()),
            announce,
            participants: Some(list(members)),
            admins: Some(list(admins)),
        }
    }

    #[test]
    fn a_preview_choice_is_stored_and_read_back() {
        let jid = GroupJid::parse("120363000000000001@g.us").unwrap();
        let choice = PreviewChoice {
            skip: vec![(jid.clone(), Doubt::Left), (jid, Doubt::AdminsOnly)],
            canary: true,
        };
        let stored = choice.store();
        assert_eq!(
            stored,
            r#"{"skip":[["120363000000000001@g.us","left"],["120363000000000001@g.us","admins_only"]],"canary":true}"#
        );
        assert_eq!(PreviewChoice::load(&stored), choice);
        assert_eq!(PreviewChoice::load(""), PreviewChoice::default());
        assert_eq!(PreviewChoice::load("[[1]]"), PreviewChoice::default());
    }

    #[test]
    fn verdicts() {
        use Doubt::*;
        use Verdict::*;
        let member = facts(Some(false), &[ME, "7111"], &["7111"]);
        let left = facts(Some(false), &["7111"], &["7111"]);
        let announce = facts(Some(true), &[ME, "7111"], &["7111"]);
        let admin = facts(Some(true), &[ME], &[ME]);
        let unknown = GroupFacts::default();
        type LookedUp = Option<Result<Option<GroupFacts>, WappiError>>;
        let cases: Vec<(Option<Option<&GroupFacts>>, LookedUp, Verdict)> = vec![
            (Some(Some(&member)), None, Fine),
            (Some(Some(&left)), None, Doubtful(Left)),
            (Some(Some(&announce)), None, Doubtful(AdminsOnly)),
            (Some(Some(&admin)), None, Fine),
            (Some(Some(&unknown)), None, Fine),
            (Some(None), None, Fine),
            (None, Some(Ok(None)), Doubtful(Unresolved)),
            (None, Some(Ok(Some(left.clone()))), Doubtful(Left)),
            (None, Some(Ok(Some(announce.clone()))), Doubtful(AdminsOnly)),
            (None, Some(Ok(Some(member.clone()))), Fine),
            (None, Some(Ok(Some(unknown.clone()))), Unknown),
            (
                None,
                Some(Err(WappiError::Temporary("502".into()))),
                Unknown,
            ),
            (None, None, Unknown),
        ];
        for (listed, looked_up, want) in cases {
            assert_eq!(
                verdict(Some(ME), listed, looked_up.as_ref()),
                want,
                "{listed:?} {looked_up:?}"
            );
        }
        // Without the number's phone nothing about membership or rights can be told.
        assert_eq!(verdict(None, Some(Some(&left)), None), Fine);
        assert_eq!(verdict(None, None, Some(&Ok(Some(left)))), Unknown);
        assert_eq!(verdict(None, None, Some(&Ok(None))), Doubtful(Unresolved));
    }
}
