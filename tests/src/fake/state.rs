//! The fake's shared state and its simulation rules.
//!
//! Time is simulated lazily: a scale records deadlines ([`Instant`]s), and
//! every read first *settles* the app (applies whatever transition has come
//! due). No background task exists, so the state is a pure function of the
//! calls made and the clock. One [`Mutex`] guards everything; it is only
//! ever held for short synchronous sections, never across an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::model::{
    AddAppError, AppSnapshot, Autoscaler, CallRecord, ContainerSnapshot, Endpoint, FakeApp,
    FakeConfig, Fault, FaultKind, ListEntries, RateLimitBody, UnknownTypeAnswer,
};
use super::util::{is_valid_app_name, iso_ms, make_jwt, object_id, unix_secs_ceil};

/// Highest amount per process type the API accepts.
pub(crate) const MAX_AMOUNT: i64 = 10;
/// Container sizes the API accepts.
pub(crate) const SIZES: [&str; 6] = ["S", "M", "L", "XL", "2XL", "3XL"];
/// The rate-limit window.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// What every listener shares.
pub(crate) struct Shared {
    /// The configuration the fake was started with (the delays in it are the
    /// initial values; the live ones are in [`Inner`]).
    pub config: FakeConfig,
    /// Region name -> regional API base URL (`http://127.0.0.1:PORT`), in
    /// the configured order.
    pub api_urls: Vec<(String, String)>,
    inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn new(config: FakeConfig, api_urls: Vec<(String, String)>) -> Shared {
        let inner = Inner {
            knobs: Knobs::from_config(&config),
            apps: BTreeMap::new(),
            operations: HashMap::new(),
            tokens: HashMap::new(),
            counters: HashMap::new(),
            scale_calls: HashMap::new(),
            front_hits: HashMap::new(),
            faults: Vec::new(),
            rate: HashMap::new(),
            rate_limited: HashMap::new(),
            call_log: Vec::new(),
        };
        Shared {
            config,
            api_urls,
            inner: Mutex::new(inner),
        }
    }

    /// Locks the state. A poisoned lock is recovered: every critical section
    /// leaves the state consistent before anything can panic.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The behaviour knobs that can change while the fake runs (initialised
/// from [`FakeConfig`]; see its fields for what each one means).
#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    pub boot_delay: Duration,
    pub stop_delay: Duration,
    pub keep_stopped: bool,
    pub rate_limit: Option<u32>,
    pub rate_body: RateLimitBody,
    pub retry_after: Option<Duration>,
    pub list_entries: ListEntries,
    pub unknown_type: UnknownTypeAnswer,
    pub crashed_after: u32,
    pub boot_retries: u32,
    pub crash_backoff: Duration,
    pub crash_backoff_max: Duration,
    pub router_status: u16,
    pub front_boot_window: Duration,
}

impl Knobs {
    fn from_config(c: &FakeConfig) -> Knobs {
        Knobs {
            boot_delay: c.boot_delay,
            stop_delay: c.stop_delay,
            keep_stopped: c.keep_stopped_in_ps,
            rate_limit: c.rate_limit_per_minute,
            rate_body: c.rate_limit_body,
            retry_after: c.rate_limit_retry_after,
            list_entries: c.list_entries,
            unknown_type: c.unknown_type,
            crashed_after: c.crashed_after,
            boot_retries: c.boot_retries,
            crash_backoff: c.crash_backoff,
            crash_backoff_max: c.crash_backoff_max,
            router_status: c.router_status,
            front_boot_window: c.front_boot_window,
        }
    }
}

/// The mutable state.
pub(crate) struct Inner {
    pub knobs: Knobs,
    /// By name (names are global across regions, as on Scalingo).
    apps: BTreeMap<String, App>,
    operations: HashMap<String, Operation>,
    /// Every JWT issued, by its exact text.
    tokens: HashMap<String, IssuedToken>,
    counters: HashMap<Endpoint, usize>,
    /// By app name (or the raw path segment when it names no app).
    scale_calls: HashMap<String, usize>,
    /// By the app name taken from the `Host`.
    front_hits: HashMap<String, usize>,
    /// Active faults; `times` is what is left, always > 0.
    faults: Vec<Fault>,
    /// Per API token: instants of the accepted calls in the last window.
    rate: HashMap<String, VecDeque<Instant>>,
    /// Calls refused by the rate limit, per endpoint.
    rate_limited: HashMap<Endpoint, usize>,
    /// Every API call received, in order (front-end requests are not API
    /// calls and are not logged).
    call_log: Vec<CallRecord>,
}

