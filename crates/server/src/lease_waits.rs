//! Drivers waiting for a profile lease held elsewhere: each sleeps until the lease could have
//! expired (what [`Leases::try_lease`](groupcast_core::ports::Leases::try_lease) tells) and is
//! woken at once when the lease is released, by this process's own driver or, through the
//! backend's [`ReleaseFeed`](crate::state::ReleaseFeed), by another process (a deploy's
//! handover). Thousands of drivers waiting on another process's live leases then cost a try
//! each per lease, not one a second.

use crate::state::Released;
use groupcast_core::model::ids::ProfileId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// The profiles some driver of this process waits for, each with its count of releases.
#[derive(Default)]
pub struct LeaseWaits {
    waits: Mutex<HashMap<ProfileId, watch::Sender<u64>>>,
}

/// A waiter's ticket for the next release of one profile's lease. Taken before the try for
/// the lease, so that a release between the try and the sleep is not missed.
pub struct Ticket {
    owner: Arc<LeaseWaits>,
    profile: ProfileId,
    releases: watch::Receiver<u64>,
}

impl LeaseWaits {
    pub fn new() -> Arc<LeaseWaits> {
        Arc::new(LeaseWaits::default())
    }

    /// A ticket for the profile's next release.
    pub fn ticket(self: &Arc<Self>, profile: &ProfileId) -> Ticket {
        let mut waits = self.waits.lock().expect("lease waits lock");
        let releases = waits
            .entry(profile.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Ticket {
            owner: Arc::clone(self),
            profile: profile.clone(),
            releases,
        }
    }

    /// Wakes whoever waits for the profile's lease (or everyone, when releases were missed).
    pub fn released(&self, news: &Released) {
        let waits = self.waits.lock().expect("lease waits lock");
        match news {
            Released::Lease(profile) => {
                if let Some(w) = waits.get(profile) {
                    w.send_modify(|n| *n += 1);
                }
            }
            Released::Unknown => waits.values().for_each(|w| w.send_modify(|n| *n += 1)),
        }
    }

    /// Passes the backend's news of releases on to the waiters, until the feed ends.
    pub async fn follow(self: Arc<Self>, mut feed: mpsc::UnboundedReceiver<Released>) {
        while let Some(news) = feed.recv().await {
            self.released(&news);
        }
    }
}

impl Ticket {
    /// Resolves at the first release after the ticket was taken (at once if one came since).
    pub async fn released(&mut self) {
        if self.releases.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Ticket {
    /// The last ticket of a profile takes its entry away.
    fn drop(&mut self) {
        let mut waits = self.owner.waits.lock().expect("lease waits lock");
        if waits
            .get(&self.profile)
            .is_some_and(|w| w.receiver_count() <= 1)
        {
            waits.remove(&self.profile);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn profile(n: u32) -> ProfileId {
        ProfileId::parse(&format!("waits-profile-{n}")).unwrap()
    }

    async fn woken(t: &mut Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(50), t.released())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_release_wakes_the_tickets_of_its_profile_only() {
        let waits = LeaseWaits::new();
        let (mut a, mut a2, mut b) = (
            waits.ticket(&profile(1)),
            waits.ticket(&profile(1)),
            waits.ticket(&profile(2)),
        );
        // Released before the ticket is waited on: still seen.
        waits.released(&Released::Lease(profile(1)));
        assert!(woken(&mut a).await && woken(&mut a2).await);
        assert!(!woken(&mut b).await);
        assert!(!woken(&mut a).await, "one release wakes once");
        waits.released(&Released::Unknown);
        assert!(woken(&mut a).await && woken(&mut b).await);
    }

    #[tokio::test]
    async fn the_last_ticket_of_a_profile_takes_its_entry_away() {
        let waits = LeaseWaits::new();
        let (a, a2) = (waits.ticket(&profile(1)), waits.ticket(&profile(1)));
        drop(a);
        assert_eq!(waits.waits.lock().unwrap().len(), 1);
        drop(a2);
        assert!(waits.waits.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_feed_is_passed_on() {
        let waits = LeaseWaits::new();
        let mut a = waits.ticket(&profile(1));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(Arc::clone(&waits).follow(rx));
        tx.send(Released::Lease(profile(1))).unwrap();
        assert!(tokio::time::timeout(Duration::from_secs(1), a.released())
            .await
            .is_ok());
    }
}
