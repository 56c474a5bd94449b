//! Long work the bot can hand off instead of doing it while it answers an update.
//!
//! The server builds a collage in place (on tokio's blocking pool, see `ImageWork`); the
//! Cloudflare Worker must answer the webhook quickly, so it puts the job on its Queue and the
//! queue consumer runs the same core step ([`crate::bot::run_collage_job`]). The seam is
//! [`Ports::deferrer`](crate::services::Ports::deferrer): `None` runs the work inline,
//! `Some` hands it to the runtime's [`Deferrer`].

use crate::ports::{async_trait, MaybeSendSync};
use serde::{Deserialize, Serialize};

/// 🌅 pressed: build the user's collage from the photo set and preview it in `chat_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollageJob {
    pub user_id: i64,
    pub chat_id: i64,
    /// When 🌅 was pressed (unix ms). A collage built at or after this time already answers
    /// the job, so a second delivery of the same job does nothing.
    pub requested_at: i64,
}

/// A piece of long work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LongJob {
    Collage(CollageJob),
}

/// The job could not be handed off (the user is told something went wrong).
#[derive(Debug, thiserror::Error)]
#[error("handing off long work failed: {0}")]
pub struct DeferError(pub String);

/// The runtime's side: accepts a job durably (the call returns once it is queued) and runs it
/// later, away from the update that asked for it.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Deferrer: MaybeSendSync {
    async fn defer(&self, job: LongJob) -> Result<(), DeferError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::dialogue::Callback;
    use crate::bot::{handle_update, run_collage_job, CollageOutcome};
    use crate::collage::fixtures::synthetic_jpeg;
    use crate::model::ids::{ChatId, UserId};
    use crate::services::{CoreSettings, Services};
    use crate::telegram::Update;
    use crate::testing::{profile, register_user, services, Fakes};
    use crate::texts::{self, Lang};
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    const USER: i64 = 6_200_300_500;

    /// Keeps the jobs handed off, as a queue would.
    #[derive(Default)]
    struct Queue(Mutex<Vec<LongJob>>);

    #[async_trait]
    impl Deferrer for Queue {
        async fn defer(&self, job: LongJob) -> Result<(), DeferError> {
            self.0.lock().unwrap().push(job);
            Ok(())
        }
    }

    fn update(n: i64, body: serde_json::Value) -> Update {
        let from = json!({"id": USER, "is_bot": false, "first_name": "A", "language_code": "en"});
        let chat = json!({"id": USER, "type": "private"});
        let u = if let Some(data) = body.get("data") {
            json!({"update_id": n, "callback_query": {"id": format!("cb{n}"), "from": from,
                "data": data, "message": {"message_id": 1, "chat": chat, "date": 0}}})
        } else {
            let mut msg = json!({"message_id": n, "from": from, "chat": chat, "date": 0});
            for (k, v) in body.as_object().unwrap() {
                msg[k] = v.clone();
            }
            json!({"update_id": n, "message": msg})
        };
        serde_json::from_value(u).unwrap()
    }

    /// A registered user holding two photos, with a deferring runtime.
    async fn world() -> (Services, Fakes, Arc<Queue>) {
        let (mut svc, f) = services(CoreSettings::default());
        let queue = Arc::new(Queue::default());
        svc.deferrer = Some(queue.clone());
        register_user(&svc, UserId(USER), &profile("0badc0de-0009"), Lang::En).await;
        handle_update(&svc, &update(1, json!({"text": "/images"})))
            .await
            .unwrap();
        for i in 0..2 {
            let id = format!("q{i}");
            f.telegram.add_file(&id, synthetic_jpeg(1280, 960, i, 8, 1));
            let sizes = json!([{"file_id": id, "file_unique_id": id, "width": 1280,
                "height": 960, "file_size": 90000}]);
            handle_update(&svc, &update(2 + i64::from(i), json!({ "photo": sizes })))
                .await
                .unwrap();
        }
        (svc, f, queue)
    }

    fn collage_jobs(q: &Queue) -> Vec<CollageJob> {
        q.0.lock()
            .unwrap()
            .iter()
            .map(|LongJob::Collage(c)| c.clone())
            .collect()
    }

    #[tokio::test]
    async fn a_deferred_collage_is_built_by_the_job_once() {
        let (svc, f, queue) = world().await;
        let press = json!({"data": Callback::MakeCollage.data()});
        handle_update(&svc, &update(10, press)).await.unwrap();
        // Answered at once, nothing built yet.
        let (_, said, _) = f.telegram.last_sent(ChatId(USER)).unwrap();
        assert_eq!(said, texts::collage_building(Lang::En));
        assert!(f.telegram.photos_sent(ChatId(USER)).is_empty());
        let jobs = collage_jobs(&queue);
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].user_id, jobs[0].chat_id), (USER, USER));

        // The job, delivered twice: one preview, one collage.
        let first = run_collage_job(&svc, &jobs[0]).await.unwrap();
        let again = run_collage_job(&svc, &jobs[0]).await.unwrap();
        assert_eq!(
            (first, again),
            (CollageOutcome::Built, CollageOutcome::AlreadyDone)
        );
        let photos = f.telegram.photos_sent(ChatId(USER));
        assert_eq!(photos.len(), 1, "{photos:?}");
        assert_eq!(photos[0].1, Some(texts::collage_preview(Lang::En)));
        assert!(svc.db.collage(UserId(USER)).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn the_same_job_after_a_discard_is_still_done() {
        let (svc, f, _) = world().await;
        let job = CollageJob {
            user_id: USER,
            chat_id: USER,
            requested_at: svc.now_ms(),
        };
        assert_eq!(
            run_collage_job(&svc, &job).await.unwrap(),
            CollageOutcome::Built
        );
        // ❌ forgets the collage; a late redelivery must not bring a preview back.
        svc.db
            .set_collage(UserId(USER), None, svc.now_ms())
            .await
            .unwrap();
        assert_eq!(
            run_collage_job(&svc, &job).await.unwrap(),
            CollageOutcome::AlreadyDone
        );
        assert_eq!(f.telegram.photos_sent(ChatId(USER)).len(), 1);
        // A job of a user who is gone does nothing.
        let stranger = CollageJob {
            user_id: 1,
            ..job.clone()
        };
        assert_eq!(
            run_collage_job(&svc, &stranger).await.unwrap(),
            CollageOutcome::NoUser
        );
    }

    #[test]
    fn job_keys_are_negative_and_distinct() {
        let key = |user_id, requested_at| {
            crate::bot::collage_job_key(&CollageJob {
                user_id,
                chat_id: user_id,
                requested_at,
            })
        };
        for k in [
            key(1, 0),
            key(i64::MAX, i64::MAX),
            key(6_200_300_500, 1_790_000_000_000),
        ] {
            // Negative, and exact as a JavaScript number (D1).
            assert!(k < 0 && k > -(1 << 53), "{k}");
        }
        assert_ne!(key(5, 1000), key(5, 1001));
        assert_ne!(key(5, 1000), key(6, 1000));
        assert_eq!(key(5, 1000), key(5, 1000));
    }
}
