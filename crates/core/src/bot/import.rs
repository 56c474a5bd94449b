//! The group list of a mailing: pasted as text (one jid or invite per line, see
//! `model::groups`), or imported from the WhatsApp account through a paged picker of ticks.

use crate::bot::ctx::{BotError, Ctx};
use crate::bot::dialogue::{DialogueState, ImportState, IMPORT_PAGE_SIZE};
use crate::model::groups::parse_group_list;
use crate::model::ids::GroupJid;
use crate::model::lang::Lang;
use crate::ports::GroupEntry;
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardMarkup, MessageId, ReplyMarkup};
use crate::texts::{self};
use crate::wappi::WappiError;

impl Ctx<'_> {
    /// 👥: wait for the list, or the import button.
    pub(super) async fn ask_groups(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        self.set_state(&DialogueState::AwaitGroups).await?;
        let kb = InlineKeyboardMarkup::rows(vec![vec![(
            texts::import_button(l),
            Callback::ImportStart.data(),
        )]]);
        self.say_with(
            &texts::ask_groups(l, self.svc.settings.max_groups),
            ReplyMarkup::Inline(kb),
        )
        .await?;
        Ok(())
    }

    /// The pasted list: stored when at least one group is valid and the cap holds.
    pub(super) async fn take_groups(&mut self, text: &str) -> Result<(), BotError> {
        let l = self.lang();
        let parsed = parse_group_list(text);
        if parsed.groups.is_empty() {
            self.say(&texts::groups_none_valid(l, &parsed.invalid))
                .await?;
            return Ok(());
        }
        let max = self.svc.settings.max_groups;
        if parsed.groups.len() > max {
            self.say(&texts::groups_too_many(l, parsed.groups.len(), max))
                .await?;
            return Ok(());
        }
        // Each id with its name from the account's chat list, when it has one (best effort).
        let names = self.group_names().await;
        let entries: Vec<GroupEntry> = parsed
            .groups
            .iter()
            .map(|jid| GroupEntry {
                jid: jid.clone(),
                name: names.get(jid).cloned(),
            })
            .collect();
        self.svc.db.set_groups(self.user.id, &entries).await?;
        self.set_state(&DialogueState::Idle).await?;
        let text = texts::groups_saved(l, entries.len(), parsed.duplicates.len(), &parsed.invalid);
        self.say_with(&text, self.data_keyboard()).await?;
        Ok(())
    }

    /// The names of the account's groups from its chat list; empty when Wappi cannot say.
    async fn group_names(&self) -> std::collections::HashMap<GroupJid, String> {
        let Some(creds) = self.svc.creds_of(&self.user) else {
            return Default::default();
        };
        match self.account_groups(&creds).await {
            Ok(list) => list
                .into_iter()
                .filter(|g| g.name != g.jid.as_str())
                .map(|g| (g.jid, g.name))
                .collect(),
            Err(e) => {
                tracing::info!(user = self.user.id.0, error = %e, "group names not read");
                Default::default()
            }
        }
    }

    /// The import button: the account's groups in the picker, the stored ones ticked.
    pub(super) async fn import_start(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        let Some(creds) = self.svc.creds_of(&self.user) else {
            self.say(&texts::finish_registration_first(l)).await?;
            return Ok(());
        };
        let groups: Vec<(String, String)> = match self.account_groups(&creds).await {
            Ok(groups) => groups
                .into_iter()
                .map(|g| (g.jid.as_str().to_string(), g.name))
                .collect(),
            Err(e) => {
                let reason = match &e {
                    WappiError::NotAuthorized
                    | WappiError::BadToken
                    | WappiError::ProfileNotFound
                    | WappiError::NotPaid => texts::account_problem(l, &e),
                    _ => e.to_string(),
                };
                self.say(&texts::import_loading_failed(l, &reason)).await?;
                return Ok(());
            }
        };
        if groups.is_empty() {
            self.say(&texts::import_no_groups(l)).await?;
            return Ok(());
        }
        let current = self.svc.db.get_groups(self.user.id).await?;
        let selected = groups
            .iter()
            .map(|(jid, _)| current.iter().any(|g| g.jid.as_str() == jid))
            .collect();
        let mut imp = ImportState {
            groups,
            selected,
            page: 0,
            message_id: 0,
            filter: String::new(),
        };
        let (text, kb) = import_view(l, &imp);
        let mid = self.say_with(&text, ReplyMarkup::Inline(kb)).await?;
        imp.message_id = mid.0;
        self.set_state(&DialogueState::Import(imp)).await?;
        Ok(())
    }

    /// A button of the picker; a stale picker (no import under way) only loses its buttons.
    pub(super) async fn import_callback(
        &mut self,
        cb: Callback,
        state: DialogueState,
    ) -> Result<(), BotError> {
        let DialogueState::Import(imp) = state else {
            self.close_buttons().await;
            return Ok(());
        };
        self.import_action(cb, imp).await
    }

    async fn import_action(&mut self, cb: Callback, mut imp: ImportState) -> Result<(), BotError> {
        match cb {
            Callback::ImportToggle(i) if i < imp.selected.len() => {
                imp.selected[i] = !imp.selected[i]
            }
            Callback::ImportPage(p) => imp.page = p.min(imp.pages() - 1),
            Callback::ImportAll => imp.shown().into_iter().for_each(|i| imp.selected[i] = true),
            Callback::ImportNone => imp
                .shown()
                .into_iter()
                .for_each(|i| imp.selected[i] = false),
            Callback::ImportClose => return self.import_close(&imp).await,
            Callback::ImportSave => return self.import_save(&imp).await,
            _ => {}
        }
        self.redraw_import(imp).await
    }

    /// Words typed while the picker is open: it shows the groups whose name or id holds them
    /// (`*` shows all again), as a fresh picker under the words; the old one loses its buttons.
    pub(super) async fn import_search(
        &mut self,
        words: &str,
        state: DialogueState,
    ) -> Result<(), BotError> {
        let DialogueState::Import(mut imp) = state else {
            return Ok(());
        };
        let words = words.trim();
        imp.filter = match words {
            "*" => String::new(),
            _ => words.chars().take(60).collect(),
        };
        imp.page = 0;
        self.drop_picker_buttons(imp.message_id).await;
        let (text, kb) = import_view(self.lang(), &imp);
        imp.message_id = self.say_with(&text, ReplyMarkup::Inline(kb)).await?.0;
        self.set_state(&DialogueState::Import(imp)).await?;
        Ok(())
    }

    /// Removes the buttons of a picker message (best effort: it may be gone).
    async fn drop_picker_buttons(&self, message_id: i64) {
        let _ = self
            .svc
            .telegram
            .edit_message_reply_markup(
                self.chat,
                MessageId(message_id),
                &InlineKeyboardMarkup::default(),
            )
            .await;
    }

    /// ✖️: the picker is closed, nothing stored.
    async fn import_close(&mut self, imp: &ImportState) -> Result<(), BotError> {
        self.set_state(&DialogueState::Idle).await?;
        let _ = self
            .svc
            .telegram
            .edit_message_text(
                self.chat,
                MessageId(imp.message_id),
                &texts::import_closed(self.lang()),
                None,
            )
            .await;
        Ok(())
    }

    /// 💾: the ticked groups become the list (at least one, at most the cap).
    async fn import_save(&mut self, imp: &ImportState) -> Result<(), BotError> {
        let l = self.lang();
        let entries: Vec<GroupEntry> = imp
            .groups
            .iter()
            .zip(&imp.selected)
            .filter(|(_, s)| **s)
            .filter_map(|((jid, name), _)| {
                Some(GroupEntry {
                    jid: GroupJid::parse(jid)?,
                    name: Some(name.clone()),
                })
            })
            .collect();
        let max = self.svc.settings.max_groups;
        if entries.len() > max {
            self.say(&texts::groups_too_many(l, entries.len(), max))
                .await?;
            return Ok(());
        }
        if entries.is_empty() {
            self.say(&texts::need_groups(l)).await?;
            return Ok(());
        }
        self.svc.db.set_groups(self.user.id, &entries).await?;
        self.set_state(&DialogueState::Idle).await?;
        self.drop_picker_buttons(imp.message_id).await;
        self.say_with(
            &texts::groups_saved(l, entries.len(), 0, &[]),
            self.data_keyboard(),
        )
        .await?;
        Ok(())
    }

    /// Shows the picker as it is now and keeps it in the dialogue state.
    async fn redraw_import(&mut self, imp: ImportState) -> Result<(), BotError> {
        let (text, kb) = import_view(self.lang(), &imp);
        match self
            .svc
            .telegram
            .edit_message_text(self.chat, MessageId(imp.message_id), &text, Some(&kb))
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_modified() => {}
            Err(e) => return Err(e.into()),
        }
        self.set_state(&DialogueState::Import(imp)).await?;
        Ok(())
    }
}

