//! The glue of one HTTP stream (an HTTP context): reads the request through
//! the [`Host`] seam, applies the pure decisions of the other modules, and
//! carries them out (headers set, local replies, callouts, counters). No
//! decision is taken here.
//!
//! Besides the request, it watches the answer to a request it routed: a
//! 502, 503 or 504 ([`paastis_api::is_router_status`]) is what the
//! platform's router answers for an app with no serving container, so the
//! app's cache entry is dropped at once (a tombstone: the next wake asks
//! the sidecar to verify the app), its lease given back, and the app
//! reported in the next activity flush.
//!
//! **The backstop**: that answer is never passed on before the sidecar
//! said the app serves. The response is held and the sidecar asked
//! (`verify` and `background`): an app that serves (its own 503) gets its
//! answer through; otherwise its wake starts at once and the user gets the
//! waiting page (a browser) or our 503 JSON with `Retry-After`, never the
//! platform's page. An app that answers 503 itself costs one deduplicated
//! check per period on the sidecar and a callout per such answer; a cache
//! hit costs nothing more (one host call to read `:status`, only for
//! routed requests).

use std::rc::Rc;

use log::{debug, error, info, warn};

use crate::answer::AnswerError;
use crate::cache::{self, CacheError};
use crate::callout::{answered, dispatch, Callout, InFlight, WakeCall};
use crate::config::DEFAULT_RETRY_AFTER_S;
use crate::decide::{decide, route_edits, Decision, RouteEdits, Target};
use crate::headers::{HeaderPairs, RequestView};
use crate::host::{Flow, Host};
use crate::metrics::Metric;
use crate::reply::{LocalReply, ReplyKind};
use crate::shared::{send_rendered, send_reply, Shared};
use crate::waiting::{is_status_path, parse_status_answer, StatusReport};
use crate::wake::{
    after_wake, failure_action, parse_wake_answer, region_of_upstream, WakeAction, WakeOutcome,
};

/// One HTTP stream.
pub struct Stream {
    /// `None` before a valid configuration: every request is refused.
    shared: Option<Rc<Shared>>,
    /// The wake or status callout the request waits for.
    inflight: Option<InFlight>,
    /// The app this stream was routed to, until the stream ends (counted in
    /// `Activity`'s open streams).
    open_app: Option<String>,
    /// The request wants HTML (`Accept: text/html`), and is a browser's
    /// `GET`: what the backstop answers with.
    wants_html: bool,
    browser: bool,
}

impl Stream {
    pub fn new(shared: Option<Rc<Shared>>) -> Self {
        Self {
            shared,
            inflight: None,
            open_app: None,
            wants_html: false,
            browser: false,
        }
    }

    /// The request's headers arrived.
    pub fn on_request_headers(&mut self, host: &impl Host) -> Flow {
        let Some(shared) = self.shared.clone() else {
            error!("request before a valid configuration");
            return self.unavailable(host, false);
        };
        let buf = match host.request_headers() {
            Ok(buf) => buf,
            Err(e) => {
                error!("cannot read the request headers: {e}");
                return self.unavailable(host, false);
            }
        };
        let Ok(pairs) = HeaderPairs::new(&buf) else {
            error!("the host sent a malformed header map");
            return self.unavailable(host, false);
        };
        let view = RequestView::new(&shared.config.routing_header, pairs);
        // First of all: nothing the client sent may steer routing.
        for name in &view.strip {
            if let Err(e) = host.remove_request_header(name) {
                error!("cannot remove an internal request header: {e}");
                return self.unavailable(host, view.wants_html);
            }
        }
        match decide(&shared.config, &view) {
            Decision::Reply(reply) => self.reply(host, &reply, view.wants_html),
            Decision::PassThrough => {
                host.count(Metric::Unmatched);
                Flow::Continue
            }
            Decision::Route(target) => self.route_or_wake(host, &shared, &view, target),
        }
    }

