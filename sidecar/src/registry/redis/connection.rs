//! How the Redis store connects: timeouts, TCP settings, which errors mean
//! a lost connection, and URLs made safe to print.

use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::io::tcp::TcpSettings;
use redis::RedisError;

/// Bound on [`RedisStore::connect`](super::RedisStore::connect), `PING` included.
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

pub fn manager_config() -> ConnectionManagerConfig {
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
pub fn lost_connection(e: &RedisError) -> bool {
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
}
