//! The budget shared by every instance, in Redis: one sorted set of the
//! calls of the last window (scored by Redis' own clock, so instances with
//! skewed clocks agree) and one key holding the end of a 429 pause. Each
//! take and each pause is one Lua script, so concurrent instances can never
//! together exceed the limit.
//!
//! Keys: `<prefix>{budget}:calls` (sorted set, expires with the window) and
//! `<prefix>{budget}:pause` (ms timestamp, expires with the pause); the hash
//! tag keeps both in one slot, so the scripts also run on a Redis Cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::Script;
use async_trait::async_trait;

use super::{SharedStore, StoreError, Take};

/// Takes one call. KEYS: calls, pause. ARGV: window ms, allowed, limit, member.
/// Returns `{0, remaining}` when taken, `{1, wait_ms}` when the window is
/// full for this rank, `{2, pause_ms}` while a pause is on.
const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local allowed = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
  return {2, paused - now}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < allowed then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return {0, math.max(limit - count - 1, 0)}
end
local blocking = redis.call('ZRANGE', KEYS[1], count - allowed, count - allowed, 'WITHSCORES')
return {1, math.max(tonumber(blocking[2]) + window - now, 1)}
"#;

/// Starts or lengthens the pause. KEYS: pause. ARGV: pause ms (> 0).
const PAUSE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + pause > current then
  redis.call('SET', KEYS[1], now + pause, 'PX', pause)
end
return 1
"#;

/// Gives a Redis connection, or fails at once when Redis cannot be reached
/// now. Implemented for [`ConnectionManager`]; the gateway implements it
/// over its lazy Redis connection.
#[async_trait]
pub trait RedisConnection: Send + Sync {
    async fn connection(&self) -> Result<ConnectionManager, StoreError>;
}

#[async_trait]
impl RedisConnection for ConnectionManager {
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        Ok(self.clone())
    }
}

#[async_trait]
impl<T: RedisConnection + ?Sized> RedisConnection for std::sync::Arc<T> {
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        (**self).connection().await
    }
}

/// [`SharedStore`] in Redis.
pub struct RedisBudgetStore<C> {
    connection: C,
    calls_key: String,
    pause_key: String,
    take: Script,
    pause: Script,
    /// Makes each call's member of the sorted set unique across instances.
    instance_tag: String,
    sequence: AtomicU64,
}

impl<C: RedisConnection> RedisBudgetStore<C> {
    /// Keys under `prefix` (e.g. `paastis:`, the registry's prefix).
    pub fn new(connection: C, prefix: &str) -> Self {
        Self {
            connection,
            calls_key: format!("{prefix}{{budget}}:calls"),
            pause_key: format!("{prefix}{{budget}}:pause"),
            take: Script::new(TAKE),
            pause: Script::new(PAUSE),
            instance_tag: format!("{:016x}", fastrand::u64(..)),
            sequence: AtomicU64::new(0),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn store_error(e: ::redis::RedisError) -> StoreError {
    StoreError(e.to_string())
}

#[async_trait]
impl<C: RedisConnection> SharedStore for RedisBudgetStore<C> {
    async fn take(&self, allowed: u32, limit: u32, window: Duration) -> Result<Take, StoreError> {
        let mut conn = self.connection.connection().await?;
        let member = format!(
            "{}:{}",
            self.instance_tag,
            self.sequence.fetch_add(1, Ordering::Relaxed)
        );
        let answer: Vec<i64> = self
            .take
            .key(&self.calls_key)
            .key(&self.pause_key)
            .arg(millis(window).max(1))
            .arg(allowed)
            .arg(limit)
            .arg(member)
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        let value = |i: usize| {
            answer
                .get(i)
                .copied()
                .map(|v| u64::try_from(v).unwrap_or(0))
        };
        match (value(0), value(1)) {
            (Some(0), Some(remaining)) => Ok(Take::Granted {
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            }),
            (Some(1), Some(ms)) => Ok(Take::Wait(Duration::from_millis(ms))),
            (Some(2), Some(ms)) => Ok(Take::Paused(Duration::from_millis(ms))),
            _ => Err(StoreError(format!(
                "unexpected budget script answer {answer:?}"
            ))),
        }
    }

    async fn pause(&self, pause: Duration) -> Result<(), StoreError> {
        let ms = millis(pause);
        if ms == 0 {
            return Ok(());
        }
        let mut conn = self.connection.connection().await?;
        let _: i64 = self
            .pause
            .key(&self.pause_key)
            .arg(ms)
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
