//! The fake's public data types: configuration, apps, snapshots, endpoints
//! and faults.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

/// How the fake behaves. Every field defaults to the STRICTEST behaviour
/// the contract allows (at least as strict as the real platform): a test
/// that needs a kinder fake sets the field where it builds the config, and
/// says why.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The long-lived API token accepted by `POST /v1/tokens/exchange`.
    pub api_token: String,
    /// Region names; one regional API and one front-end listener each. The
    /// first one is the `default` region in `GET /v1/regions`.
    pub regions: Vec<String>,
    /// Time from an accepted scale-up to its new containers being `running`
    /// (for an app that crashes on boot: the length of each boot attempt).
    pub boot_delay: Duration,
    /// Time from an accepted scale-down to its containers being gone; the
    /// app is `scaling` meanwhile and its stopped containers read
    /// `stopping`. Default 30 s: the real platform sends SIGTERM, waits 30 s,
    /// then SIGKILL, and an app that ignores SIGTERM takes all of it.
    pub stop_delay: Duration,
    /// How long an issued JWT is accepted; its payload `exp` says the same.
    pub jwt_ttl: Duration,
    /// Issue JWTs whose payload has no `exp` (they still expire after
    /// `jwt_ttl` on the fake's side).
    pub jwt_without_exp: bool,
    /// `Some(n)` (default 60, the real limit): at most `n` calls per API
    /// token in any rolling 60 s window, counting every regional API call,
    /// `GET /v1/regions` and the token exchanges; beyond, 429. `None`: no
    /// limit.
    pub rate_limit_per_minute: Option<u32>,
    /// The body of a rate-limit 429 (default plain text `Retry later`).
    pub rate_limit_body: RateLimitBody,
    /// `Retry-After` (whole seconds) on a rate-limit 429; default none, as
    /// the real platform documents none.
    pub rate_limit_retry_after: Option<Duration>,
    /// After a scale-down, keep the containers in `ps` with state `stopped`
    /// instead of removing them (the contract leaves this open).
    pub keep_stopped_in_ps: bool,
    /// Which entries of `GET /v1/apps` lack the optional fields (default:
    /// every other entry, starting with the first, has only `id` and `name`).
    pub list_entries: ListEntries,
    /// How a scale naming an unknown container type is refused (default
    /// 404 `{"resource":"container_type"}`).
    pub unknown_type: UnknownTypeAnswer,
    /// An app that crashes on boot reads `crashed` after this many failed
    /// boots in a row (default 12, as the real platform).
    pub crashed_after: u32,
    /// Boot retries after the first failed boot before the operation ends in
    /// `error` (default 20, as the real platform).
    pub boot_retries: u32,
    /// The wait before the first retry of a failed boot; it doubles at each
    /// retry, up to `crash_backoff_max` (defaults 1 s and 60 s).
    pub crash_backoff: Duration,
    pub crash_backoff_max: Duration,
    /// The status of the router's own error page, served by a front while
    /// no web container of the app runs (502, 503 or 504; default 503).
    pub router_status: u16,
    /// How long after a web container reads `running` in `ps` the front
    /// still answers the router's error (the app is not listening yet; the
    /// router has not picked the container up). Default 1 s.
    pub front_boot_window: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            api_token: "tk-us-fake-token".to_string(),
            regions: vec!["osc-fr1".to_string(), "osc-secnum-fr1".to_string()],
            boot_delay: Duration::from_millis(300),
            stop_delay: Duration::from_secs(30),
            jwt_ttl: Duration::from_secs(3600),
            jwt_without_exp: false,
            rate_limit_per_minute: Some(60),
            rate_limit_body: RateLimitBody::PlainText,
            rate_limit_retry_after: None,
            keep_stopped_in_ps: false,
            list_entries: ListEntries::SomeSparse,
            unknown_type: UnknownTypeAnswer::NotFound,
            crashed_after: 12,
            boot_retries: 20,
            crash_backoff: Duration::from_secs(1),
            crash_backoff_max: Duration::from_secs(60),
            router_status: 503,
            front_boot_window: Duration::from_secs(1),
        }
    }
}

