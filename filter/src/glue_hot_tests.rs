//! The cost of a warm cache hit on Envoy's side, pinned: the number of host
//! calls a hit makes (every call, reads included, counted by the fake
//! host). Each one costs Envoy a few microseconds per request, so a new one
//! must be a decision, not an accident.

use std::rc::Rc;

use crate::cache;
use crate::fake_host::{counts, headers_set, FakeHost};
use crate::flusher::Flusher;
use crate::glue_tests::{get, shared, NOW};
use crate::host::Flow;
use crate::metrics::Metric;
use crate::shared::Shared;
use crate::stream::Stream;

/// A warm hit's host calls: the request header map, the app's cache entry,
/// and the three headers set (routing header, `x-forwarded-host`,
/// `:authority`). No clock read while the entry expires more than two ticks
/// after the VM last read the clock, no counter (counted in the VM), no
/// route-cache clear (Envoy clears it on each header change for ABI 0.2.1),
/// no removal (no internal header was sent).
const HIT_HOST_CALLS: u32 = 5;
/// A hit on an entry near its expiry also reads the clock.
const NEAR_EXPIRY_HIT_HOST_CALLS: u32 = HIT_HOST_CALLS + 1;

/// An entry that expires `in_ms` from now.
fn warm_for(host: &FakeHost, in_ms: u64) {
    host.put_shared(
        &cache::key("my-app"),
        &cache::encode(NOW + in_ms, "fr1", "my-app.osc-fr1.scalingo.io"),
    );
}

/// An entry near its expiry (1 s away; the tick is 1 s).
fn warm(host: &FakeHost) {
    warm_for(host, 1_000);
}

/// Sends one request for `my-app` and returns its host calls.
fn hit(host: &FakeHost, shared: &Rc<Shared>) -> u32 {
    get(host, "my-app.gw.example.com", &[("x-request-id", "r-1")]);
    let mut stream = Stream::new(Some(Rc::clone(shared)));
    assert_eq!(stream.on_request_headers(host), Flow::Continue);
    let calls = host.host_calls();
    stream.close();
    calls
}

#[test]
fn a_warm_hit_makes_five_host_calls_and_reads_the_clock_only_near_expiry() {
    let host = FakeHost::at(NOW);
    let shared = shared("");
    warm_for(&host, 30_000);
    // The VM has never read the clock: the first hit does.
    assert_eq!(hit(&host, &shared), NEAR_EXPIRY_HIT_HOST_CALLS);
    assert_eq!(hit(&host, &shared), HIT_HOST_CALLS);
    // Time passes, the tick reads the clock: still no read while the entry
    // expires more than two ticks later.
    host.advance(27_000);
    Flusher::default().tick(&host, &shared);
    assert_eq!(hit(&host, &shared), HIT_HOST_CALLS);
    // Within two ticks of its expiry, every hit reads the clock ...
    host.advance(1_000);
    Flusher::default().tick(&host, &shared);
    assert_eq!(hit(&host, &shared), NEAR_EXPIRY_HIT_HOST_CALLS);
    // ... so that the entry stops routing at its expiry, tick or not.
    host.advance(2_000);
    get(&host, "my-app.gw.example.com", &[]);
    let mut stream = Stream::new(Some(Rc::clone(&shared)));
    assert_eq!(stream.on_request_headers(&host), Flow::Pause, "a wake");
    assert_eq!(
        counts(&host.take_calls()),
        [Metric::CacheMiss, Metric::Callout]
    );
}

#[test]
fn a_hit_near_expiry_makes_six_host_calls() {
    let host = FakeHost::at(NOW);
    let shared = shared("");
    warm(&host);
    for _ in 0..3 {
        get(&host, "my-app.gw.example.com", &[("x-request-id", "r-1")]);
        let mut stream = Stream::new(Some(Rc::clone(&shared)));
        assert_eq!(stream.on_request_headers(&host), Flow::Continue);
        assert_eq!(
            host.host_calls(),
            NEAR_EXPIRY_HIT_HOST_CALLS,
            "{:?}",
            host.take_calls()
        );
        // The response of a routed request: one read of `:status`.
        host.reset_host_calls();
        host.response.set(Some(200));
        stream.on_response_headers(&host);
        assert_eq!(host.host_calls(), 1);
        stream.close();
    }
    // The tick adds the three hits with one call.
    host.request(&[]);
    shared.flush_counts(&host);
    assert_eq!(host.host_calls(), 1);
    assert_eq!(counts(&host.take_calls()), [Metric::CacheHit; 3]);
}

#[test]
fn a_clients_own_routing_header_never_steers_a_hit() {
    let host = FakeHost::at(NOW);
    let shared = shared("");
    warm(&host);
    get(
        &host,
        "my-app.gw.example.com",
        &[
            ("x-paastis-cluster", "evil"),
            ("X-Paastis-Cluster", "evil-too"),
            ("x-forwarded-host", "evil.example.com"),
        ],
    );
    let mut stream = Stream::new(Some(Rc::clone(&shared)));
    assert_eq!(stream.on_request_headers(&host), Flow::Continue);
    let set = headers_set(&host.take_calls());
    assert!(set.contains(&("x-paastis-cluster".into(), "fr1".into())));
    assert!(set.contains(&("x-forwarded-host".into(), "my-app.gw.example.com".into())));
}
