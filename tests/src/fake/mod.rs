//! A fake Scalingo, faithful to `shared/scalingo-api.md` (the contract).
//!
//! [`FakeScalingo::start`] binds, on 127.0.0.1:
//! - one **auth** listener: `POST /v1/tokens/exchange`, `GET /v1/regions`,
//!   and the control API under `/_fake/` (see the `auth` module);
//! - one **regional API** listener per region: `GET /v1/apps`,
//!   `GET /v1/apps/{app}`, `GET /v1/apps/{app}/containers`,
//!   `POST /v1/apps/{app}/scale`, `GET /v1/apps/{app}/operations/{id}`,
//!   `GET /v1/apps/{app}/ps`, `GET /v1/apps/{app}/autoscalers`,
//!   `PATCH /v1/apps/{app}/autoscalers/{id}`, all behind a bearer JWT issued
//!   by this fake;
//! - one **front-end** listener per region, serving `APP.REGION.scalingo.io`
//!   hosts: the app itself (echo, `/stream`, WebSocket echo; every answer
//!   carries `x-paastis-fake-app`, see [`APP_HEADER`]) once a web container
//!   runs and its boot window is over, else the router's error page (503 by
//!   default, never that header, always [`ROUTER_MARKER`]); 404 for unknown
//!   hosts.
//!
//! **Strict by default.** [`FakeConfig::default`] is at least as strict as
//! the real platform, where the contract leaves a choice, the fake takes the
//! hardest one:
//! - 60 calls a minute per API token (regional calls, `/v1/regions`, token
//!   exchanges), then 429 plain text `Retry later` without `Retry-After`;
//! - a scale-down takes 30 s (`scaling`, `stopping` containers, 422 `is
//!   scaling` to any scale meanwhile);
//! - apps marked [`FakeApp::crash_on_boot`] retry their boot 20 times with
//!   exponential back-off, the operation stays `running`, the app reads
//!   `crashed` after 12 failed boots;
//! - a manual scale disables the autoscalers of the types it names;
//! - `GET /v1/apps` lists collaborations too ([`FakeApp::owned_by`]), and
//!   every other entry (the first included) has only `id` and `name`;
//! - an unknown container type on scale is a 404 `{"resource":"container_type"}`;
//! - the front answers the router's error for 1 s after `ps` reads `running`.
//!
//! A test that needs a kinder fake sets the knob (a [`FakeConfig`] field, a
//! `set_*` method, `PUT /_fake/knobs`, or the binary's flags) where it
//! builds the fake, with a comment saying why.
//!
//! Invariants:
//! - every response carries a fresh `X-Request-Id`; every API body is a JSON
//!   object with a root key; dates are ISO-8601 UTC with milliseconds;
//! - the fake's state only changes through API calls, the control API and
//!   the methods of [`FakeScalingo`]; transitions (boot, stop) are applied
//!   lazily when their deadline has passed, so reads are consistent with
//!   each other at any instant;
//! - an app is `scaling` from an accepted scale until its operation ends
//!   (`crashed` instead once a crash loop failed `crashed_after` boots),
//!   and no other scale is accepted meanwhile (422 `is scaling`);
//! - clones share one fake; dropping the last clone, or
//!   [`FakeScalingo::shutdown`], stops every listener.

mod auth;
mod front;
mod http;
mod model;
mod regional;
mod state;
mod util;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use front::{APP_HEADER, ROUTER_MARKER};
pub use model::{
    AddAppError, AppSnapshot, Autoscaler, CallRecord, ContainerSnapshot, Endpoint, FakeApp,
    FakeConfig, Fault, FaultKind, ListEntries, RateLimitBody, UnknownTypeAnswer,
};
pub use util::{is_valid_app_name, iso_ms};

use state::Shared;

