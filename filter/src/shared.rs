//! The per-VM state shared by the root context and its HTTP contexts, and
//! the host calls every part of the glue makes with it (cache reads and
//! writes, local replies).

use std::cell::{Cell, RefCell};

use log::{error, info, warn};

use crate::activity::Activity;
use crate::cache;
use crate::config::Config;
use crate::host::Host;
use crate::outage::{Outage, OutageLine};
use crate::reply::{LocalReply, RenderedReply};

/// Per-VM state (one VM per worker thread: no locking, only `RefCell`s).
pub struct Shared {
    pub config: Config,
    activity: RefCell<Activity>,
    /// Reused to build cache keys on the hot path.
    key_buf: RefCell<String>,
    /// False once the host said it has no `clear_route_cache` function.
    clear_route_cache: Cell<bool>,
    /// Whether the sidecar answers (see [`crate::outage`]).
    outage: RefCell<Outage>,
}

impl Shared {
    /// The state of a freshly configured VM, keeping the activity recorded
    /// under a previous configuration.
    pub fn new(config: Config, activity: Activity) -> Self {
        Self {
            config,
            activity: RefCell::new(activity),
            key_buf: RefCell::new(String::with_capacity(64)),
            clear_route_cache: Cell::new(true),
            outage: RefCell::new(Outage::default()),
        }
    }

    /// The state for the plugin configuration `bytes`, carrying over the
    /// activity recorded under the `previous` configuration. The error is
    /// what the filter logs (`invalid configuration: <field>: <why>`) before
    /// refusing to load.
    pub fn configure(bytes: &[u8], previous: Option<&Shared>) -> Result<Self, String> {
        let config = Config::parse(bytes).map_err(|e| format!("invalid configuration: {e}"))?;
        if !config.flush_refreshes_cache() {
            warn!(
                "activity_flush_ms ({}) is not below cache_ttl_ms ({}): busy apps will miss the cache once per TTL",
                config.activity_flush_ms, config.cache_ttl_ms
            );
        }
        let activity = previous.map(Shared::take_activity).unwrap_or_default();
        Ok(Self::new(config, activity))
    }

    /// Takes the activity out (to carry it over to a new configuration).
    fn take_activity(&self) -> Activity {
        self.activity
            .try_borrow_mut()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }

    /// Looks `app` up in the shared cache; returns the raw value.
    pub fn cached(&self, host: &impl Host, app: &str) -> Option<Vec<u8>> {
        match self.key_buf.try_borrow_mut() {
            Ok(mut key) => {
                cache::write_key(&mut key, app);
                host.shared_data(&key)
            }
            Err(_) => host.shared_data(&cache::key(app)),
        }
    }

    /// True when the cache holds a fresh entry for `app`.
    pub fn cached_fresh(&self, host: &impl Host, app: &str) -> bool {
        self.cached(host, app).is_some_and(
            |value| matches!(cache::decode(&value), Ok(entry) if entry.is_fresh(host.now_ms())),
        )
    }

    pub fn write_cache(
        &self,
        host: &impl Host,
        app: &str,
        cluster: &str,
        upstream_host: &str,
        now: u64,
    ) {
        let value = cache::encode(
            now.saturating_add(self.config.cache_ttl_ms),
            cluster,
            upstream_host,
        );
        // No CAS: the last answer wins, and all answers are equally recent.
        if let Err(e) = host.set_shared_data(&cache::key(app), value.as_bytes()) {
            warn!("cannot write the cache entry of {app}: {e}");
        }
    }

    /// Asks the host to pick the route again now that the routing header
    /// changed. Envoy clears the route cache by itself on header changes only
    /// for plugins of ABI 0.2.1 and older; this works whatever the ABI.
    pub fn clear_route_cache(&self, host: &impl Host) {
        if !self.clear_route_cache.get() {
            return;
        }
        if let Err(e) = host.clear_route_cache() {
            self.clear_route_cache.set(false);
            info!("the host has no clear_route_cache function ({e}); relying on its automatic route cache clearing");
        }
    }

    /// Drops the cache entry of `app` by overwriting it with `value` (empty,
    /// or a [`cache::tombstone`]).
    pub fn drop_cache(&self, host: &impl Host, app: &str, value: &str) {
        if let Err(e) = host.set_shared_data(&cache::key(app), value.as_bytes()) {
            warn!("cannot drop the cache entry of {app}: {e}");
        }
    }

    /// True while the sidecar is taken as unreachable (serve stale).
    pub fn sidecar_down(&self) -> bool {
        self.outage.try_borrow().is_ok_and(|o| o.is_down())
    }

    /// A callout got no usable answer (`what`: which, and why); logged at
    /// most once per period with a count.
    pub fn sidecar_failed(&self, host: &impl Host, what: &dyn std::fmt::Display) {
        let line = self
            .outage
            .try_borrow_mut()
            .ok()
            .and_then(|mut o| o.failed(host.now_ms()));
        if let Some(OutageLine::Failing {
            failures,
            down_for_ms,
        }) = line
        {
            warn!(
                "sidecar unreachable for {down_for_ms} ms: {failures} callouts failed since the last line (last: {what}); known-awake apps served stale for up to {} ms, failure policy {:?} for the others",
                self.config.stale_ttl_ms, self.config.failure_policy
            );
        }
    }

    /// A callout got a usable answer.
    pub fn sidecar_answered(&self, host: &impl Host) {
        if !self.sidecar_down() {
            return;
        }
        let line = self
            .outage
            .try_borrow_mut()
            .ok()
            .and_then(|mut o| o.answered(host.now_ms()));
        if let Some(OutageLine::Recovered {
            failures,
            down_for_ms,
        }) = line
        {
            info!("sidecar answers again after {down_for_ms} ms ({failures} callouts failed)");
        }
    }

    pub fn with_activity(&self, f: impl FnOnce(&mut Activity)) {
        if let Ok(mut activity) = self.activity.try_borrow_mut() {
            f(&mut activity);
        }
    }
}

/// Sends a local reply for a browser (`html`) or a program.
pub fn send_reply(host: &impl Host, reply: &LocalReply, html: bool) {
    send_rendered(host, &reply.render(html));
}

pub fn send_rendered(host: &impl Host, rendered: &RenderedReply) {
    let headers: Vec<(&str, &str)> = rendered
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    if let Err(e) = host.send_reply(rendered.status, &headers, rendered.body.as_bytes()) {
        error!("cannot send a local {} reply: {e}", rendered.status);
    }
}
