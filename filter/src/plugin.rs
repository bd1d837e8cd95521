//! The proxy-wasm glue (compiled for `wasm32` only): translates host calls
//! into the pure functions of the other modules and their results back into
//! host calls. No decision is taken here.
//!
//! Host calls go through `proxy_wasm::hostcalls` (which return `Result`)
//! rather than the SDK's trait helpers (which `unwrap`), and the three
//! header-map calls the request path needs are made directly (see [`ffi`]):
//! the SDK's versions panic on non-UTF-8 values and on a map the host cannot
//! give, and a panic kills the VM for every request of the worker.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType};

use crate::activity::{
    activity_body, parse_activity_answer, Activity, ACTIVITY_PATH, ACTIVITY_TIMEOUT_MS,
};
use crate::answer::{AnswerError, MAX_ANSWER_BYTES};
use crate::cache;
use crate::config::{Config, DEFAULT_RETRY_AFTER_S};
use crate::decide::{decide, route_edits, Decision, Target};
use crate::headers::{HeaderPairs, RequestView};
use crate::metrics::Metric;
use crate::reply::{LocalReply, RenderedReply, ReplyKind};
use crate::waiting::{
    is_status_path, parse_status_answer, sidecar_status_path, StatusReport, STATUS_TIMEOUT_MS,
};
use crate::wake::{
    after_wake, failure_action, parse_wake_answer, wake_body, WakeAction, WakeOutcome, WAKE_PATH,
};

proxy_wasm::main! {{
    // Raised or lowered to Envoy's own level in `on_configure` and on each tick.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Direct header-map host calls that report a failure instead of panicking.
mod ffi {
    use std::ptr::null_mut;

    /// `proxy_wasm::types::MapType::HttpRequestHeaders`.
    pub const REQUEST_HEADERS: u32 = 0;
    /// `proxy_wasm::types::MapType::HttpCallResponseHeaders`.
    pub const CALL_RESPONSE_HEADERS: u32 = 6;
    const OK: u32 = 0;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
        ) -> u32;
    }

    /// The serialized pairs of a header map (see `headers::HeaderPairs`), or
    /// the host's status code.
    pub fn header_map(map_type: u32) -> Result<Vec<u8>, u32> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: both out-pointers point to live locals for the whole call.
        let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
        if status != OK {
            return Err(status);
        }
        if data.is_null() {
            return Ok(Vec::new());
        }
        // SAFETY: on success the host hands over `size` bytes at `data`,
        // allocated through this module's `proxy_on_memory_allocate` (the
        // SDK's, a boxed slice of exactly `size` bytes from the global
        // allocator); the SDK reclaims such buffers the same way.
        Ok(unsafe { Vec::from_raw_parts(data, size, size) })
    }

    /// Sets `name` to `value`, replacing every existing value.
    pub fn replace_header(map_type: u32, name: &[u8], value: &[u8]) -> Result<(), u32> {
        // SAFETY: the host only reads `name` and `value` during the call.
        let status = unsafe {
            proxy_replace_header_map_value(
                map_type,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        };
        if status == OK {
            Ok(())
        } else {
            Err(status)
        }
    }

    /// Removes every value of `name`.
    pub fn remove_header(map_type: u32, name: &[u8]) -> Result<(), u32> {
        // SAFETY: the host only reads `name` during the call.
        let status = unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) };
        if status == OK {
            Ok(())
        } else {
            Err(status)
        }
    }
}

/// Milliseconds since the Unix epoch by the host clock (0 if unreadable,
/// which only makes every cache entry look fresh-or-expired consistently).
fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Follows Envoy's log level, so that disabled `debug!` calls cost nothing.
fn sync_log_level() {
    if let Ok(level) = hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
}

fn critical(message: &str) {
    // `log` has no critical level: call the host directly.
    let _ = hostcalls::log(LogLevel::Critical, message);
}

/// Per-VM state shared by the root context and its HTTP contexts.
struct Shared {
    config: Config,
    /// Metric ids, by `Metric::index`.
    metrics: [Option<u32>; Metric::ALL.len()],
    activity: RefCell<Activity>,
    /// Reused to build cache keys on the hot path.
    key_buf: RefCell<String>,
    /// False once the host said it has no `clear_route_cache` function.
    clear_route_cache: Cell<bool>,
}