struct IssuedToken {
    owner: String,
    expires: Instant,
    revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FormationEntry {
    pub kind: String,
    pub amount: u32,
    pub size: String,
}

impl FormationEntry {
    pub(crate) fn to_json(&self) -> Value {
        json!({ "name": self.kind, "amount": self.amount, "size": self.size })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CState {
    Booting,
    Running,
    Stopping,
    Stopped,
    Crashed,
}

impl CState {
    fn as_str(self) -> &'static str {
        match self {
            CState::Booting => "booting",
            CState::Running => "running",
            CState::Stopping => "stopping",
            CState::Stopped => "stopped",
            CState::Crashed => "crashed",
        }
    }
}

struct Container {
    id: String,
    kind: String,
    index: u32,
    size: String,
    created_at: SystemTime,
    state: CState,
    /// From this instant a `running` web container is served by the front
    /// (before it, the router still answers its error page).
    ready_at: Instant,
    /// Booted by a crash loop: it alternates `booting` and `crashed` until
    /// the loop's operation ends, then stays `crashed`.
    looping: bool,
}

/// The boot attempts of an app that crashes on boot: each attempt boots for
/// the boot delay then fails; retries wait an exponential back-off.
struct CrashLoop {
    /// `(start, failure)` of each attempt, in order.
    attempts: Vec<(Instant, Instant)>,
    /// Failed boots after which the app reads `crashed`.
    crashed_after: u32,
}

impl CrashLoop {
    fn failures(&self, now: Instant) -> u32 {
        self.attempts.iter().filter(|(_, f)| *f <= now).count() as u32
    }

    fn booting(&self, now: Instant) -> bool {
        self.attempts.iter().any(|(s, f)| *s <= now && now < *f)
    }
}

/// A scale in progress. Invariant: the app status is `scaling` exactly
/// while an app has a transition.
struct Transition {
    until: Instant,
    until_wall: SystemTime,
    error: Option<String>,
    /// The boot window of the containers this transition starts.
    front_window: Duration,
    crash: Option<CrashLoop>,
}

struct App {
    id: String,
    name: String,
    region: String,
    created_at: SystemTime,
    updated_at: SystemTime,
    last_deployed_at: Option<SystemTime>,
    formation: Vec<FormationEntry>,
    containers: Vec<Container>,
    status: &'static str,
    transition: Option<Transition>,
    crash_on_boot: bool,
    owner: Option<String>,
    autoscalers: Vec<Autoscaler>,
}

impl App {
    fn deployed(&self) -> bool {
        self.last_deployed_at.is_some()
    }

    /// Applies the transition if it has come due. After this, either the
    /// transition is still in the future or there is none.
    fn settle(&mut self, now: Instant, keep_stopped: bool) {
        let Some(t) = &self.transition else { return };
        if now < t.until {
            if let Some(crash) = &t.crash {
                let state = if crash.booting(now) {
                    CState::Booting
                } else {
                    CState::Crashed
                };
                for c in self.containers.iter_mut().filter(|c| c.looping) {
                    c.state = state;
                }
                // The operation still runs (retries), yet the app reads
                // `crashed` once it failed `crashed_after` boots in a row.
                self.status = if crash.failures(now) >= crash.crashed_after {
                    "crashed"
                } else {
                    "scaling"
                };
            }
            return;
        }
        let failed = t.error.is_some();
        let ready_at = t.until + t.front_window;
        self.updated_at = t.until_wall;
        for c in &mut self.containers {
            c.state = match c.state {
                _ if c.looping => CState::Crashed,
                CState::Booting if failed => CState::Crashed,
                CState::Booting => {
                    c.ready_at = ready_at;
                    CState::Running
                }
                CState::Stopping => CState::Stopped,
                other => other,
            };
            c.looping = false;
        }
        if !keep_stopped {
            self.containers.retain(|c| c.state != CState::Stopped);
        }
        if failed {
            // The formation reads what really runs after a failed scale.
            let containers = &self.containers;
            for f in &mut self.formation {
                f.amount = containers
                    .iter()
                    .filter(|c| c.kind == f.kind && c.state == CState::Running)
                    .count() as u32;
            }
        }
        self.status = if self.containers.iter().any(|c| c.state == CState::Running) {
            "running"
        } else if failed {
            "crashed"
        } else {
            "stopped"
        };
        self.transition = None;
    }

    fn count(&self, kind: &str, state: CState) -> usize {
        self.containers
            .iter()
            .filter(|c| c.kind == kind && c.state == state)
            .count()
    }

