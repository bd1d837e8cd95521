//! `POST /v1/activity`: the apps the filter served since its last flush,
//! and the renewal of the awake leases it holds.
//!
//! # Awake leases
//!
//! A filter VM (one per Envoy worker) may route an app from its cache only
//! while it holds a lease on it that the sidecar granted (a wake's 200, an
//! activity answer's `awake`) and keeps renewing: every tick while it holds
//! any, traffic or not, it sends one batch naming the apps it served
//! (`apps`) and the other apps it holds (`held`), with its id (`vm`) and
//! how long it keeps routing an app without a renewal (`lease_ms`, its
//! cache TTL). The answer renews the apps listed `awake` and takes back
//! the ones listed `asleep` (the VM drops them and stops naming them); an
//! app in neither list keeps its lease until it runs out. The sidecar
//! pauses an app only once every live VM of every instance has stopped
//! naming it, or its lease ran out where a VM fell silent.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The body of `POST /v1/activity`: `{"apps": [names], "not_running"?:
/// [names], "held"?: [names], "vm"?: id, "lease_ms"?: ms}` (each app once
/// per list; at most 10,000 per list). Borrowed when written (the filter
/// keeps its batch to check the answer), owned when read. A batch without
/// `vm` (an older filter) renews nothing and is never waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityRequest<'a> {
    pub apps: Cow<'a, [String]>,
    /// Apps whose routed traffic showed them not running since the last
    /// flush (the platform's router answered 502, 503 or 504 for them; the
    /// filter dropped them from its cache). The sidecar checks each once
    /// per period and forgets the ones that do not run. Written only when
    /// not empty; defaults to empty.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub not_running: Cow<'a, [String]>,
    /// Apps the VM holds a lease on and routes from its cache, not in
    /// `apps` (no request since the last batch): renewed, never counted as
    /// activity. Written only when not empty; defaults to empty.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub held: Cow<'a, [String]>,
    /// The VM's id, random, the same for the VM's life: what the sidecar
    /// tracks the leases of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<Cow<'a, str>>,
    /// How long the VM keeps routing an app after its last renewal (its
    /// `cache_ttl_ms`): how long a pause waits for a VM that fell silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

impl ActivityRequest<'_> {
    /// Every app the batch names as routed by the VM (`apps`, then `held`).
    pub fn routed(&self) -> impl Iterator<Item = &String> {
        self.apps.iter().chain(self.held.iter())
    }
}

// serde's `skip_serializing_if` hands the field itself, by reference.
#[allow(clippy::ptr_arg)]
fn is_empty(list: &Cow<'_, [String]>) -> bool {
    list.is_empty()
}

/// An app that runs, and where to send its traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningApp {
    /// The app as the filter named it.
    pub app: String,
    pub region: String,
    /// Host of the app's default domain on its region's front-end.
    pub upstream_host: String,
}

/// 200 answer of `POST /v1/activity`: `{"awake": [...], "asleep": [...]}`.
///
/// `awake`: the apps of the batch the sidecar knows to run (their leases
/// are renewed: the filter refreshes its cache from them). `asleep`: the
/// apps of `apps` it does not know to run (never woken through it, paused,
/// forgotten, or found stopped), and the apps of `held` it knows stopped
/// (a pause on any instance): the filter drops their cache entries and
/// gives the lease back. A held app in neither list (an instance that just
/// restarted has no memory of it) keeps its lease until it runs out. An app
/// is in at most one of the two; both default to empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityAnswer {
    #[serde(default)]
    pub awake: Vec<RunningApp>,
    #[serde(default)]
    pub asleep: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips() {
        let batch = vec!["app-one".to_owned(), "app-two".to_owned()];
        let r = ActivityRequest {
            apps: Cow::Borrowed(&batch),
            not_running: Cow::Borrowed(&[]),
            held: Cow::Borrowed(&[]),
            vm: None,
            lease_ms: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"apps":["app-one","app-two"]}"#);
        assert_eq!(serde_json::from_str::<ActivityRequest>(&text).unwrap(), r);
        let stopped = vec!["app-two".to_owned()];
        let r = ActivityRequest {
            apps: Cow::Borrowed(&batch),
            not_running: Cow::Borrowed(&stopped),
            held: Cow::Borrowed(&[]),
            vm: None,
            lease_ms: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"apps":["app-one","app-two"],"not_running":["app-two"]}"#
        );
        assert_eq!(serde_json::from_str::<ActivityRequest>(&text).unwrap(), r);
        assert!(serde_json::from_str::<ActivityRequest>(r#"{"apps":[],"x":1}"#).is_err());
        let held = vec!["app-three".to_owned()];
        let r = ActivityRequest {
            apps: Cow::Borrowed(&[]),
            not_running: Cow::Borrowed(&[]),
            held: Cow::Borrowed(&held),
            vm: Some(Cow::Borrowed("0123abcd")),
            lease_ms: Some(30_000),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"apps":[],"held":["app-three"],"vm":"0123abcd","lease_ms":30000}"#
        );
        let back = serde_json::from_str::<ActivityRequest>(&text).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.routed().collect::<Vec<_>>(), ["app-three"]);

        let a = ActivityAnswer {
            awake: vec![RunningApp {
                app: "app-one".into(),
                region: "osc-fr1".into(),
                upstream_host: "app-one.osc-fr1.scalingo.io".into(),
            }],
            asleep: vec!["app-two".into()],
        };
        let value = serde_json::to_value(&a).unwrap();
        assert_eq!(
            value,
            json!({"awake": [{"app": "app-one", "region": "osc-fr1", "upstream_host": "app-one.osc-fr1.scalingo.io"}], "asleep": ["app-two"]})
        );
        assert_eq!(serde_json::from_value::<ActivityAnswer>(value).unwrap(), a);
        assert_eq!(
            serde_json::from_str::<ActivityAnswer>("{}").unwrap(),
            ActivityAnswer {
                awake: Vec::new(),
                asleep: Vec::new()
            }
        );
    }
}