    /// A callout of this stream was answered.
    pub fn on_call_answer(
        &mut self,
        host: &impl Host,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(callout) = answered(&mut self.inflight, token) else {
            warn!("ignoring an unexpected callout answer ({token})");
            return;
        };
        match callout {
            Callout::Wake(call) => {
                debug!(
                    "wake callout {token} answered: {num_headers} headers, {body_size} body bytes"
                );
                let outcome = read_wake_answer(host, &call.app, num_headers, body_size);
                if call.backstop {
                    self.backstop_answered(host, &shared, &call, outcome);
                } else {
                    self.wake_answered(host, &shared, &call, outcome);
                }
            }
            Callout::Status { app } => {
                self.status_answered(host, &shared, &app, num_headers, body_size);
            }
            Callout::Activity { .. } => warn!("activity answer on an HTTP stream ({token})"),
        }
    }

    /// The upstream's response headers arrived. For a request routed to an
    /// app, a 502/503/504 (the platform's router: no container serves it)
    /// drops the app from the cache, gives its lease back, reports it, and
    /// holds the answer while the sidecar checks the app (the backstop, see
    /// the module's documentation): `Pause` then, `Continue` otherwise.
    pub fn on_response_headers(&mut self, host: &impl Host) -> Flow {
        let (Some(app), Some(shared)) = (&self.open_app, self.shared.clone()) else {
            return Flow::Continue;
        };
        if !host
            .response_status()
            .is_some_and(paastis_api::is_router_status)
        {
            return Flow::Continue;
        }
        host.count(Metric::NotRunning);
        shared.drop_cache(host, app, &cache::tombstone(host.now_ms()));
        shared.with_activity(|a| {
            a.not_running(app);
            a.release(app);
        });
        debug!("{app} answered by the router: dropped from the cache, reported, checked");
        let call = Callout::Wake(Box::new(WakeCall {
            app: app.clone(),
            rule_region: None,
            last_region: None,
            original_host: String::new(),
            origin: None,
            wants_html: self.wants_html,
            browser: self.browser,
            verify: true,
            stale: None,
            backstop: true,
        }));
        match dispatch(host, &shared.config, call, None) {
            Ok(inflight) => {
                host.count(Metric::Callout);
                self.inflight = Some(inflight);
            }
            Err((_, e)) => {
                host.count(Metric::CalloutError);
                shared.sidecar_failed(host, &format_args!("check of {app}: {e}"));
                let reply = LocalReply::for_app(ReplyKind::Unavailable, app)
                    .retry_after(shared.config.retry_after_s);
                send_reply(host, &reply, self.wants_html);
            }
        }
        Flow::Pause
    }

    /// The sidecar's answer to the backstop's check: the app serves (200)
    /// and its own answer goes on; otherwise the user gets the waiting page
    /// or our 503 (never the router's page), the wake going on in the
    /// sidecar.
    fn backstop_answered(
        &mut self,
        host: &impl Host,
        shared: &Shared,
        call: &WakeCall,
        outcome: WakeOutcome,
    ) {
        let retry_after = shared.config.retry_after_s;
        let reply = match outcome {
            WakeOutcome::Awake(_) => {
                // The app itself answered (or the gateway never scales it):
                // its answer goes on; the tombstone makes the next request
                // ask again.
                shared.sidecar_answered(host);
                debug!("{}: the app's own answer, passed on", call.app);
                if let Err(e) = host.resume_response() {
                    error!("cannot resume the response of {}: {e}", call.app);
                }
                return;
            }
            WakeOutcome::Waiting { apps, expected_ms } => {
                shared.sidecar_answered(host);
                host.count(Metric::WaitingPage);
                info!(
                    "{} was not running: waking, the waiting page instead of the router's",
                    call.app
                );
                let page = crate::waiting::WaitingPage {
                    app: call.app.clone(),
                    apps,
                    retry_after,
                    expected_ms,
                };
                send_rendered(host, &page.render(call.wants_html));
                return;
            }
            WakeOutcome::Unusable(e) => {
                host.count(Metric::CalloutError);
                shared.sidecar_failed(host, &format_args!("check of {}: {e}", call.app));
                LocalReply::for_app(ReplyKind::Unavailable, &call.app).retry_after(retry_after)
            }
            outcome => {
                shared.sidecar_answered(host);
                match after_wake(&shared.config, &call.app, None, outcome) {
                    WakeAction::Reply(reply) => reply,
                    // Only 200 and 202 route or wait; neither is here.
                    WakeAction::Route { .. } | WakeAction::Waiting(_) => {
                        LocalReply::for_app(ReplyKind::Unavailable, &call.app)
                            .retry_after(retry_after)
                    }
                }
            }
        };
        send_reply(host, &reply, call.wants_html);
    }