    /// What the front answers right now (the app must be settled).
    fn front(&self, now: Instant) -> FrontState {
        let web = || self.containers.iter().filter(|c| c.kind == "web");
        if web().any(|c| c.state == CState::Running && c.ready_at <= now) {
            FrontState::App
        } else if web().any(|c| matches!(c.state, CState::Running | CState::Booting)) {
            FrontState::Router("booting")
        } else if self.status == "crashed" || web().any(|c| c.state == CState::Crashed) {
            FrontState::Router("crashed")
        } else {
            FrontState::Router("stopped")
        }
    }

    fn snapshot(&self) -> AppSnapshot {
        let running_web = self.count("web", CState::Running);
        AppSnapshot {
            id: self.id.clone(),
            name: self.name.clone(),
            region: self.region.clone(),
            status: self.status.to_string(),
            formation: self
                .formation
                .iter()
                .map(|f| (f.kind.clone(), f.amount, f.size.clone()))
                .collect(),
            deployed: self.deployed(),
            web_running: running_web > 0,
            running_web,
            containers: self
                .containers
                .iter()
                .map(|c| ContainerSnapshot {
                    label: format!("{}-{}", c.kind, c.index),
                    kind: c.kind.clone(),
                    state: c.state.as_str().to_string(),
                })
                .collect(),
            crash_on_boot: self.crash_on_boot,
            owner: self.owner.clone(),
            autoscalers: self.autoscalers.clone(),
            front_serves_app: self.front(Instant::now()) == FrontState::App,
        }
    }

    /// A `GET /v1/apps` entry with only the fields the contract guarantees.
    fn to_sparse_json(&self) -> Value {
        json!({ "id": self.id, "name": self.name })
    }

    fn owner_json(&self) -> Value {
        match &self.owner {
            None => {
                json!({ "id": "us-fake-owner", "username": "fake-owner", "email": "owner@example.invalid" })
            }
            Some(user) => {
                json!({ "id": format!("us-{user}"), "username": user, "email": format!("{user}@example.invalid") })
            }
        }
    }

    fn autoscalers_json(&self) -> Value {
        let list: Vec<Value> = self
            .autoscalers
            .iter()
            .map(|a| {
                let mut v = a.to_json();
                v["app_id"] = json!(self.id);
                v
            })
            .collect();
        json!({ "autoscalers": list })
    }

    fn to_json(&self) -> Value {
        let base_url = format!("https://{}.{}.scalingo.io", self.name, self.region);
        json!({
            "id": self.id,
            "name": self.name,
            "region": self.region,
            "status": self.status,
            "url": base_url,
            "base_url": base_url,
            "created_at": iso_ms(self.created_at),
            "updated_at": iso_ms(self.updated_at),
            "last_deployed_at": self.last_deployed_at.map(iso_ms),
            "force_https": false,
            "sticky_session": false,
            "git_url": format!("git@ssh.{}.scalingo.com:{}.git", self.region, self.name),
            "owner": self.owner_json(),
            "x_fake_unknown_field": { "note": "clients must ignore unknown fields" },
        })
    }

    fn ps_json(&self) -> Value {
        let containers: Vec<Value> = self
            .containers
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "app_id": self.id,
                    "type": c.kind,
                    "type_index": c.index,
                    "label": format!("{}-{}", c.kind, c.index),
                    "size": c.size,
                    "created_at": iso_ms(c.created_at),
                    "state": c.state.as_str(),
                })
            })
            .collect();
        json!({ "containers": containers })
    }
}

struct Operation {
    id: String,
    app_id: String,
    app_name: String,
    created_at: SystemTime,
    start: Instant,
    delay: Duration,
    /// How long it reads `pending` (then `running`).
    pending_for: Duration,
    error: Option<String>,
}

impl Operation {
    /// `pending` for `pending_for` (a quarter of one boot or stop), then
    /// `running`, then `done` (or `error`) at the same instant the app
    /// settles.
    fn to_json(&self, now: Instant) -> Value {
        let elapsed = now.saturating_duration_since(self.start);
        let (status, finished) = if elapsed >= self.delay {
            let status = if self.error.is_some() {
                "error"
            } else {
                "done"
            };
            (status, Some(iso_ms(self.created_at + self.delay)))
        } else if elapsed >= self.pending_for {
            ("running", None)
        } else {
            ("pending", None)
        };
        json!({
            "id": self.id,
            "app_id": self.app_id,
            "created_at": iso_ms(self.created_at),
            "finished_at": finished,
            "status": status,
            "type": "scale",
            "error": if finished.is_some() { self.error.clone() } else { None },
        })
    }
}

/// One item of a scale request, parsed but not validated.
pub(crate) struct ScaleItem {
    pub kind: String,
    /// `None`: keep the current amount.
    pub amount: Option<i64>,
    pub size: Option<String>,
}

