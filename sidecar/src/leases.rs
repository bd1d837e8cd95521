//! Awake leases, on the sidecar's side: which filter VMs route which apps,
//! and the drain a pause waits for before it scales an app to 0.
//!
//! "Awake" is something the sidecar grants and takes back, not a cache that
//! traffic happens to refresh (the protocol is `paastis_api`'s
//! `ActivityRequest`): every filter VM renews, on each tick, the apps it
//! routes (`apps` served, `held` the others), naming itself (`vm`) and how
//! long it keeps routing without a renewal (`lease_ms`). This instance
//! remembers each VM's last renewal ([`Leases::renewed`]).
//!
//! # Taking a lease back
//!
//! A pause (or a forget) on any instance leaves its stop in the
//! coordinator's `stops` marks ([`mark_stop`], with the stop note of
//! [`crate::awake`]). Every instance reads the new stops every
//! [`SYNC_PERIOD`] ([`Leases::sync`]): it forgets its own memory of the app
//! awake and answers the app `asleep` to the VMs that still name it, which
//! drop it. Once none of its live VMs names the app any more, the instance
//! leaves its acknowledgement, the note `released:{app}:{instance}`.
//!
//! The pause waits ([`wait_released`]) until every instance that beats
//! (the coordinator's `instances` marks, written by every sync) has
//! acknowledged, or, for an instance that fell silent (its sidecar down or
//! cut from the coordinator for [`SILENT_AFTER`]), until the leases it
//! granted ran out (the note `lease_until:{instance}`: no VM of it routes
//! anything past that time without hearing from it). Activity meanwhile
//! cancels the pause (the caller's check).
//!
//! Invariants:
//! - an app is paused only after every live VM of every instance stopped
//!   naming it, or after its lease ran out where a VM fell silent (a VM
//!   that serves stale past that, its sidecar down, meets the router's
//!   page, and the filter's backstop answers it);
//! - the tables are bounded: at most [`MAX_VMS`] VMs per instance, and
//!   stops are kept [`STOP_MEMORY`];
//! - an instance that just started knows the stops of the last
//!   [`STOP_MEMORY`]: a restarted sidecar takes back the leases of apps
//!   another instance paused while it was down.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::awake::AwakeCache;
use crate::clock::now_ms;
use crate::registry::{Coordinator, RegistryError};

/// How often an instance reads the new stops, acknowledges the releases
/// and beats.
pub const SYNC_PERIOD: Duration = Duration::from_millis(250);
/// An instance whose last beat is older is silent: its acknowledgements
/// are not waited for, its leases are.
pub const SILENT_AFTER: Duration = Duration::from_secs(3);
/// How long stops are remembered (and read back by a starting instance):
/// longer than any drain.
pub const STOP_MEMORY: Duration = Duration::from_secs(15 * 60);
/// How long an instance's beat is kept in the coordinator: an instance gone
/// longer is not waited for at all (its leases ran out long before).
pub const INSTANCE_MEMORY: Duration = Duration::from_secs(24 * 60 * 60 + 10 * 60);
/// Most VMs remembered per instance (an Envoy has one per worker; a
/// restart brings new ones, and the silent ones are dropped first).
pub const MAX_VMS: usize = 1_024;
/// Longest lease a VM may announce (the filter's `cache_ttl_ms` bound).
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest a pause waits for the releases: past it the leases of every
/// VM that announced the default TTL ran out long ago, and one that keeps
/// naming the app is answered `asleep` anyway.
pub const MAX_DRAIN: Duration = Duration::from_secs(120);
/// How often a draining pause looks at the acknowledgements.
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// The marks of the instances' beats and of the stops.
const INSTANCES: &str = "instances";
const STOPS: &str = "stops";
/// Stops are read back this far behind the newest one read, for the ones
/// written meanwhile by instances whose clocks are a little behind.
const STOP_OVERLAP_MS: u64 = 5_000;

/// The note of `instance`'s acknowledgement that none of its VMs routes
/// `app` any more (value: the stop time it acknowledges).
pub fn released_note(app: &str, instance: &str) -> String {
    format!("released:{app}:{instance}")
}

/// The note of the time until which `instance`'s VMs may route without a
/// renewal (ms since the epoch).
pub fn lease_until_note(instance: &str) -> String {
    format!("lease_until:{instance}")
}

/// Leaves the stop of `app` at `at_ms` for every instance's sync.
pub async fn mark_stop(
    coordinator: &dyn Coordinator,
    app: &str,
    at_ms: u64,
) -> Result<(), RegistryError> {
    coordinator.mark(STOPS, app, at_ms, STOP_MEMORY).await
}

/// One VM's last renewal.
#[derive(Debug)]
struct Vm {
    renewed: Instant,
    renewed_ms: u64,
    lease: Duration,
    /// Sorted, each app once.
    held: Vec<String>,
}

