//! [`ScalingoClient`]: one method per API call the sidecar makes, made of
//! the parts of this module: `transport` sends (budget, bearer, JWT,
//! retries, decoding), `locator` caches the regions and where each app lives,
//! [`polling`] waits for a scale to take effect, and `urls`
//! builds every URL from validated names.

use std::sync::Arc;

use reqwest::Method;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

use super::config::{ScalingoConfig, ScalingoTuning};
use super::error::{self, ScalingoError};
use super::locator::{self, AppLocations, RegionsCache};
use super::polling;
use super::transport::{self, Answer, Caller, Transport};
use super::types::{
    App, AppEnvelope, AppsEnvelope, Autoscaler, AutoscalerDisabled, AutoscalerEnvelope,
    AutoscalerUpdate, AutoscalersEnvelope, ContainerAmount, ContainerType, ContainersEnvelope,
    Operation, OperationEnvelope, Process, PsEnvelope, Region, RegionsEnvelope, ScaleOutcome,
    ScaleRequest,
};
use super::urls::{self, check_app, check_base_url, check_id, check_operation_id};
use crate::budget::{Budget, BudgetConfig, Priority};

// Kept at their former paths (`scalingo::client::...`).
pub use super::locator::{FAILED_SCAN_RETRY, REGIONS_RETRY, REGIONS_TTL};
pub use super::polling::{operation_poll_delay, WEB_POLL_DELAYS};

/// Client for the Scalingo API. Cheap to clone (an `Arc` inside), `Send + Sync`.
///
/// All clones share the JWT, the region list, the app -> region cache and
/// the API [`Budget`]: every HTTP try, the token exchange included, first
/// takes a slot from it.
///
/// A clone is also a view for one kind of caller: [`with_priority`](Self::with_priority)
/// says whose calls these are (a wake by default; the scheduler and
/// discovery use [`Priority::Background`]), and [`with_deadline`](Self::with_deadline)
/// how long a call may wait for a slot (by default
/// [`DEFAULT_BUDGET_WAIT`](super::config::DEFAULT_BUDGET_WAIT) from its
/// start; the `wait_*` polls use their own deadline). Fetches whose result
/// every caller shares (the token exchange, the region list, a
/// [`locate`](Self::locate) scan) run at wake priority whoever starts them:
/// a wake may be waiting on them behind the cache's lock.
#[derive(Clone)]
pub struct ScalingoClient {
    inner: Arc<Inner>,
    caller: Caller,
}

struct Inner {
    config: ScalingoConfig,
    tuning: ScalingoTuning,
    transport: Transport,
    regions: RegionsCache,
    locations: AppLocations,
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

    /// Builds the client with explicit timing knobs and its own in-memory
    /// budget of [`BudgetConfig::default`] (one instance).
    pub fn with_tuning(
        config: ScalingoConfig,
        tuning: ScalingoTuning,
    ) -> Result<Self, ScalingoError> {
        let budget = Budget::in_memory(BudgetConfig::default())
            .map_err(|e| ScalingoError::Config(e.to_string()))?;
        Self::with_budget(config, tuning, Arc::new(budget))
    }

    /// Builds the client drawing on `budget`, the gateway's one budget (in
    /// memory, or shared through Redis).
    pub fn with_budget(
        config: ScalingoConfig,
        tuning: ScalingoTuning,
        budget: Arc<Budget>,
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
        let transport = Transport::new(&config, tuning.retry.clone(), budget)?;
        Ok(Self {
            inner: Arc::new(Inner {
                locations: AppLocations::new(tuning.negative_ttl),
                regions: RegionsCache::default(),
                transport,
                config,
                tuning,
            }),
            caller: Caller::default(),
        })
    }

    /// The same client, for callers of `priority` (shares everything).
    pub fn with_priority(&self, priority: Priority) -> Self {
        Self {
            inner: self.inner.clone(),
            caller: Caller {
                priority,
                ..self.caller
            },
        }
    }

    /// The same client, whose calls wait for a budget slot at most until
    /// `deadline` (or the earlier deadline this view already has).
    pub fn with_deadline(&self, deadline: Instant) -> Self {
        Self {
            inner: self.inner.clone(),
            caller: Caller {
                deadline: Some(self.caller.deadline.map_or(deadline, |d| d.min(deadline))),
                ..self.caller
            },
        }
    }