/// What `POST /scale` answers.
pub(crate) enum ScaleOutcome {
    NotFound,
    /// 422 with this `errors` map.
    Invalid(Value),
    /// 422 `{"errors":{"app":[msg]}}`.
    Busy(&'static str),
    /// 404 `{"resource":"container_type"}`.
    UnknownType,
    /// 400 no change.
    NoChange,
    /// 200: not deployed, the formation is stored, nothing runs.
    Immediate(Value),
    /// 202 with the operation's id.
    Started {
        app_name: String,
        op_id: String,
        formation: Value,
    },
}

impl Inner {
    // ---- apps -----------------------------------------------------------

    pub(crate) fn add_app(
        &mut self,
        shared_regions: &[String],
        app: FakeApp,
    ) -> Result<AppSnapshot, AddAppError> {
        if !is_valid_app_name(&app.name) {
            return Err(AddAppError::InvalidName(app.name));
        }
        if !shared_regions.contains(&app.region) {
            return Err(AddAppError::UnknownRegion(app.region));
        }
        let mut formation: Vec<FormationEntry> = Vec::new();
        for (kind, amount, size) in &app.formation {
            if i64::from(*amount) > MAX_AMOUNT {
                return Err(AddAppError::InvalidFormation(format!(
                    "{kind}: amount {amount} above {MAX_AMOUNT}"
                )));
            }
            if formation.iter().any(|f| f.kind == *kind) {
                return Err(AddAppError::InvalidFormation(format!(
                    "type {kind:?} listed twice"
                )));
            }
            formation.push(FormationEntry {
                kind: kind.clone(),
                amount: *amount,
                size: size.clone(),
            });
        }
        let now = SystemTime::now();
        let created_at = now - Duration::from_secs(86_400);
        let mut containers = Vec::new();
        if app.deployed {
            for f in &formation {
                for index in 1..=f.amount {
                    containers.push(Container {
                        id: object_id(),
                        kind: f.kind.clone(),
                        index,
                        size: f.size.clone(),
                        created_at: now,
                        state: CState::Running,
                        ready_at: Instant::now(),
                        looping: false,
                    });
                }
            }
        }
        let status = if !app.deployed {
            "new"
        } else if containers.is_empty() {
            "stopped"
        } else {
            "running"
        };
        let app = App {
            id: object_id(),
            name: app.name,
            region: app.region,
            created_at,
            updated_at: now,
            last_deployed_at: app.deployed.then_some(created_at + Duration::from_secs(60)),
            formation,
            containers,
            status,
            transition: None,
            crash_on_boot: app.crash_on_boot,
            owner: app.owner,
            autoscalers: app
                .autoscalers
                .into_iter()
                .map(|mut a| {
                    if a.id.is_empty() {
                        a.id = object_id();
                    }
                    a
                })
                .collect(),
        };
        let snapshot = app.snapshot();
        self.apps.insert(app.name.clone(), app);
        Ok(snapshot)
    }

    pub(crate) fn remove_app(&mut self, name: &str) -> bool {
        self.apps.remove(name).is_some()
    }

    /// The app named (by name or id) `reference`, in any region.
    pub(crate) fn resolve_any(&self, reference: &str) -> Option<String> {
        if self.apps.contains_key(reference) {
            return Some(reference.to_string());
        }
        self.apps
            .values()
            .find(|a| a.id == reference)
            .map(|a| a.name.clone())
    }

    /// The app named (by name or id) `reference` in `region`, settled.
    fn app_in(&mut self, region: &str, reference: &str) -> Option<&mut App> {
        let name = self.resolve_any(reference)?;
        let keep = self.knobs.keep_stopped;
        let app = self.apps.get_mut(&name)?;
        if app.region != region {
            return None;
        }
        app.settle(Instant::now(), keep);
        Some(app)
    }

    pub(crate) fn snapshot(&mut self, name: &str) -> Option<AppSnapshot> {
        let keep = self.knobs.keep_stopped;
        let app = self.apps.get_mut(name)?;
        app.settle(Instant::now(), keep);
        Some(app.snapshot())
    }

    pub(crate) fn snapshots(&mut self) -> Vec<AppSnapshot> {
        let now = Instant::now();
        let keep = self.knobs.keep_stopped;
        self.apps
            .values_mut()
            .map(|a| {
                a.settle(now, keep);
                a.snapshot()
            })
            .collect()
    }

