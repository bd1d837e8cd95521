//! Activity reporting: which apps the filter served, batched per VM (one per
//! worker thread) and flushed to the sidecar on the root context's tick, so
//! that a cache hit never costs a callout.
//!
//! An app is active when a request was routed to it since the last flush, or
//! while it has an open stream (a long download, a WebSocket): at each tick
//! every app with open streams is reported again.
//!
//! The batch is also the renewal of the VM's awake leases (see
//! `paastis_api`'s `ActivityRequest`): every app the VM served is held
//! from then on, and named in every batch (`held`, when not served since
//! the last one) until the sidecar takes it back (`asleep`), or its cache
//! entry is gone. A VM that holds any lease sends a batch on every tick,
//! traffic or not.
//!
//! The batch also carries the apps whose routed traffic showed them not
//! running (`not_running`: the router answered 502/503/504), each once,
//! bounded like the served ones; the answer names the apps of the batch the
//! sidecar knows awake (their cache entries are refreshed) and those it
//! does not (`asleep`: their entries are dropped).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use paastis_api::mini;
use paastis_api::{ActivityAnswer, ActivityRequest};
use paastis_rules::is_valid_app_name;

use crate::answer::{is_json_content_type, parse_status, AnswerError, Awake};

pub use paastis_api::ACTIVITY_PATH;
/// Longest an activity callout may take (bounded by `callout_timeout_ms`):
/// the sidecar only records activity, and a slow flush delays the next one.
pub const ACTIVITY_TIMEOUT_MS: u64 = 10_000;
/// Most apps kept waiting for a flush. Beyond it new apps are dropped (with a
/// warning): a sidecar down for long must not make the filter's memory grow
/// without bound.
pub const MAX_PENDING_APPS: usize = 10_000;

/// The per-VM activity state, shared by the root context and its HTTP
/// contexts.
#[derive(Debug, Default)]
pub struct Activity {
    /// Apps served since the last flush (at most [`MAX_PENDING_APPS`]).
    served: HashSet<String>,
    /// Open streams per app. An app whose count dropped to 0 stays until the
    /// next [`Activity::take_batch`], which drops it: a stream per request on
    /// a keep-alive connection then allocates nothing after the first.
    open: HashMap<String, u32>,
    /// Apps dropped because `served` was full, since the last flush.
    dropped: usize,
    /// Apps seen not running since the last flush (at most
    /// [`MAX_PENDING_APPS`]; beyond it the report is lost, the app's cache
    /// entry is dropped all the same).
    not_running: HashSet<String>,
    /// Apps the VM holds an awake lease on: served once, until the sidecar
    /// takes the lease back or the entry is gone (at most
    /// [`MAX_PENDING_APPS`]).
    held: HashSet<String>,
}

impl Activity {
    /// Records that a request was routed to `app` (allocates only the first
    /// time `app` is seen in a batch).
    pub fn served(&mut self, app: &str) {
        if self.served.contains(app) {
            return;
        }
        if self.served.len() >= MAX_PENDING_APPS {
            self.dropped += 1;
            return;
        }
        self.served.insert(app.to_owned());
    }

    /// A routed stream to `app` opened.
    pub fn stream_opened(&mut self, app: &str) {
        match self.open.get_mut(app) {
            Some(count) => *count = count.saturating_add(1),
            None => {
                self.open.insert(app.to_owned(), 1);
            }
        }
    }

    /// A routed stream to `app` ended (call once per [`Self::stream_opened`]).
    pub fn stream_closed(&mut self, app: &str) {
        if let Some(count) = self.open.get_mut(app) {
            *count = count.saturating_sub(1);
        }
    }

    /// Number of open streams to `app`.
    pub fn open_streams(&self, app: &str) -> u32 {
        self.open.get(app).copied().unwrap_or(0)
    }

    /// Takes the batch to flush: the apps served since the last flush plus
    /// every app with open streams, sorted, each once. Also returns how many
    /// apps were dropped since the last flush because the batch was full.
    pub fn take_batch(&mut self) -> (Vec<String>, usize) {
        self.open.retain(|_, count| *count > 0);
        for app in self.open.keys() {
            if self.served.contains(app) {
                continue;
            }
            if self.served.len() >= MAX_PENDING_APPS {
                self.dropped += 1;
            } else {
                self.served.insert(app.clone());
            }
        }
        let mut batch: Vec<String> = self.served.drain().collect();
        // Sorted: the answer is checked against the batch by binary search.
        batch.sort_unstable();
        for app in &batch {
            if self.held.len() < MAX_PENDING_APPS && !self.held.contains(app) {
                self.held.insert(app.clone());
            }
        }
        (batch, std::mem::take(&mut self.dropped))
    }

    /// The apps held but not in `batch` (sorted): the rest of the renewal.
    pub fn held_besides(&self, batch: &[String]) -> Vec<String> {
        let mut held: Vec<String> = self
            .held
            .iter()
            .filter(|a| batch.binary_search(a).is_err())
            .cloned()
            .collect();
        held.sort_unstable();
        held
    }