impl FakeConfig {
    /// The fake as kind as it was before it became strict: no rate limit,
    /// instant scale-downs, full list entries, no front boot window, 422 for
    /// an unknown container type. Only for code that measures something else
    /// (benchmarks, the local demo) and says so where it uses it; tests set
    /// the one knob they need instead.
    pub fn lenient() -> FakeConfig {
        FakeConfig {
            stop_delay: Duration::ZERO,
            rate_limit_per_minute: None,
            list_entries: ListEntries::Full,
            unknown_type: UnknownTypeAnswer::Unprocessable,
            front_boot_window: Duration::ZERO,
            ..FakeConfig::default()
        }
    }
}

/// The body of a rate-limit 429 (the contract accepts both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitBody {
    /// `text/plain` `Retry later` (what the real platform documents).
    PlainText,
    /// `{"error":"...","code":"rate_limit_exceeded"}`.
    Json,
}

impl RateLimitBody {
    /// `plain` or `json`.
    pub fn parse(s: &str) -> Option<RateLimitBody> {
        match s {
            "plain" | "plain_text" | "text" => Some(RateLimitBody::PlainText),
            "json" => Some(RateLimitBody::Json),
            _ => None,
        }
    }
}

/// Which `GET /v1/apps` entries carry only `id` and `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListEntries {
    /// Every entry has every field of the single-app answer.
    Full,
    /// Entries 1, 3, 5.. of each listing (by name) have only `id` and `name`.
    SomeSparse,
    /// Every entry has only `id` and `name`.
    AllSparse,
}

impl ListEntries {
    /// `full`, `some-sparse` or `all-sparse`.
    pub fn parse(s: &str) -> Option<ListEntries> {
        match s {
            "full" => Some(ListEntries::Full),
            "some-sparse" | "some_sparse" => Some(ListEntries::SomeSparse),
            "all-sparse" | "all_sparse" => Some(ListEntries::AllSparse),
            _ => None,
        }
    }
}

/// How a scale naming an unknown container type is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTypeAnswer {
    /// 404 `{"resource":"container_type","error":"not found"}`.
    NotFound,
    /// 422 `{"errors":{"containers":["worker: no such container type"]}}`.
    Unprocessable,
}

impl UnknownTypeAnswer {
    /// `not-found` or `unprocessable`.
    pub fn parse(s: &str) -> Option<UnknownTypeAnswer> {
        match s {
            "not-found" | "not_found" | "404" => Some(UnknownTypeAnswer::NotFound),
            "unprocessable" | "422" => Some(UnknownTypeAnswer::Unprocessable),
            _ => None,
        }
    }
}

/// An app's autoscaler, as `GET /v1/apps/{app}/autoscalers` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autoscaler {
    /// Opaque; set by the fake when the app is added.
    pub id: String,
    pub container_type: String,
    pub metric: String,
    pub target: u32,
    pub min_containers: u32,
    pub max_containers: u32,
    /// A manual scale of `container_type` sets it (the real platform turns
    /// the autoscaler off); `PATCH` clears it.
    pub disabled: bool,
}

/// An app to seed the fake with.
///
/// Deserializes from `{"name","region","formation":[{"name","amount","size"?}],
/// "deployed"?}` (`size` defaults to `M`, `deployed` to `true`), the shape of
/// the binary's `--apps` file and of `POST /_fake/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "FakeAppSpec")]
pub struct FakeApp {
    /// Must follow the app-name rule (6 to 48 characters, see
    /// [`is_valid_app_name`](super::is_valid_app_name)).
    pub name: String,
    /// Must be one of the fake's regions.
    pub region: String,
    /// `(type, amount, size)` per process type, e.g. `("web", 1, "M")`.
    pub formation: Vec<(String, u32, String)>,
    /// `false`: never deployed (status `new`, `last_deployed_at` null, a
    /// scale answers 200 without an operation).
    pub deployed: bool,
    /// Its containers never boot: every scale-up retries them (the operation
    /// stays `running`), see [`FakeConfig::crashed_after`].
    pub crash_on_boot: bool,
    /// `None`: owned by the token's owner. `Some(user)`: owned by `user`, the
    /// token's owner only collaborates on it (it is listed and can be scaled
    /// all the same).
    pub owner: Option<String>,
    /// Autoscalers, by container type (ids are set when the app is added).
    pub autoscalers: Vec<Autoscaler>,
}

