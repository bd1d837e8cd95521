//! One budget of Scalingo API calls for the whole gateway.
//!
//! Scalingo allows 60 API requests a minute per token, then answers 429.
//! Every call the sidecar sends (wakes, their checks, the scheduler,
//! discovery, admin, the token exchange) first takes a slot from one
//! [`Budget`]: at most `calls_per_minute` calls in any sliding window of a
//! minute, counted over a slightly longer window
//! ([`BudgetConfig::counted_window`]: a call is counted when it is granted,
//! Scalingo counts it when it arrives; the margin absorbs the difference, so
//! that no 60 s window *as Scalingo sees the calls* holds more than the
//! limit), counted
//! - in memory when there is one instance ([`Budget::in_memory`]);
//! - in Redis, by one atomic Lua script, when instances share it
//!   ([`Budget::shared`], [`redis::RedisBudgetStore`]). While Redis does not
//!   answer, each instance falls back to its own window and spends only its
//!   share, `calls_per_minute / expected_instances`. A wake's call waits
//!   for Redis at most [`WAKE_STORE_TIMEOUT`] (the background's
//!   [`STORE_TIMEOUT`]); after a failure the share is used at once for
//!   [`STORE_RETRY`], so a hung Redis costs a wake one short timeout.
//!
//! Priorities ([`Rank`]): a wake's scale call may use the whole budget, the
//! wake's other calls (operation, `ps`, app reads) leave a fifth to scale
//! calls, and the background (scheduler, discovery) may only spend while
//! three quarters of the window are not used (see `window::allowed`), so
//! wakes always find room. Within one instance, a caller of a lower rank
//! also waits while one of a higher rank is waiting.
//!
//! A 429 from Scalingo ([`Budget::rate_limited`]) stops all spending, in
//! Redis too, until its `Retry-After` or a minute.
//!
//! Acquiring waits on tokio's clock until a slot frees or the caller's
//! deadline would pass first ([`BudgetError::Exhausted`], at once when the
//! wait is known to end too late). [`Budget::try_acquire`] never waits: a
//! call that is useful only if it can go now (a wake's status read) takes a
//! slot if one is free and is skipped otherwise.
//!
//! This module knows nothing of Scalingo's API: it must not import
//! `crate::scalingo` (the client imports it).

pub mod redis;
mod window;

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use window::{allowed, CallLog};

/// Default calls a minute: a little under Scalingo's 60, for the calls
/// another tool may make with the same token and for clock skew.
pub const DEFAULT_CALLS_PER_MINUTE: u32 = 55;
/// Default pause after a 429 without a usable `Retry-After`.
pub const DEFAULT_PAUSE_AFTER_429: Duration = Duration::from_secs(60);
/// Default cap on a pause asked by a `Retry-After` (an untrusted header).
pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(5 * 60);
/// How much longer than the window calls are counted, as a fraction of it
/// (2 s a minute): a grant and the call's arrival at Scalingo are a request
/// apart, and a call granted late in a window may arrive before one granted
/// earlier (another instance, a slower connection). Counting over the
/// longer window keeps every window of Scalingo's own clock under the limit
/// as long as those delays differ by less than the margin.
pub const WINDOW_MARGIN_DIVISOR: u32 = 30;
/// Longest wait for the shared store before falling back to the local
/// share, for the background (scheduler, discovery: nobody waits on them).
pub const STORE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for the shared store on a wake's path (its calls, and the
/// pause after a 429 a wake met): the same bound as the request path's
/// registry calls (`registry::bounded::REQUEST_PATH_TIMEOUT`), so that a
/// hung Redis costs a wake one short timeout, after which
/// [`STORE_RETRY`] makes every call use the local share at once. A Lua
/// script on a live Redis answers in a millisecond; a slow answer taken for
/// a hang only spends this instance's share for a few seconds.
pub const WAKE_STORE_TIMEOUT: Duration = Duration::from_millis(250);
/// After the shared store failed, the local share is used this long before
/// the store is tried again (so an outage costs no wait per call).
pub const STORE_RETRY: Duration = Duration::from_secs(5);

/// Who is calling, chosen per call site: a wake (a user waits) or the
/// background (scheduler passes, discovery), which yields to wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    /// A request waits on it (wake, admin).
    #[default]
    Wake,
    /// Nobody waits on it; it takes what wakes leave.
    Background,
}

impl Priority {
    /// The rank of one call: a wake's scale call comes before its checks.
    pub fn rank(self, is_scale_call: bool) -> Rank {
        match (self, is_scale_call) {
            (Self::Wake, true) => Rank::WakeScale,
            (Self::Wake, false) => Rank::WakeCheck,
            (Self::Background, _) => Rank::Background,
        }
    }
}