    /// Gives the lease on `app` back (the sidecar took it, or its entry is
    /// gone): no longer named in the batches.
    pub fn release(&mut self, app: &str) {
        self.held.remove(app);
    }

    /// Whether the VM holds a lease on `app`.
    pub fn holds(&self, app: &str) -> bool {
        self.held.contains(app)
    }

    /// Merges back a batch whose flush failed, so that its activity is sent
    /// with the next one. Returns how many apps did not fit.
    pub fn restore(&mut self, batch: Vec<String>) -> usize {
        let mut dropped = 0;
        for app in batch {
            if self.served.len() >= MAX_PENDING_APPS && !self.served.contains(&app) {
                dropped += 1;
            } else {
                self.served.insert(app);
            }
        }
        dropped
    }

    /// Number of apps waiting for the next flush (open streams aside).
    pub fn pending(&self) -> usize {
        self.served.len()
    }

    /// Records that the traffic showed `app` not running.
    pub fn not_running(&mut self, app: &str) {
        if self.not_running.len() < MAX_PENDING_APPS && !self.not_running.contains(app) {
            self.not_running.insert(app.to_owned());
        }
    }

    /// Takes the apps seen not running since the last flush, sorted.
    pub fn take_not_running(&mut self) -> Vec<String> {
        let mut apps: Vec<String> = self.not_running.drain().collect();
        apps.sort_unstable();
        apps
    }

    /// Merges back reports whose flush failed (bounded).
    pub fn restore_not_running(&mut self, apps: Vec<String>) {
        for app in apps {
            self.not_running(&app);
        }
    }
}

/// Who sends a batch, and the lease it keeps without a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal<'a> {
    /// The VM's id.
    pub vm: &'a str,
    /// Its `cache_ttl_ms`.
    pub lease_ms: u64,
}

/// The JSON body of `POST /v1/activity`: `{"apps":[...]}`, plus
/// `"not_running":[...]` when some apps were seen not running,
/// `"held":[...]` when the VM holds other leases, and the VM's id and
/// lease.
pub fn activity_body(
    apps: &[String],
    not_running: &[String],
    held: &[String],
    renewal: Option<Renewal<'_>>,
) -> Vec<u8> {
    mini::to_string(&ActivityRequest {
        apps: Cow::Borrowed(apps),
        not_running: Cow::Borrowed(not_running),
        held: Cow::Borrowed(held),
        vm: renewal.map(|r| Cow::Borrowed(r.vm)),
        lease_ms: renewal.map(|r| r.lease_ms),
    })
    .into_bytes()
}

/// One app the sidecar says is awake, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwakeApp {
    /// A valid app name that was in the batch.
    pub app: String,
    pub awake: Awake,
}

/// What an activity answer says about the apps of the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityOutcome {
    /// Known awake: their cache entries are refreshed.
    pub awake: Vec<AwakeApp>,
    /// Not known awake: their cache entries are dropped.
    pub asleep: Vec<String>,
}

