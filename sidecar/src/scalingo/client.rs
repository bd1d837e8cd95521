//! [`ScalingoClient`]: the HTTP calls, their retries, the region and
//! app -> region caches, and the polling helpers used to wake an app.
//!
//! Every call goes through [`Inner::call`], which attaches the shared JWT,
//! re-exchanges it once on a 401, and retries 429/503 a bounded number of
//! times. Answers are read with a size cap because bodies are untrusted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use percent_encoding::percent_decode_str;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, LOCATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::auth::{Secret, TokenCache};
use super::error::{self, ScalingoError};
use super::types::{
    web_running, App, AppEnvelope, AppsEnvelope, ContainerAmount, ContainerType,
    ContainersEnvelope, Operation, OperationEnvelope, OperationStatus, Process, PsEnvelope, Region,
    RegionsEnvelope, ScaleOutcome, ScaleRequest, TokenEnvelope,
};
use super::{RetryPolicy, ScalingoConfig, ScalingoTuning};

/// How long the region list is trusted before it is fetched again (regions
/// change very rarely; a stale list keeps being used if the refresh fails).
pub const REGIONS_TTL: Duration = Duration::from_secs(60 * 60);
/// After a failed refresh of a stale region list, wait this long before trying again.
pub const REGIONS_RETRY: Duration = Duration::from_secs(30);
/// After a region scan that failed, `locate` repeats the failure for this long
/// (or the negative TTL if shorter) instead of scanning again at once.
pub const FAILED_SCAN_RETRY: Duration = Duration::from_secs(5);
/// Backoff of [`ScalingoClient::wait_web_running`]: delays between `ps` checks.
pub const WEB_POLL_DELAYS: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];
/// Largest success body read (the app list of a big account fits easily).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest error body read: only a message is taken from it.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Client for the Scalingo API. Cheap to clone (an `Arc` inside), `Send + Sync`.
///
/// All clones share the JWT, the region list and the app -> region cache.
#[derive(Clone)]
pub struct ScalingoClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: ScalingoConfig,
    tuning: ScalingoTuning,
    tokens: TokenCache,
    regions: Mutex<Option<CachedRegions>>,
    /// app name -> region name, for every app seen in a listing.
    locations: StdMutex<HashMap<String, String>>,
    /// The last full scan of the regions; its lock also makes concurrent
    /// `locate` misses share one scan.
    scan: Mutex<Option<ScanRecord>>,
    /// Counts calls by endpoint and status, once the gateway sets it.
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

struct CachedRegions {
    regions: Arc<Vec<Region>>,
    /// When to fetch the list again.
    refresh_at: Instant,
}

struct ScanRecord {
    at: Instant,
    /// The first error met during the scan, if any: a name not found may then
    /// exist in the region that could not be listed.
    failure: Option<ScalingoError>,
}

/// An HTTP answer, body read (capped).
struct Answer {
    status: StatusCode,
    request_id: Option<String>,
    location: Option<String>,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl std::fmt::Debug for ScalingoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalingoClient")
            .field("auth_url", &self.inner.config.auth_url.as_str())
            .field("regions", &self.inner.config.regions)
            .finish_non_exhaustive()
    }
}

impl ScalingoClient {
    /// Builds the client with the default [`ScalingoTuning`]; makes no HTTP
    /// call (the JWT and the regions are fetched on first use).
    pub fn new(config: ScalingoConfig) -> Result<Self, ScalingoError> {
        Self::with_tuning(config, ScalingoTuning::default())
    }

