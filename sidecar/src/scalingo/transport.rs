//! The HTTP side of the client: one `reqwest::Client`, the bearer on every
//! call and the JWT exchange behind it, the retries of the one policy in
//! `retry`, and answers read with a size cap (bodies are untrusted) then
//! decoded or mapped to a [`ScalingoError`].
//!
//! Every try (retries and the token exchange included) first takes a slot
//! from the gateway's [`Budget`], at the rank of its [`Caller`]; a 429
//! answer pauses the whole budget. No request leaves without passing here.
//!
//! It knows nothing of regions or apps: callers hand it full URLs built by
//! `urls`. Redirects are never followed, so the bearer only goes to the
//! URLs the client built.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, LOCATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::auth::{Secret, TokenCache};
use super::config::{RetryPolicy, ScalingoConfig, DEFAULT_BUDGET_WAIT};
use super::error::{self, ScalingoError};
use super::retry::{self, SendFailure, Tried};
use super::types::TokenEnvelope;
use super::urls::join;
use crate::budget::{Budget, Priority};
use crate::metrics::{endpoint_label, Metrics};

/// Largest success body read (the app list of a big account fits easily).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest error body read: only a message is taken from it.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// An HTTP answer, body read (capped).
#[derive(Clone)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub request_id: Option<String>,
    pub location: Option<String>,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// Whose call this is, for the budget: its priority, and until when it may
/// wait for a slot (`None`: [`DEFAULT_BUDGET_WAIT`] from the call's start),
/// or whether it is sent only if a slot is free right now (`try_only`: it
/// is skipped otherwise, with [`ScalingoError::BudgetExhausted`] and no
/// warning).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Caller {
    pub priority: Priority,
    pub deadline: Option<Instant>,
    pub try_only: bool,
}

impl Caller {
    /// The caller of a fetch whose result every caller shares (the JWT, the
    /// region list, a locate scan): it runs at wake priority, since a wake
    /// may be waiting on it behind the cache's lock, whoever started it.
    /// Such a fetch waits for its slot even for a `try_only` caller: its
    /// result is not this caller's alone.
    pub fn for_shared_fetch(self) -> Self {
        Self {
            priority: Priority::Wake,
            try_only: false,
            ..self
        }
    }

    fn budget_deadline(&self) -> Instant {
        self.deadline
            .unwrap_or_else(|| Instant::now() + DEFAULT_BUDGET_WAIT)
    }
}

/// Sends the client's calls. The JWT it holds is shared by every clone of
/// the client (it lives behind the client's `Arc`).
pub(crate) struct Transport {
    http: reqwest::Client,
    auth_url: Url,
    api_token: Secret,
    retry: RetryPolicy,
    tokens: TokenCache,
    /// Every try takes a slot from it first.
    budget: Arc<Budget>,
    /// Counts calls by endpoint and status, once the gateway sets it.
    metrics: OnceLock<Arc<Metrics>>,
}

