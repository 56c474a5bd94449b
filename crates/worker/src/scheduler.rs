//! Scheduled runs on the Worker: [`Scheduler`], one Durable Object (`SCHEDULER.idFromName
//! ("scheduler")`) whose alarm is set at the soonest due run. The core's `RunTimer` port
//! (`services::SchedulerTimer`) arms that alarm when a series is scheduled or resumed.
//!
//! The alarm decides every due run (`mailing::scheduled::fire_due`: a started run is a D1 row
//! written in the same batch as its mailing, keyed by (series, local date)), then sets itself
//! at the next due time, or [`WAITING_LOOK_MS`] from now while a run waits for the account's
//! active mailing. The Cron job runs the same pass every minute and re-arms the alarm, so a
//! lost alarm delays a run by a minute at most; the two overlapping decide nothing twice.

use crate::counts::{self, Class, Invocation};
use crate::edge;
use crate::services::Wake;
use crate::store::Store;
use groupcast_core::mailing::scheduled;
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result};

/// How soon the alarm looks again while a due run waits for an active mailing to end.
pub const WAITING_LOOK_MS: i64 = 15_000;

/// The one Durable Object whose alarm fires the scheduled runs (see the module docs).
#[durable_object]
pub struct Scheduler {
    state: worker::State,
    env: Env,
}

impl DurableObject for Scheduler {
    fn new(state: worker::State, env: Env) -> Self {
        Scheduler { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        counts::invocation(Invocation::DoRequest(Class::Scheduler));
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/wake") => {
                let wake: Wake = req.json().await?;
                self.arm(wake.at).await?;
                Response::ok("armed")
            }
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        counts::invocation(Invocation::DoAlarm(Class::Scheduler));
        let next = fire(&self.env).await?;
        if let Some(at) = next {
            self.alarm_at(at).await?;
        }
        Response::ok("ok")
    }
}

impl Scheduler {
    /// Sets the alarm at `at` unless it is already set earlier.
    async fn arm(&self, at: i64) -> Result<()> {
        match self.storage().get_alarm().await? {
            Some(set) if set <= at => Ok(()),
            _ => self.alarm_at(at).await,
        }
    }

    async fn alarm_at(&self, at_ms: i64) -> Result<()> {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at_ms as f64));
        self.storage()
            .set_alarm(worker::ScheduledTime::new(date))
            .await
    }

    fn storage(&self) -> Store {
        Store::new(self.state.storage())
    }
}

/// One pass over the due runs; returns when the next pass is due (`None`: no series left).
pub async fn fire(env: &Env) -> Result<Option<i64>> {
    let (_, svc) =
        edge::edge(env).map_err(|e| worker::Error::RustError(format!("configuration: {e}")))?;
    match scheduled::fire_due(&svc).await {
        Ok(f) if !f.started.is_empty() || f.skipped > 0 => worker::console_log!(
            "scheduler: {} runs started, {} skipped, {} waiting",
            f.started.len(),
            f.skipped,
            f.waiting
        ),
        Ok(_) => {}
        // Thrown, so workerd retries the alarm; a run is decided once whatever the retries.
        Err(e) => return Err(worker::Error::RustError(format!("scheduled runs: {e}"))),
    }
    let now = svc.now_ms();
    let next = svc
        .db
        .earliest_due()
        .await
        .map_err(|e| worker::Error::RustError(format!("next scheduled run: {e}")))?;
    // A due time already past is a run waiting for an active mailing: look again soon.
    Ok(next.map(|at| if at <= now { now + WAITING_LOOK_MS } else { at }))
}