/// How long [`FakeScalingo::shutdown`] lets in-flight requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where to bind each listener. Regions left out bind `127.0.0.1:0`.
#[derive(Debug, Clone)]
pub struct FakeAddrs {
    pub auth: SocketAddr,
    /// Region -> regional API address.
    pub api: Vec<(String, SocketAddr)>,
    /// Region -> front-end address.
    pub front: Vec<(String, SocketAddr)>,
}

impl Default for FakeAddrs {
    fn default() -> Self {
        FakeAddrs {
            auth: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            api: Vec::new(),
            front: Vec::new(),
        }
    }
}

/// A running fake. Cheap to clone: clones share the same state and
/// listeners.
#[derive(Clone)]
pub struct FakeScalingo {
    shared: Arc<Shared>,
    servers: Arc<Servers>,
}

struct Servers {
    auth: SocketAddr,
    api: BTreeMap<String, SocketAddr>,
    front: BTreeMap<String, SocketAddr>,
    /// Sending `true` (or dropping it) starts the graceful shutdown.
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// `http://HOST:PORT`, with an unspecified IP replaced by loopback.
fn base_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

fn lookup(list: &[(String, SocketAddr)], region: &str) -> SocketAddr {
    list.iter()
        .find(|(r, _)| r == region)
        .map(|(_, a)| *a)
        .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
}

impl FakeScalingo {
    /// Starts the fake with every listener on `127.0.0.1:0`.
    pub async fn start(config: FakeConfig) -> io::Result<FakeScalingo> {
        FakeScalingo::start_on(config, FakeAddrs::default()).await
    }

    /// Starts the fake on the given addresses. Fails with `InvalidInput` if
    /// `addrs` names a region that is not in `config.regions`, or if there
    /// is no region or a region is listed twice.
    pub async fn start_on(config: FakeConfig, addrs: FakeAddrs) -> io::Result<FakeScalingo> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        if config.regions.is_empty() {
            return Err(invalid("no region configured".to_string()));
        }
        for (i, r) in config.regions.iter().enumerate() {
            if config.regions[..i].contains(r) {
                return Err(invalid(format!("region {r:?} listed twice")));
            }
        }
        for (r, _) in addrs.api.iter().chain(&addrs.front) {
            if !config.regions.contains(r) {
                return Err(invalid(format!("address given for unknown region {r:?}")));
            }
        }

        let auth_listener = TcpListener::bind(addrs.auth).await?;
        let auth_addr = auth_listener.local_addr()?;
        let mut api_listeners = Vec::new();
        let mut front_listeners = Vec::new();
        let mut api = BTreeMap::new();
        let mut front = BTreeMap::new();
        let mut api_urls = Vec::new();
        for region in &config.regions {
            let l = TcpListener::bind(lookup(&addrs.api, region)).await?;
            let a = l.local_addr()?;
            api.insert(region.clone(), a);
            api_urls.push((region.clone(), base_url(a)));
            api_listeners.push((region.clone(), base_url(a), l));
            let l = TcpListener::bind(lookup(&addrs.front, region)).await?;
            front.insert(region.clone(), l.local_addr()?);
            front_listeners.push((region.clone(), l));
        }