impl FakeApp {
    /// A deployed app with one `web` type of size `M` and `amount` containers.
    pub fn web(name: impl Into<String>, region: impl Into<String>, amount: u32) -> FakeApp {
        FakeApp {
            name: name.into(),
            region: region.into(),
            formation: vec![("web".to_string(), amount, "M".to_string())],
            deployed: true,
            crash_on_boot: false,
            owner: None,
            autoscalers: Vec::new(),
        }
    }

    /// Makes every boot of its containers fail.
    pub fn crash_on_boot(mut self) -> FakeApp {
        self.crash_on_boot = true;
        self
    }

    /// Makes the app another user's, on which the token's owner collaborates.
    pub fn owned_by(mut self, user: impl Into<String>) -> FakeApp {
        self.owner = Some(user.into());
        self
    }

    /// Adds an enabled autoscaler of `kind` (metric `cpu`, target 80).
    pub fn with_autoscaler(mut self, kind: impl Into<String>, min: u32, max: u32) -> FakeApp {
        self.autoscalers.push(Autoscaler {
            id: String::new(),
            container_type: kind.into(),
            metric: "cpu".to_string(),
            target: 80,
            min_containers: min,
            max_containers: max,
            disabled: false,
        });
        self
    }

    /// Adds (or replaces) a process type in the formation.
    pub fn with_type(
        mut self,
        kind: impl Into<String>,
        amount: u32,
        size: impl Into<String>,
    ) -> FakeApp {
        let kind = kind.into();
        let size = size.into();
        match self.formation.iter_mut().find(|f| f.0 == kind) {
            Some(entry) => *entry = (kind, amount, size),
            None => self.formation.push((kind, amount, size)),
        }
        self
    }

    /// Marks the app as never deployed.
    pub fn undeployed(mut self) -> FakeApp {
        self.deployed = false;
        self
    }
}

#[derive(Deserialize)]
struct FakeAppSpec {
    name: String,
    region: String,
    #[serde(default)]
    formation: Vec<FormationSpec>,
    #[serde(default = "default_true")]
    deployed: bool,
    #[serde(default)]
    crash_on_boot: bool,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    autoscalers: Vec<AutoscalerSpec>,
}

#[derive(Deserialize)]
struct AutoscalerSpec {
    container_type: String,
    #[serde(default = "default_metric")]
    metric: String,
    #[serde(default = "default_target")]
    target: u32,
    min_containers: u32,
    max_containers: u32,
    #[serde(default)]
    disabled: bool,
}

fn default_metric() -> String {
    "cpu".to_string()
}

fn default_target() -> u32 {
    80
}

#[derive(Deserialize)]
struct FormationSpec {
    name: String,
    amount: u32,
    #[serde(default = "default_size")]
    size: String,
}

fn default_true() -> bool {
    true
}

fn default_size() -> String {
    "M".to_string()
}

impl From<FakeAppSpec> for FakeApp {
    fn from(spec: FakeAppSpec) -> FakeApp {
        FakeApp {
            name: spec.name,
            region: spec.region,
            formation: spec
                .formation
                .into_iter()
                .map(|f| (f.name, f.amount, f.size))
                .collect(),
            deployed: spec.deployed,
            crash_on_boot: spec.crash_on_boot,
            owner: spec.owner,
            autoscalers: spec
                .autoscalers
                .into_iter()
                .map(|a| Autoscaler {
                    id: String::new(),
                    container_type: a.container_type,
                    metric: a.metric,
                    target: a.target,
                    min_containers: a.min_containers,
                    max_containers: a.max_containers,
                    disabled: a.disabled,
                })
                .collect(),
        }
    }
}

/// Why an app could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddAppError {
    /// The name breaks the app-name rule.
    InvalidName(String),
    /// The region is not one of the fake's regions.
    UnknownRegion(String),
    /// A formation entry has an amount above 10 or a type listed twice.
    InvalidFormation(String),
}

