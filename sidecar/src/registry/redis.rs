//! Redis implementations of [`Registry`], [`Coordinator`] and [`EventLog`],
//! shared by every gateway instance that points at the same Redis and
//! prefix: one [`RedisStore`] implements all three.
//!
//! The keys and what they hold are described in [`layout`]; the lease
//! scripts are in [`scripts`]; timeouts and TCP settings in [`connection`].
//!
//! # Why this shape
//!
//! - **The sorted set is the index the scheduler needs.** "Apps idle since
//!   T" is `ZRANGE last_access -inf T BYSCORE LIMIT 0 n`: O(log N + n), oldest
//!   first, instead of scanning every app. Ties are ordered by name, like the
//!   in-memory index.
//! - **`ZADD GT` keeps last access monotonic without a read.** Instances
//!   report batches of accesses concurrently and out of order; `GT` only
//!   moves a score forward (and still adds new members), so the last writer
//!   cannot drag an app's last access back, and a whole batch is one
//!   command. `GT` needs Redis >= 6.2.
//! - **Multi-key writes are `MULTI`/`EXEC`** (`register`, `remember_formation`,
//!   `forget`), so no instance ever sees an app in the index without the
//!   facts just written with it, or half-forgotten.
//! - **Leases are taken and released by Lua scripts.** Acquire is one
//!   script: `SET PX` when the key is free, `PEXPIRE` when the caller already
//!   holds it, otherwise nothing (equivalent to `SET NX PX` followed by a
//!   compare-and-extend, in one round trip). Release is compare-and-delete:
//!   a plain `DEL` could remove the lease of another instance that took it
//!   after ours expired. A holder that dies simply lets the `PX` run out.
//! - **The event log is a stream trimmed on every write** with an *exact*
//!   `XADD ... MAXLEN = capacity`, so it holds at most `capacity` entries
//!   like the in-memory log. `MAXLEN ~` would be cheaper, but only matters at
//!   rates far above what wakes and pauses produce.
//!
//! # Failures and timeouts
//!
//! Calls go through one [`ConnectionManager`] (a multiplexed connection that
//! is replaced when it breaks). Nothing here waits on Redis for long:
//!
//! - opening a connection: [`CONNECTION_TIMEOUT`] per attempt, and a single
//!   attempt per reconnection (no backoff loop: the next call tries again);
//! - a command: [`RESPONSE_TIMEOUT`];
//! - a whole operation: [`OPERATION_TIMEOUT`], whatever happens inside;
//! - [`RedisStore::connect`]: [`CONNECT_TIMEOUT`], including a `PING`;
//! - TCP keep-alive and `TCP_USER_TIMEOUT` (Linux) close a connection whose
//!   peer vanished without a reset, so that it gets replaced too.
//!
//! When a call finds the connection lost (reset, broken pipe, refused),
//! the manager starts a new connection and the operation is retried once on
//! it, so the first call after Redis comes back succeeds instead of
//! reporting the previous outage. Every operation is idempotent except
//! [`EventLog::record`] (an event could be appended twice), which is never
//! retried; a retried `release` whose first answer was lost reports `false`,
//! the lease being gone either way. Errors never contain the URL's password.
//!
//! `list` and `accessed_before` read the index, then the hashes: an app
//! forgotten in between comes back as a blank record, once.

pub mod connection;
pub mod layout;
pub mod scripts;
pub mod wakes;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisResult};
use tracing::{debug, warn};

use super::{AppMeta, AppRecord, Coordinator, Event, EventLog, Registry, RegistryError};
use connection::{lost_connection, manager_config};
pub use connection::{
    redact_url, CONNECTION_TIMEOUT, CONNECT_TIMEOUT, OPERATION_TIMEOUT, RESPONSE_TIMEOUT,
};
use layout::{
    record_from, to_json, ttl_ms, zadd_gt, Keys, AUTOSCALERS, EVENT_FIELD, FORMATION, LINKED_APPS,
    MAX_IDLE_MINUTES, REGION,
};
use scripts::{ACQUIRE, FORGET_IF_BEFORE, RELEASE};

/// Whether an operation may be sent again after a lost connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Sending it twice has the effect of sending it once.
    Idempotent,
    Never,
}

