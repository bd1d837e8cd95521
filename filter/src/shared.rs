//! The per-VM state shared by the root context and its HTTP contexts, and
//! the host calls every part of the glue makes with it (cache reads and
//! writes, local replies).

use std::cell::{Cell, RefCell};

use log::{error, info, warn};

use crate::activity::Activity;
use crate::cache;
use crate::config::Config;
use crate::host::Host;
use crate::metrics::Metric;
use crate::outage::{Outage, OutageLine};
use crate::reply::{LocalReply, RenderedReply};

/// Per-VM state (one VM per worker thread: no locking, only `RefCell`s).
pub struct Shared {
    pub config: Config,
    activity: RefCell<Activity>,
    /// Reused to build cache keys on the hot path.
    key_buf: RefCell<String>,
    /// Counts kept in the VM (see [`Shared::count_local`]), by
    /// [`Metric::index`], added to the host's counters on the tick.
    local_counts: [Cell<u64>; Metric::ALL.len()],
    /// Whether the sidecar answers (see [`crate::outage`]).
    outage: RefCell<Outage>,
    /// The host time this VM last read (ms since the epoch; 0 before the
    /// first read): see [`Shared::surely_before`].
    last_now_ms: Cell<u64>,
    /// This VM's id in its lease renewals: random, kept across
    /// reconfigurations (the leases it holds stay its own).
    vm_id: std::rc::Rc<str>,
}

/// A fresh random VM id (16 hex digits). The randomness is the host's
/// (WASI `random_get`, through std's hasher keys): no clock, no counter
/// two VMs could share.
fn new_vm_id() -> std::rc::Rc<str> {
    use std::hash::BuildHasher;
    let id = std::collections::hash_map::RandomState::new().hash_one(0x0070_6161_7374_6973_u64);
    std::rc::Rc::from(format!("{id:016x}"))
}

impl Shared {
    /// The state of a freshly configured VM, keeping the activity recorded
    /// under a previous configuration.
    pub fn new(config: Config, activity: Activity) -> Self {
        Self {
            config,
            activity: RefCell::new(activity),
            key_buf: RefCell::new(String::with_capacity(64)),
            local_counts: Default::default(),
            outage: RefCell::new(Outage::default()),
            last_now_ms: Cell::new(0),
            vm_id: new_vm_id(),
        }
    }

    /// This VM's id in its lease renewals.
    pub fn vm_id(&self) -> std::rc::Rc<str> {
        std::rc::Rc::clone(&self.vm_id)
    }

    /// Reads the host clock, and remembers it for [`Shared::surely_before`].
    pub fn now_ms(&self, host: &impl Host) -> u64 {
        let now = host.now_ms();
        self.last_now_ms.set(now);
        now
    }

    /// True when `at_ms` is surely still in the future, without a host call:
    /// it lies more than two ticks (`activity_flush_ms`) past the last clock
    /// reading, and the tick reads the clock every period. A hit then needs
    /// no clock read (measured: 1,700 to 3,000 Envoy instructions a hit, a
    /// third to a half of the filter's own code); an entry near its expiry
    /// still reads it.
    ///
    /// The bound holds while the worker's tick fires at most one period
    /// late: a tick later than that lets an entry route for that lateness
    /// past its expiry (the tick shares the worker's event loop with the
    /// requests, so only a worker too busy to serve them falls that far
    /// behind).
    pub fn surely_before(&self, at_ms: u64) -> bool {
        let last = self.last_now_ms.get();
        last != 0 && at_ms > last.saturating_add(self.config.activity_flush_ms.saturating_mul(2))
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
        let mut shared = Self::new(config, activity);
        if let Some(previous) = previous {
            shared.vm_id = previous.vm_id();
        }
        if let Some(previous) = previous {
            for (new, old) in shared.local_counts.iter().zip(&previous.local_counts) {
                new.set(old.take());
            }
        }
        Ok(shared)
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

    /// Counts `metric` in the VM, without a host call: the hot path's
    /// counters (a cache hit, a stale hit) reach the host's counters on the
    /// next tick ([`Shared::flush_counts`]), so they lag by at most one
    /// `activity_flush_ms`.
    pub fn count_local(&self, metric: Metric) {
        if let Some(cell) = self.local_counts.get(metric.index()) {
            cell.set(cell.get().saturating_add(1));
        }
    }

    /// Adds the counts kept in the VM to the host's counters (one host call
    /// per counter that moved) and restarts them from zero.
    pub fn flush_counts(&self, host: &impl Host) {
        for (metric, cell) in Metric::ALL.iter().zip(&self.local_counts) {
            let n = cell.take();
            if n > 0 {
                host.add(*metric, n);
            }
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

    /// Reads the activity (`None` while it is borrowed).
    pub fn read_activity<T>(&self, f: impl FnOnce(&Activity) -> T) -> Option<T> {
        self.activity.try_borrow().ok().map(|a| f(&a))
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