    /// The stream ended: it no longer keeps its app active.
    pub fn close(&mut self) {
        if let Some(app) = self.open_app.take() {
            if let Some(shared) = &self.shared {
                shared.with_activity(|a| a.stream_closed(&app));
            }
        }
    }

    /// Refuses the request because the filter cannot work on it (fail
    /// closed).
    fn unavailable(&self, host: &impl Host, html: bool) -> Flow {
        let retry = self
            .shared
            .as_ref()
            .map_or(DEFAULT_RETRY_AFTER_S, |s| s.config.retry_after_s);
        send_reply(
            host,
            &LocalReply::new(ReplyKind::Unavailable).retry_after(retry),
            html,
        );
        Flow::Pause
    }

    fn reply(&self, host: &impl Host, reply: &LocalReply, html: bool) -> Flow {
        if let Some(metric) = Metric::for_reply(reply.kind) {
            host.count(metric);
        }
        send_reply(host, reply, html);
        Flow::Pause
    }

    /// Sets the routing headers (`edits`) and records the activity of `app`
    /// (taken by value: the stream keeps it until it ends, and a hit has it
    /// owned already, so that a hit copies no app name). False when a header
    /// could not be set (the caller must not let the request through).
    fn route(
        &mut self,
        host: &impl Host,
        shared: &Shared,
        app: String,
        edits: &RouteEdits,
    ) -> bool {
        for (name, value) in edits.pairs() {
            if let Err(e) = host.set_request_header(name, value) {
                error!("cannot set request header {name}: {e}");
                return false;
            }
        }
        // No explicit route-cache clear: for a plugin of ABI 0.2.1 (what
        // proxy-wasm 0.2 exports) Envoy clears it on every request-header
        // change by itself, so a `clear_route_cache` call is a wasted host
        // call (Envoy only stops doing so for ABIs above 0.2.1).
        debug!(
            "{app} -> cluster {}, host {}",
            edits.cluster.1, edits.authority.1
        );
        let first = self.open_app.is_none();
        shared.with_activity(|a| {
            a.served(&app);
            if first {
                a.stream_opened(&app);
            }
        });
        if first {
            self.open_app = Some(app);
        }
        true
    }

    fn route_or_wake(
        &mut self,
        host: &impl Host,
        shared: &Shared,
        view: &RequestView<'_>,
        target: Target<'_>,
    ) -> Flow {
        if view.path.is_some_and(is_status_path) {
            return self.status(host, shared, view, &target.app);
        }
        self.wants_html = view.wants_html;
        self.browser = view.is_browser_get();
        let Some(original_host) = view.authority_str() else {
            // `decide` only routes requests with a UTF-8 authority.
            return self.reply(
                host,
                &LocalReply::new(ReplyKind::InvalidHost),
                view.wants_html,
            );
        };
        let mut verify = false;
        let mut stale = None;
        let mut last_region = None;
        if let Some(value) = shared.cached(host, &target.app) {
            match cache::decode(&value) {
                Ok(entry) => {
                    // The clock is read only near the entry's expiry.
                    let now = if shared.surely_before(entry.expiry_ms) {
                        None
                    } else {
                        Some(shared.now_ms(host))
                    };
                    let fresh = now.is_none_or(|now| entry.is_fresh(now));
                    let usable_stale = !fresh
                        && now.is_some_and(|now| {
                            entry.is_usable_stale(now, shared.config.stale_ttl_ms)
                        });
                    // A stale entry is routed only while the sidecar is down
                    // (no callout then: the flush sees it come back).
                    if fresh || (usable_stale && shared.sidecar_down()) {
                        shared.count_local(if fresh {
                            Metric::CacheHit
                        } else {
                            Metric::StaleHit
                        });
                        return self.route_entry(
                            host,
                            shared,
                            view,
                            target.app,
                            original_host,
                            &entry,
                        );
                    }
                    // Expired: no route, but the region it knew still guides
                    // `failure_policy: open`, and a stale one serves if the
                    // callout fails.
                    last_region = region_of_upstream(&target.app, entry.upstream_host);
                    if usable_stale {
                        stale = Some((entry.cluster.to_owned(), entry.upstream_host.to_owned()));
                    }
                }
                Err(CacheError::Empty) => {}
                Err(CacheError::Dropped) => verify = true,
                Err(e) => warn!("ignoring the cache entry of {}: {e}", target.app),
            }
        }
        host.count(Metric::CacheMiss);
        let call = Callout::Wake(Box::new(WakeCall {
            app: target.app,
            rule_region: target.region.map(str::to_owned),
            last_region,
            original_host: original_host.to_owned(),
            origin: view.origin.map(str::to_owned),
            wants_html: view.wants_html,
            browser: view.is_browser_get(),
            verify,
            stale,
            backstop: false,
        }));
        match dispatch(host, &shared.config, call, view.request_id) {
            Ok(inflight) => {
                host.count(Metric::Callout);
                if let Callout::Wake(call) = &inflight.callout {
                    debug!("waking {} (callout {})", call.app, inflight.token);
                }
                self.inflight = Some(inflight);
                Flow::Pause
            }
            Err((Callout::Wake(call), e)) => {
                host.count(Metric::CalloutError);
                shared.sidecar_failed(host, &format_args!("wake of {}: {e}", call.app));
                let action = unreachable_action(host, shared, &call);
                self.settle(host, shared, &call, action)
            }
            Err((other, e)) => {
                // `dispatch` hands back the callout it was given.
                error!("{} callout not sent ({e})", other.kind());
                self.unavailable(host, view.wants_html)
            }
        }
    }