/// The import picker: header text and the keyboard of the current page.
pub fn import_view(l: Lang, imp: &ImportState) -> (String, InlineKeyboardMarkup) {
    let pages = imp.pages();
    let page = imp.page.min(pages - 1);
    let start = page * IMPORT_PAGE_SIZE;
    let shown = imp.shown();
    let mut rows: Vec<Vec<(String, String)>> = shown
        .iter()
        .skip(start)
        .take(IMPORT_PAGE_SIZE)
        .map(|&i| (i, &imp.groups[i].1))
        .map(|(i, name)| {
            let mark = if imp.selected[i] { "✅" } else { "▫️" };
            let name: String = name.chars().take(40).collect();
            vec![(format!("{mark} {name}"), Callback::ImportToggle(i).data())]
        })
        .collect();
    let mut nav = Vec::new();
    if page > 0 {
        nav.push(("◀️".to_string(), Callback::ImportPage(page - 1).data()));
    }
    nav.push((
        format!("{}/{}", page + 1, pages),
        Callback::ImportPage(page).data(),
    ));
    if page + 1 < pages {
        nav.push(("▶️".to_string(), Callback::ImportPage(page + 1).data()));
    }
    rows.push(nav);
    rows.push(vec![
        (texts::import_all(l).to_string(), Callback::ImportAll.data()),
        (
            texts::import_none(l).to_string(),
            Callback::ImportNone.data(),
        ),
    ]);
    rows.push(vec![
        (
            texts::import_save(l, imp.selected_count()),
            Callback::ImportSave.data(),
        ),
        ("✖️".to_string(), Callback::ImportClose.data()),
    ]);
    let mut text = texts::import_header(l, imp.groups.len(), imp.selected_count(), page + 1, pages);
    text.push('\n');
    text.push_str(&texts::import_search(l, &imp.filter, shown.len()));
    (text, InlineKeyboardMarkup::rows(rows))
}