    /// Builds the client with explicit timing knobs.
    pub fn with_tuning(
        config: ScalingoConfig,
        tuning: ScalingoTuning,
    ) -> Result<Self, ScalingoError> {
        if config.api_token.is_empty() {
            return Err(ScalingoError::Config("the API token is empty".into()));
        }
        check_base_url("auth_url", &config.auth_url)?;
        if tuning.retry.attempts == 0 {
            return Err(ScalingoError::Config(
                "retry.attempts must be at least 1".into(),
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .default_headers(headers)
            .timeout(config.request_timeout)
            // Never follow a redirect: it could carry the bearer to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ScalingoError::Config(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                tuning,
                tokens: TokenCache::default(),
                regions: Mutex::new(None),
                locations: StdMutex::new(HashMap::new()),
                scan: Mutex::new(None),
                metrics: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Counts this client's calls in `metrics` (the first call wins).
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// The usable regions: those `/v1/regions` lists, restricted to the
    /// configured ones. Cached for [`REGIONS_TTL`].
    ///
    /// Fails with [`ScalingoError::UnknownRegion`] when the configuration names
    /// a region Scalingo does not list.
    pub async fn regions(&self) -> Result<Vec<Region>, ScalingoError> {
        Ok(self.inner.regions().await?.as_ref().clone())
    }

    /// Every app of `region` (`GET /v1/apps`). Refreshes the app -> region
    /// cache for that region.
    pub async fn list_apps(&self, region: &str) -> Result<Vec<App>, ScalingoError> {
        self.inner.list_apps(region).await
    }

    /// The region of `app`, or `None` when no usable region has it.
    ///
    /// Answered from the cache when the app was seen in a listing; otherwise
    /// every region is listed concurrently (which caches every app seen). A
    /// name still not found is answered `None` without any call for
    /// `negative_ttl` after that scan, whatever the name, so bogus names cannot
    /// make us list the regions on every request. When a region could not be
    /// listed, the error is returned instead of `None` (for a shorter time).
    pub async fn locate(&self, app: &str) -> Result<Option<String>, ScalingoError> {
        check_app(app)?;
        self.inner.locate(app).await
    }

    /// Drops `app` from the app -> region cache (e.g. after it was deleted or
    /// moved); the next [`locate`](Self::locate) looks for it again.
    pub fn forget(&self, app: &str) {
        self.inner.locations_lock().remove(app);
    }

    /// One app (`GET /v1/apps/{app}`).
    pub async fn get_app(&self, region: &str, app: &str) -> Result<App, ScalingoError> {
        let url = self.inner.app_url(region, app, &[]).await?;
        let envelope: AppEnvelope = self.inner.get_json(region, app, url).await?;
        Ok(envelope.app)
    }

    /// The formation (`GET /v1/apps/{app}/containers`); empty for a never-deployed app.
    pub async fn formation(
        &self,
        region: &str,
        app: &str,
    ) -> Result<Vec<ContainerType>, ScalingoError> {
        let url = self.inner.app_url(region, app, &["containers"]).await?;
        let envelope: ContainersEnvelope = self.inner.get_json(region, app, url).await?;
        Ok(envelope.containers)
    }

    /// Sets the amounts of the given process types (`POST /v1/apps/{app}/scale`);
    /// types not listed keep their amount.
    ///
    /// 202 -> [`ScaleOutcome::Started`] with the operation id taken from the
    /// `Location` (which must be on the region's API host, else
    /// [`ScalingoError::UntrustedLocation`]); 200 -> [`ScaleOutcome::Done`];
    /// 400 "no change" -> [`ScaleOutcome::NoChange`]; 422 "is scaling" (or
    /// restarting, booting) -> [`ScalingoError::Busy`]. An empty `changes`
    /// is a `NoChange` without any call.
    pub async fn scale(
        &self,
        region: &str,
        app: &str,
        changes: &[ContainerAmount],
    ) -> Result<ScaleOutcome, ScalingoError> {
        check_app(app)?;
        if changes.is_empty() {
            return Ok(ScaleOutcome::NoChange);
        }
        let url = self.inner.app_url(region, app, &["scale"]).await?;
        let body = serde_json::to_value(ScaleRequest {
            containers: changes,
        })
        .map_err(|e| ScalingoError::Decode(format!("scale request: {e}")))?;
        let answer = self.inner.call(Method::POST, &url, Some(&body)).await?;
        match answer.status.as_u16() {
            202 => {
                let location = answer.location.as_deref().ok_or_else(|| {
                    ScalingoError::Decode("202 Accepted without a Location".into())
                })?;
                let api = self.inner.region_api(region).await?;
                let operation_id = operation_id_from_location(location, &api)?;
                tracing::info!(app, region, operation_id, "scale started");
                Ok(ScaleOutcome::Started {
                    operation_id,
                    formation: lenient_formation(&answer),
                })
            }
            200..=299 => {
                tracing::info!(app, region, "scale applied without an operation");
                Ok(ScaleOutcome::Done {
                    formation: lenient_formation(&answer),
                })
            }
            400 if error::is_no_change(&answer.body) => {
                tracing::debug!(app, region, "scale: no change in formation");
                Ok(ScaleOutcome::NoChange)
            }
            _ => Err(self
                .inner
                .fail(&Method::POST, &url, Some((region, app)), &answer)),
        }
    }

    /// One operation (`GET /v1/apps/{app}/operations/{id}`).
    pub async fn operation(
        &self,
        region: &str,
        app: &str,
        id: &str,
    ) -> Result<Operation, ScalingoError> {
        check_operation_id(id)?;
        let url = self.inner.app_url(region, app, &["operations", id]).await?;
        let envelope: OperationEnvelope = self.inner.get_json(region, app, url).await?;
        Ok(envelope.operation)
    }

    /// The containers (`GET /v1/apps/{app}/ps`).
    pub async fn ps(&self, region: &str, app: &str) -> Result<Vec<Process>, ScalingoError> {
        let url = self.inner.app_url(region, app, &["ps"]).await?;
        let envelope: PsEnvelope = self.inner.get_json(region, app, url).await?;
        Ok(envelope.containers)
    }

    /// Polls the operation until it is `done` (returned) or `error`
    /// ([`ScalingoError::OperationFailed`]), at most until `deadline`
    /// ([`ScalingoError::Timeout`]).
    ///
    /// Polls come fast at first and slow down as the wait grows (see
    /// [`operation_poll_delay`]). Transient errors (rate limit, 5xx,
    /// transport) are logged and polling goes on; other errors end it.
    pub async fn wait_operation(
        &self,
        region: &str,
        app: &str,
        id: &str,
        deadline: Instant,
    ) -> Result<Operation, ScalingoError> {
        check_app(app)?;
        check_operation_id(id)?;
        let interval = self.inner.tuning.operation_poll_interval;
        let started = Instant::now();
        let polling = async {
            loop {
                tokio::time::sleep(operation_poll_delay(started.elapsed(), interval)).await;
                match self.operation(region, app, id).await {
                    Ok(op) if op.status == OperationStatus::Done => return Ok(op),
                    Ok(op) if op.status == OperationStatus::Error => {
                        let message = op
                            .error
                            .clone()
                            .unwrap_or_else(|| format!("operation {id} ended in error"));
                        tracing::warn!(app, region, operation_id = id, %message, "operation failed");
                        return Err(ScalingoError::OperationFailed(message));
                    }
                    Ok(op) => {
                        tracing::trace!(app, operation_id = id, status = %op.status, "operation pending")
                    }
                    Err(e) if polling_may_continue(&e) => {
                        tracing::warn!(app, region, operation_id = id, error = %e, "polling the operation failed; trying again")
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        with_deadline(deadline, polling).await
    }

    /// Polls `ps` until at least one `web` container is `running`, at most
    /// until `deadline` ([`ScalingoError::Timeout`]).
    ///
    /// Checks at once, then after 250 ms, 500 ms and every second
    /// ([`WEB_POLL_DELAYS`]). Transient errors are logged and polling goes on.
    pub async fn wait_web_running(
        &self,
        region: &str,
        app: &str,
        deadline: Instant,
    ) -> Result<(), ScalingoError> {
        check_app(app)?;
        let polling = async {
            let mut delays = WEB_POLL_DELAYS.iter().copied();
            let max_delay = WEB_POLL_DELAYS[WEB_POLL_DELAYS.len() - 1];
            loop {
                match self.ps(region, app).await {
                    Ok(processes) if web_running(&processes) => return Ok(()),
                    Ok(_) => tracing::trace!(app, "no web container running yet"),
                    Err(e) if polling_may_continue(&e) => {
                        tracing::warn!(app, region, error = %e, "polling ps failed; trying again")
                    }
                    Err(e) => return Err(e),
                }
                tokio::time::sleep(delays.next().unwrap_or(max_delay)).await;
            }
        };
        with_deadline(deadline, polling).await
    }
}

impl Inner {
    fn locations_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // The map stays consistent even if a holder panicked (single inserts/removes).
        self.locations.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn regions(&self) -> Result<Arc<Vec<Region>>, ScalingoError> {
        let mut cached = self.regions.lock().await;
        let now = Instant::now();
        if let Some(c) = cached.as_ref() {
            if now < c.refresh_at {
                return Ok(c.regions.clone());
            }
        }
        match self.fetch_regions().await {
            Ok(regions) => {
                let regions = Arc::new(regions);
                *cached = Some(CachedRegions {
                    regions: regions.clone(),
                    refresh_at: now + REGIONS_TTL,
                });
                Ok(regions)
            }
            // A configuration error stays loud even with a stale list.
            Err(e @ ScalingoError::UnknownRegion(_)) => Err(e),
            Err(e) => match cached.as_mut() {
                Some(stale) => {
                    tracing::warn!(error = %e, "refreshing the Scalingo regions failed; keeping the previous list");
                    stale.refresh_at = now + REGIONS_RETRY;
                    Ok(stale.regions.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn fetch_regions(&self) -> Result<Vec<Region>, ScalingoError> {
        let url = join(&self.config.auth_url, &["v1", "regions"])?;
        let answer = self.call(Method::GET, &url, None).await?;
        let envelope: RegionsEnvelope = self.decode(&Method::GET, &url, None, answer)?;
        let mut regions: Vec<Region> = envelope
            .regions
            .into_iter()
            .filter(|r| match check_base_url("region api", &r.api) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(region = %r.name, error = %e, "ignoring a region with an unusable API URL");
                    false
                }
            })
            .collect();
        if let Some(wanted) = &self.config.regions {
            if let Some(missing) = wanted
                .iter()
                .find(|w| !regions.iter().any(|r| &r.name == *w))
            {
                tracing::error!(region = %missing, "configured region is not listed by Scalingo");
                return Err(ScalingoError::UnknownRegion(missing.clone()));
            }
            regions.retain(|r| wanted.contains(&r.name));
        }
        tracing::debug!(regions = ?regions.iter().map(|r| &r.name).collect::<Vec<_>>(), "Scalingo regions");
        Ok(regions)
    }

    async fn region_api(&self, region: &str) -> Result<Url, ScalingoError> {
        self.regions()
            .await?
            .iter()
            .find(|r| r.name == region)
            .map(|r| r.api.clone())
            .ok_or_else(|| ScalingoError::UnknownRegion(region.to_owned()))
    }

    /// `{api}/v1/apps/{app}/{tail...}`. The name is validated first, so an
    /// invalid one never causes an HTTP call (not even for the regions).
    async fn app_url(&self, region: &str, app: &str, tail: &[&str]) -> Result<Url, ScalingoError> {
        check_app(app)?;
        let api = self.region_api(region).await?;
        let mut segments = vec!["v1", "apps", app];
        segments.extend_from_slice(tail);
        join(&api, &segments)
    }

    async fn list_apps(&self, region: &str) -> Result<Vec<App>, ScalingoError> {
        let api = self.region_api(region).await?;
        let url = join(&api, &["v1", "apps"])?;
        let answer = self.call(Method::GET, &url, None).await?;
        let envelope: AppsEnvelope = self.decode(&Method::GET, &url, None, answer)?;
        let mut locations = self.locations_lock();
        // The listing is the truth for this region: drop apps that left it.
        locations.retain(|_, r| r != region);
        for app in &envelope.apps {
            locations.insert(app.name.clone(), region.to_owned());
        }
        Ok(envelope.apps)
    }

    async fn locate(&self, app: &str) -> Result<Option<String>, ScalingoError> {
        if let Some(region) = self.locations_lock().get(app) {
            return Ok(Some(region.clone()));
        }
        let mut scan = self.scan.lock().await;
        // A scan may have completed while we waited for the lock.
        if let Some(region) = self.locations_lock().get(app) {
            return Ok(Some(region.clone()));
        }
        if let Some(record) = scan.as_ref() {
            let ttl = match record.failure {
                None => self.tuning.negative_ttl,
                Some(_) => self.tuning.negative_ttl.min(FAILED_SCAN_RETRY),
            };
            if record.at.elapsed() < ttl {
                return match &record.failure {
                    None => Ok(None),
                    Some(e) => Err(e.clone()),
                };
            }
        }
        let failure = match self.regions().await {
            Err(e) => Some(e),
            Ok(regions) => {
                let listings =
                    futures::future::join_all(regions.iter().map(|r| self.list_apps(&r.name)))
                        .await;
                listings.into_iter().find_map(Result::err)
            }
        };
        *scan = Some(ScanRecord {
            at: Instant::now(),
            failure: failure.clone(),
        });
        let found = self.locations_lock().get(app).cloned();
        match (found, failure) {
            (Some(region), _) => Ok(Some(region)),
            (None, Some(e)) => Err(e),
            (None, None) => {
                tracing::debug!(app, "app not found in any region");
                Ok(None)
            }
        }
    }

    /// GET an app-scoped URL and decode the 2xx body. A 404 also drops the
    /// app from the location cache if it was cached in that region.
    async fn get_json<T: DeserializeOwned>(
        &self,
        region: &str,
        app: &str,
        url: Url,
    ) -> Result<T, ScalingoError> {
        let answer = self.call(Method::GET, &url, None).await?;
        self.decode(&Method::GET, &url, Some((region, app)), answer)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        method: &Method,
        url: &Url,
        scope: Option<(&str, &str)>,
        answer: Answer,
    ) -> Result<T, ScalingoError> {
        if !answer.status.is_success() {
            return Err(self.fail(method, url, scope, &answer));
        }
        serde_json::from_slice(&answer.body).map_err(|e| {
            tracing::warn!(%method, path = url.path(), request_id = answer.request_id.as_deref(), error = %e, "undecodable Scalingo answer");
            ScalingoError::Decode(format!("{} {}: {e}", method, url.path()))
        })
    }

    /// Maps an error answer, logging it with its request id.
    fn fail(
        &self,
        method: &Method,
        url: &Url,
        scope: Option<(&str, &str)>,
        answer: &Answer,
    ) -> ScalingoError {
        let err = error::from_response(
            answer.status.as_u16(),
            answer.request_id.clone(),
            &answer.body,
        );
        let request_id = answer.request_id.as_deref().unwrap_or("-");
        match &err {
            ScalingoError::NotFound | ScalingoError::Busy(_) => {
                tracing::debug!(%method, path = url.path(), status = answer.status.as_u16(), request_id, error = %err, "Scalingo answer")
            }
            _ => {
                tracing::warn!(%method, path = url.path(), status = answer.status.as_u16(), request_id, error = %err, "Scalingo call failed")
            }
        }
        if let (ScalingoError::NotFound, Some((region, app))) = (&err, scope) {
            let mut locations = self.locations_lock();
            if locations.get(app).is_some_and(|r| r == region) {
                locations.remove(app);
            }
        }
        err
    }

    /// The JWT exchange: `POST {auth}/v1/tokens/exchange`, Basic auth with an
    /// empty user and the API token as password, body `{}`.
    async fn exchange(&self) -> Result<Secret, ScalingoError> {
        let url = join(&self.config.auth_url, &["v1", "tokens", "exchange"])?;
        let token = self.config.api_token.clone();
        let empty = serde_json::json!({});
        let answer = self
            .send_with_retry(&Method::POST, &url, || {
                self.http
                    .post(url.clone())
                    .basic_auth("", Some(token.expose()))
                    .json(&empty)
            })
            .await?;
        if !answer.status.is_success() {
            return Err(self.fail(&Method::POST, &url, None, &answer));
        }
        // No serde detail in the error: the body holds the JWT.
        let envelope: TokenEnvelope = serde_json::from_slice(&answer.body).map_err(|_| {
            ScalingoError::Decode("token exchange answer without a string `token`".into())
        })?;
        if envelope.token.is_empty() {
            return Err(ScalingoError::Decode(
                "token exchange returned an empty token".into(),
            ));
        }
        Ok(Secret::new(envelope.token))
    }

    /// A bearer call: attaches the JWT; on a 401, exchanges a new JWT once and
    /// retries once (a second 401 is returned as is and maps to Unauthorized).
    async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ScalingoError> {
        let mut jwt = self.tokens.get(|| self.exchange()).await?;
        let mut renewed = false;
        loop {
            let bearer = jwt.clone();
            let answer = self
                .send_with_retry(&method, url, || {
                    let request = self
                        .http
                        .request(method.clone(), url.clone())
                        .bearer_auth(bearer.expose());
                    match body {
                        Some(body) => request.json(body),
                        None => request,
                    }
                })
                .await?;
            if answer.status == StatusCode::UNAUTHORIZED && !renewed {
                tracing::info!(%method, path = url.path(), request_id = answer.request_id.as_deref(), "JWT refused; exchanging the API token again");
                renewed = true;
                jwt = self.tokens.renew(&jwt, || self.exchange()).await?;
                continue;
            }
            return Ok(answer);
        }
    }

    /// Sends the request built by `build`, retrying (with backoff) answers 429
    /// and 503, 502/504 and transport errors of idempotent calls, and connect
    /// errors of any call (nothing was sent); never a timed-out call. Returns
    /// the last answer, whatever its status, or the last transport error.
    async fn send_with_retry(
        &self,
        method: &Method,
        url: &Url,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Answer, ScalingoError> {
        let policy = &self.tuning.retry;
        let idempotent = *method == Method::GET;
        let mut attempt = 1;
        loop {
            let last = attempt >= policy.attempts;
            let sent = build().send().await;
            if let Some(metrics) = self.metrics.get() {
                let status = sent.as_ref().ok().map(|r| r.status().as_u16());
                metrics.scalingo_call(crate::metrics::endpoint_label(url.path()), status);
            }
            let retry_after = match sent {
                Ok(response) => {
                    let answer = read_answer(response).await?;
                    let retryable = match answer.status.as_u16() {
                        429 | 503 => true,
                        502 | 504 => idempotent,
                        _ => false,
                    };
                    if !retryable || last {
                        return Ok(answer);
                    }
                    tracing::info!(%method, path = url.path(), status = answer.status.as_u16(), request_id = answer.request_id.as_deref(), attempt, "Scalingo asks to retry later");
                    answer.retry_after
                }
                Err(e) => {
                    let message = error_chain(&e);
                    // A timed-out call is not retried: it would likely time
                    // out again and multiply the caller's wait.
                    let retryable = !e.is_timeout() && (e.is_connect() || idempotent);
                    if last || !retryable {
                        tracing::warn!(%method, path = url.path(), error = %message, "Scalingo call failed");
                        return Err(ScalingoError::Transport(message));
                    }
                    tracing::info!(%method, path = url.path(), error = %message, attempt, "Scalingo call failed; retrying");
                    None
                }
            };
            tokio::time::sleep(retry_delay(policy, attempt, retry_after)).await;
            attempt += 1;
        }
    }
}

/// Reads status, the headers we use, and the body (capped; error bodies harder).
async fn read_answer(mut response: reqwest::Response) -> Result<Answer, ScalingoError> {
    let status = response.status();
    let headers = response.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = header("x-request-id");
    let location = header(LOCATION.as_str());
    let retry_after = header(RETRY_AFTER.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let cap = if status.is_success() {
        MAX_BODY_BYTES
    } else {
        MAX_ERROR_BODY_BYTES
    };
    let mut body = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| ScalingoError::Transport(error_chain(&e)))?;
        let Some(chunk) = chunk else { break };
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            if status.is_success() {
                return Err(ScalingoError::Decode(format!(
                    "answer larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            break; // an error message is taken from the start of the body
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        request_id,
        location,
        retry_after,
        body,
    })
}

/// The formation of a scale answer. The scale already happened, so a body we
/// cannot read must not turn it into an error.
fn lenient_formation(answer: &Answer) -> Vec<ContainerType> {
    match serde_json::from_slice::<ContainersEnvelope>(&answer.body) {
        Ok(envelope) => envelope.containers,
        Err(e) => {
            tracing::warn!(request_id = answer.request_id.as_deref(), error = %e, "scale answer without a readable formation");
            Vec::new()
        }
    }
}

/// Delay before retry number `attempt` (1 = the first retry).
fn retry_delay(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let base = match retry_after {
        Some(after) => after,
        None => policy
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16)),
    };
    let delay = base.min(policy.max_delay);
    delay + jitter(delay / 5)
}

/// Up to `max` of jitter, so that callers rate limited together do not all
/// come back at the same instant (no RNG crate: the clock's nanoseconds do).
fn jitter(max: Duration) -> Duration {
    let max_nanos = max.as_nanos() as u64;
    if max_nanos == 0 {
        return Duration::ZERO;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_nanos(nanos % max_nanos)
}

/// Runs `fut` until `deadline`, mapping a late end to [`ScalingoError::Timeout`].
async fn with_deadline<T>(
    deadline: Instant,
    fut: impl std::future::Future<Output = Result<T, ScalingoError>>,
) -> Result<T, ScalingoError> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .unwrap_or(Err(ScalingoError::Timeout))
}

/// Errors after which polling goes on (until the deadline): they may clear by themselves.
fn polling_may_continue(e: &ScalingoError) -> bool {
    matches!(
        e,
        ScalingoError::RateLimited | ScalingoError::Server { .. } | ScalingoError::Transport(_)
    )
}

fn check_app(app: &str) -> Result<(), ScalingoError> {
    if paastis_rules::is_valid_app_name(app) {
        Ok(())
    } else {
        Err(ScalingoError::invalid_app_name(app))
    }
}

/// Operation ids are opaque; they are path-encoded, but must still be one real segment.
fn check_operation_id(id: &str) -> Result<(), ScalingoError> {
    if id.is_empty() || id == "." || id == ".." || id.len() > 200 {
        return Err(ScalingoError::Decode(format!(
            "invalid operation id {:?}",
            id.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

fn check_base_url(what: &str, url: &Url) -> Result<(), ScalingoError> {
    if !matches!(url.scheme(), "https" | "http")
        || url.host_str().is_none()
        || url.cannot_be_a_base()
    {
        return Err(ScalingoError::Config(format!(
            "{what} must be an http(s) URL with a host, got {url}"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ScalingoError::Config(format!(
            "{what} must not carry credentials"
        )));
    }
    Ok(())
}

/// `base` + path segments, each percent-encoded (query and fragment dropped).
fn join(base: &Url, segments: &[&str]) -> Result<Url, ScalingoError> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| ScalingoError::Config(format!("{base} cannot be a base URL")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The operation id of a scale's `Location`
/// (`https://api.<region>.scalingo.com/v1/apps/{app}/operations/{id}`).
///
/// The Location must be on the region's API scheme, host and port: the id is
/// then polled through our own URL, and the bearer never leaves for a host
/// the answer chose. A relative Location is resolved against the API base.
pub(crate) fn operation_id_from_location(
    location: &str,
    api: &Url,
) -> Result<String, ScalingoError> {
    let shown = || location.chars().take(200).collect::<String>();
    let url = api
        .join(location)
        .map_err(|_| ScalingoError::UntrustedLocation(shown()))?;
    let same_origin = url.scheme() == api.scheme()
        && url.host_str() == api.host_str()
        && url.port_or_known_default() == api.port_or_known_default();
    if !same_origin {
        tracing::warn!(location = %shown(), api = %api, "scale Location is not on the region's API host");
        return Err(ScalingoError::UntrustedLocation(shown()));
    }
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    let id = match segments.as_slice() {
        [.., "v1", "apps", app, "operations", id] if !app.is_empty() => *id,
        _ => {
            return Err(ScalingoError::Decode(format!(
                "Location is not an operation URL: {}",
                shown()
            )))
        }
    };
    let id = percent_decode_str(id).decode_utf8_lossy().into_owned();
    check_operation_id(&id)?;
    Ok(id)
}

/// The pause before the next poll of an operation that started `waited`
/// ago: a quarter of the wait so far, at least `interval / 4` and at most
/// `interval` (the `operation_poll_interval`, 1 s by default).
///
/// Why: the gateway notices a finished boot late by up to one pause, and
/// that lateness is most of a wake's overhead (`make bench`, cold wake). A
/// fixed 1 s pause made every quick boot wait half a second more on
/// average; this schedule keeps the lateness under a quarter of the boot
/// time (250 ms for a boot under a second) while a long boot is polled about
/// once a second, as before, which matters under Scalingo's 60 calls a
/// minute per token: 11 polls for the first 5 s instead of 5, then the same.
pub fn operation_poll_delay(waited: Duration, interval: Duration) -> Duration {
    (waited / 4).clamp(interval / 4, interval)
}

/// An error and its sources, on one line (reqwest hides the cause in `source()`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Url {
        Url::parse("https://api.osc-fr1.scalingo.com").unwrap()
    }

    #[test]
    fn location_gives_the_operation_id() {
        assert_eq!(
            operation_id_from_location(
                "https://api.osc-fr1.scalingo.com/v1/apps/my-app/operations/op-123",
                &api()
            )
            .unwrap(),
            "op-123"
        );
        // Explicit default port, relative Location, encoded id.
        assert_eq!(
            operation_id_from_location(
                "https://API.osc-fr1.scalingo.com:443/v1/apps/my-app/operations/a%20b",
                &api()
            )
            .unwrap(),
            "a b"
        );
        assert_eq!(
            operation_id_from_location("/v1/apps/my-app/operations/op-9", &api()).unwrap(),
            "op-9"
        );
        // A base URL with a path (as a fake may serve regions under a prefix).
        let prefixed = Url::parse("http://127.0.0.1:8080/osc-fr1").unwrap();
        assert_eq!(
            operation_id_from_location(
                "http://127.0.0.1:8080/osc-fr1/v1/apps/my-app/operations/x",
                &prefixed
            )
            .unwrap(),
            "x"
        );
    }

    #[test]
    fn location_on_another_origin_is_untrusted() {
        for location in [
            "https://evil.example.com/v1/apps/my-app/operations/op-1",
            "https://api.osc-secnum-fr1.scalingo.com/v1/apps/my-app/operations/op-1",
            "http://api.osc-fr1.scalingo.com/v1/apps/my-app/operations/op-1",
            "https://api.osc-fr1.scalingo.com:8443/v1/apps/my-app/operations/op-1",
            "//evil.example.com/v1/apps/my-app/operations/op-1",
        ] {
            assert!(
                matches!(
                    operation_id_from_location(location, &api()),
                    Err(ScalingoError::UntrustedLocation(_))
                ),
                "{location}"
            );
        }
        let local = Url::parse("http://127.0.0.1:8080").unwrap();
        assert!(matches!(
            operation_id_from_location("http://127.0.0.1:8081/v1/apps/my-app/operations/1", &local),
            Err(ScalingoError::UntrustedLocation(_))
        ));
    }

    #[test]
    fn location_with_another_path_is_refused() {
        for location in [
            "https://api.osc-fr1.scalingo.com/v1/apps/my-app",
            "https://api.osc-fr1.scalingo.com/v1/apps/my-app/operations/",
            "https://api.osc-fr1.scalingo.com/v1/apps/my-app/deployments/1",
            "https://api.osc-fr1.scalingo.com/v1/apps/my-app/operations/%2E%2E",
        ] {
            assert!(
                matches!(
                    operation_id_from_location(location, &api()),
                    Err(ScalingoError::Decode(_))
                ),
                "{location}"
            );
        }
    }

    #[test]
    fn join_encodes_and_keeps_base_path() {
        let base = Url::parse("http://127.0.0.1:9/prefix/?q=1").unwrap();
        assert_eq!(
            join(&base, &["v1", "apps", "a/b c"]).unwrap().as_str(),
            "http://127.0.0.1:9/prefix/v1/apps/a%2Fb%20c"
        );
        assert_eq!(
            join(&api(), &["v1", "regions"]).unwrap().as_str(),
            "https://api.osc-fr1.scalingo.com/v1/regions"
        );
    }

    #[test]
    fn operation_polls_start_fast_and_slow_down_to_the_interval() {
        let second = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert_eq!(operation_poll_delay(Duration::ZERO, second), ms(250));
        assert_eq!(operation_poll_delay(ms(900), second), ms(250));
        assert_eq!(operation_poll_delay(ms(2000), second), ms(500));
        assert_eq!(operation_poll_delay(ms(4000), second), second);
        assert_eq!(
            operation_poll_delay(Duration::from_secs(50), second),
            second
        );
        // Polls within the first 5 s, then one a second as with a fixed pause.
        let mut waited = Duration::ZERO;
        let mut polls = 0;
        loop {
            waited += operation_poll_delay(waited, second);
            if waited > Duration::from_secs(5) {
                break;
            }
            polls += 1;
        }
        assert_eq!(polls, 11);
    }

    #[test]
    fn retry_delays_double_and_are_capped() {
        let policy = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
        };
        let within = |d: Duration, lo: u64| {
            d >= Duration::from_secs(lo) && d <= Duration::from_secs(lo) * 6 / 5
        };
        assert!(within(retry_delay(&policy, 1, None), 1));
        assert!(within(retry_delay(&policy, 2, None), 2));
        assert!(within(retry_delay(&policy, 3, None), 3));
        assert!(within(retry_delay(&policy, 30, None), 3));
        assert!(within(
            retry_delay(&policy, 1, Some(Duration::from_secs(2))),
            2
        ));
        assert!(within(
            retry_delay(&policy, 1, Some(Duration::from_secs(60))),
            3
        ));
    }

    #[test]
    fn config_is_checked() {
        let mut config = ScalingoConfig::new("");
        assert!(matches!(
            ScalingoClient::new(config.clone()),
            Err(ScalingoError::Config(_))
        ));
        config.api_token = "tk-us-x".into();
        config.auth_url = Url::parse("ftp://auth.example.com").unwrap();
        assert!(matches!(
            ScalingoClient::new(config.clone()),
            Err(ScalingoError::Config(_))
        ));
        config.auth_url = Url::parse("https://user:pw@auth.example.com").unwrap();
        assert!(matches!(
            ScalingoClient::new(config.clone()),
            Err(ScalingoError::Config(_))
        ));
        config.auth_url = Url::parse("https://auth.example.com").unwrap();
        let client = ScalingoClient::new(config).unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("tk-us-x"), "{debug}");
    }

    #[test]
    fn config_debug_redacts_the_token() {
        let config = ScalingoConfig::new("tk-us-secret");
        let debug = format!("{config:?}");
        assert!(!debug.contains("tk-us-secret"), "{debug}");
        assert!(debug.contains("[redacted]"));
    }

    #[tokio::test]
    async fn invalid_names_are_refused_before_any_call() {
        // The auth URL is unroutable: any HTTP call would fail with Transport.
        let mut config = ScalingoConfig::new("tk-us-x");
        config.auth_url = Url::parse("http://127.0.0.1:1").unwrap();
        let client = ScalingoClient::new(config).unwrap();
        for bad in [
            "Bad",
            "ab",
            "-abcdef",
            "abc--def",
            "../../etc",
            "my app x",
            "my-app.evil.com",
        ] {
            assert!(
                matches!(
                    client.get_app("osc-fr1", bad).await,
                    Err(ScalingoError::InvalidAppName(_))
                ),
                "{bad}"
            );
            assert!(
                matches!(
                    client.locate(bad).await,
                    Err(ScalingoError::InvalidAppName(_))
                ),
                "{bad}"
            );
            assert!(
                matches!(
                    client
                        .scale("osc-fr1", bad, &[ContainerAmount::new("web", 1)])
                        .await,
                    Err(ScalingoError::InvalidAppName(_))
                ),
                "{bad}"
            );
            assert!(
                matches!(
                    client.ps("osc-fr1", bad).await,
                    Err(ScalingoError::InvalidAppName(_))
                ),
                "{bad}"
            );
            assert!(
                matches!(
                    client.formation("osc-fr1", bad).await,
                    Err(ScalingoError::InvalidAppName(_))
                ),
                "{bad}"
            );
            assert!(
                matches!(
                    client.operation("osc-fr1", bad, "op").await,
                    Err(ScalingoError::InvalidAppName(_))
                ),
                "{bad}"
            );
            assert!(
                matches!(
                    client
                        .wait_web_running("osc-fr1", bad, Instant::now())
                        .await,
                    Err(ScalingoError::InvalidAppName(_))
                ),
                "{bad}"
            );
            assert!(
                matches!(
                    client
                        .wait_operation("osc-fr1", bad, "op", Instant::now())
                        .await,
                    Err(ScalingoError::InvalidAppName(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn client_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<ScalingoClient>();
        fn assert_error<T: std::error::Error + Send + Sync + Clone + 'static>() {}
        assert_error::<ScalingoError>();
    }
}