/// The order in which calls get the budget, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rank {
    /// A wake's scale call: may use the whole budget.
    WakeScale,
    /// A wake's other calls (operation, `ps`, app reads, token exchange).
    WakeCheck,
    /// Scheduler passes and discovery.
    Background,
}

impl Rank {
    /// Every rank, highest first.
    pub const ALL: [Rank; 3] = [Rank::WakeScale, Rank::WakeCheck, Rank::Background];

    fn index(self) -> usize {
        self as usize
    }

    /// How long a call of this rank waits for the shared store before it
    /// falls back to the local share: short when a user waits on it.
    pub fn store_timeout(self) -> Duration {
        match self {
            Self::WakeScale | Self::WakeCheck => WAKE_STORE_TIMEOUT,
            Self::Background => STORE_TIMEOUT,
        }
    }

    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WakeScale => "wake_scale",
            Self::WakeCheck => "wake_check",
            Self::Background => "background",
        }
    }
}

/// The budget's settings; [`BudgetConfig::new`] gives the defaults for a
/// number of calls a minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Calls allowed in any window (`PAASTIS_SCALINGO_CALLS_PER_MINUTE`); at least 1.
    pub calls_per_minute: u32,
    /// The sliding window (a minute; tests shorten it).
    pub window: Duration,
    /// Instances expected to share the budget: while the shared store is
    /// unreachable, each spends `calls_per_minute / expected_instances`
    /// (at least 1). At least 1.
    pub expected_instances: u32,
    /// Pause after a 429 without a usable `Retry-After`.
    pub pause_after_429: Duration,
    /// Cap on the pause a `Retry-After` asks for.
    pub max_pause: Duration,
}

impl BudgetConfig {
    /// `calls_per_minute` over a minute, one instance, a minute's pause after a 429.
    pub fn new(calls_per_minute: u32) -> Self {
        Self {
            calls_per_minute,
            window: Duration::from_secs(60),
            expected_instances: 1,
            pause_after_429: DEFAULT_PAUSE_AFTER_429,
            max_pause: DEFAULT_MAX_PAUSE,
        }
    }

    fn check(&self) -> Result<(), BudgetError> {
        if self.calls_per_minute == 0 {
            return Err(BudgetError::Config(
                "calls_per_minute must be at least 1".into(),
            ));
        }
        if self.expected_instances == 0 {
            return Err(BudgetError::Config(
                "expected_instances must be at least 1".into(),
            ));
        }
        if self.window.is_zero() {
            return Err(BudgetError::Config("the window must not be empty".into()));
        }
        Ok(())
    }

    /// The window calls are counted over: [`Self::window`] and a margin of
    /// a thirtieth of it ([`WINDOW_MARGIN_DIVISOR`]).
    pub fn counted_window(&self) -> Duration {
        self.window + self.window / WINDOW_MARGIN_DIVISOR
    }

    /// What one instance may spend while the shared store is unreachable.
    pub fn share(&self) -> u32 {
        (self.calls_per_minute / self.expected_instances.max(1)).max(1)
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self::new(DEFAULT_CALLS_PER_MINUTE)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// No slot frees (or the 429 pause does not end) before the caller's deadline.
    #[error("Scalingo API budget exhausted before the deadline ({rank})")]
    Exhausted { rank: &'static str },
    /// The settings are unusable.
    #[error("invalid Scalingo budget: {0}")]
    Config(String),
}

/// The shared store failed (unreachable, timed out, bad answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shared budget store: {0}")]
pub struct StoreError(pub String);

/// What the shared store answered to a request for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Taken; `remaining` calls of the full limit are left in the window.
    Granted { remaining: u32 },
    /// Too many calls in the window for this rank: ask again after this.
    Wait(Duration),
    /// A 429 pause is on for this long.
    Paused(Duration),
}

/// The budget's state shared by every instance (one implementation:
/// [`redis::RedisBudgetStore`]). Each operation must be atomic.
#[async_trait]
pub trait SharedStore: Send + Sync {
    /// Takes one call unless a pause is on or `allowed` calls (of `limit`)
    /// are already in the last `window`.
    async fn take(&self, allowed: u32, limit: u32, window: Duration) -> Result<Take, StoreError>;
    /// Stops every instance's spending for `pause` (a longer pause already
    /// on is kept).
    async fn pause(&self, pause: Duration) -> Result<(), StoreError>;
}

/// Counters for the integrator's metrics (plain atomics, read any time).
#[derive(Debug, Default)]
pub struct BudgetStats {
    spent: [AtomicU64; 3],
    exhausted: AtomicU64,
    skipped: AtomicU64,
    rate_limited: AtomicU64,
    store_failures: AtomicU64,
    remaining: AtomicU32,
}

impl BudgetStats {
    /// Calls granted to `rank` since start.
    pub fn spent(&self, rank: Rank) -> u64 {
        self.spent[rank.index()].load(Ordering::Relaxed)
    }
    /// Calls granted since start, all ranks.
    pub fn spent_total(&self) -> u64 {
        Rank::ALL.iter().map(|r| self.spent(*r)).sum()
    }
    /// Acquisitions that ended in [`BudgetError::Exhausted`].
    pub fn exhausted(&self) -> u64 {
        self.exhausted.load(Ordering::Relaxed)
    }
    /// Calls [`Budget::try_acquire`] skipped (no slot free then).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
    /// 429s reported by [`Budget::rate_limited`].
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }
    /// Failed calls to the shared store (each one switched to the local share).
    pub fn store_failures(&self) -> u64 {
        self.store_failures.load(Ordering::Relaxed)
    }
    /// Calls left in the window after the last grant (of the whole
    /// gateway's limit when shared), a gauge.
    pub fn remaining(&self) -> u32 {
        self.remaining.load(Ordering::Relaxed)
    }
}