impl Shared {
    fn count(&self, metric: Metric) {
        if let Some(Some(id)) = self.metrics.get(metric.index()) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    /// Looks `app` up in the shared cache; returns the raw value.
    fn cached(&self, app: &str) -> Option<Vec<u8>> {
        let result = match self.key_buf.try_borrow_mut() {
            Ok(mut key) => {
                cache::write_key(&mut key, app);
                hostcalls::get_shared_data(&key)
            }
            Err(_) => hostcalls::get_shared_data(&cache::key(app)),
        };
        result.ok().and_then(|(value, _cas)| value)
    }

    fn write_cache(&self, app: &str, cluster: &str, upstream_host: &str, now: u64) {
        let value = cache::encode(
            now.saturating_add(self.config.cache_ttl_ms),
            cluster,
            upstream_host,
        );
        // No CAS: the last answer wins, and all answers are equally recent.
        if let Err(status) =
            hostcalls::set_shared_data(&cache::key(app), Some(value.as_bytes()), None)
        {
            warn!("cannot write the cache entry of {app}: {status:?}");
        }
    }

    /// Asks Envoy to pick the route again now that the routing header
    /// changed. Envoy clears the route cache by itself on header changes only
    /// for plugins of ABI 0.2.1 and older; this works whatever the ABI.
    fn clear_route_cache(&self) {
        if !self.clear_route_cache.get() {
            return;
        }
        if let Err(status) = hostcalls::call_foreign_function("clear_route_cache", None) {
            self.clear_route_cache.set(false);
            info!("the host has no clear_route_cache function ({status:?}); relying on its automatic route cache clearing");
        }
    }

    fn with_activity(&self, f: impl FnOnce(&mut Activity)) {
        if let Ok(mut activity) = self.activity.try_borrow_mut() {
            f(&mut activity);
        }
    }
}

fn send_reply(reply: &LocalReply, html: bool) {
    send_rendered(&reply.render(html));
}

fn send_rendered(rendered: &RenderedReply) {
    let headers: Vec<(&str, &str)> = rendered
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    if let Err(status) =
        hostcalls::send_http_response(rendered.status, headers, Some(rendered.body.as_bytes()))
    {
        error!("cannot send a local {} reply: {status:?}", rendered.status);
    }
}

/// An answer to a callout, as received.
struct CallAnswer {
    headers: Vec<u8>,
    body: Vec<u8>,
}

impl CallAnswer {
    /// `None` when the callout failed without a response: Envoy then reports
    /// zero headers, and reading the (absent) map would be an error.
    fn read(num_headers: usize, body_size: usize) -> Option<Self> {
        if num_headers == 0 {
            return None;
        }
        let headers = ffi::header_map(ffi::CALL_RESPONSE_HEADERS).ok()?;
        let body = if body_size == 0 {
            Vec::new()
        } else {
            hostcalls::get_buffer(
                BufferType::HttpCallResponseBody,
                0,
                body_size.min(MAX_ANSWER_BYTES),
            )
            .ok()
            .flatten()
            .unwrap_or_default()
        };
        Some(Self { headers, body })
    }

    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        HeaderPairs::new(&self.headers)
            .ok()?
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// An activity flush waiting for its answer.
struct Flush {
    token: u32,
    batch: Vec<String>,
    started_ms: u64,
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
    flush: Option<Flush>,
    /// Consecutive failed flushes, to log a down sidecar without flooding.
    failed_flushes: u64,
}

impl Root {
    fn activity_timeout_ms(config: &Config) -> u64 {
        config.callout_timeout_ms.min(ACTIVITY_TIMEOUT_MS)
    }

    fn flush_failed(&mut self, shared: &Shared, batch: Vec<String>, why: &str) {
        shared.count(Metric::ActivityFlushError);
        self.failed_flushes += 1;
        let apps = batch.len();
        let mut dropped = 0;
        shared.with_activity(|a| dropped = a.restore(batch));
        // Logged at 1, 2, 4, 8... failures in a row.
        if self.failed_flushes.is_power_of_two() {
            warn!(
                "activity flush of {apps} apps failed ({why}; {} in a row); kept for the next flush",
                self.failed_flushes
            );
        }
        if dropped > 0 {
            warn!("activity of {dropped} apps dropped: more than the pending limit");
        }
    }

