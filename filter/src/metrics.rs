//! The filter's counters. Defined once per VM in `on_configure` with
//! proxy-wasm `define_metric`; Envoy exposes them with its `wasmcustom.`
//! prefix (`wasmcustom.paastis.cache_hit` in the admin `/stats`).

use crate::reply::ReplyKind;

/// One counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A request routed from the shared cache, without a callout.
    CacheHit,
    /// A request for an app with no fresh cache entry (a wake callout follows).
    CacheMiss,
    /// A wake callout dispatched to the sidecar.
    Callout,
    /// A wake callout that could not be dispatched or got no usable answer
    /// (the failure policy applied).
    CalloutError,
    /// The sidecar answered `wake_failed` or `wake_timeout` (503 to the client).
    WakeFailed,
    /// A request refused because of its host: invalid Host, invalid app name,
    /// or an app the sidecar calls unknown or invalid (400/404).
    HostRejected,
    /// A host no rule and no domain matches (404 or passed through).
    Unmatched,
    /// An activity batch sent to the sidecar.
    ActivityFlush,
    /// An activity batch that could not be sent or was not acknowledged
    /// (merged back for the next flush).
    ActivityFlushError,
    /// A waiting page sent to a browser (the wake goes on in the sidecar).
    WaitingPage,
    /// A status-path request answered through a sidecar callout (not from
    /// the cache).
    StatusCallout,
    /// A request routed from an expired cache entry because the sidecar
    /// could not be reached (serve stale).
    StaleHit,
    /// A routed request answered 502/503/504 by the upstream (the platform's
    /// router: no container serves the app); its cache entry was dropped.
    NotRunning,
}

impl Metric {
    /// Every metric, in a fixed order (the index of the metric in this array
    /// is [`Metric::index`]).
    pub const ALL: [Metric; 13] = [
        Metric::CacheHit,
        Metric::CacheMiss,
        Metric::Callout,
        Metric::CalloutError,
        Metric::WakeFailed,
        Metric::HostRejected,
        Metric::Unmatched,
        Metric::ActivityFlush,
        Metric::ActivityFlushError,
        Metric::WaitingPage,
        Metric::StatusCallout,
        Metric::StaleHit,
        Metric::NotRunning,
    ];

    /// The name given to `define_metric`.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::CacheHit => "paastis.cache_hit",
            Metric::CacheMiss => "paastis.cache_miss",
            Metric::Callout => "paastis.callout",
            Metric::CalloutError => "paastis.callout_error",
            Metric::WakeFailed => "paastis.wake_failed",
            Metric::HostRejected => "paastis.host_rejected",
            Metric::Unmatched => "paastis.unmatched",
            Metric::ActivityFlush => "paastis.activity_flush",
            Metric::ActivityFlushError => "paastis.activity_flush_error",
            Metric::WaitingPage => "paastis.waiting_page",
            Metric::StatusCallout => "paastis.status_callout",
            Metric::StaleHit => "paastis.stale_hit",
            Metric::NotRunning => "paastis.not_running",
        }
    }

    /// Position in [`Metric::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The counter a local reply adds to, if any (`Unavailable` follows a
    /// callout error, already counted as such).
    pub const fn for_reply(kind: ReplyKind) -> Option<Metric> {
        match kind {
            ReplyKind::InvalidHost | ReplyKind::InvalidApp | ReplyKind::UnknownApp => {
                Some(Metric::HostRejected)
            }
            ReplyKind::UnknownHost => Some(Metric::Unmatched),
            ReplyKind::WakeFailed | ReplyKind::WakeTimeout => Some(Metric::WakeFailed),
            ReplyKind::Unavailable => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_match_all() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
            assert!(m.name().starts_with("paastis."));
        }
    }

    #[test]
    fn replies_count() {
        assert_eq!(
            Metric::for_reply(ReplyKind::InvalidHost),
            Some(Metric::HostRejected)
        );
        assert_eq!(
            Metric::for_reply(ReplyKind::UnknownHost),
            Some(Metric::Unmatched)
        );
        assert_eq!(
            Metric::for_reply(ReplyKind::WakeTimeout),
            Some(Metric::WakeFailed)
        );
        assert_eq!(Metric::for_reply(ReplyKind::Unavailable), None);
    }
}