        let shared = Arc::new(Shared::new(config, api_urls));
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();
        let spawn = |name: String, listener: TcpListener, router: Router| {
            let router = router.layer(axum::middleware::from_fn_with_state(
                Arc::<str>::from(name.as_str()),
                http::request_id,
            ));
            let mut rx = stop.subscribe();
            tokio::spawn(async move {
                let signal = async move {
                    // Err: the sender is gone, i.e. the last handle dropped.
                    let _ = rx.wait_for(|stopped| *stopped).await;
                };
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(signal)
                    .await
                {
                    tracing::error!(listener = name, error = %e, "fake listener failed");
                }
            })
        };
        tasks.push(spawn(
            "auth".to_string(),
            auth_listener,
            auth::router(shared.clone()),
        ));
        for (region, url, listener) in api_listeners {
            let ctx = regional::Regional {
                shared: shared.clone(),
                region: region.clone(),
                base_url: url,
            };
            tasks.push(spawn(
                format!("api {region}"),
                listener,
                regional::router(ctx),
            ));
        }
        for (region, listener) in front_listeners {
            let ctx = front::Front {
                shared: shared.clone(),
                region: region.clone(),
            };
            tasks.push(spawn(
                format!("front {region}"),
                listener,
                front::router(ctx),
            ));
        }
        Ok(FakeScalingo {
            shared,
            servers: Arc::new(Servers {
                auth: auth_addr,
                api,
                front,
                stop,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// The configuration the fake was started with.
    pub fn config(&self) -> &FakeConfig {
        &self.shared.config
    }

    /// The configured regions, in order (the first is the default).
    pub fn regions(&self) -> Vec<String> {
        self.shared.config.regions.clone()
    }

    /// The auth API base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn auth_url(&self) -> String {
        base_url(self.servers.auth)
    }

    /// The auth listener's address.
    pub fn auth_addr(&self) -> SocketAddr {
        self.servers.auth
    }

    /// The regional API base URL of `region` (no trailing slash).
    pub fn api_url(&self, region: &str) -> Option<String> {
        self.servers.api.get(region).map(|a| base_url(*a))
    }

    /// The regional API listener's address.
    pub fn api_addr(&self, region: &str) -> Option<SocketAddr> {
        self.servers.api.get(region).copied()
    }

    /// The app front-end address of `region`.
    pub fn front_addr(&self, region: &str) -> Option<SocketAddr> {
        self.servers.front.get(region).copied()
    }

    /// Adds (or replaces, by name) an app. A deployed app with a non-zero
    /// amount starts `running` with every container running; all amounts
    /// 0: `stopped`; not deployed: `new` with no container.
    ///
    /// # Panics
    /// If the app is invalid (see [`FakeScalingo::try_add_app`]): this is a
    /// test helper, a bad app is a bug in the test.
    pub fn add_app(&self, app: FakeApp) {
        if let Err(e) = self.try_add_app(app) {
            panic!("FakeScalingo::add_app: {e}");
        }
    }

    /// Adds (or replaces, by name) an app; fails if its name breaks the
    /// app-name rule, its region is unknown, or an amount is above 10.
    pub fn try_add_app(&self, app: FakeApp) -> Result<AppSnapshot, AddAppError> {
        self.shared.lock().add_app(&self.shared.config.regions, app)
    }

    /// Removes an app; `false` if there was none.
    pub fn remove_app(&self, name: &str) -> bool {
        self.shared.lock().remove_app(name)
    }

    /// The app as it is now (transitions that came due applied).
    pub fn app(&self, name: &str) -> Option<AppSnapshot> {
        self.shared.lock().snapshot(name)
    }

    /// Every app, by name.
    pub fn apps(&self) -> Vec<AppSnapshot> {
        self.shared.lock().snapshots()
    }

    /// `POST /scale` requests received for `app` (by name, also when the
    /// request named it by id), whatever their outcome (401, faults, 4xx..).
    pub fn scale_calls(&self, app: &str) -> usize {
        self.shared.lock().scale_calls(app)
    }

    /// Requests received on an endpoint, whatever their outcome.
    pub fn calls(&self, endpoint: Endpoint) -> usize {
        self.shared.lock().calls(endpoint)
    }

    /// Every API call received so far (regional, token exchange, regions),
    /// in order, whatever its answer; front-end requests are not in it.
    pub fn call_log(&self) -> Vec<CallRecord> {
        self.shared.lock().call_log()
    }

    /// Front-end requests whose `Host` named `app`, whatever their status.
    pub fn front_hits(&self, app: &str) -> usize {
        self.shared.lock().front_hits(app)
    }

    /// Adds a fault (after the ones already active). `times == 0` is a no-op.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().inject(fault);
    }

    /// Removes every active fault.
    pub fn clear_faults(&self) {
        self.shared.lock().clear_faults();
    }

    /// Sets the boot delay of the scales accepted from now on.
    pub fn set_boot_delay(&self, d: Duration) {
        self.shared.lock().knobs.boot_delay = d;
    }

    /// Sets the stop delay of the scales accepted from now on.
    pub fn set_stop_delay(&self, d: Duration) {
        self.shared.lock().knobs.stop_delay = d;
    }

    /// Sets the rate limit (`None`: unlimited) from now on; calls already
    /// made in the current window still count.
    pub fn set_rate_limit(&self, per_minute: Option<u32>) {
        self.shared.lock().knobs.rate_limit = per_minute.map(|n| n.max(1));
    }

    /// Sets the boot window of the scales accepted from now on.
    pub fn set_front_boot_window(&self, d: Duration) {
        self.shared.lock().knobs.front_boot_window = d;
    }

    /// Ends the app's boot window now (the app starts listening): its
    /// running web containers serve at once, booting ones as soon as they
    /// run. With a long [`set_front_boot_window`](Self::set_front_boot_window)
    /// a test holds a woken app "booting" for as long as it needs, then lets
    /// it serve. `false` if there is no such app.
    pub fn open_front(&self, app: &str) -> bool {
        self.shared.lock().open_front(app)
    }

    /// Sets the status of the router's error page (502, 503 or 504; other
    /// values are ignored).
    pub fn set_router_status(&self, status: u16) {
        if [502, 503, 504].contains(&status) {
            self.shared.lock().knobs.router_status = status;
        }
    }

    /// Sets how `GET /v1/apps` entries are trimmed.
    pub fn set_list_entries(&self, mode: ListEntries) {
        self.shared.lock().knobs.list_entries = mode;
    }

    /// Makes the app's future boots fail (or succeed again); `false` if
    /// there is no such app.
    pub fn set_crash_on_boot(&self, app: &str, crash: bool) -> bool {
        self.shared.lock().set_crash_on_boot(app, crash)
    }

    /// Stops the app at once behind the clients' back (as a scale to 0 from
    /// the dashboard, without the stop delay): status `stopped`, the front
    /// answers the router's error. `false` if there is no such app.
    pub fn stop_app(&self, app: &str) -> bool {
        self.shared.lock().stop_app(app)
    }

    /// Crashes the app's web containers behind the clients' back: status
    /// `crashed`, the front answers the router's error; the formation is
    /// kept. `false` if there is no such app.
    pub fn crash_app(&self, app: &str) -> bool {
        self.shared.lock().crash_app(app)
    }

    /// Calls to `endpoint` refused by the rate limit (429).
    pub fn rate_limited(&self, endpoint: Endpoint) -> usize {
        self.shared.lock().rate_limited(endpoint)
    }

    /// Calls refused by the rate limit, every endpoint.
    pub fn rate_limited_total(&self) -> usize {
        let inner = self.shared.lock();
        Endpoint::ALL
            .into_iter()
            .map(|e| inner.rate_limited(e))
            .sum()
    }

    /// Revokes every JWT issued so far: the regional APIs (and `/v1/regions`)
    /// answer 401 to them. Tokens exchanged afterwards work.
    pub fn expire_tokens(&self) {
        self.shared.lock().expire_tokens();
    }

    /// Issues a JWT as a successful exchange would (without counting an
    /// exchange call).
    pub fn mint_token(&self) -> String {
        let config = &self.shared.config;
        self.shared
            .lock()
            .issue_token(&config.api_token, config.jwt_ttl, !config.jwt_without_exp)
    }

    /// Stops every listener: in-flight requests get up to 5 s to finish,
    /// then are cut. Other clones see the listeners gone.
    pub async fn shutdown(self) {
        self.servers.stop.send_replace(true);
        let tasks = std::mem::take(
            &mut *self
                .servers
                .tasks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for mut task in tasks {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl std::fmt::Debug for FakeScalingo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeScalingo")
            .field("auth", &self.servers.auth)
            .field("api", &self.servers.api)
            .field("front", &self.servers.front)
            .finish()
    }
}