    /// Routes the request from a cache entry (fresh, or stale while the
    /// sidecar is down).
    fn route_entry(
        &mut self,
        host: &impl Host,
        shared: &Shared,
        view: &RequestView<'_>,
        app: String,
        original_host: &str,
        entry: &cache::CacheEntry<'_>,
    ) -> Flow {
        let edits = route_edits(
            &shared.config,
            original_host,
            view.origin,
            entry.cluster,
            entry.upstream_host,
        );
        if self.route(host, shared, app, &edits) {
            Flow::Continue
        } else {
            self.unavailable(host, view.wants_html)
        }
    }

    /// Carries out the end of a wake. `Continue` when the request was
    /// routed, `Pause` when it was answered locally.
    fn settle(
        &mut self,
        host: &impl Host,
        shared: &Shared,
        call: &WakeCall,
        action: WakeAction,
    ) -> Flow {
        match action {
            WakeAction::Route {
                cluster,
                upstream_host,
                cache,
            } => {
                if cache {
                    shared.write_cache(host, &call.app, &cluster, &upstream_host, host.now_ms());
                }
                let edits = route_edits(
                    &shared.config,
                    &call.original_host,
                    call.origin.as_deref(),
                    &cluster,
                    &upstream_host,
                );
                if self.route(host, shared, call.app.clone(), &edits) {
                    Flow::Continue
                } else {
                    self.unavailable(host, call.wants_html)
                }
            }
            WakeAction::Reply(reply) => self.reply(host, &reply, call.wants_html),
            WakeAction::Waiting(page) => {
                host.count(Metric::WaitingPage);
                send_rendered(host, &page.render(call.wants_html));
                Flow::Pause
            }
        }
    }

    fn wake_answered(
        &mut self,
        host: &impl Host,
        shared: &Shared,
        call: &WakeCall,
        outcome: WakeOutcome,
    ) {
        log_outcome(&call.app, &outcome);
        let action = match outcome {
            WakeOutcome::Unusable(e) => {
                host.count(Metric::CalloutError);
                shared.sidecar_failed(host, &format_args!("wake of {}: {e}", call.app));
                unreachable_action(host, shared, call)
            }
            outcome => {
                shared.sidecar_answered(host);
                after_wake(&shared.config, &call.app, call.known_region(), outcome)
            }
        };
        if self.settle(host, shared, call, action) == Flow::Continue {
            // Headers are set: only now let the request go.
            if let Err(e) = host.resume_request() {
                error!("cannot resume the request for {}: {e}", call.app);
            }
        }
    }