/// Registry, coordinator and event log in one Redis, under one key prefix
/// (see [`layout`]). Cheap to clone: clones
/// share the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    /// Always >= 1.
    events_capacity: usize,
    /// The URL without its password, for messages.
    target: Arc<str>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("prefix", &self.keys.prefix())
            .field("events_capacity", &self.events_capacity)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`)
    /// and checks that it answers `PING`, within [`CONNECT_TIMEOUT`]. Keys
    /// are `prefix` followed by their name (e.g. `paastis:`); the event log
    /// keeps the `events_capacity` most recent events (at least one).
    ///
    /// Errors name the URL without its password.
    pub async fn connect(
        url: &str,
        prefix: &str,
        events_capacity: usize,
    ) -> Result<Self, RegistryError> {
        let target = redact_url(url);
        let fail = |what: String| RegistryError(format!("redis at {target}: {what}"));
        let client = redis::Client::open(url).map_err(|e| fail(e.to_string()))?;
        let connecting = async {
            let mut conn = client
                .get_connection_manager_with_config(manager_config())
                .await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            Ok::<_, RedisError>(conn)
        };
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(_) => return Err(fail(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        };
        debug!(target = %target, prefix, "connected to redis");
        Ok(Self {
            conn,
            keys: Keys::new(prefix),
            events_capacity: events_capacity.max(1),
            target: target.into(),
        })
    }

    /// The shared connection (for other users of the same Redis, such as
    /// the API budget).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Writes one field of `app`'s record, registering the app (with no
    /// access yet) if the registry does not know it, in one transaction.
    async fn remember_field(
        &self,
        op: &'static str,
        app: &str,
        field: &str,
        value: String,
    ) -> Result<(), RegistryError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(self.keys.app_key(app), field, value)
            .ignore()
            .cmd("ZADD")
            .arg(self.keys.last_access_key())
            .arg("NX")
            .arg(0)
            .arg(app)
            .ignore();
        self.query_pipe(op, &pipe).await
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Runs `call` on the shared connection within [`OPERATION_TIMEOUT`],
    /// once more if it found the connection lost and `retry` allows it.
    async fn run<T, F, Fut>(&self, op: &str, retry: Retry, call: F) -> Result<T, RegistryError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            match call(self.conn.clone()).await {
                Err(e) if retry == Retry::Idempotent && lost_connection(&e) => {
                    // The manager has started a new connection by now; the
                    // second attempt waits for it.
                    debug!(op, error = %e, "redis connection lost, retrying once");
                    call(self.conn.clone()).await
                }
                result => result,
            }
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, attempts).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(RegistryError(format!("redis {op}: {e}"))),
            Err(_) => Err(RegistryError(format!(
                "redis {op}: no answer within {OPERATION_TIMEOUT:?}"
            ))),
        }
    }

    async fn query<T: FromRedisValue>(
        &self,
        op: &str,
        retry: Retry,
        cmd: &Cmd,
    ) -> Result<T, RegistryError> {
        self.run(op, retry, |mut conn| async move {
            cmd.query_async(&mut conn).await
        })
        .await
    }

    async fn query_pipe<T: FromRedisValue>(
        &self,
        op: &str,
        pipe: &Pipeline,
    ) -> Result<T, RegistryError> {
        self.run(op, Retry::Idempotent, |mut conn| async move {
            pipe.query_async(&mut conn).await
        })
        .await
    }

    /// The records of `members` (app, score), in that order, their hashes
    /// read in one pipeline.
    async fn records(
        &self,
        op: &str,
        members: Vec<(String, f64)>,
    ) -> Result<Vec<AppRecord>, RegistryError> {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (app, _) in &members {
            pipe.hgetall(self.keys.app_key(app));
        }
        let hashes: Vec<HashMap<String, String>> = self.query_pipe(op, &pipe).await?;
        Ok(members
            .into_iter()
            .zip(hashes)
            .map(|((app, score), fields)| record_from(app, score, &fields))
            .collect())
    }
}

#[async_trait]
impl Registry for RedisStore {
    async fn touch(&self, apps: &[String], at_ms: u64) -> Result<(), RegistryError> {
        if apps.is_empty() {
            return Ok(());
        }
        let mut cmd = Cmd::new();
        zadd_gt(&mut cmd, &self.keys.last_access_key(), apps, at_ms);
        self.query("touch", Retry::Idempotent, &cmd).await
    }

    async fn touch_known(&self, apps: &[String], at_ms: u64) -> Result<Vec<String>, RegistryError> {
        if apps.is_empty() {
            return Ok(Vec::new());
        }
        // `XX`: only members already there move (forward, `GT`); the
        // scores read in the same transaction name the others.
        let key = self.keys.last_access_key();
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(&key).arg("XX").arg("GT");
        for app in apps {
            zadd.arg(at_ms).arg(app);
        }
        let mut scores = redis::cmd("ZMSCORE");
        scores.arg(&key).arg(apps);
        let mut pipe = redis::pipe();
        pipe.atomic().add_command(zadd).ignore().add_command(scores);
        let (scores,): (Vec<Option<f64>>,) = self.query_pipe("touch_known", &pipe).await?;
        Ok(apps
            .iter()
            .zip(scores)
            .filter(|(_, score)| score.is_none())
            .map(|(app, _)| app.clone())
            .collect())
    }

    async fn register(&self, app: &str, meta: AppMeta, at_ms: u64) -> Result<(), RegistryError> {
        let linked_apps = to_json(&meta.linked_apps)?;
        let mut zadd = Cmd::new();
        zadd_gt(
            &mut zadd,
            &self.keys.last_access_key(),
            &[app.to_owned()],
            at_ms,
        );
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                self.keys.app_key(app),
                &[
                    (REGION, meta.region),
                    (MAX_IDLE_MINUTES, meta.max_idle_minutes.to_string()),
                    (LINKED_APPS, linked_apps),
                ],
            )
            .ignore()
            .add_command(zadd)
            .ignore();
        self.query_pipe("register", &pipe).await
    }

    async fn get(&self, app: &str) -> Result<Option<AppRecord>, RegistryError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zscore(self.keys.last_access_key(), app)
            .hgetall(self.keys.app_key(app));
        let (score, fields): (Option<f64>, HashMap<String, String>) =
            self.query_pipe("get", &pipe).await?;
        Ok(score.map(|score| record_from(app.to_owned(), score, &fields)))
    }

    async fn list(&self) -> Result<Vec<AppRecord>, RegistryError> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.keys.last_access_key())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
        let mut members: Vec<(String, f64)> = self.query("list", Retry::Idempotent, &cmd).await?;
        members.sort_by(|a, b| a.0.cmp(&b.0));
        self.records("list", members).await
    }

    async fn accessed_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<AppRecord>, RegistryError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.keys.last_access_key())
            .arg("-inf")
            .arg(before_ms)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(
                u64::try_from(limit)
                    .unwrap_or(u64::MAX)
                    .min(i64::MAX as u64),
            )
            .arg("WITHSCORES");
        let members: Vec<(String, f64)> = self
            .query("accessed_before", Retry::Idempotent, &cmd)
            .await?;
        self.records("accessed_before", members).await
    }

    async fn remember_formation(
        &self,
        app: &str,
        formation: Vec<(String, u32)>,
    ) -> Result<(), RegistryError> {
        self.remember_field("remember_formation", app, FORMATION, to_json(&formation)?)
            .await
    }

    async fn remember_autoscalers(
        &self,
        app: &str,
        autoscalers: Vec<String>,
    ) -> Result<(), RegistryError> {
        self.remember_field(
            "remember_autoscalers",
            app,
            AUTOSCALERS,
            to_json(&autoscalers)?,
        )
        .await
    }

    async fn forget(&self, app: &str) -> Result<(), RegistryError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zrem(self.keys.last_access_key(), app)
            .ignore()
            .del(self.keys.app_key(app))
            .ignore();
        self.query_pipe("forget", &pipe).await
    }

    async fn forget_if_accessed_before(
        &self,
        app: &str,
        before_ms: u64,
    ) -> Result<bool, RegistryError> {
        let mut invocation = FORGET_IF_BEFORE.prepare_invoke();
        invocation
            .key(self.keys.last_access_key())
            .key(self.keys.app_key(app))
            .arg(app)
            .arg(before_ms);
        let invocation = &invocation;
        self.run(
            "forget_if_accessed_before",
            Retry::Idempotent,
            |mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await },
        )
        .await
        .map(|forgotten| forgotten == 1)
    }

    async fn len(&self) -> Result<usize, RegistryError> {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(self.keys.last_access_key());
        self.query("len", Retry::Idempotent, &cmd).await
    }
}

#[async_trait]
impl Coordinator for RedisStore {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, RegistryError> {
        let mut invocation = ACQUIRE.prepare_invoke();
        invocation
            .key(self.keys.lease_key(name))
            .arg(holder)
            .arg(ttl_ms(ttl));
        let invocation = &invocation;
        // Retrying is safe: if the first attempt took the lease, the second
        // finds us holding it and extends it.
        self.run("acquire", Retry::Idempotent, |mut conn| async move {
            invocation.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(|taken| taken == 1)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<bool, RegistryError> {
        let mut invocation = RELEASE.prepare_invoke();
        invocation.key(self.keys.lease_key(name)).arg(holder);
        let invocation = &invocation;
        // A retry after a release whose answer was lost reports false, but
        // the lease is gone either way.
        self.run("release", Retry::Idempotent, |mut conn| async move {
            invocation.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(|deleted| deleted == 1)
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, RegistryError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.lease_key(name));
        self.query("holder", Retry::Idempotent, &cmd).await
    }

    async fn put_note(&self, name: &str, value: &str, ttl: Duration) -> Result<(), RegistryError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.note_key(name))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms(ttl));
        self.query("put_note", Retry::Idempotent, &cmd).await
    }

    async fn note(&self, name: &str) -> Result<Option<String>, RegistryError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.note_key(name));
        self.query("note", Retry::Idempotent, &cmd).await
    }

    async fn notes(&self, names: &[String]) -> Result<Vec<Option<String>>, RegistryError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for name in names {
            cmd.arg(self.keys.note_key(name));
        }
        self.query("notes", Retry::Idempotent, &cmd).await
    }

    async fn mark(
        &self,
        set: &str,
        member: &str,
        at_ms: u64,
        keep: Duration,
    ) -> Result<(), RegistryError> {
        let key = self.keys.marks_key(set);
        let oldest = at_ms.saturating_sub(ttl_ms(keep));
        let mut pipe = redis::pipe();
        // GT: concurrent writers never move a mark backwards.
        pipe.cmd("ZADD")
            .arg(&key)
            .arg("GT")
            .arg(at_ms)
            .arg(member)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({oldest}"))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms(keep))
            .ignore();
        self.query_pipe("mark", &pipe).await
    }

    async fn marked_since(
        &self,
        set: &str,
        since_ms: u64,
    ) -> Result<Vec<(String, u64)>, RegistryError> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.keys.marks_key(set))
            .arg(format!("({since_ms}"))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("WITHSCORES");
        let marks: Vec<(String, f64)> = self.query("marked_since", Retry::Idempotent, &cmd).await?;
        // Scores are whole milliseconds, exact in an f64.
        Ok(marks
            .into_iter()
            .map(|(member, at)| (member, at as u64))
            .collect())
    }
}

#[async_trait]
impl EventLog for RedisStore {
    async fn record(&self, event: Event) -> Result<(), RegistryError> {
        let json = to_json(&event)?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.keys.events_key())
            .arg("MAXLEN")
            .arg("=")
            .arg(self.events_capacity)
            .arg("*")
            .arg(EVENT_FIELD)
            .arg(json);
        // Not retried: the first attempt may have appended it already.
        self.query::<String>("record", Retry::Never, &cmd)
            .await
            .map(drop)
    }

    async fn recent(&self, limit: usize) -> Result<Vec<Event>, RegistryError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(self.keys.events_key())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit);
        let reply: StreamRangeReply = self.query("recent", Retry::Idempotent, &cmd).await?;
        Ok(reply
            .ids
            .into_iter()
            .filter_map(|entry| {
                let parsed = entry
                    .map
                    .get(EVENT_FIELD)
                    .ok_or_else(|| "no event field".to_owned())
                    .and_then(|value| String::from_redis_value(value).map_err(|e| e.to_string()))
                    .and_then(|json| {
                        serde_json::from_str::<Event>(&json).map_err(|e| e.to_string())
                    });
                match parsed {
                    Ok(event) => Some(event),
                    Err(error) => {
                        warn!(id = %entry.id, error, "skipping an unreadable event in redis");
                        None
                    }
                }
            })
            .collect())
    }
}
