//! The subscription: 💎 shows how long it runs and one button per plan, a plan's button
//! creates a Robokassa invoice at the server's price and answers with its signed payment
//! link, and a mailing starts only while the subscription runs. Payments themselves are
//! confirmed by Robokassa's ResultURL (`payments`), not here.

use crate::bot::ctx::{BotError, Ctx};
use crate::telegram::callback::Callback;
use crate::telegram::{InlineKeyboardButton, InlineKeyboardMarkup, ReplyMarkup};
use crate::texts;

impl Ctx<'_> {
    /// Whether the subscription (or the trial) still runs.
    pub(super) fn has_access(&self) -> bool {
        self.user.subscription_until > self.svc.now_ms() / 1000
    }

    /// 💎: the subscription state and one button per plan (when payments are configured).
    pub(super) async fn subscribe(&mut self) -> Result<(), BotError> {
        let l = self.lang();
        let now = self.svc.now_ms() / 1000;
        let mut text = texts::subscription(l, self.user.subscription_until, now, self.zone());
        let plans = &self.svc.settings.plans;
        if self.svc.settings.payments.is_none() || plans.is_empty() {
            text.push_str("\n\n");
            text.push_str(&texts::payments_unavailable(l));
            self.say(&text).await?;
            return Ok(());
        }
        text.push_str("\n\n");
        text.push_str(&texts::billing::plans_header(l));
        let rows = plans
            .iter()
            .map(|p| {
                vec![(
                    texts::billing::plan_button(l, p),
                    Callback::Pay(p.days).data(),
                )]
            })
            .collect();
        self.say_with(&text, ReplyMarkup::Inline(InlineKeyboardMarkup::rows(rows)))
            .await?;
        Ok(())
    }

    /// A plan's button: an invoice at the server's price, then its signed payment link.
    pub(super) async fn pay(&mut self, days: u32) -> Result<(), BotError> {
        let l = self.lang();
        let (Some(payments), Some(plan)) = (
            self.svc.settings.payments.as_ref(),
            crate::payments::plan(self.svc, days),
        ) else {
            self.say(&texts::payments_unavailable(l)).await?;
            return Ok(());
        };
        let invoice = self
            .svc
            .db
            .create_invoice(
                self.user.id,
                plan.days,
                plan.price_kopecks,
                self.svc.now_ms(),
            )
            .await?;
        let url = crate::payments::payment_link(payments, &invoice, l);
        tracing::info!(
            user = self.user.id.0,
            invoice = invoice.id,
            days,
            "invoice created"
        );
        let kb = InlineKeyboardMarkup {
            inline_keyboard: vec![vec![InlineKeyboardButton::link(
                texts::billing::pay_button(l),
                url,
            )]],
        };
        self.say_with(
            &texts::billing::pay_link(l, &plan, invoice.id),
            ReplyMarkup::Inline(kb),
        )
        .await?;
        Ok(())
    }
}