/// Reads the answer to a flush of `batch` (and of the leases `held`, both
/// sorted): `200 {"awake":[{"app","region", "upstream_host"}], "asleep":
/// [names]}`. Only apps the flush named are kept (the sidecar cannot touch
/// cache entries the filter did not ask about), awake ones only with a
/// valid region and upstream host; invalid items are skipped, not fatal.
pub fn parse_activity_answer(
    batch: &[String],
    held: &[String],
    status: Option<&[u8]>,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Result<ActivityOutcome, AnswerError> {
    let status = status.and_then(parse_status).ok_or(AnswerError::NoStatus)?;
    if status != 200 {
        return Err(AnswerError::UnexpectedStatus(status));
    }
    if !content_type.is_some_and(is_json_content_type) {
        return Err(AnswerError::NotJson(status));
    }
    let answer: ActivityAnswer = mini::from_slice(body).map_err(|e| AnswerError::BadBody {
        status,
        message: e.to_string(),
    })?;
    let asked = |app: &String| {
        is_valid_app_name(app)
            && (batch.binary_search(app).is_ok() || held.binary_search(app).is_ok())
    };
    let awake: Vec<AwakeApp> = answer
        .awake
        .into_iter()
        .filter(|item| asked(&item.app))
        .filter_map(|item| {
            Awake::checked(item.region, item.upstream_host)
                .ok()
                .map(|awake| AwakeApp {
                    app: item.app,
                    awake,
                })
        })
        .collect();
    let asleep = answer
        .asleep
        .into_iter()
        .filter(|app| asked(app) && !awake.iter().any(|a| a.app == *app))
        .collect();
    Ok(ActivityOutcome { awake, asleep })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn batches_served_and_open_apps() {
        let mut a = Activity::default();
        a.served("app-one");
        a.served("app-one");
        a.stream_opened("app-two");
        a.stream_opened("app-two");
        let (batch, dropped) = a.take_batch();
        assert_eq!(batch, ["app-one", "app-two"]);
        assert_eq!(dropped, 0);
        // Open streams are reported again at each tick, served apps once.
        assert_eq!(a.take_batch().0, ["app-two"]);
        a.stream_closed("app-two");
        assert_eq!(a.open_streams("app-two"), 1);
        a.stream_closed("app-two");
        a.stream_closed("app-two");
        assert_eq!(a.open_streams("app-two"), 0);
        assert!(a.take_batch().0.is_empty());
        assert!(
            a.open.is_empty(),
            "the flush drops apps left with no stream"
        );
        // Reopened after it was closed (its entry kept at 0 until a flush).
        a.stream_opened("app-three");
        a.stream_closed("app-three");
        a.stream_opened("app-three");
        assert_eq!(a.open_streams("app-three"), 1);
        assert_eq!(a.take_batch().0, ["app-three"]);
    }

    #[test]
    fn failed_flushes_are_merged_back_bounded() {
        let mut a = Activity::default();
        a.served("app-one");
        let (batch, _) = a.take_batch();
        assert_eq!(a.restore(batch), 0);
        a.served("app-one");
        assert_eq!(a.pending(), 1);
        let big: Vec<String> = (0..MAX_PENDING_APPS + 5)
            .map(|i| format!("app-{i:06}"))
            .collect();
        assert_eq!(a.restore(big), 6);
        assert_eq!(a.pending(), MAX_PENDING_APPS);
        a.served("brand-new");
        let (batch, dropped) = a.take_batch();
        assert_eq!(batch.len(), MAX_PENDING_APPS);
        assert_eq!(dropped, 1);
    }

    #[test]
    fn body() {
        assert_eq!(
            activity_body(&["app-one".into(), "app-two".into()], &[], &[], None),
            br#"{"apps":["app-one","app-two"]}"#
        );
        assert_eq!(
            activity_body(&[], &["app-two".into()], &[], None),
            br#"{"apps":[],"not_running":["app-two"]}"#
        );
        let renewal = Renewal {
            vm: "00ff",
            lease_ms: 30_000,
        };
        assert_eq!(
            activity_body(&[], &[], &["app-three".into()], Some(renewal)),
            br#"{"apps":[],"held":["app-three"],"vm":"00ff","lease_ms":30000}"#
        );
    }

    #[test]
    fn not_running_reports_are_deduplicated_and_bounded() {
        let mut a = Activity::default();
        a.not_running("app-two");
        a.not_running("app-one");
        a.not_running("app-two");
        let taken = a.take_not_running();
        assert_eq!(taken, ["app-one", "app-two"]);
        assert!(a.take_not_running().is_empty());
        a.restore_not_running(taken);
        a.restore_not_running(
            (0..MAX_PENDING_APPS + 5)
                .map(|i| format!("app-{i:06}"))
                .collect(),
        );
        assert_eq!(a.take_not_running().len(), MAX_PENDING_APPS);
    }

    #[test]
    fn answers() {
        let batch = vec!["app-one".to_owned(), "app-two".to_owned()];
        let json: Option<&[u8]> = Some(b"application/json");
        let body = br#"{"awake":[
            {"app":"app-one","region":"osc-fr1","upstream_host":"app-one.osc-fr1.scalingo.io"},
            {"app":"not-asked","region":"osc-fr1","upstream_host":"x.osc-fr1.scalingo.io"},
            {"app":"app-two","region":"osc-fr1","upstream_host":"bad host"}
        ], "asleep": ["app-two", "not-asked", "app-one", "Bad_Name"]}"#;
        let outcome = parse_activity_answer(&batch, &[], Some(b"200"), json, body).unwrap();
        let awake = outcome.awake;
        assert_eq!(awake.len(), 1);
        assert_eq!(awake[0].app, "app-one");
        assert_eq!(awake[0].awake.upstream_host, "app-one.osc-fr1.scalingo.io");
        assert_eq!(outcome.asleep, ["app-two"], "asked, and not also awake");
        assert_eq!(
            parse_activity_answer(&batch, &[], Some(b"200"), json, b"{}").unwrap(),
            ActivityOutcome::default()
        );
        assert!(parse_activity_answer(&batch, &[], Some(b"503"), json, b"{}").is_err());
        assert!(parse_activity_answer(&batch, &[], Some(b"200"), None, b"{}").is_err());
        assert!(parse_activity_answer(&batch, &[], None, None, b"").is_err());
        assert!(parse_activity_answer(&batch, &[], Some(b"200"), json, b"[").is_err());
    }

    proptest! {
        #[test]
        fn streams_balance(ops in prop::collection::vec((0usize..3, any::<bool>()), 0..50)) {
            let apps = ["app-one", "app-two", "app-three"];
            let mut a = Activity::default();
            let mut model = [0i64; 3];
            for (i, open) in ops {
                if open {
                    a.stream_opened(apps[i]);
                    model[i] += 1;
                } else {
                    a.stream_closed(apps[i]);
                    model[i] = (model[i] - 1).max(0);
                }
            }
            let (batch, _) = a.take_batch();
            for (i, app) in apps.iter().enumerate() {
                prop_assert_eq!(i64::from(a.open_streams(app)), model[i]);
                prop_assert_eq!(batch.iter().any(|b| b == app), model[i] > 0);
            }
        }
    }
}