    /// Answers the waiting page's status path for `app`: at once when the
    /// cache knows it awake, else through a sidecar callout. Never routed.
    fn status(
        &mut self,
        host: &impl Host,
        shared: &Shared,
        view: &RequestView<'_>,
        app: &str,
    ) -> Flow {
        let retry_after = shared.config.retry_after_s;
        if shared.cached_fresh(host, app) {
            send_rendered(
                host,
                &StatusReport::ready_from_cache(app).render(retry_after),
            );
            return Flow::Pause;
        }
        let call = Callout::Status {
            app: app.to_owned(),
        };
        match dispatch(host, &shared.config, call, view.request_id) {
            Ok(inflight) => {
                host.count(Metric::StatusCallout);
                self.inflight = Some(inflight);
            }
            Err((_, e)) => {
                host.count(Metric::CalloutError);
                shared.sidecar_failed(host, &format_args!("status of {app}: {e}"));
                send_rendered(host, &StatusReport::unavailable(app).render(retry_after));
            }
        }
        Flow::Pause
    }

    /// The sidecar's answer to a status callout: refreshes the cache when
    /// the app is ready (so that the page's reload is a hit) and answers.
    fn status_answered(
        &self,
        host: &impl Host,
        shared: &Shared,
        app: &str,
        num_headers: usize,
        body_size: usize,
    ) {
        let parsed = match host.call_answer(num_headers, body_size) {
            None => Err(AnswerError::NoResponse),
            Some(answer) => parse_status_answer(
                app,
                answer.header(b":status"),
                answer.header(b"content-type"),
                &answer.body,
            ),
        };
        let report = match parsed {
            Ok(report) => {
                shared.sidecar_answered(host);
                if let Some(awake) = &report.awake {
                    let cluster = shared.config.cluster_for(&awake.region);
                    shared.write_cache(host, app, cluster, &awake.upstream_host, host.now_ms());
                }
                report
            }
            Err(e) => {
                host.count(Metric::CalloutError);
                shared.sidecar_failed(host, &format_args!("status of {app}: {e}"));
                StatusReport::unavailable(app)
            }
        };
        send_rendered(host, &report.render(shared.config.retry_after_s));
    }
}

/// Reads the answer to the wake callout of `app` being answered.
fn read_wake_answer(
    host: &impl Host,
    app: &str,
    num_headers: usize,
    body_size: usize,
) -> WakeOutcome {
    match host.call_answer(num_headers, body_size) {
        None => WakeOutcome::Unusable(AnswerError::NoResponse),
        Some(answer) => parse_wake_answer(
            app,
            answer.header(b":status"),
            answer.header(b"content-type"),
            &answer.body,
        ),
    }
}

/// What a wake does when the sidecar gave no usable answer: route from the
/// expired entry it had (serve stale), else the failure policy.
fn unreachable_action(host: &impl Host, shared: &Shared, call: &WakeCall) -> WakeAction {
    match &call.stale {
        Some((cluster, upstream_host)) => {
            host.count(Metric::StaleHit);
            WakeAction::Route {
                cluster: cluster.clone(),
                upstream_host: upstream_host.clone(),
                cache: false,
            }
        }
        None => failure_action(&shared.config, &call.app, call.known_region()),
    }
}

/// Logs the sidecar's outcome for `app` (an unusable answer is the
/// outage's, logged with a rate limit by the caller).
fn log_outcome(app: &str, outcome: &WakeOutcome) {
    match outcome {
        WakeOutcome::Awake(awake) => debug!(
            "{app} is awake in {} at {}",
            awake.region, awake.upstream_host
        ),
        WakeOutcome::Waiting { apps, .. } => debug!("{app} is waking ({apps:?}): waiting page"),
        WakeOutcome::NotReady { timed_out, .. } => info!(
            "{app} is not ready ({})",
            if *timed_out {
                "wake timeout"
            } else {
                "wake failed"
            }
        ),
        WakeOutcome::UnknownApp | WakeOutcome::InvalidApp => {
            debug!("the sidecar refused {app}: {outcome:?}");
        }
        WakeOutcome::Unusable(e) => debug!("wake of {app}: {e}"),
    }
}