    pub(crate) fn list_json(&mut self, region: &str) -> Value {
        let now = Instant::now();
        let keep = self.knobs.keep_stopped;
        let mode = self.knobs.list_entries;
        let apps: Vec<Value> = self
            .apps
            .values_mut()
            .filter(|a| a.region == region)
            .enumerate()
            .map(|(i, a)| {
                a.settle(now, keep);
                let sparse = match mode {
                    ListEntries::Full => false,
                    ListEntries::SomeSparse => i % 2 == 0,
                    ListEntries::AllSparse => true,
                };
                if sparse {
                    a.to_sparse_json()
                } else {
                    a.to_json()
                }
            })
            .collect();
        json!({ "apps": apps })
    }

    pub(crate) fn app_json(&mut self, region: &str, reference: &str) -> Option<Value> {
        self.app_in(region, reference)
            .map(|a| json!({ "app": a.to_json() }))
    }

    pub(crate) fn containers_json(&mut self, region: &str, reference: &str) -> Option<Value> {
        self.app_in(region, reference).map(|a| {
            json!({ "containers": a.formation.iter().map(FormationEntry::to_json).collect::<Vec<_>>() })
        })
    }

    pub(crate) fn ps_json(&mut self, region: &str, reference: &str) -> Option<Value> {
        self.app_in(region, reference).map(|a| a.ps_json())
    }

    /// `Err(true)`: the app is unknown here; `Err(false)`: the operation is.
    pub(crate) fn operation_json(
        &mut self,
        region: &str,
        reference: &str,
        op_id: &str,
    ) -> Result<Value, bool> {
        let name = self.app_in(region, reference).ok_or(true)?.name.clone();
        let op = self
            .operations
            .get(op_id)
            .filter(|op| op.app_name == name)
            .ok_or(false)?;
        Ok(json!({ "operation": op.to_json(Instant::now()) }))
    }

    /// What the front answers for the app a `Host` names in `region`.
    pub(crate) fn front_state(&mut self, region: &str, name: &str) -> FrontState {
        let keep = self.knobs.keep_stopped;
        let Some(app) = self.apps.get_mut(name).filter(|a| a.region == region) else {
            return FrontState::Unknown;
        };
        let now = Instant::now();
        app.settle(now, keep);
        app.front(now)
    }

    pub(crate) fn autoscalers_json(&mut self, region: &str, reference: &str) -> Option<Value> {
        self.app_in(region, reference).map(|a| a.autoscalers_json())
    }

    /// Sets `disabled` of one autoscaler; `Err(true)`: no such app here,
    /// `Err(false)`: no such autoscaler.
    pub(crate) fn update_autoscaler(
        &mut self,
        region: &str,
        reference: &str,
        id: &str,
        disabled: bool,
    ) -> Result<Value, bool> {
        let app = self.app_in(region, reference).ok_or(true)?;
        let app_id = app.id.clone();
        let a = app
            .autoscalers
            .iter_mut()
            .find(|a| a.id == id)
            .ok_or(false)?;
        a.disabled = disabled;
        let mut v = a.to_json();
        v["app_id"] = json!(app_id);
        Ok(json!({ "autoscaler": v }))
    }

    pub(crate) fn set_crash_on_boot(&mut self, name: &str, crash: bool) -> bool {
        self.apps
            .get_mut(name)
            .map(|a| a.crash_on_boot = crash)
            .is_some()
    }

    /// Ends the boot window of the app's web containers now: those running
    /// serve at once, those booting as soon as they run.
    pub(crate) fn open_front(&mut self, name: &str) -> bool {
        let keep = self.knobs.keep_stopped;
        let Some(app) = self.apps.get_mut(name) else {
            return false;
        };
        let now = Instant::now();
        app.settle(now, keep);
        if let Some(t) = &mut app.transition {
            t.front_window = Duration::ZERO;
        }
        for c in app.containers.iter_mut().filter(|c| c.kind == "web") {
            c.ready_at = c.ready_at.min(now);
        }
        true
    }

    /// Stops the app behind the client's back, as someone scaling it to 0
    /// from the dashboard would, but at once: every amount 0, no container,
    /// status `stopped`, its autoscalers disabled, any transition dropped.
    pub(crate) fn stop_app(&mut self, name: &str) -> bool {
        let keep = self.knobs.keep_stopped;
        let Some(app) = self.apps.get_mut(name) else {
            return false;
        };
        app.settle(Instant::now(), keep);
        for f in &mut app.formation {
            f.amount = 0;
        }
        for c in &mut app.containers {
            c.state = CState::Stopped;
        }
        if !keep {
            app.containers.clear();
        }
        for a in &mut app.autoscalers {
            a.disabled = true;
        }
        app.transition = None;
        app.status = if app.deployed() { "stopped" } else { "new" };
        app.updated_at = SystemTime::now();
        true
    }

