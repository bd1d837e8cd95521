//! Redis implementations of [`Registry`], [`Coordinator`] and [`EventLog`],
//! shared by every gateway instance that points at the same Redis and
//! prefix: one [`RedisStore`] implements all three.
//!
//! # Key layout
//!
//! Every key starts with the configured prefix (`paastis:` below), so one
//! Redis can serve several gateways, or tests, side by side.
//!
//! | key                    | type       | content                                        |
//! |------------------------|------------|------------------------------------------------|
//! | `paastis:last_access`  | sorted set | member = app, score = last access (ms)         |
//! | `paastis:app:{app}`    | hash       | `region`, `max_idle_minutes`, `linked_apps` (JSON array), `formation` (JSON array of `[type, amount]`) |
//! | `paastis:lease:{name}` | string, PX | the lease holder                               |
//! | `paastis:note:{name}`  | string, PX | the note                                       |
//! | `paastis:events`       | stream     | one field `event` = the [`Event`] as JSON      |
//!
//! An app is registered exactly when it is a member of `last_access`; its
//! hash may be missing (an app only ever touched), and then it reads as
//! [`AppRecord::blank`] with its last access.
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

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::streams::StreamRangeReply;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisResult, Script};
use tracing::{debug, warn};

use super::{AppMeta, AppRecord, Coordinator, Event, EventLog, Registry, RegistryError};

/// Bound on [`RedisStore::connect`], `PING` included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one attempt to open a connection (TCP and handshake).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the answer to one command or pipeline.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on a whole operation, its retry included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time before TCP keep-alive probes, then their interval and count.
const KEEPALIVE_TIME: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
#[cfg(target_os = "linux")]
const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before Linux drops the
/// connection (a Redis host that vanished without a reset).
#[cfg(target_os = "linux")]
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);

/// Takes lease KEYS[1] for holder ARGV[1] for ARGV[2] ms when it is free,
/// extends it when ARGV[1] already holds it; 1 when ARGV[1] holds it after.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// Deletes lease KEYS[1] only if ARGV[1] holds it; 1 when deleted.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// The hash fields of an app.
const REGION: &str = "region";
const MAX_IDLE_MINUTES: &str = "max_idle_minutes";
const LINKED_APPS: &str = "linked_apps";
const FORMATION: &str = "formation";
/// The stream field holding an event's JSON.
const EVENT_FIELD: &str = "event";

/// Whether an operation may be sent again after a lost connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Sending it twice has the effect of sending it once.
    Idempotent,
    Never,
}

/// Registry, coordinator and event log in one Redis, under one key prefix
/// (see the [module docs](self) for the layout). Cheap to clone: clones
/// share the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    /// Always >= 1.
    events_capacity: usize,
    /// The URL without its password, for messages.
    target: Arc<str>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
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
            prefix: prefix.into(),
            events_capacity: events_capacity.max(1),
            target: target.into(),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn last_access_key(&self) -> String {
        format!("{}last_access", self.prefix)
    }

    fn app_key(&self, app: &str) -> String {
        format!("{}app:{app}", self.prefix)
    }

    fn lease_key(&self, name: &str) -> String {
        format!("{}lease:{name}", self.prefix)
    }

    fn note_key(&self, name: &str) -> String {
        format!("{}note:{name}", self.prefix)
    }

    fn events_key(&self) -> String {
        format!("{}events", self.prefix)
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
            pipe.hgetall(self.app_key(app));
        }
        let hashes: Vec<HashMap<String, String>> = self.query_pipe(op, &pipe).await?;
        Ok(members
            .into_iter()
            .zip(hashes)
            .map(|((app, score), fields)| record_from(app, score, &fields))
            .collect())
    }
}

fn manager_config() -> ConnectionManagerConfig {
    let keepalive = redis::io::tcp::socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL);
    #[cfg(target_os = "linux")]
    let keepalive = keepalive.with_retries(KEEPALIVE_RETRIES);
    let tcp = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let tcp = tcp.set_user_timeout(TCP_USER_TIMEOUT);
    ConnectionManagerConfig::new()
        // One attempt per reconnection: a caller must not wait through a
        // backoff loop (and in redis 0.32 the first backoff delay is 1 s
        // whatever `factor` says); the next call starts another attempt.
        .set_number_of_retries(0)
        .set_connection_timeout(CONNECTION_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_tcp_settings(tcp)
}

/// The connection was found dead or could not be opened: the request was
/// not answered, and the manager is already opening a new connection.
fn lost_connection(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_connection_refusal()
}

/// `url` with its password (userinfo, or a `pass`/`password` query
/// parameter) replaced by `***`; something that does not parse as a URL is
/// not repeated at all.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparsable redis URL>".to_owned();
    };
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have credentials, which have none.
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if matches!(k.as_ref(), "pass" | "password") {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Milliseconds for `PX`/`PEXPIRE`, which refuse 0.
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, i64::MAX as u64)
}

