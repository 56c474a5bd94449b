//! `Store`: a Durable Object's storage (`state.storage()`) with every call counted
//! (`crate::counts::storage`). The Durable Objects of this Worker reach their storage only
//! through it; the methods are those of `worker::Storage` that they use, with the same
//! signatures.

use crate::counts::{self, StorageOp};
use serde::{de::DeserializeOwned, Serialize};
use worker::{Result, ScheduledTime, Storage};

/// A Durable Object's storage, counted.
pub struct Store(Storage);

impl Store {
    pub fn new(storage: Storage) -> Store {
        Store(storage)
    }

    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        counts::storage(StorageOp::Get);
        self.0.get(key).await
    }

    pub async fn put<T: Serialize>(&self, key: &str, value: T) -> Result<()> {
        counts::storage(StorageOp::Put);
        self.0.put(key, value).await
    }

    pub async fn delete(&self, key: &str) -> Result<bool> {
        counts::storage(StorageOp::Delete);
        self.0.delete(key).await
    }

    pub async fn get_alarm(&self) -> Result<Option<i64>> {
        counts::storage(StorageOp::GetAlarm);
        self.0.get_alarm().await
    }

    pub async fn set_alarm(&self, scheduled_time: impl Into<ScheduledTime>) -> Result<()> {
        counts::storage(StorageOp::SetAlarm);
        self.0.set_alarm(scheduled_time).await
    }
}