impl std::fmt::Display for AddAppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddAppError::InvalidName(n) => write!(f, "invalid app name {n:?}"),
            AddAppError::UnknownRegion(r) => write!(f, "unknown region {r:?}"),
            AddAppError::InvalidFormation(m) => write!(f, "invalid formation: {m}"),
        }
    }
}

impl std::error::Error for AddAppError {}

/// The state of an app as the fake sees it right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSnapshot {
    pub id: String,
    pub name: String,
    pub region: String,
    /// As the API reports it: `new`, `running`, `stopped`, `scaling`,
    /// `crashed`.
    pub status: String,
    /// `(type, amount, size)`, as `GET /containers` reports it.
    pub formation: Vec<(String, u32, String)>,
    pub deployed: bool,
    /// At least one `web` container is `running` (what the front-end needs).
    pub web_running: bool,
    /// How many `web` containers are `running`.
    pub running_web: usize,
    /// Every container `ps` would list.
    pub containers: Vec<ContainerSnapshot>,
    /// Its boots fail (see [`FakeApp::crash_on_boot`]).
    pub crash_on_boot: bool,
    /// `None`: the token's owner's; else the owner it collaborates with.
    pub owner: Option<String>,
    pub autoscalers: Vec<Autoscaler>,
    /// The front answers the app itself (a web container runs and its boot
    /// window is over), not the router's error page.
    pub front_serves_app: bool,
}

/// One `ps` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSnapshot {
    /// `web-1`.
    pub label: String,
    /// The process type, `web`.
    pub kind: String,
    /// `booting`, `running`, `stopping`, `stopped`, `crashed`.
    pub state: String,
}

impl AppSnapshot {
    /// The JSON shape of `GET /_fake/apps`.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "region": self.region,
            "status": self.status,
            "deployed": self.deployed,
            "web_running": self.web_running,
            "running_web": self.running_web,
            "formation": self.formation.iter().map(|(name, amount, size)| {
                json!({ "name": name, "amount": amount, "size": size })
            }).collect::<Vec<_>>(),
            "containers": self.containers.iter().map(|c| {
                json!({ "label": c.label, "type": c.kind, "state": c.state })
            }).collect::<Vec<_>>(),
            "crash_on_boot": self.crash_on_boot,
            "owner": self.owner,
            "autoscalers": self.autoscalers.iter().map(Autoscaler::to_json).collect::<Vec<_>>(),
            "front_serves_app": self.front_serves_app,
        })
    }
}

impl Autoscaler {
    /// The API's JSON shape, without `app_id`.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "container_type": self.container_type,
            "metric": self.metric,
            "target": self.target,
            "min_containers": self.min_containers,
            "max_containers": self.max_containers,
            "disabled": self.disabled,
        })
    }
}

/// The endpoints the fake counts calls to and injects faults into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `POST /v1/tokens/exchange` (auth API).
    Exchange,
    /// `GET /v1/regions` (auth API).
    Regions,
    /// `GET /v1/apps`.
    ListApps,
    /// `GET /v1/apps/{app}`.
    GetApp,
    /// `GET /v1/apps/{app}/containers`.
    Containers,
    /// `POST /v1/apps/{app}/scale`.
    Scale,
    /// `GET /v1/apps/{app}/operations/{id}`.
    Operation,
    /// `GET /v1/apps/{app}/ps`.
    Ps,
    /// `GET /v1/apps/{app}/autoscalers`.
    Autoscalers,
    /// `PATCH /v1/apps/{app}/autoscalers/{id}`.
    UpdateAutoscaler,
    /// Any request to an app front-end.
    Front,
}

impl Endpoint {
    /// Every endpoint, in declaration order.
    pub const ALL: [Endpoint; 11] = [
        Endpoint::Exchange,
        Endpoint::Regions,
        Endpoint::ListApps,
        Endpoint::GetApp,
        Endpoint::Containers,
        Endpoint::Scale,
        Endpoint::Operation,
        Endpoint::Ps,
        Endpoint::Autoscalers,
        Endpoint::UpdateAutoscaler,
        Endpoint::Front,
    ];