/// The one budget. Share it as an `Arc<Budget>` (one per process).
pub struct Budget {
    config: BudgetConfig,
    local: Mutex<Local>,
    shared: Option<Box<dyn SharedStore>>,
    /// Callers currently waiting, by rank: a lower rank waits while a higher one does.
    waiting: [AtomicUsize; 3],
    /// Fired when a waiter leaves or a pause starts, so waiters look again.
    changed: Notify,
    stats: BudgetStats,
}

#[derive(Debug, Default)]
struct Local {
    /// This instance's calls (all of them, also those granted by the store,
    /// so a fallback counts what was just spent).
    log: CallLog,
    paused_until: Option<Instant>,
    /// While set and not reached, the shared store is not asked.
    store_down_until: Option<Instant>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("config", &self.config)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a take did not succeed now.
enum NotYet {
    /// Try again after this (or earlier, when notified).
    After(Duration),
    /// A higher rank is waiting here: wait for it, as long as the deadline allows.
    Blocked,
}

impl Budget {
    /// A budget counted in this process only (one instance).
    pub fn in_memory(config: BudgetConfig) -> Result<Self, BudgetError> {
        Self::build(config, None)
    }

    /// A budget shared by every instance through `store`; while the store
    /// fails, this instance spends only [`BudgetConfig::share`].
    pub fn shared(
        config: BudgetConfig,
        store: impl SharedStore + 'static,
    ) -> Result<Self, BudgetError> {
        Self::build(config, Some(Box::new(store)))
    }

    fn build(
        config: BudgetConfig,
        shared: Option<Box<dyn SharedStore>>,
    ) -> Result<Self, BudgetError> {
        config.check()?;
        let stats = BudgetStats::default();
        stats
            .remaining
            .store(config.calls_per_minute, Ordering::Relaxed);
        Ok(Self {
            config,
            local: Mutex::new(Local::default()),
            shared,
            waiting: Default::default(),
            changed: Notify::new(),
            stats,
        })
    }

    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    pub fn stats(&self) -> &BudgetStats {
        &self.stats
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        // Plain data, consistent after every statement: a panic elsewhere cannot break it.
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one call for `rank`, waiting (on tokio's clock) until a slot
    /// frees. Fails with [`BudgetError::Exhausted`] when `deadline` passes
    /// first, at once when the wait is known to end after it.
    pub async fn acquire(&self, rank: Rank, deadline: Instant) -> Result<(), BudgetError> {
        let mut waiting: Option<WaitingGuard<'_>> = None;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let until = match self.try_take(rank).await {
                Ok(()) => {
                    self.stats.spent[rank.index()].fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(NotYet::After(wait)) => {
                    let at = Instant::now() + wait;
                    if at > deadline {
                        return Err(self.exhausted(rank));
                    }
                    at
                }
                Err(NotYet::Blocked) => {
                    if Instant::now() >= deadline {
                        return Err(self.exhausted(rank));
                    }
                    deadline
                }
            };
            if waiting.is_none() {
                waiting = Some(WaitingGuard::new(self, rank));
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = notified => {}
            }
        }
    }

    /// Takes one call for `rank` only if a slot is free right now (and no
    /// caller of a higher rank waits here): never waits, and a refusal is
    /// no failure (`false`: the caller skips its call; not counted as
    /// exhausted, not logged above debug).
    pub async fn try_acquire(&self, rank: Rank) -> bool {
        match self.try_take(rank).await {
            Ok(()) => {
                self.stats.spent[rank.index()].fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    rank = rank.as_str(),
                    "no Scalingo API budget free right now: call skipped"
                );
                false
            }
        }
    }

