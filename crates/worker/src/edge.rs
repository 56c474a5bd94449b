//! The stateless side of the Worker (a fetch, a queue message, the Cron, the scheduler's
//! alarm): its coordination capabilities ([`EdgeState`]: intake through the Queue, cancel
//! through the profile's runner) and the bot's `Services` built on them ([`edge`]).

use crate::d1::D1Db;
use crate::env::{self, env_vars};
use crate::services;
use crate::settings::{SettingError, WorkerSettings};
use crate::wire::{MailingTask, RunnerCommand};
use groupcast_core::model::ids::{MailingId, ProfileId};
use groupcast_core::model::ledger::MailingStatus;
use groupcast_core::ports::{async_trait, Cancels, Intake, MailingStore, StateError};
use groupcast_core::services::Services;
use std::sync::Arc;
use worker::{Env, Method, Request, RequestInit};

/// What the bot needs on the stateless side, and all it has: the intake queue's producer end
/// is the Cloudflare Queue (the send is awaited, never left to `waitUntil`; its consumer is
/// [`queue`], pushed to), cancel goes to the profile's runner at once. Leases, pacing and
/// heartbeats belong to the runner alone; `/healthz` reads the runners' sign of life from D1.
pub struct EdgeState {
    env: Env,
}

#[async_trait(?Send)]
impl Cancels for EdgeState {
    async fn set_cancel(&self, mailing: MailingId) -> Result<(), StateError> {
        let db = D1Db::new(env::d1(&self.env).map_err(backend)?, None);
        let m = db
            .get_mailing(mailing)
            .await
            .map_err(|e| StateError::Backend(e.to_string()))?
            .ok_or_else(|| StateError::Backend("cancel: no such mailing".into()))?;
        runner_call(&self.env, &m.profile_id, "cancel", mailing).await
    }

    async fn is_cancelled(&self, mailing: MailingId) -> Result<bool, StateError> {
        let db = D1Db::new(env::d1(&self.env).map_err(backend)?, None);
        Ok(db
            .get_mailing(mailing)
            .await
            .map_err(|e| StateError::Backend(e.to_string()))?
            .is_some_and(|m| m.cancel_requested))
    }
}

/// A new mailing goes on the queue (delivered at least once, retried: what makes sure a runner
/// takes it) and is also handed to its runner at once, so its first post does not wait for the
/// queue's delivery. The runner's `start` is idempotent: the queue's later delivery of the same
/// mailing only checks its alarm.
#[async_trait(?Send)]
impl Intake for EdgeState {
    async fn enqueue(&self, mailing: MailingId) -> Result<(), StateError> {
        let task = MailingTask {
            mailing_id: mailing.0,
        };
        env::send_to_queue(&self.env, task).await.map_err(backend)?;
        let db = D1Db::new(env::d1(&self.env).map_err(backend)?, None);
        if let Err(e) = poke(&self.env, &db, mailing).await {
            worker::console_log!("mailing {} left to the queue: {e}", mailing.0);
        }
        Ok(())
    }
}

pub fn backend(e: worker::Error) -> StateError {
    StateError::Backend(e.to_string())
}

/// `POST https://runner/{what}` `{"mailing_id"}` to the profile's runner.
pub async fn runner_call(
    env: &Env,
    profile: &ProfileId,
    what: &str,
    mailing: MailingId,
) -> Result<(), StateError> {
    let stub = env::profile_runner(env, profile.as_str()).map_err(backend)?;
    let body = serde_json::to_string(&RunnerCommand {
        mailing_id: mailing.0,
    })
    .map_err(|e| StateError::Backend(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
    let req = Request::new_with_init(&format!("https://runner/{what}"), &init).map_err(backend)?;
    let resp = env::call_object(&stub, req).await.map_err(backend)?;
    if resp.status_code() == 200 {
        Ok(())
    } else {
        Err(StateError::Backend(format!(
            "runner answered {} to {what}",
            resp.status_code()
        )))
    }
}

/// Hands a running mailing to its profile's runner; a mailing that is not running is done.
pub async fn poke(env: &Env, db: &D1Db, id: MailingId) -> Result<(), StateError> {
    let Some(m) = db
        .get_mailing(id)
        .await
        .map_err(|e| StateError::Backend(e.to_string()))?
    else {
        return Ok(());
    };
    if m.status != MailingStatus::Running {
        return Ok(());
    }
    runner_call(env, &m.profile_id, "start", id).await
}

/// The settings and services of a stateless invocation.
pub fn edge(env: &Env) -> Result<(WorkerSettings, Services), SettingError> {
    let settings = WorkerSettings::load(&env_vars(env))?;
    let ports = services::ports(env, &settings, None)?;
    let svc = Services::new(ports, Arc::new(EdgeState { env: env.clone() }));
    Ok((settings, svc))
}
