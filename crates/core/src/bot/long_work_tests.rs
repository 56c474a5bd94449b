//! Long work handed off: a collage deferred to the runtime is built by the job, once.

use crate::bot::{handle_update, run_collage_job, CollageOutcome};
use crate::collage::fixtures::synthetic_jpeg;
use crate::config::CoreSettings;
use crate::model::ids::{ChatId, UserId};
use crate::model::lang::Lang;
use crate::ports::{async_trait, CollageJob, DeferError, Deferrer};
use crate::services::Services;
use crate::telegram::callback::Callback;
use crate::telegram::Update;
use crate::testing::{profile, register_user, services, Fakes};
use crate::texts::{self};
use serde_json::json;
use std::sync::{Arc, Mutex};

const USER: i64 = 6_200_300_500;

/// Keeps the jobs handed off, as a queue would.
#[derive(Default)]
struct Queue(Mutex<Vec<CollageJob>>);

#[async_trait]
impl Deferrer for Queue {
    async fn defer(&self, job: CollageJob) -> Result<(), DeferError> {
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
    q.0.lock().unwrap().iter().cloned().collect()
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