impl Transport {
    /// Builds the HTTP client (no call is made). `config` is assumed checked.
    pub fn new(
        config: &ScalingoConfig,
        retry: RetryPolicy,
        budget: Arc<Budget>,
    ) -> Result<Self, ScalingoError> {
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
            http,
            auth_url: config.auth_url.clone(),
            api_token: config.api_token.clone(),
            retry,
            tokens: TokenCache::default(),
            budget,
            metrics: OnceLock::new(),
        })
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Counts calls in `metrics` (the first call wins).
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// A bearer call: attaches the JWT; on a 401, exchanges a new JWT once and
    /// retries once (a second 401 is returned as is and maps to Unauthorized).
    /// Returns the last answer whatever its status.
    pub async fn call(
        &self,
        caller: Caller,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ScalingoError> {
        let mut jwt = self
            .tokens
            .get(|| self.exchange(caller.for_shared_fetch()))
            .await?;
        let mut renewed = false;
        loop {
            let bearer = jwt.clone();
            let answer = self
                .send_with_retry(caller, &method, url, || {
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
                jwt = self
                    .tokens
                    .renew(&jwt, || self.exchange(caller.for_shared_fetch()))
                    .await?;
                continue;
            }
            return Ok(answer);
        }
    }

    /// [`call`](Self::call) then [`decode`].
    pub async fn call_json<T: DeserializeOwned>(
        &self,
        caller: Caller,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ScalingoError> {
        let answer = self.call(caller, method.clone(), url, body).await?;
        decode(&method, url, answer)
    }

    /// The JWT exchange: `POST {auth}/v1/tokens/exchange`, Basic auth with an
    /// empty user and the API token as password, body `{}`.
    async fn exchange(&self, caller: Caller) -> Result<Secret, ScalingoError> {
        let url = join(&self.auth_url, &["v1", "tokens", "exchange"])?;
        let token = self.api_token.clone();
        let empty = serde_json::json!({});
        let answer = self
            .send_with_retry(caller, &Method::POST, &url, || {
                self.http
                    .post(url.clone())
                    .basic_auth("", Some(token.expose()))
                    .json(&empty)
            })
            .await?;
        if !answer.status.is_success() {
            return Err(fail(&Method::POST, &url, &answer));
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

    /// Sends the request built by `build`, retrying what the one policy in
    /// `retry` says (429/503 of any call, 502/504 and transport errors of
    /// idempotent ones, connect errors of any call, never a timed-out call).
    /// Returns the last answer, whatever its status, or the last transport
    /// error. A retry that gets no budget slot before the deadline ends the
    /// call with the answer it would have retried (a 429 stays a 429), or
    /// [`ScalingoError::BudgetExhausted`] when there was none.
    async fn send_with_retry(
        &self,
        caller: Caller,
        method: &Method,
        url: &Url,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Answer, ScalingoError> {
        let idempotent = *method == Method::GET;
        let is_scale = *method == Method::POST && url.path().ends_with("/scale");
        let slot = Slot {
            rank: caller.priority.rank(is_scale),
            deadline: caller.budget_deadline(),
            try_only: caller.try_only,
        };
        let mut retried: Option<Answer> = None;
        let outcome = retry::retrying(
            &self.retry,
            |_attempt| self.try_once(slot, idempotent, url, &build),
            |outcome, attempt, delay| match outcome {
                Ok(answer) => {
                    retried = Some(answer.clone());
                    tracing::info!(%method, path = url.path(), status = answer.status.as_u16(), request_id = answer.request_id.as_deref(), attempt, ?delay, "Scalingo asks to retry later")
                }
                Err(e) => {
                    tracing::info!(%method, path = url.path(), error = %e, attempt, ?delay, "Scalingo call failed; retrying")
                }
            },
        )
        .await;
        let outcome = match (outcome, retried) {
            (Err(ScalingoError::BudgetExhausted), Some(answer)) => Ok(answer),
            (outcome, _) => outcome,
        };
        match &outcome {
            Err(ScalingoError::BudgetExhausted) if caller.try_only => {
                tracing::debug!(%method, path = url.path(), "Scalingo call skipped: no budget free now");
            }
            Err(e) => {
                tracing::warn!(%method, path = url.path(), error = %e, "Scalingo call failed")
            }
            Ok(_) => {}
        }
        outcome
    }

    /// One try: takes a budget slot, sends, counts it, reads the answer
    /// (a 429 pauses the budget) and says whether it may be retried.
    async fn try_once(
        &self,
        slot: Slot,
        idempotent: bool,
        url: &Url,
        build: &impl Fn() -> RequestBuilder,
    ) -> Tried<Result<Answer, ScalingoError>> {
        if slot.try_only {
            if !self.budget.try_acquire(slot.rank).await {
                return Tried::Final(Err(ScalingoError::BudgetExhausted));
            }
        } else if let Err(e) = self.budget.acquire(slot.rank, slot.deadline).await {
            tracing::warn!(path = url.path(), error = %e, "Scalingo call not sent");
            return Tried::Final(Err(ScalingoError::BudgetExhausted));
        }
        let sent = build().send().await;
        if let Some(metrics) = self.metrics.get() {
            let status = sent.as_ref().ok().map(|r| r.status().as_u16());
            metrics.scalingo_call(endpoint_label(url.path()), status);
        }
        match sent {
            Ok(response) => match read_answer(response).await {
                Ok(answer) if answer.status == StatusCode::TOO_MANY_REQUESTS => {
                    self.budget.rate_limited(answer.retry_after).await;
                    let retry_after = answer.retry_after;
                    Tried::Retryable {
                        value: Ok(answer),
                        retry_after,
                    }
                }
                Ok(answer) if retry::status_is_retryable(answer.status.as_u16(), idempotent) => {
                    let retry_after = answer.retry_after;
                    Tried::Retryable {
                        value: Ok(answer),
                        retry_after,
                    }
                }
                // A body we could not read is not retried: the call was answered.
                other => Tried::Final(other),
            },
            Err(e) => {
                let value = Err(ScalingoError::Transport(error_chain(&e)));
                if SendFailure::of(&e).is_retryable(idempotent) {
                    Tried::Retryable {
                        value,
                        retry_after: None,
                    }
                } else {
                    Tried::Final(value)
                }
            }
        }
    }
}

/// The budget slot every try of one call asks for.
#[derive(Debug, Clone, Copy)]
struct Slot {
    rank: crate::budget::Rank,
    deadline: Instant,
    /// Taken only if free now ([`Caller::try_only`]).
    try_only: bool,
}

/// Decodes a 2xx body; any other answer is mapped by [`fail`].
pub(crate) fn decode<T: DeserializeOwned>(
    method: &Method,
    url: &Url,
    answer: Answer,
) -> Result<T, ScalingoError> {
    if !answer.status.is_success() {
        return Err(fail(method, url, &answer));
    }
    serde_json::from_slice(&answer.body).map_err(|e| {
        tracing::warn!(%method, path = url.path(), request_id = answer.request_id.as_deref(), error = %e, "undecodable Scalingo answer");
        ScalingoError::Decode(format!("{} {}: {e}", method, url.path()))
    })
}

/// Maps an error answer, logging it with its request id.
pub(crate) fn fail(method: &Method, url: &Url, answer: &Answer) -> ScalingoError {
    let err = error::from_response(
        answer.status.as_u16(),
        answer.request_id.clone(),
        &answer.body,
    );
    let request_id = answer.request_id.as_deref().unwrap_or("-");
    match &err {
        ScalingoError::NotFound
        | ScalingoError::ResourceNotFound { .. }
        | ScalingoError::UnknownContainerType(_)
        | ScalingoError::Busy(_) => {
            tracing::debug!(%method, path = url.path(), status = answer.status.as_u16(), request_id, error = %err, "Scalingo answer")
        }
        _ => {
            tracing::warn!(%method, path = url.path(), status = answer.status.as_u16(), request_id, error = %err, "Scalingo call failed")
        }
    }
    err
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
    let retry_after =
        header(RETRY_AFTER.as_str()).and_then(|v| retry::parse_retry_after(&v, SystemTime::now()));
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