    /// The snake_case name used by the control API (`list_apps`).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Exchange => "exchange",
            Endpoint::Regions => "regions",
            Endpoint::ListApps => "list_apps",
            Endpoint::GetApp => "get_app",
            Endpoint::Containers => "containers",
            Endpoint::Scale => "scale",
            Endpoint::Operation => "operation",
            Endpoint::Ps => "ps",
            Endpoint::Autoscalers => "autoscalers",
            Endpoint::UpdateAutoscaler => "update_autoscaler",
            Endpoint::Front => "front",
        }
    }

    /// The inverse of [`Endpoint::as_str`].
    pub fn parse(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// A fault to inject: the next `times` requests to `endpoint` (for `app`, or
/// any app when `None`) get `kind` instead of (or on top of) the normal
/// answer. Faults are matched in injection order, one per request; a fault
/// is used up after `times` hits.
///
/// `app` matches the app name (a request naming the app by id matches too);
/// for [`Endpoint::Front`] it matches the app named by the `Host`. It never
/// matches `Exchange`/`Regions`, which name no app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub endpoint: Endpoint,
    pub app: Option<String>,
    pub kind: FaultKind,
    pub times: usize,
}

impl Fault {
    /// A fault that hits the next request to `endpoint` once, for any app.
    pub fn new(endpoint: Endpoint, kind: FaultKind) -> Fault {
        Fault {
            endpoint,
            app: None,
            kind,
            times: 1,
        }
    }

    /// Restricts the fault to one app.
    pub fn for_app(mut self, app: impl Into<String>) -> Fault {
        self.app = Some(app.into());
        self
    }

    /// Sets how many matching requests the fault hits.
    pub fn times(mut self, times: usize) -> Fault {
        self.times = times;
        self
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with that status and the contract's body for it: 400
    /// `{"error","code"}`, 401 `{"error"}`, 402 `{"name","error","url"}`, 404
    /// `{"resource":"app","error":"not found"}`, 422 `{"errors":{..}}`, 429
    /// `{"error","code"}`, 500/503/others `{"error"}`.
    Status(u16),
    /// 429 with the plain-text body `Retry later`.
    TooManyPlainText,
    /// 429 plain text `Retry later` with `Retry-After: SECONDS` (the contract
    /// documents none, but a client must honour one when it comes).
    TooManyRetryAfter(u64),
    /// 422 `{"errors":{"app":["is scaling"]}}`.
    IsScaling,
    /// 422 `{"errors":{"app":[MESSAGE]}}`, e.g. `"is restarting"`.
    AppBusy(String),
    /// Answer normally, after this delay.
    Delay(Duration),
    /// Scale endpoint only: accept the scale (202) but the operation ends in
    /// `error` with this message and its new containers never run. Used up
    /// only by a scale that really starts an operation.
    OperationError(String),
}

impl FaultKind {
    /// Parses the control API's fault JSON (see `POST /_fake/faults`).
    pub(crate) fn from_json(v: &Value) -> Result<FaultKind, String> {
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("missing \"kind\"")?;
        let message = || {
            v.get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("kind {kind:?} needs \"message\""))
        };
        match kind {
            "status" => {
                let status = v
                    .get("status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .filter(|s| (100..=599).contains(s))
                    .ok_or("kind \"status\" needs \"status\" (100..=599)")?;
                Ok(FaultKind::Status(status))
            }
            "too_many_plain_text" => Ok(FaultKind::TooManyPlainText),
            "too_many_retry_after" => v
                .get("secs")
                .and_then(Value::as_u64)
                .map(FaultKind::TooManyRetryAfter)
                .ok_or_else(|| "kind \"too_many_retry_after\" needs \"secs\"".to_owned()),
            "is_scaling" => Ok(FaultKind::IsScaling),
            "app_busy" => Ok(FaultKind::AppBusy(message()?)),
            "delay" => {
                let ms = v
                    .get("ms")
                    .and_then(Value::as_u64)
                    .ok_or("kind \"delay\" needs \"ms\"")?;
                Ok(FaultKind::Delay(Duration::from_millis(ms)))
            }
            "operation_error" => Ok(FaultKind::OperationError(message()?)),
            other => Err(format!("unknown fault kind {other:?}")),
        }
    }
}