    fn flush(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let now = now_ms();
        if let Some(flush) = &self.flush {
            // Envoy answers every callout, if only with a timeout; this is a
            // guard against a lost answer blocking activity forever.
            let deadline = flush
                .started_ms
                .saturating_add(Self::activity_timeout_ms(&shared.config) + 5_000);
            if now <= deadline {
                return;
            }
            if let Some(flush) = self.flush.take() {
                self.flush_failed(&shared, flush.batch, "no answer");
            }
        }
        let mut taken = (Vec::new(), 0);
        shared.with_activity(|a| taken = a.take_batch());
        let (batch, dropped) = taken;
        if dropped > 0 {
            warn!("activity of {dropped} apps dropped: more than the pending limit");
        }
        if batch.is_empty() {
            return;
        }
        let config = &shared.config;
        let body = activity_body(&batch);
        let headers = vec![
            (":method", "POST"),
            (":path", ACTIVITY_PATH),
            (":authority", config.sidecar_authority.as_str()),
            ("content-type", "application/json"),
        ];
        match hostcalls::dispatch_http_call(
            &config.sidecar_cluster,
            headers,
            Some(&body),
            Vec::new(),
            Duration::from_millis(Self::activity_timeout_ms(config)),
        ) {
            Ok(token) => {
                shared.count(Metric::ActivityFlush);
                debug!("activity flush of {} apps sent", batch.len());
                self.flush = Some(Flush {
                    token,
                    batch,
                    started_ms: now,
                });
            }
            Err(status) => self.flush_failed(&shared, batch, &format!("dispatch: {status:?}")),
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let flush = match self.flush.take() {
            Some(flush) if flush.token == token_id => flush,
            other => {
                self.flush = other;
                debug!("ignoring a late activity answer");
                return;
            }
        };
        let result = match CallAnswer::read(num_headers, body_size) {
            None => Err(AnswerError::NoResponse),
            Some(answer) => parse_activity_answer(
                &flush.batch,
                answer.header(b":status"),
                answer.header(b"content-type"),
                &answer.body,
            ),
        };
        match result {
            Ok(awake) => {
                self.failed_flushes = 0;
                let now = now_ms();
                for item in &awake {
                    let cluster = shared.config.cluster_for(&item.awake.region);
                    shared.write_cache(&item.app, cluster, &item.awake.upstream_host, now);
                }
                debug!(
                    "activity flush of {} apps acknowledged, {} refreshed",
                    flush.batch.len(),
                    awake.len()
                );
            }
            Err(e) => self.flush_failed(&shared, flush.batch, &e.to_string()),
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        sync_log_level();
        let bytes = match hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        ) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                critical(&format!(
                    "invalid configuration: cannot read it ({status:?})"
                ));
                return false;
            }
        };
        let config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                critical(&format!("invalid configuration: {e}"));
                return false;
            }
        };
        if !config.flush_refreshes_cache() {
            warn!(
                "activity_flush_ms ({}) is not below cache_ttl_ms ({}): busy apps will miss the cache once per TTL",
                config.activity_flush_ms, config.cache_ttl_ms
            );
        }
        let mut metrics = [None; Metric::ALL.len()];
        for metric in Metric::ALL {
            match hostcalls::define_metric(MetricType::Counter, metric.name()) {
                Ok(id) => {
                    if let Some(slot) = metrics.get_mut(metric.index()) {
                        *slot = Some(id);
                    }
                }
                Err(status) => warn!("cannot define metric {}: {status:?}", metric.name()),
            }
        }
        if let Err(status) =
            hostcalls::set_tick_period(Duration::from_millis(config.activity_flush_ms))
        {
            critical(&format!("cannot set the activity tick: {status:?}"));
            return false;
        }
        // Keep activity recorded under a previous configuration.
        let activity = self
            .shared
            .as_ref()
            .and_then(|s| {
                s.activity
                    .try_borrow_mut()
                    .ok()
                    .map(|mut a| std::mem::take(&mut *a))
            })
            .unwrap_or_default();
        info!(
            "configured: sidecar cluster {}, routing header {}, cache ttl {} ms, flush every {} ms, failure policy {:?}",
            config.sidecar_cluster,
            config.routing_header,
            config.cache_ttl_ms,
            config.activity_flush_ms,
            config.failure_policy
        );
        self.shared = Some(Rc::new(Shared {
            config,
            metrics,
            activity: RefCell::new(activity),
            key_buf: RefCell::new(String::with_capacity(64)),
            clear_route_cache: Cell::new(true),
        }));
        true
    }

    fn on_tick(&mut self) {
        sync_log_level();
        self.flush();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            shared: self.shared.clone(),
            pending: None,
            open_app: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// A request paused while the sidecar wakes its app.
struct Pending {
    token: u32,
    app: String,
    rule_region: Option<String>,
    /// `:authority` as received.
    original_host: String,
    origin: Option<String>,
    wants_html: bool,
    /// A status-path request (waiting page): answered with the status, never
    /// routed.
    status: bool,
}

struct Http {
    shared: Option<Rc<Shared>>,
    pending: Option<Pending>,
    /// The app this stream was routed to, until the stream ends (counted in
    /// `Activity`'s open streams).
    open_app: Option<String>,
}

impl Http {
    /// Refuses the request because the filter cannot work on it (fail
    /// closed).
    fn unavailable(&self, html: bool) -> Action {
        let retry = self
            .shared
            .as_ref()
            .map_or(DEFAULT_RETRY_AFTER_S, |s| s.config.retry_after_s);
        send_reply(
            &LocalReply::new(ReplyKind::Unavailable).retry_after(retry),
            html,
        );
        Action::Pause
    }

    fn reply(&self, shared: &Shared, reply: &LocalReply, html: bool) -> Action {
        if let Some(metric) = Metric::for_reply(reply.kind) {
            shared.count(metric);
        }
        send_reply(reply, html);
        Action::Pause
    }

    /// Sets the routing headers and records the activity. False when a header
    /// could not be set (the caller must not let the request through).
    fn route(
        &mut self,
        shared: &Shared,
        app: &str,
        original_host: &str,
        origin: Option<&str>,
        cluster: &str,
        upstream_host: &str,
    ) -> bool {
        let edits = route_edits(
            &shared.config,
            original_host,
            origin,
            cluster,
            upstream_host,
        );
        for (name, value) in edits.pairs() {
            if let Err(status) =
                ffi::replace_header(ffi::REQUEST_HEADERS, name.as_bytes(), value.as_bytes())
            {
                error!("cannot set request header {name}: status {status}");
                return false;
            }
        }
        shared.clear_route_cache();
        let first = self.open_app.is_none();
        shared.with_activity(|a| {
            a.served(app);
            if first {
                a.stream_opened(app);
            }
        });
        if first {
            self.open_app = Some(app.to_owned());
        }
        debug!("{app} -> cluster {cluster}, host {upstream_host}");
        true
    }

    fn close_stream(&mut self) {
        if let Some(app) = self.open_app.take() {
            if let Some(shared) = &self.shared {
                shared.with_activity(|a| a.stream_closed(&app));
            }
        }
    }

    fn route_or_wake(
        &mut self,
        shared: &Shared,
        view: &RequestView<'_>,
        target: Target<'_>,
    ) -> Action {
        if view.path.is_some_and(is_status_path) {
            return self.status(shared, view, &target.app);
        }
        let Some(original_host) = view.authority_str() else {
            // `decide` only routes requests with a UTF-8 authority.
            return self.reply(
                shared,
                &LocalReply::new(ReplyKind::InvalidHost),
                view.wants_html,
            );
        };
        if let Some(value) = shared.cached(&target.app) {
            match cache::decode(&value) {
                Ok(entry) if entry.is_fresh(now_ms()) => {
                    shared.count(Metric::CacheHit);
                    return if self.route(
                        shared,
                        &target.app,
                        original_host,
                        view.origin,
                        entry.cluster,
                        entry.upstream_host,
                    ) {
                        Action::Continue
                    } else {
                        self.unavailable(view.wants_html)
                    };
                }
                Ok(_) => {}
                Err(e) => warn!("ignoring the cache entry of {}: {e}", target.app),
            }
        }
        shared.count(Metric::CacheMiss);
        let mut pending = Pending {
            token: 0,
            app: target.app,
            rule_region: target.region.map(str::to_owned),
            original_host: original_host.to_owned(),
            origin: view.origin.map(str::to_owned),
            wants_html: view.wants_html,
            status: false,
        };
        let config = &shared.config;
        let body = wake_body(&pending.app, target.region, view.is_browser_get());
        let mut headers = vec![
            (":method", "POST"),
            (":path", WAKE_PATH),
            (":authority", config.sidecar_authority.as_str()),
            ("content-type", "application/json"),
        ];
        if let Some(id) = view.request_id {
            headers.push(("x-request-id", id));
        }
        match hostcalls::dispatch_http_call(
            &config.sidecar_cluster,
            headers,
            Some(&body),
            Vec::new(),
            Duration::from_millis(config.callout_timeout_ms),
        ) {
            Ok(token) => {
                shared.count(Metric::Callout);
                debug!("waking {} (callout {token})", pending.app);
                pending.token = token;
                self.pending = Some(pending);
                Action::Pause
            }
            Err(status) => {
                shared.count(Metric::CalloutError);
                warn!(
                    "cannot call the sidecar to wake {} ({status:?}): failure policy {:?}",
                    pending.app, config.failure_policy
                );
                let action = failure_action(config, &pending.app, pending.rule_region.as_deref());
                self.settle(shared, &pending, action)
            }
        }
    }

    /// Carries out the end of a wake. Returns `Continue` when the request was
    /// routed, `Pause` when it was answered locally.
    fn settle(&mut self, shared: &Shared, pending: &Pending, action: WakeAction) -> Action {
        match action {
            WakeAction::Route {
                cluster,
                upstream_host,
                cache,
            } => {
                if cache {
                    shared.write_cache(&pending.app, &cluster, &upstream_host, now_ms());
                }
                if self.route(
                    shared,
                    &pending.app,
                    &pending.original_host,
                    pending.origin.as_deref(),
                    &cluster,
                    &upstream_host,
                ) {
                    Action::Continue
                } else {
                    self.unavailable(pending.wants_html)
                }
            }
            WakeAction::Reply(reply) => self.reply(shared, &reply, pending.wants_html),
            WakeAction::Waiting(page) => {
                shared.count(Metric::WaitingPage);
                send_rendered(&page.render(pending.wants_html));
                Action::Pause
            }
        }
    }

    /// Answers the waiting page's status path for `app`: at once when the
    /// cache knows it awake, else through a sidecar callout. Never routed.
    fn status(&mut self, shared: &Shared, view: &RequestView<'_>, app: &str) -> Action {
        let config = &shared.config;
        if let Some(value) = shared.cached(app) {
            if matches!(cache::decode(&value), Ok(entry) if entry.is_fresh(now_ms())) {
                send_rendered(&StatusReport::ready_from_cache(app).render(config.retry_after_s));
                return Action::Pause;
            }
        }
        let path = sidecar_status_path(app);
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", config.sidecar_authority.as_str()),
            ("accept", "application/json"),
        ];
        if let Some(id) = view.request_id {
            headers.push(("x-request-id", id));
        }
        match hostcalls::dispatch_http_call(
            &config.sidecar_cluster,
            headers,
            None,
            Vec::new(),
            Duration::from_millis(config.callout_timeout_ms.min(STATUS_TIMEOUT_MS)),
        ) {
            Ok(token) => {
                shared.count(Metric::StatusCallout);
                self.pending = Some(Pending {
                    token,
                    app: app.to_owned(),
                    rule_region: None,
                    original_host: String::new(),
                    origin: None,
                    wants_html: false,
                    status: true,
                });
                Action::Pause
            }
            Err(status) => {
                shared.count(Metric::CalloutError);
                warn!("cannot call the sidecar for the status of {app} ({status:?})");
                send_rendered(&StatusReport::unavailable(app).render(config.retry_after_s));
                Action::Pause
            }
        }
    }

    /// The sidecar's answer to a status callout: refreshes the cache when
    /// the app is ready (so that the page's reload is a hit) and answers.
    fn status_answered(&self, shared: &Shared, app: &str, num_headers: usize, body_size: usize) {
        let parsed = match CallAnswer::read(num_headers, body_size) {
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
                if let Some(awake) = &report.awake {
                    let cluster = shared.config.cluster_for(&awake.region);
                    shared.write_cache(app, cluster, &awake.upstream_host, now_ms());
                }
                report
            }
            Err(e) => {
                shared.count(Metric::CalloutError);
                warn!("status of {app}: {e}");
                StatusReport::unavailable(app)
            }
        };
        send_rendered(&report.render(shared.config.retry_after_s));
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let pending = match self.pending.take() {
            Some(pending) if pending.token == token_id => pending,
            other => {
                self.pending = other;
                warn!("ignoring an unexpected callout answer ({token_id})");
                return;
            }
        };
        if pending.status {
            self.status_answered(&shared, &pending.app, num_headers, body_size);
            return;
        }
        debug!("wake callout {token_id} answered: {num_headers} headers, {body_size} body bytes");
        let outcome = match CallAnswer::read(num_headers, body_size) {
            None => WakeOutcome::Unusable(AnswerError::NoResponse),
            Some(answer) => parse_wake_answer(
                &pending.app,
                answer.header(b":status"),
                answer.header(b"content-type"),
                &answer.body,
            ),
        };
        match &outcome {
            WakeOutcome::Awake(awake) => debug!(
                "{} is awake in {} at {}",
                pending.app, awake.region, awake.upstream_host
            ),
            WakeOutcome::Waiting { apps } => {
                debug!("{} is waking ({apps:?}): waiting page", pending.app);
            }
            WakeOutcome::NotReady { timed_out, .. } => info!(
                "{} is not ready ({})",
                pending.app,
                if *timed_out {
                    "wake timeout"
                } else {
                    "wake failed"
                }
            ),
            WakeOutcome::UnknownApp | WakeOutcome::InvalidApp => {
                debug!("the sidecar refused {}: {outcome:?}", pending.app);
            }
            WakeOutcome::Unusable(e) => {
                shared.count(Metric::CalloutError);
                warn!(
                    "wake of {}: {e}; failure policy {:?}",
                    pending.app, shared.config.failure_policy
                );
            }
        }
        let action = after_wake(
            &shared.config,
            &pending.app,
            pending.rule_region.as_deref(),
            outcome,
        );
        if self.settle(&shared, &pending, action) == Action::Continue {
            // Headers are set: only now let the request go.
            if let Err(status) = hostcalls::resume_http_request() {
                error!("cannot resume the request for {}: {status:?}", pending.app);
            }
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            error!("request before a valid configuration");
            return self.unavailable(false);
        };
        let buf = match ffi::header_map(ffi::REQUEST_HEADERS) {
            Ok(buf) => buf,
            Err(status) => {
                error!("cannot read the request headers: status {status}");
                return self.unavailable(false);
            }
        };
        let Ok(pairs) = HeaderPairs::new(&buf) else {
            error!("the host sent a malformed header map");
            return self.unavailable(false);
        };
        let view = RequestView::new(&shared.config.routing_header, pairs);
        // First of all: nothing the client sent may steer routing.
        for name in &view.strip {
            if let Err(status) = ffi::remove_header(ffi::REQUEST_HEADERS, name) {
                error!("cannot remove an internal request header: status {status}");
                return self.unavailable(view.wants_html);
            }
        }
        match decide(&shared.config, &view) {
            Decision::Reply(reply) => self.reply(&shared, &reply, view.wants_html),
            Decision::PassThrough => {
                shared.count(Metric::Unmatched);
                Action::Continue
            }
            Decision::Route(target) => self.route_or_wake(&shared, &view, target),
        }
    }

    fn on_log(&mut self) {
        self.close_stream();
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        // `on_log` normally did it; a context deleted without it must not
        // leave its stream counted as open forever.
        self.close_stream();
    }
}