    fn exhausted(&self, rank: Rank) -> BudgetError {
        self.stats.exhausted.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            rank = rank.as_str(),
            "Scalingo API budget exhausted before the caller's deadline"
        );
        BudgetError::Exhausted {
            rank: rank.as_str(),
        }
    }

    async fn try_take(&self, rank: Rank) -> Result<(), NotYet> {
        let now = Instant::now();
        let use_store = {
            let local = self.local();
            if let Some(until) = local.paused_until.filter(|u| *u > now) {
                return Err(NotYet::After(until - now));
            }
            if Rank::ALL
                .iter()
                .any(|r| *r < rank && self.waiting[r.index()].load(Ordering::Relaxed) > 0)
            {
                return Err(NotYet::Blocked);
            }
            self.shared.is_some() && local.store_down_until.is_none_or(|until| until <= now)
        };
        if use_store {
            if let Some(taken) = self.take_shared(rank).await {
                return taken;
            }
        }
        let limit = match self.shared {
            Some(_) => self.config.share(),
            None => self.config.calls_per_minute,
        };
        let now = Instant::now();
        let mut local = self.local();
        local
            .log
            .take(now, self.config.counted_window(), allowed(limit, rank))
            .map_err(NotYet::After)?;
        let remaining = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(local.log.len());
        self.stats.remaining.store(
            u32::try_from(remaining).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Asks the shared store; `None` when it failed (the local share is then used).
    async fn take_shared(&self, rank: Rank) -> Option<Result<(), NotYet>> {
        let store = self.shared.as_ref()?;
        let limit = self.config.calls_per_minute;
        let asked = store.take(allowed(limit, rank), limit, self.config.counted_window());
        match with_timeout(rank.store_timeout(), asked).await {
            Ok(Take::Granted { remaining }) => {
                let mut local = self.local();
                let now = Instant::now();
                local.log.prune(now, self.config.counted_window());
                local.log.record(now);
                local.store_down_until = None;
                self.stats.remaining.store(remaining, Ordering::Relaxed);
                Some(Ok(()))
            }
            Ok(Take::Wait(wait)) => Some(Err(NotYet::After(wait))),
            Ok(Take::Paused(pause)) => {
                // Known here too, so waiters do not ask the store again before it ends.
                self.pause_locally(pause);
                Some(Err(NotYet::After(pause)))
            }
            Err(e) => {
                self.store_failed(&e);
                None
            }
        }
    }

    fn store_failed(&self, e: &StoreError) {
        self.stats.store_failures.fetch_add(1, Ordering::Relaxed);
        let mut local = self.local();
        if local.store_down_until.is_none() {
            tracing::warn!(error = %e, share = self.config.share(), "shared Scalingo budget unreachable: spending only this instance's share");
        }
        local.store_down_until = Some(Instant::now() + STORE_RETRY);
    }

    /// Scalingo answered 429: stops every caller's spending (every
    /// instance's, through the store) for `retry_after`, or
    /// [`BudgetConfig::pause_after_429`] without one, capped at
    /// [`BudgetConfig::max_pause`].
    pub async fn rate_limited(&self, retry_after: Option<Duration>) {
        let pause = retry_after
            .unwrap_or(self.config.pause_after_429)
            .min(self.config.max_pause);
        self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            ?pause,
            "Scalingo rate limited the gateway: no call until the pause ends"
        );
        self.pause_locally(pause);
        if let Some(store) = &self.shared {
            // A 429 is met by whoever called, a wake's call often: the
            // local pause is on already, so the store gets the short bound.
            if let Err(e) = with_timeout(WAKE_STORE_TIMEOUT, store.pause(pause)).await {
                self.store_failed(&e);
            }
        }
    }

    fn pause_locally(&self, pause: Duration) {
        let until = Instant::now() + pause;
        {
            let mut local = self.local();
            if local.paused_until.is_none_or(|current| current < until) {
                local.paused_until = Some(until);
            }
        }
        self.changed.notify_waiters();
    }
}

async fn with_timeout<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(StoreError(format!("no answer within {timeout:?}"))))
}

/// Counts a caller as waiting while it lives; leaving wakes the others
/// (a lower rank may go now).
struct WaitingGuard<'a> {
    budget: &'a Budget,
    rank: Rank,
}

impl<'a> WaitingGuard<'a> {
    fn new(budget: &'a Budget, rank: Rank) -> Self {
        budget.waiting[rank.index()].fetch_add(1, Ordering::Relaxed);
        Self { budget, rank }
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.budget.waiting[self.rank.index()].fetch_sub(1, Ordering::Relaxed);
        self.budget.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests;
