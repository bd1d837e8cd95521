//! The Redis store's wake log: one list per app, `{prefix}wakes:{app}`,
//! newest first, each item a [`WakeSample`] as JSON, trimmed to
//! [`WAKE_SAMPLES`] in the same transaction as the push, and expiring after
//! [`WAKES_TTL`] without a wake (apps deleted from Scalingo leave nothing
//! behind for ever).

use std::time::Duration;

use async_trait::async_trait;
use tracing::warn;

use super::{RedisStore, Retry};
use crate::registry::wakes::{WakeLog, WakeSample, WAKE_SAMPLES};
use crate::registry::RegistryError;

/// How long an app's samples outlive its last wake.
pub const WAKES_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

impl RedisStore {
    fn wakes_key(&self, app: &str) -> String {
        format!("{}wakes:{app}", self.prefix())
    }
}

#[async_trait]
impl WakeLog for RedisStore {
    async fn record_wake(&self, app: &str, sample: WakeSample) -> Result<(), RegistryError> {
        let key = self.wakes_key(app);
        let json = serde_json::to_string(&sample).map_err(|e| RegistryError(e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("LPUSH")
            .arg(&key)
            .arg(json)
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(0)
            .arg(WAKE_SAMPLES - 1)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(WAKES_TTL.as_millis() as u64)
            .ignore();
        // Not retried: the first attempt may have pushed it already.
        let pipe = &pipe;
        self.run("record_wake", Retry::Never, |mut conn| async move {
            pipe.query_async::<()>(&mut conn).await
        })
        .await
    }

    async fn recent_wakes(&self, app: &str) -> Result<Vec<WakeSample>, RegistryError> {
        let mut cmd = redis::cmd("LRANGE");
        cmd.arg(self.wakes_key(app)).arg(0).arg(WAKE_SAMPLES - 1);
        let items: Vec<String> = self.query("recent_wakes", Retry::Idempotent, &cmd).await?;
        Ok(items
            .iter()
            .filter_map(|json| match serde_json::from_str(json) {
                Ok(sample) => Some(sample),
                Err(e) => {
                    warn!(error = %e, "skipping an unreadable wake sample in redis");
                    None
                }
            })
            .collect())
    }
}