    /// Crashes the app's running web containers (the formation is kept):
    /// status `crashed`, the front answers the router's error.
    pub(crate) fn crash_app(&mut self, name: &str) -> bool {
        let keep = self.knobs.keep_stopped;
        let Some(app) = self.apps.get_mut(name) else {
            return false;
        };
        app.settle(Instant::now(), keep);
        for c in &mut app.containers {
            if c.kind == "web" && matches!(c.state, CState::Running | CState::Booting) {
                c.state = CState::Crashed;
            }
        }
        app.transition = None;
        app.status = "crashed";
        app.updated_at = SystemTime::now();
        true
    }

    /// Validates and applies a scale request (see the module docs of
    /// `regional` for the order of the checks).
    pub(crate) fn scale(
        &mut self,
        region: &str,
        reference: &str,
        items: Vec<ScaleItem>,
    ) -> ScaleOutcome {
        let knobs = self.knobs.clone();
        let (boot_delay, stop_delay) = (knobs.boot_delay, knobs.stop_delay);
        let Some(name) = self.app_in(region, reference).map(|a| a.name.clone()) else {
            return ScaleOutcome::NotFound;
        };
        let Some(app) = self.apps.get(&name) else {
            return ScaleOutcome::NotFound;
        };
        {
            // 1. validation
            let mut errors: Vec<String> = Vec::new();
            if items.is_empty() {
                errors.push("can't be blank".to_string());
            }
            for item in &items {
                let known = app.formation.iter().any(|f| f.kind == item.kind);
                if item.kind.is_empty() {
                    errors.push("name can't be blank".to_string());
                } else if !known && app.deployed() {
                    if knobs.unknown_type == UnknownTypeAnswer::NotFound {
                        return ScaleOutcome::UnknownType;
                    }
                    errors.push(format!("{}: no such container type", item.kind));
                }
                match item.amount {
                    Some(a) if a > MAX_AMOUNT => errors.push(format!(
                        "{}: amount must be less than or equal to {MAX_AMOUNT}",
                        item.kind
                    )),
                    Some(a) if a < 0 => errors.push(format!(
                        "{}: amount must be greater than or equal to 0",
                        item.kind
                    )),
                    None if !known => errors.push(format!("{}: amount can't be blank", item.kind)),
                    _ => {}
                }
                if let Some(size) = &item.size {
                    if !SIZES.contains(&size.as_str()) {
                        errors.push(format!("{}: size {size:?} is not a valid size", item.kind));
                    }
                }
            }
            if !errors.is_empty() {
                return ScaleOutcome::Invalid(json!({ "containers": errors }));
            }
            // 2. another operation in progress
            if app.transition.is_some() {
                return ScaleOutcome::Busy("is scaling");
            }
        }
        // 3. compute the new formation
        let mut target = app.formation.clone();
        for item in &items {
            match target.iter_mut().find(|f| f.kind == item.kind) {
                Some(f) => {
                    if let Some(a) = item.amount {
                        f.amount = a as u32; // 0..=10, validated above
                    }
                    if let Some(s) = &item.size {
                        f.size = s.clone();
                    }
                }
                None => target.push(FormationEntry {
                    kind: item.kind.clone(),
                    amount: item.amount.unwrap_or(0) as u32,
                    size: item.size.clone().unwrap_or_else(|| "M".to_string()),
                }),
            }
        }
        if target == app.formation {
            return ScaleOutcome::NoChange;
        }
        let formation_json =
            json!({ "containers": target.iter().map(FormationEntry::to_json).collect::<Vec<_>>() });
        let deployed = app.deployed();
        if !deployed {
            if let Some(app) = self.apps.get_mut(&name) {
                app.formation = target;
                app.updated_at = SystemTime::now();
                app.disable_autoscalers(&items);
            }
            return ScaleOutcome::Immediate(formation_json);
        }
        // 4. start the operation
        let error = self.take_operation_error(&name);
        let Some(app) = self.apps.get_mut(&name) else {
            return ScaleOutcome::NotFound;
        };
        let now = Instant::now();
        let wall = SystemTime::now();
        app.disable_autoscalers(&items);
        let crash_on_boot = app.crash_on_boot;
        let (mut booting, mut stopping) = (false, false);
        let mut first_looping: Option<String> = None;
        for new in &target {
            let old = app.formation.iter().find(|f| f.kind == new.kind);
            if old == Some(new) {
                continue;
            }
            app.containers.retain(|c| {
                c.kind != new.kind || matches!(c.state, CState::Running | CState::Booting)
            });
            let size_changed = old.is_some_and(|o| o.size != new.size);
            let keep_up_to = if size_changed { 0 } else { new.amount };
            for c in app.containers.iter_mut().filter(|c| c.kind == new.kind) {
                if c.index > keep_up_to {
                    c.state = CState::Stopping;
                    stopping = true;
                }
            }
            let first_new = if size_changed {
                1
            } else {
                app.count(&new.kind, CState::Running) as u32 + 1
            };
            for index in first_new..=new.amount {
                app.containers.push(Container {
                    id: object_id(),
                    kind: new.kind.clone(),
                    index,
                    size: new.size.clone(),
                    created_at: wall,
                    state: CState::Booting,
                    ready_at: now,
                    looping: crash_on_boot,
                });
                if crash_on_boot && first_looping.is_none() {
                    first_looping = Some(format!("{}-{index}", new.kind));
                }
                booting = true;
            }
        }
        let crash = first_looping.as_ref().map(|_| crash_loop(now, &knobs));
        let boot_time = match &crash {
            Some(c) => c
                .attempts
                .last()
                .map_or(boot_delay, |(_, f)| f.saturating_duration_since(now)),
            None => boot_delay,
        };
        let delay = match (booting, stopping) {
            (true, true) => boot_time.max(stop_delay),
            (true, false) => boot_time,
            (false, true) => stop_delay,
            (false, false) => Duration::ZERO,
        };
        let error = error
            .or_else(|| first_looping.map(|label| format!("container {label} failed to boot")));
        let one_step = if booting { boot_delay } else { stop_delay };
        app.formation = target;
        app.status = "scaling";
        app.updated_at = wall;
        app.transition = Some(Transition {
            until: now + delay,
            until_wall: wall + delay,
            error: error.clone(),
            front_window: knobs.front_boot_window,
            crash,
        });
        let op = Operation {
            id: object_id(),
            app_id: app.id.clone(),
            app_name: name.clone(),
            created_at: wall,
            start: now,
            delay,
            pending_for: one_step.min(delay) / 4,
            error,
        };
        let op_id = op.id.clone();
        self.operations.insert(op_id.clone(), op);
        ScaleOutcome::Started {
            app_name: name,
            op_id,
            formation: formation_json,
        }
    }

