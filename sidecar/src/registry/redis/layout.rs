//! How the Redis store lays out its data: key names, the hash fields of an
//! app, and how values are encoded and read back.
//!
//! Every key starts with the configured prefix (`paastis:` below), so one
//! Redis can serve several gateways, or tests, side by side.
//!
//! | key                    | type       | content                                        |
//! |------------------------|------------|------------------------------------------------|
//! | `paastis:last_access`  | sorted set | member = app, score = last access (ms)         |
//! | `paastis:app:{app}`    | hash       | `region`, `max_idle_minutes`, `linked_apps` (JSON array), `formation` (JSON array of `[type, amount]`), `autoscalers` (JSON array of ids) |
//! | `paastis:lease:{name}` | string, PX | the lease holder                               |
//! | `paastis:note:{name}`  | string, PX | the note                                       |
//! | `paastis:events`       | stream     | one field `event` = the [`Event`] as JSON      |
//!
//! An app is registered exactly when it is a member of `last_access`; its
//! hash may be missing (an app only ever touched), and then it reads as
//! [`AppRecord::blank`] with its last access.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Cmd;
use tracing::warn;

#[cfg(doc)]
use crate::registry::Event;
use crate::registry::{AppRecord, RegistryError};

/// The hash fields of an app.
pub const REGION: &str = "region";
pub const MAX_IDLE_MINUTES: &str = "max_idle_minutes";
pub const LINKED_APPS: &str = "linked_apps";
pub const FORMATION: &str = "formation";
pub const AUTOSCALERS: &str = "autoscalers";
/// The stream field holding an event's JSON.
pub const EVENT_FIELD: &str = "event";

/// The names of the keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys(Arc<str>);

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self(prefix.into())
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.0
    }

    pub fn last_access_key(&self) -> String {
        format!("{}last_access", self.0)
    }

    pub fn app_key(&self, app: &str) -> String {
        format!("{}app:{app}", self.0)
    }

    pub fn lease_key(&self, name: &str) -> String {
        format!("{}lease:{name}", self.0)
    }

    pub fn note_key(&self, name: &str) -> String {
        format!("{}note:{name}", self.0)
    }

    /// A sorted set of marks (member -> ms): `marks:instances`,
    /// `marks:stops`.
    pub fn marks_key(&self, set: &str) -> String {
        format!("{}marks:{set}", self.0)
    }

    pub fn events_key(&self) -> String {
        format!("{}events", self.0)
    }
}

/// Milliseconds for `PX`/`PEXPIRE`, which refuse 0.
pub fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, i64::MAX as u64)
}

/// Builds a record from its sorted-set score and hash fields. A field that
/// does not parse is logged and read as unknown, so that one damaged hash
/// does not hide every other app.
pub fn record_from(app: String, score: f64, fields: &HashMap<String, String>) -> AppRecord {
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
    if let Some(raw) = fields.get(AUTOSCALERS) {
        match serde_json::from_str(raw) {
            Ok(ids) => record.autoscalers = ids,
            Err(e) => {
                warn!(app = %record.app, raw, error = %e, "unreadable autoscalers in redis, ignored")
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

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, RegistryError> {
    serde_json::to_string(value).map_err(|e| RegistryError(format!("cannot encode for redis: {e}")))
}

/// `ZADD key GT at app...`: adds new apps, moves existing ones forward only.
pub fn zadd_gt(cmd: &mut Cmd, key: &str, apps: &[String], at_ms: u64) {
    cmd.arg("ZADD").arg(key).arg("GT");
    for app in apps {
        cmd.arg(at_ms).arg(app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
