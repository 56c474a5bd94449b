//! The account's pace (`/pace`, its preset buttons) and the user's time zone (`/tz`, its
//! buttons). Values the bot cannot use are refused with what is wrong, and nothing changes.

use crate::bot::ctx::{BotError, Ctx};
use crate::model::pacing::pace::{PaceSettings, Preset};
use crate::model::zone;
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardMarkup, ReplyMarkup};
use crate::texts;
use chrono_tz::Tz;

impl Ctx<'_> {
    /// The account's pace in force.
    pub(super) fn current_pace(&self) -> PaceSettings {
        self.user.pace(self.svc.settings.default_pace)
    }

    /// The user's time zone in force.
    pub(super) fn zone(&self) -> Tz {
        self.user.zone(self.svc.settings.default_tz)
    }

    fn pace_summary(&self, pace: &PaceSettings) -> String {
        texts::pace_summary(self.lang(), pace, self.svc.post_floor_ms())
    }

    /// `/pace [args]`: without arguments the pace with the preset buttons; with a preset word
    /// or `key=value` pairs, the new pace (or why it was refused).
    pub(super) async fn pace(&mut self, args: &str) -> Result<(), BotError> {
        let l = self.lang();
        let current = self.current_pace();
        if args.trim().is_empty() {
            let kb = InlineKeyboardMarkup::rows(vec![Preset::ALL
                .into_iter()
                .map(|p| (texts::preset_button(l, p), Callback::SetPace(p).data()))
                .collect()]);
            let text = texts::pace_shown(l, &self.pace_summary(&current));
            self.say_with(&text, ReplyMarkup::Inline(kb)).await?;
            return Ok(());
        }
        match current.apply(args, self.svc.post_floor_ms()) {
            Ok(pace) => self.store_pace(pace).await,
            Err(e) => {
                let text = texts::pace_refused(l, &e, &self.pace_summary(&current));
                self.say(&text).await?;
                Ok(())
            }
        }
    }

    /// A preset button under `/pace`.
    pub(super) async fn set_preset(&mut self, preset: Preset) -> Result<(), BotError> {
        self.close_buttons().await;
        self.store_pace(preset.settings()).await
    }

    async fn store_pace(&mut self, pace: PaceSettings) -> Result<(), BotError> {
        let json = serde_json::to_string(&pace).expect("a pace serialises");
        self.svc.db.set_pace(self.user.id, &json).await?;
        self.user.pace = Some(json);
        tracing::info!(user = self.user.id.0, pace = ?pace.preset(), "pace set");
        let text = texts::pace_set(self.lang(), &self.pace_summary(&pace));
        self.say(&text).await?;
        Ok(())
    }

    /// `/tz [zone]`: the zone with buttons for the usual ones, or the zone set.
    pub(super) async fn tz(&mut self, args: &str) -> Result<(), BotError> {
        let l = self.lang();
        let shown = zone::label(self.zone());
        let typed = args.trim();
        if typed.is_empty() {
            let rows = zone::USUAL
                .chunks(2)
                .map(|pair| {
                    pair.iter()
                        .map(|name| (*name, Callback::SetTz(zone_index(name)).data()))
                        .collect()
                })
                .collect();
            let text = texts::tz_shown(l, &shown);
            self.say_with(&text, ReplyMarkup::Inline(InlineKeyboardMarkup::rows(rows)))
                .await?;
            return Ok(());
        }
        match zone::parse(typed) {
            Some(tz) => self.store_tz(tz).await,
            None => {
                self.say(&texts::tz_refused(l, typed, &shown)).await?;
                Ok(())
            }
        }
    }

    /// A zone button under `/tz` (its index in [`zone::USUAL`]).
    pub(super) async fn set_tz(&mut self, index: usize) -> Result<(), BotError> {
        self.close_buttons().await;
        match zone::USUAL.get(index).and_then(|name| zone::parse(name)) {
            Some(tz) => self.store_tz(tz).await,
            None => Ok(()),
        }
    }

    async fn store_tz(&mut self, tz: Tz) -> Result<(), BotError> {
        self.svc.db.set_tz(self.user.id, tz.name()).await?;
        self.user.tz = Some(tz.name().to_string());
        self.reschedule_for_zone().await?;
        self.say(&texts::tz_set(self.lang(), &zone::label(tz)))
            .await?;
        Ok(())
    }
}

fn zone_index(name: &str) -> usize {
    zone::USUAL.iter().position(|n| *n == name).unwrap_or(0)
}
