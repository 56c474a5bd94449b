//! Named group sets: `/saveset <name>` keeps the current group list under a name, `/sets`
//! lists the saved ones, each with 📂 (make it the list the next mailing or schedule takes)
//! and 🗑. Editing the list (`/groups`) and saving it again changes that set only.

use crate::bot::ctx::{BotError, Ctx};
use crate::ports::GroupSet;
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardMarkup, ReplyMarkup};
use crate::texts;

/// The longest set name.
const MAX_NAME_CHARS: usize = 40;

impl Ctx<'_> {
    /// `/sets`: one message per saved set with its buttons, or how to save one.
    pub(super) async fn list_sets(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        let sets = self.svc.db.group_sets(self.user.id).await?;
        if sets.is_empty() {
            self.say(&texts::sets::none(l)).await?;
            return Ok(());
        }
        for set in &sets {
            let names: Vec<String> = set
                .groups
                .iter()
                .map(|g| g.name.clone().unwrap_or_else(|| g.jid.as_str().to_string()))
                .collect();
            let kb = InlineKeyboardMarkup::rows(vec![vec![
                (
                    texts::sets::use_button(l),
                    Callback::UseSet(set_key(&set.name)).data(),
                ),
                (
                    texts::sets::delete_button(l),
                    Callback::DeleteSet(set_key(&set.name)).data(),
                ),
            ]]);
            let text = texts::sets::card(l, &set.name, &names);
            self.say_with(&text, ReplyMarkup::Inline(kb)).await?;
        }
        Ok(())
    }

    /// `/saveset <name>`: the current group list saved as set `name`.
    pub(super) async fn save_set(&mut self, name: &str) -> Result<(), BotError> {
        let l = self.lang();
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            self.say(&texts::sets::name_needed(l, MAX_NAME_CHARS))
                .await?;
            return Ok(());
        }
        let groups = self.svc.db.get_groups(self.user.id).await?;
        if groups.is_empty() {
            self.say(&texts::need_groups(l)).await?;
            return Ok(());
        }
        let now = self.svc.now_ms();
        self.svc
            .db
            .save_group_set(self.user.id, name, &groups, now)
            .await?;
        self.say(&texts::sets::saved(l, name, groups.len())).await?;
        Ok(())
    }

    /// 📂 under a set: it becomes the group list.
    pub(super) async fn use_set(&mut self, key: &str) -> Result<(), BotError> {
        let l = self.lang();
        let Some(set) = self.set_by_key(key).await? else {
            self.say(&texts::sets::gone(l)).await?;
            return Ok(());
        };
        self.svc.db.set_groups(self.user.id, &set.groups).await?;
        self.say_with(
            &texts::sets::used(l, &set.name, set.groups.len()),
            self.data_keyboard(),
        )
        .await?;
        Ok(())
    }

    /// 🗑 under a set.
    pub(super) async fn delete_set(&mut self, key: &str) -> Result<(), BotError> {
        let l = self.lang();
        let Some(set) = self.set_by_key(key).await? else {
            self.say(&texts::sets::gone(l)).await?;
            return Ok(());
        };
        self.svc
            .db
            .delete_group_set(self.user.id, &set.name)
            .await?;
        self.close_buttons().await;
        self.say(&texts::sets::deleted(l, &set.name)).await?;
        Ok(())
    }

    async fn set_by_key(&self, key: &str) -> Result<Option<GroupSet>, BotError> {
        Ok(self
            .svc
            .db
            .group_sets(self.user.id)
            .await?
            .into_iter()
            .find(|s| set_key(&s.name) == key))
    }
}

/// A set's short key for its buttons (a name may not fit `callback_data`'s 64 bytes).
fn set_key(name: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(name.as_bytes())[..6])
}
