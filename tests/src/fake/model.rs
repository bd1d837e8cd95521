//! The fake's public data types: configuration, apps, snapshots, endpoints
//! and faults.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

/// How the fake behaves. Every field has a contract-faithful default.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The long-lived API token accepted by `POST /v1/tokens/exchange`.
    pub api_token: String,
    /// Region names; one regional API and one front-end listener each. The
    /// first one is the `default` region in `GET /v1/regions`.
    pub regions: Vec<String>,
    /// Time from an accepted scale-up to its new containers being `running`.
    pub boot_delay: Duration,
    /// Time from an accepted scale-down to its containers being gone.
    pub stop_delay: Duration,
    /// How long an issued JWT is accepted; its payload `exp` says the same.
    pub jwt_ttl: Duration,
    /// Issue JWTs whose payload has no `exp` (they still expire after
    /// `jwt_ttl` on the fake's side).
    pub jwt_without_exp: bool,
    /// `None`: no limit. `Some(n)`: at most `n` authenticated regional calls
    /// per API token in any rolling 60 s window, 429 JSON beyond.
    pub rate_limit_per_minute: Option<u32>,
    /// After a scale-down, keep the containers in `ps` with state `stopped`
    /// instead of removing them (the contract leaves this open).
    pub keep_stopped_in_ps: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            api_token: "tk-us-fake-token".to_string(),
            regions: vec!["osc-fr1".to_string(), "osc-secnum-fr1".to_string()],
            boot_delay: Duration::from_millis(300),
            stop_delay: Duration::ZERO,
            jwt_ttl: Duration::from_secs(3600),
            jwt_without_exp: false,
            rate_limit_per_minute: None,
            keep_stopped_in_ps: false,
        }
    }
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
}

impl FakeApp {
    /// A deployed app with one `web` type of size `M` and `amount` containers.
    pub fn web(name: impl Into<String>, region: impl Into<String>, amount: u32) -> FakeApp {
        FakeApp {
            name: name.into(),
            region: region.into(),
            formation: vec![("web".to_string(), amount, "M".to_string())],
            deployed: true,
        }
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
    /// Any request to an app front-end.
    Front,
}

impl Endpoint {
    /// Every endpoint, in declaration order.
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Exchange,
        Endpoint::Regions,
        Endpoint::ListApps,
        Endpoint::GetApp,
        Endpoint::Containers,
        Endpoint::Scale,
        Endpoint::Operation,
        Endpoint::Ps,
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