/// Builds a record from its sorted-set score and hash fields. A field that
/// does not parse is logged and read as unknown, so that one damaged hash
/// does not hide every other app.
fn record_from(app: String, score: f64, fields: &HashMap<String, String>) -> AppRecord {
    let mut record = AppRecord::blank(&app);
    // Scores are integers below 2^53, exact in an f64; `as` saturates.
    record.last_access_ms = score as u64;
    record.region = fields.get(REGION).cloned();
    if let Some(raw) = fields.get(MAX_IDLE_MINUTES) {
        match raw.parse() {
            Ok(minutes) => record.max_idle_minutes = minutes,
            Err(e) => {
                warn!(app = %record.app, raw, error = %e, "unreadable max_idle_minutes in redis, using the default")
            }
        }
    }
    if let Some(raw) = fields.get(LINKED_APPS) {
        match serde_json::from_str(raw) {
            Ok(apps) => record.linked_apps = apps,
            Err(e) => {
                warn!(app = %record.app, raw, error = %e, "unreadable linked_apps in redis, ignored")
            }
        }
    }
    if let Some(raw) = fields.get(FORMATION) {
        match serde_json::from_str(raw) {
            Ok(formation) => record.formation = formation,
            Err(e) => {
                warn!(app = %record.app, raw, error = %e, "unreadable formation in redis, ignored")
            }
        }
    }
    record
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, RegistryError> {
    serde_json::to_string(value).map_err(|e| RegistryError(format!("cannot encode for redis: {e}")))
}

/// `ZADD key GT at app...`: adds new apps, moves existing ones forward only.
fn zadd_gt(cmd: &mut Cmd, key: &str, apps: &[String], at_ms: u64) {
    cmd.arg("ZADD").arg(key).arg("GT");
    for app in apps {
        cmd.arg(at_ms).arg(app);
    }
}

#[async_trait]
impl Registry for RedisStore {
    async fn touch(&self, apps: &[String], at_ms: u64) -> Result<(), RegistryError> {
        if apps.is_empty() {
            return Ok(());
        }
        let mut cmd = Cmd::new();
        zadd_gt(&mut cmd, &self.last_access_key(), apps, at_ms);
        self.query("touch", Retry::Idempotent, &cmd).await
    }

    async fn register(&self, app: &str, meta: AppMeta, at_ms: u64) -> Result<(), RegistryError> {
        let linked_apps = to_json(&meta.linked_apps)?;
        let mut zadd = Cmd::new();
        zadd_gt(&mut zadd, &self.last_access_key(), &[app.to_owned()], at_ms);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                self.app_key(app),
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
            .zscore(self.last_access_key(), app)
            .hgetall(self.app_key(app));
        let (score, fields): (Option<f64>, HashMap<String, String>) =
            self.query_pipe("get", &pipe).await?;
        Ok(score.map(|score| record_from(app.to_owned(), score, &fields)))
    }

    async fn list(&self) -> Result<Vec<AppRecord>, RegistryError> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.last_access_key())
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
        cmd.arg(self.last_access_key())
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
        let formation = to_json(&formation)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(self.app_key(app), FORMATION, formation)
            .ignore()
            .cmd("ZADD")
            .arg(self.last_access_key())
            .arg("NX")
            .arg(0)
            .arg(app)
            .ignore();
        self.query_pipe("remember_formation", &pipe).await
    }

    async fn forget(&self, app: &str) -> Result<(), RegistryError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zrem(self.last_access_key(), app)
            .ignore()
            .del(self.app_key(app))
            .ignore();
        self.query_pipe("forget", &pipe).await
    }

    async fn len(&self) -> Result<usize, RegistryError> {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(self.last_access_key());
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
            .key(self.lease_key(name))
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
        invocation.key(self.lease_key(name)).arg(holder);
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
        cmd.arg(self.lease_key(name));
        self.query("holder", Retry::Idempotent, &cmd).await
    }

    async fn put_note(&self, name: &str, value: &str, ttl: Duration) -> Result<(), RegistryError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.note_key(name))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms(ttl));
        self.query("put_note", Retry::Idempotent, &cmd).await
    }

    async fn note(&self, name: &str) -> Result<Option<String>, RegistryError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.note_key(name));
        self.query("note", Retry::Idempotent, &cmd).await
    }
}

#[async_trait]
impl EventLog for RedisStore {
    async fn record(&self, event: Event) -> Result<(), RegistryError> {
        let json = to_json(&event)?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.events_key())
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
        cmd.arg(self.events_key())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("redis://:s3cret@redis.internal:6379/0"),
            "redis://:***@redis.internal:6379/0"
        );
        assert_eq!(
            redact_url("redis://user:s3cret@host"),
            "redis://user:***@host"
        );
        assert_eq!(redact_url("redis://host:6380"), "redis://host:6380");
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert!(!redact_url("not a url s3cret").contains("s3cret"));
    }

    #[test]
    fn records_read_leniently() {
        let fields: HashMap<String, String> = [
            (REGION, "osc-fr1"),
            (MAX_IDLE_MINUTES, "forty"),
            (LINKED_APPS, r#"["my-api-1"]"#),
            (FORMATION, r#"[["web",2],["worker",1]]"#),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let record = record_from("my-app-1".into(), 1_700_000_000_123.0, &fields);
        assert_eq!(record.last_access_ms, 1_700_000_000_123);
        assert_eq!(record.region.as_deref(), Some("osc-fr1"));
        assert_eq!(
            record.max_idle_minutes,
            crate::registry::DEFAULT_MAX_IDLE_MINUTES
        );
        assert_eq!(record.linked_apps, ["my-api-1"]);
        assert_eq!(
            record.formation,
            [("web".to_owned(), 2), ("worker".to_owned(), 1)]
        );
        assert_eq!(
            record_from("x".into(), 0.0, &HashMap::new()),
            AppRecord::blank("x")
        );
    }

    #[test]
    fn ttls_are_positive_milliseconds() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_millis(300)), 300);
        assert_eq!(ttl_ms(Duration::MAX), i64::MAX as u64);
    }
}
