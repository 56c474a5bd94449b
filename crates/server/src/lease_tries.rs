//! The tries of a process's drivers for their profiles' leases, sent together
//! ([`Leases::try_leases`]: a few round trips on Redis however many tries). The drivers that
//! wait for another process's leases wake together, because that process's keeper renews all
//! its leases at once: their tries, gathered for [`GATHER`], then cost one call instead of
//! thousands. So do the tries of every driver at start-up.

use groupcast_core::model::ids::ProfileId;
use groupcast_core::ports::{Clock, LeaseTry, Leases, StateError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long the first try waits for others to go with it.
const GATHER: Duration = Duration::from_millis(2);
/// The most tries in one call.
const MOST: usize = 5_000;

type Answer = oneshot::Sender<Result<LeaseTry, StateError>>;

/// Gathers the tries of leases of `ttl_ms` and sends them together.
pub struct LeaseTries {
    leases: Arc<dyn Leases>,
    clock: Arc<dyn Clock>,
    ttl_ms: u64,
    asks: mpsc::UnboundedSender<(ProfileId, Answer)>,
    /// Taken by [`LeaseTries::run`].
    inbox: Mutex<Option<mpsc::UnboundedReceiver<(ProfileId, Answer)>>>,
}

impl LeaseTries {
    pub fn new(leases: Arc<dyn Leases>, clock: Arc<dyn Clock>, ttl_ms: u64) -> Arc<LeaseTries> {
        let (asks, inbox) = mpsc::unbounded_channel();
        Arc::new(LeaseTries {
            leases,
            clock,
            ttl_ms,
            asks,
            inbox: Mutex::new(Some(inbox)),
        })
    }

    /// Tries for the profile's lease, with the tries asked for meanwhile. Answered once
    /// [`LeaseTries::run`] runs.
    pub async fn try_lease(&self, profile: &ProfileId) -> Result<LeaseTry, StateError> {
        let (answer, answered) = oneshot::channel();
        let gone = || StateError::Backend("the lease tries are no longer sent".into());
        self.asks
            .send((profile.clone(), answer))
            .map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
    }

    /// Sends the tries, until the task is aborted. Runs once.
    pub async fn run(self: Arc<Self>) {
        let Some(mut inbox) = self.inbox.lock().expect("inbox lock").take() else {
            return;
        };
        while let Some(first) = inbox.recv().await {
            tokio::time::sleep(GATHER).await;
            let mut batch = vec![first];
            while batch.len() < MOST {
                match inbox.try_recv() {
                    Ok(ask) => batch.push(ask),
                    Err(_) => break,
                }
            }
            self.send(batch).await;
        }
    }

    /// One call for the batch; each asker gets its answer (or the call's error).
    async fn send(&self, batch: Vec<(ProfileId, Answer)>) {
        let (profiles, answers): (Vec<ProfileId>, Vec<Answer>) = batch.into_iter().unzip();
        match self
            .leases
            .try_leases(&profiles, self.ttl_ms, self.clock.now_ms())
            .await
        {
            Ok(tries) if tries.len() == answers.len() => {
                for (answer, one) in answers.into_iter().zip(tries) {
                    let _ = answer.send(Ok(one));
                }
            }
            Ok(_) => answers.into_iter().for_each(|a| {
                let _ = a.send(Err(StateError::Backend(
                    "lease tries: an answer is missing".into(),
                )));
            }),
            Err(e) => answers.into_iter().for_each(|a| {
                let _ = a.send(Err(e.clone()));
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupcast_core::memory_state::MemoryState;
    use groupcast_core::testing::FakeClock;

    fn profile(n: u32) -> ProfileId {
        ProfileId::parse(&format!("tries-profile-{n}")).unwrap()
    }

    #[tokio::test]
    async fn tries_asked_together_are_each_answered() {
        let clock = FakeClock::new(10_000);
        let state = Arc::new(MemoryState::reproducible());
        let tries = LeaseTries::new(state.clone(), Arc::new(clock.clone()), 1_000);
        tokio::spawn(Arc::clone(&tries).run());
        let (one, two) = (profile(1), profile(2));
        let (a, b, a_again) = tokio::join!(tries.try_lease(&one), tries.try_lease(&two), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tries.try_lease(&one).await
        });
        let (LeaseTry::Taken(a), LeaseTry::Taken(b)) = (a.unwrap(), b.unwrap()) else {
            panic!("free leases were not taken");
        };
        assert_eq!((a.profile, b.profile), (profile(1), profile(2)));
        assert_eq!(
            a_again.unwrap(),
            LeaseTry::Held {
                free_in_ms: Some(1_000)
            }
        );
    }
}