    // ---- tokens and rate limit -------------------------------------------

    pub(crate) fn issue_token(&mut self, owner: &str, ttl: Duration, with_exp: bool) -> String {
        let wall = SystemTime::now();
        let exp = with_exp.then(|| unix_secs_ceil(wall + ttl));
        let jwt = make_jwt(wall, exp);
        self.tokens.insert(
            jwt.clone(),
            IssuedToken {
                owner: owner.to_string(),
                expires: Instant::now() + ttl,
                revoked: false,
            },
        );
        jwt
    }

    /// The API token that owns this JWT, or why it is refused.
    pub(crate) fn check_bearer(&self, jwt: &str) -> Result<String, &'static str> {
        let token = self.tokens.get(jwt).ok_or("invalid token")?;
        if token.revoked || Instant::now() >= token.expires {
            return Err("token expired");
        }
        Ok(token.owner.clone())
    }

    /// Revokes every JWT issued so far; returns how many were valid.
    pub(crate) fn expire_tokens(&mut self) -> usize {
        let now = Instant::now();
        let mut n = 0;
        for t in self.tokens.values_mut() {
            if !t.revoked && now < t.expires {
                n += 1;
            }
            t.revoked = true;
        }
        n
    }

    /// Records a call by `owner` to `endpoint`; `false` when it is over the
    /// limit (a refused call is counted as refused but does not use the
    /// budget, so a client that waits recovers).
    pub(crate) fn rate_allow(&mut self, owner: &str, endpoint: Endpoint) -> bool {
        let Some(limit) = self.knobs.rate_limit else {
            return true;
        };
        let now = Instant::now();
        let window = self.rate.entry(owner.to_string()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
        {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            *self.rate_limited.entry(endpoint).or_default() += 1;
            return false;
        }
        window.push_back(now);
        true
    }

    // ---- counters and faults ---------------------------------------------

    pub(crate) fn count(&mut self, endpoint: Endpoint) {
        *self.counters.entry(endpoint).or_default() += 1;
    }

    /// Logs an API call received (see [`CallRecord`]).
    pub(crate) fn log_call(&mut self, endpoint: Endpoint, app: Option<String>) {
        self.call_log.push(CallRecord {
            at: Instant::now(),
            endpoint,
            app,
        });
    }

    pub(crate) fn call_log(&self) -> Vec<CallRecord> {
        self.call_log.clone()
    }

    pub(crate) fn calls(&self, endpoint: Endpoint) -> usize {
        self.counters.get(&endpoint).copied().unwrap_or(0)
    }

    pub(crate) fn rate_limited(&self, endpoint: Endpoint) -> usize {
        self.rate_limited.get(&endpoint).copied().unwrap_or(0)
    }

    pub(crate) fn count_scale(&mut self, app: &str) {
        *self.scale_calls.entry(app.to_string()).or_default() += 1;
    }

    pub(crate) fn scale_calls(&self, app: &str) -> usize {
        self.scale_calls.get(app).copied().unwrap_or(0)
    }

    pub(crate) fn count_front(&mut self, app: &str) {
        *self.front_hits.entry(app.to_string()).or_default() += 1;
    }

    pub(crate) fn front_hits(&self, app: &str) -> usize {
        self.front_hits.get(app).copied().unwrap_or(0)
    }

    pub(crate) fn counters_json(&self) -> Value {
        let endpoints: serde_json::Map<String, Value> = Endpoint::ALL
            .into_iter()
            .map(|e| (e.as_str().to_string(), json!(self.calls(e))))
            .collect();
        let sorted = |m: &HashMap<String, usize>| -> BTreeMap<String, usize> {
            m.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        let limited: serde_json::Map<String, Value> = Endpoint::ALL
            .into_iter()
            .map(|e| (e.as_str().to_string(), json!(self.rate_limited(e))))
            .collect();
        json!({
            "endpoints": endpoints,
            "rate_limited": limited,
            "rate_limited_total": self.rate_limited.values().sum::<usize>(),
            "scale_calls": sorted(&self.scale_calls),
            "front_hits": sorted(&self.front_hits),
        })
    }

    pub(crate) fn inject(&mut self, fault: Fault) {
        if fault.times > 0 {
            self.faults.push(fault);
        }
    }

    pub(crate) fn clear_faults(&mut self) -> usize {
        std::mem::take(&mut self.faults).len()
    }

    pub(crate) fn faults_len(&self) -> usize {
        self.faults.len()
    }

    /// Uses up one hit of the first fault for this request, if any.
    /// `OperationError` faults are left alone (see `take_operation_error`).
    pub(crate) fn take_fault(
        &mut self,
        endpoint: Endpoint,
        app: Option<&str>,
    ) -> Option<FaultKind> {
        self.take_where(|f| {
            f.endpoint == endpoint
                && !matches!(f.kind, FaultKind::OperationError(_))
                && f.app.as_deref().is_none_or(|a| Some(a) == app)
        })
    }

    fn take_operation_error(&mut self, app: &str) -> Option<String> {
        match self.take_where(|f| {
            f.endpoint == Endpoint::Scale
                && matches!(f.kind, FaultKind::OperationError(_))
                && f.app.as_deref().is_none_or(|a| a == app)
        }) {
            Some(FaultKind::OperationError(message)) => Some(message),
            _ => None,
        }
    }

    fn take_where(&mut self, pred: impl Fn(&Fault) -> bool) -> Option<FaultKind> {
        let i = self.faults.iter().position(pred)?;
        let fault = &mut self.faults[i];
        let kind = fault.kind.clone();
        fault.times -= 1;
        if fault.times == 0 {
            self.faults.remove(i);
        }
        Some(kind)
    }
}

/// What a front answers for a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrontState {
    /// The host names no app of this region: the router's 404.
    Unknown,
    /// No web container serves yet: the router's error page, with why
    /// (`stopped`, `booting`, `crashed`).
    Router(&'static str),
    /// The app itself answers.
    App,
}

/// The boot attempts of a crash loop starting at `now`: the first attempt,
/// then `boot_retries` retries, each after an exponential back-off.
fn crash_loop(now: Instant, knobs: &Knobs) -> CrashLoop {
    let mut attempts = Vec::new();
    let mut t = now;
    let mut backoff = knobs.crash_backoff;
    for retry in 0..=knobs.boot_retries {
        let failure = t + knobs.boot_delay;
        attempts.push((t, failure));
        t = failure;
        if retry < knobs.boot_retries {
            t += backoff;
            backoff = (backoff * 2).min(knobs.crash_backoff_max);
        }
    }
    CrashLoop {
        attempts,
        crashed_after: knobs.crashed_after,
    }
}

impl App {
    /// A manual scale turns off the autoscalers of the types it names.
    fn disable_autoscalers(&mut self, items: &[ScaleItem]) {
        for a in &mut self.autoscalers {
            if items.iter().any(|i| i.kind == a.container_type) {
                a.disabled = true;
            }
        }
    }
}