impl Vm {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.renewed) < self.lease
    }
}

#[derive(Debug, Default)]
struct State {
    vms: HashMap<String, Vm>,
    /// App -> its latest stop (ms) this instance knows of.
    stopped: HashMap<String, u64>,
    /// Stops this instance has not acknowledged yet: app -> stop (ms).
    unreleased: HashMap<String, u64>,
    /// The newest stop read from the coordinator (ms).
    watermark_ms: u64,
    /// Whether the last sync failed (logged once per change).
    failing: bool,
}

/// This instance's side of the awake leases.
#[derive(Debug)]
pub struct Leases {
    instance: String,
    state: Mutex<State>,
}

impl Leases {
    pub fn new(instance: &str) -> Self {
        Self {
            instance: instance.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// VM `vm` renewed the apps `routed` (served and held), keeping them
    /// `lease_ms` without a renewal. Replaces what it named before.
    pub fn renewed<'a>(&self, vm: &str, lease_ms: u64, routed: impl Iterator<Item = &'a String>) {
        let mut held: Vec<String> = routed
            .filter(|a| paastis_rules::is_valid_app_name(a))
            .take(crate::activity::MAX_ACTIVITY_BATCH * 2)
            .cloned()
            .collect();
        held.sort_unstable();
        held.dedup();
        let lease = Duration::from_millis(lease_ms).clamp(Duration::from_millis(1), MAX_LEASE);
        let now = Instant::now();
        let mut state = self.lock();
        if !state.vms.contains_key(vm) && state.vms.len() >= MAX_VMS {
            // The oldest renewal goes first (a VM of an Envoy long gone).
            if let Some(oldest) = state
                .vms
                .iter()
                .min_by_key(|(_, v)| v.renewed)
                .map(|(k, _)| k.clone())
            {
                state.vms.remove(&oldest);
            }
        }
        state.vms.insert(
            vm.to_owned(),
            Vm {
                renewed: now,
                renewed_ms: now_ms(),
                lease,
                held,
            },
        );
    }

    /// The answer to `vm` took back the leases on `apps` (it drops them on
    /// receipt): no longer counted as held by it. A VM that did not get
    /// the answer names them again in its next renewal.
    pub fn taken_back(&self, vm: &str, apps: &[String]) {
        if apps.is_empty() {
            return;
        }
        if let Some(v) = self.lock().vms.get_mut(vm) {
            v.held.retain(|h| !apps.contains(h));
        }
    }

    /// Whether a live VM of this instance routes `app`.
    pub fn holds(&self, app: &str) -> bool {
        let now = Instant::now();
        self.lock()
            .vms
            .values()
            .any(|v| v.live(now) && v.held.binary_search_by(|h| h.as_str().cmp(app)).is_ok())
    }

    /// Until when the VMs of this instance may route without a renewal (ms
    /// since the epoch; 0 when none holds a lease).
    pub fn lease_until_ms(&self) -> u64 {
        let now = Instant::now();
        self.lock()
            .vms
            .values()
            .filter(|v| v.live(now) && !v.held.is_empty())
            .map(|v| {
                v.renewed_ms
                    .saturating_add(u64::try_from(v.lease.as_millis()).unwrap_or(u64::MAX))
            })
            .max()
            .unwrap_or(0)
    }

    /// The latest stop of `app` this instance knows of (ms).
    pub fn stopped_at(&self, app: &str) -> Option<u64> {
        self.lock().stopped.get(app).copied()
    }

    /// Number of VMs remembered (live or not).
    pub fn vms(&self) -> usize {
        self.lock().vms.len()
    }

    /// Records the stop of `app` at `at_ms` (from the coordinator, or this
    /// instance's own pause): true when it is news.
    pub fn learn_stop(&self, app: &str, at_ms: u64) -> bool {
        let mut state = self.lock();
        let known = state.stopped.get(app).copied().unwrap_or(0);
        if at_ms <= known {
            return false;
        }
        state.stopped.insert(app.to_owned(), at_ms);
        state.unreleased.insert(app.to_owned(), at_ms);
        true
    }

    /// One sync: reads the stops since the last one (forgetting the apps in
    /// `awake`), acknowledges the releases, beats. A coordinator error ends
    /// the round (the next one tries again).
    pub async fn sync(
        &self,
        coordinator: &dyn Coordinator,
        awake: &AwakeCache,
    ) -> Result<(), RegistryError> {
        let now = now_ms();
        let since = {
            let state = self.lock();
            if state.watermark_ms == 0 {
                now.saturating_sub(ms(STOP_MEMORY))
            } else {
                state.watermark_ms.saturating_sub(STOP_OVERLAP_MS)
            }
        };
        let stops = coordinator.marked_since(STOPS, since).await?;
        for (app, at) in &stops {
            if self.learn_stop(app, *at) {
                awake.forget_if_seen_before(app, *at);
                debug!(%app, stopped_at_ms = at, "stop learnt: lease taken back");
            }
        }
        {
            let mut state = self.lock();
            let newest = stops.iter().map(|(_, at)| *at).max().unwrap_or(0);
            state.watermark_ms = state.watermark_ms.max(newest).max(since);
            let oldest = now.saturating_sub(ms(STOP_MEMORY));
            state.stopped.retain(|_, at| *at >= oldest);
            let drain_oldest = now.saturating_sub(ms(MAX_DRAIN) * 2);
            state.unreleased.retain(|_, at| *at >= drain_oldest);
            let live = Instant::now();
            state
                .vms
                .retain(|_, v| live.duration_since(v.renewed) < v.lease + Duration::from_secs(60));
        }
        let pending: Vec<(String, u64)> = self
            .lock()
            .unreleased
            .iter()
            .map(|(a, at)| (a.clone(), *at))
            .collect();
        for (app, at) in pending {
            if self.holds(&app) {
                continue;
            }
            coordinator
                .put_note(
                    &released_note(&app, &self.instance),
                    &at.to_string(),
                    MAX_DRAIN * 2,
                )
                .await?;
            let mut state = self.lock();
            if state.unreleased.get(&app) == Some(&at) {
                state.unreleased.remove(&app);
            }
        }
        coordinator
            .put_note(
                &lease_until_note(&self.instance),
                &self.lease_until_ms().to_string(),
                MAX_LEASE + Duration::from_secs(60),
            )
            .await?;
        coordinator
            .mark(INSTANCES, &self.instance, now, INSTANCE_MEMORY)
            .await?;
        Ok(())
    }

    /// Syncs every [`SYNC_PERIOD`] until `stop` is cancelled.
    pub async fn run(
        self: std::sync::Arc<Self>,
        coordinator: std::sync::Arc<dyn Coordinator>,
        awake: std::sync::Arc<AwakeCache>,
        stop: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(SYNC_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {
                    let result = self.sync(coordinator.as_ref(), &awake).await;
                    let mut state = self.lock();
                    match result {
                        Ok(()) if state.failing => {
                            state.failing = false;
                            info!("awake leases: the coordinator answers again");
                        }
                        Err(e) if !state.failing => {
                            state.failing = true;
                            warn!(error = %e, "awake leases: cannot sync with the coordinator (pauses wait; filters keep their leases)");
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every live instance released the app; every silent one's leases ran
    /// out.
    Released,
    /// The app was used meanwhile (the caller's check): keep it.
    Used,
    /// [`MAX_DRAIN`] passed: the leases ran out by any measure.
    TimedOut,
}

/// Waits until every instance released `app`, stopped at `stopped_at_ms`
/// (see the module's documentation), checking `still_idle` on the way: a
/// `false` ends the drain with [`Drain::Used`]. Coordinator errors are
/// waited through, within [`MAX_DRAIN`].
pub async fn wait_released<F, Fut>(
    coordinator: &dyn Coordinator,
    app: &str,
    stopped_at_ms: u64,
    mut still_idle: F,
) -> Result<Drain, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, RegistryError>>,
{
    let started = Instant::now();
    loop {
        match released_everywhere(coordinator, app, stopped_at_ms).await {
            Ok(true) => return Ok(Drain::Released),
            Ok(false) => {}
            Err(e) => debug!(%app, error = %e, "drain: acknowledgements not read"),
        }
        if !still_idle().await? {
            return Ok(Drain::Used);
        }
        if started.elapsed() >= MAX_DRAIN {
            warn!(%app, "drain: not every instance released the app in time; pausing anyway");
            return Ok(Drain::TimedOut);
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// One look at the acknowledgements of the stop of `app`.
async fn released_everywhere(
    coordinator: &dyn Coordinator,
    app: &str,
    stopped_at_ms: u64,
) -> Result<bool, RegistryError> {
    let now = now_ms();
    let instances = coordinator
        .marked_since(INSTANCES, now.saturating_sub(ms(INSTANCE_MEMORY)))
        .await?;
    let mut names = Vec::with_capacity(instances.len() * 2);
    for (instance, _) in &instances {
        names.push(released_note(app, instance));
        names.push(lease_until_note(instance));
    }
    let notes = coordinator.notes(&names).await?;
    for (i, (instance, beat_ms)) in instances.iter().enumerate() {
        let released = notes
            .get(2 * i)
            .cloned()
            .flatten()
            .and_then(|n| n.parse::<u64>().ok());
        if released.is_some_and(|at| at >= stopped_at_ms) {
            continue;
        }
        let lease_until = notes
            .get(2 * i + 1)
            .cloned()
            .flatten()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let silent = now.saturating_sub(*beat_ms) > ms(SILENT_AFTER);
        if silent && lease_until < now {
            continue;
        }
        debug!(%app, %instance, silent, "drain: waiting for the instance's release");
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::awake::Awake;
    use crate::registry::InMemoryCoordinator;

    fn names(apps: &[&str]) -> Vec<String> {
        apps.iter().map(|a| (*a).to_owned()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_is_released_once_no_live_vm_names_the_app() {
        let coordinator = InMemoryCoordinator::new();
        let awake = AwakeCache::new(Duration::from_secs(600));
        let leases = Leases::new("one");
        awake.insert("shop-front", Awake::new("shop-front", "osc-fr1"));
        leases.renewed("vm-a", 30_000, names(&["shop-front", "other-app"]).iter());
        leases.renewed("vm-b", 30_000, names(&["shop-front"]).iter());
        leases.sync(&coordinator, &awake).await.unwrap();
        assert!(leases.holds("shop-front"));
        assert!(leases.lease_until_ms() > now_ms());

        std::thread::sleep(Duration::from_millis(2));
        let stopped_at = now_ms();
        mark_stop(&coordinator, "shop-front", stopped_at)
            .await
            .unwrap();
        let released = || released_everywhere(&coordinator, "shop-front", stopped_at);
        assert!(!released().await.unwrap(), "no sync yet");
        leases.sync(&coordinator, &awake).await.unwrap();
        assert_eq!(awake.entry("shop-front"), None, "forgotten at the sync");
        assert_eq!(leases.stopped_at("shop-front"), Some(stopped_at));
        assert!(!released().await.unwrap(), "both VMs still name it");
        leases.renewed("vm-a", 30_000, names(&["other-app"]).iter());
        leases.sync(&coordinator, &awake).await.unwrap();
        assert!(!released().await.unwrap(), "vm-b still names it");
        leases.renewed("vm-b", 30_000, names(&[]).iter());
        leases.sync(&coordinator, &awake).await.unwrap();
        assert!(released().await.unwrap());
        // Another app's stop is its own.
        assert!(
            !released_everywhere(&coordinator, "other-app", stopped_at)
                .await
                .unwrap_or(true)
                || leases.holds("other-app")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_instance_is_waited_for_until_its_leases_run_out() {
        let coordinator = InMemoryCoordinator::new();
        let awake = AwakeCache::new(Duration::from_secs(600));
        let gone = Leases::new("gone");
        gone.renewed("vm-a", 4_000, names(&["shop-front"]).iter());
        gone.sync(&coordinator, &awake).await.unwrap();
        let stopped_at = now_ms();
        mark_stop(&coordinator, "shop-front", stopped_at)
            .await
            .unwrap();
        // "gone" never syncs again. Its beat is fresh: waited for.
        assert!(!released_everywhere(&coordinator, "shop-front", stopped_at)
            .await
            .unwrap());
        // Silent (3 s without a beat), its lease still runs (4 s).
        std::thread::sleep(SILENT_AFTER + Duration::from_millis(200));
        assert!(!released_everywhere(&coordinator, "shop-front", stopped_at)
            .await
            .unwrap());
        std::thread::sleep(Duration::from_millis(1_000));
        assert!(released_everywhere(&coordinator, "shop-front", stopped_at)
            .await
            .unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn activity_during_the_drain_ends_it() {
        let coordinator = InMemoryCoordinator::new();
        let awake = AwakeCache::new(Duration::from_secs(600));
        let leases = Leases::new("one");
        leases.renewed("vm-a", 30_000, names(&["shop-front"]).iter());
        leases.sync(&coordinator, &awake).await.unwrap();
        let stopped_at = now_ms();
        mark_stop(&coordinator, "shop-front", stopped_at)
            .await
            .unwrap();
        let mut polls = 0;
        let drain = wait_released(&coordinator, "shop-front", stopped_at, || {
            polls += 1;
            let idle = polls < 3;
            async move { Ok(idle) }
        })
        .await
        .unwrap();
        assert_eq!(drain, Drain::Used);
    }

    #[tokio::test(start_paused = true)]
    async fn a_starting_instance_learns_the_recent_stops() {
        let coordinator = InMemoryCoordinator::new();
        let awake = AwakeCache::new(Duration::from_secs(600));
        mark_stop(&coordinator, "shop-front", now_ms())
            .await
            .unwrap();
        let restarted = Leases::new("one");
        assert_eq!(restarted.stopped_at("shop-front"), None);
        restarted.sync(&coordinator, &awake).await.unwrap();
        assert!(restarted.stopped_at("shop-front").is_some());
    }

    #[test]
    fn vms_are_bounded() {
        let leases = Leases::new("one");
        for i in 0..MAX_VMS + 10 {
            leases.renewed(&format!("vm-{i}"), 1_000, std::iter::empty());
        }
        assert_eq!(leases.vms(), MAX_VMS);
    }
}