    /// The same client, whose calls are sent only if the budget has a slot
    /// free right now, and otherwise fail at once with
    /// [`ScalingoError::BudgetExhausted`] (transient: the caller skips the
    /// call). For reads that are useful only now, such as a wake's status
    /// checks: they must never wait behind, nor fail, the wake.
    pub fn if_budget_free(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            caller: Caller {
                try_only: true,
                ..self.caller
            },
        }
    }

    /// The priority of this view's calls.
    pub fn priority(&self) -> Priority {
        self.caller.priority
    }

    /// The budget every call draws from (for its [stats](Budget::stats)).
    pub fn budget(&self) -> &Arc<Budget> {
        self.inner.transport.budget()
    }

    /// Counts this client's calls in `metrics` (the first call wins).
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        self.inner.transport.set_metrics(metrics);
    }

    /// The usable regions: those `/v1/regions` lists, restricted to the
    /// configured ones. Cached for [`REGIONS_TTL`].
    ///
    /// Fails with [`ScalingoError::UnknownRegion`] when the configuration names
    /// a region Scalingo does not list.
    pub async fn regions(&self) -> Result<Vec<Region>, ScalingoError> {
        Ok(self.inner.regions(self.caller).await?.as_ref().clone())
    }

    /// Every app of `region` (`GET /v1/apps`). Refreshes the app -> region
    /// cache for that region.
    pub async fn list_apps(&self, region: &str) -> Result<Vec<App>, ScalingoError> {
        self.inner.list_apps(self.caller, region).await
    }

    /// The region of `app`, or `None` when no usable region has it.
    ///
    /// Answered from the cache when the app was seen in a listing; otherwise
    /// every region is listed concurrently (which caches every app seen). A
    /// name still not found is answered `None` without any call for
    /// `negative_ttl` after that scan, whatever the name, so bogus names cannot
    /// make us list the regions on every request. When a region could not be
    /// listed, the error is returned instead of `None` (for a shorter time).
    /// The region the last listing (or scan) found `app` in, if any; no
    /// call.
    pub fn cached_region(&self, app: &str) -> Option<String> {
        self.inner.locations.get(app)
    }

    pub async fn locate(&self, app: &str) -> Result<Option<String>, ScalingoError> {
        check_app(app)?;
        let (inner, caller) = (&self.inner, self.caller.for_shared_fetch());
        inner
            .locations
            .locate(app, || async {
                match inner.regions(caller).await {
                    Err(e) => Some(e),
                    Ok(regions) => futures::future::join_all(
                        regions.iter().map(|r| inner.list_apps(caller, &r.name)),
                    )
                    .await
                    .into_iter()
                    .find_map(Result::err),
                }
            })
            .await
    }

    /// Drops `app` from the app -> region cache (e.g. after it was deleted or
    /// moved); the next [`locate`](Self::locate) looks for it again.
    pub fn forget(&self, app: &str) {
        self.inner.locations.forget(app);
    }

    /// One app (`GET /v1/apps/{app}`).
    pub async fn get_app(&self, region: &str, app: &str) -> Result<App, ScalingoError> {
        let envelope: AppEnvelope = self
            .inner
            .get_app_json(self.caller, region, app, &[])
            .await?;
        Ok(envelope.app)
    }

    /// The formation (`GET /v1/apps/{app}/containers`); empty for a never-deployed app.
    pub async fn formation(
        &self,
        region: &str,
        app: &str,
    ) -> Result<Vec<ContainerType>, ScalingoError> {
        let envelope: ContainersEnvelope = self
            .inner
            .get_app_json(self.caller, region, app, &["containers"])
            .await?;
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
        let api = self.inner.region_api(self.caller, region).await?;
        let url = urls::app_url(&api, app, &["scale"])?;
        let body = serde_json::to_value(ScaleRequest {
            containers: changes,
        })
        .map_err(|e| ScalingoError::Decode(format!("scale request: {e}")))?;
        let answer = self
            .inner
            .transport
            .call(self.caller, Method::POST, &url, Some(&body))
            .await?;
        match answer.status.as_u16() {
            202 => {
                let location = answer.location.as_deref().ok_or_else(|| {
                    ScalingoError::Decode("202 Accepted without a Location".into())
                })?;
                let operation_id = urls::operation_id_from_location(location, &api)?;
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
            _ => {
                let err = transport::fail(&Method::POST, &url, &answer);
                Err(self.inner.app_error(region, app, err))
            }
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
        let envelope: OperationEnvelope = self
            .inner
            .get_app_json(self.caller, region, app, &["operations", id])
            .await?;
        Ok(envelope.operation)
    }

    /// The containers (`GET /v1/apps/{app}/ps`).
    pub async fn ps(&self, region: &str, app: &str) -> Result<Vec<Process>, ScalingoError> {
        let envelope: PsEnvelope = self
            .inner
            .get_app_json(self.caller, region, app, &["ps"])
            .await?;
        Ok(envelope.containers)
    }

    /// The app's autoscalers (`GET /v1/apps/{app}/autoscalers`); empty when
    /// it has none. Entries without an id are skipped (see [`Autoscaler`]).
    pub async fn list_autoscalers(
        &self,
        region: &str,
        app: &str,
    ) -> Result<Vec<Autoscaler>, ScalingoError> {
        let envelope: AutoscalersEnvelope = self
            .inner
            .get_app_json(self.caller, region, app, &["autoscalers"])
            .await?;
        Ok(envelope.autoscalers)
    }

    /// Turns an autoscaler off or back on (`PATCH
    /// /v1/apps/{app}/autoscalers/{id}` with `{"autoscaler":{"disabled":b}}`).
    ///
    /// Returns the autoscaler as Scalingo answers it, or `None` when the 2xx
    /// answer has no decodable `autoscaler` (the change was accepted all the
    /// same). An unknown id is [`ScalingoError::ResourceNotFound`].
    pub async fn set_autoscaler_disabled(
        &self,
        region: &str,
        app: &str,
        id: &str,
        disabled: bool,
    ) -> Result<Option<Autoscaler>, ScalingoError> {
        check_app(app)?;
        check_id("autoscaler", id)?;
        let api = self.inner.region_api(self.caller, region).await?;
        let url = urls::app_url(&api, app, &["autoscalers", id])?;
        let body = serde_json::to_value(AutoscalerUpdate {
            autoscaler: AutoscalerDisabled { disabled },
        })
        .map_err(|e| ScalingoError::Decode(format!("autoscaler update: {e}")))?;
        let answer = self
            .inner
            .transport
            .call(self.caller, Method::PATCH, &url, Some(&body))
            .await?;
        if !answer.status.is_success() {
            let err = transport::fail(&Method::PATCH, &url, &answer);
            return Err(self.inner.app_error(region, app, err));
        }
        tracing::info!(app, region, autoscaler = id, disabled, "autoscaler updated");
        Ok(serde_json::from_slice::<AutoscalerEnvelope>(&answer.body)
            .ok()
            .map(|e| e.autoscaler))
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
        let this = self.with_deadline(deadline);
        polling::until_operation_ends((region, app, id), interval, deadline, || {
            this.operation(region, app, id)
        })
        .await
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
        let this = self.with_deadline(deadline);
        polling::until_web_runs((region, app), deadline, || this.ps(region, app)).await
    }
}

impl Inner {
    async fn regions(&self, caller: Caller) -> Result<Arc<Vec<Region>>, ScalingoError> {
        self.regions
            .get(|| self.fetch_regions(caller.for_shared_fetch()))
            .await
    }

    async fn fetch_regions(&self, caller: Caller) -> Result<Vec<Region>, ScalingoError> {
        let url = urls::join(&self.config.auth_url, &["v1", "regions"])?;
        let envelope: RegionsEnvelope = self
            .transport
            .call_json(caller, Method::GET, &url, None)
            .await?;
        let usable = envelope
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
        let regions = locator::select_regions(usable, self.config.regions.as_deref())?;
        tracing::debug!(regions = ?regions.iter().map(|r| &r.name).collect::<Vec<_>>(), "Scalingo regions");
        Ok(regions)
    }

    async fn region_api(&self, caller: Caller, region: &str) -> Result<Url, ScalingoError> {
        self.regions(caller)
            .await?
            .iter()
            .find(|r| r.name == region)
            .map(|r| r.api.clone())
            .ok_or_else(|| ScalingoError::UnknownRegion(region.to_owned()))
    }

    async fn list_apps(&self, caller: Caller, region: &str) -> Result<Vec<App>, ScalingoError> {
        let api = self.region_api(caller, region).await?;
        let url = urls::join(&api, &["v1", "apps"])?;
        let envelope: AppsEnvelope = self
            .transport
            .call_json(caller, Method::GET, &url, None)
            .await?;
        self.locations.record_listing(region, &envelope.apps);
        Ok(envelope.apps)
    }

    /// GET `{api}/v1/apps/{app}/{tail...}` and decode the 2xx body. The name
    /// is validated first, so an invalid one never causes an HTTP call (not
    /// even for the regions).
    async fn get_app_json<T: DeserializeOwned>(
        &self,
        caller: Caller,
        region: &str,
        app: &str,
        tail: &[&str],
    ) -> Result<T, ScalingoError> {
        check_app(app)?;
        let api = self.region_api(caller, region).await?;
        let url = urls::app_url(&api, app, tail)?;
        self.transport
            .call_json(caller, Method::GET, &url, None)
            .await
            .map_err(|e| self.app_error(region, app, e))
    }

    /// A 404 about the app ([`ScalingoError::NotFound`]) drops it from the
    /// location cache if it was cached in that region; a 404 about anything
    /// else (an unknown container type, a missing operation) leaves it: the
    /// app exists.
    fn app_error(&self, region: &str, app: &str, err: ScalingoError) -> ScalingoError {
        if err == ScalingoError::NotFound {
            self.locations.forget_in(region, app);
        }
        err
    }
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

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
