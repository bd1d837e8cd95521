//! Native tests of the glue's side of the lifecycle: the traffic tells the
//! truth (a router's answer drops the app and reports it; an activity
//! answer drops the apps the sidecar does not know awake) and serve stale
//! while the sidecar is unreachable.

use std::rc::Rc;

use crate::cache;
use crate::fake_host::{counts, the_dispatch, the_reply, Call, FakeHost};
use crate::flusher::Flusher;
use crate::glue_tests::{get, renewal, shared, JSON, NOW};
use crate::host::Flow;
use crate::metrics::Metric;
use crate::shared::Shared;
use crate::stream::Stream;

const HOST: &str = "my-app.osc-fr1.scalingo.io";

fn cached(host: &FakeHost, expiry: u64) {
    host.put_shared(&cache::key("my-app"), &cache::encode(expiry, "fr1", HOST));
}

fn routed(calls: &[Call]) -> bool {
    calls.contains(&Call::SetHeader(":authority".into(), HOST.into()))
}

#[test]
fn a_router_answer_drops_the_app_reports_it_and_the_next_wake_verifies() {
    let host = FakeHost::at(NOW);
    let shared = shared("");
    cached(&host, NOW + 1_000);
    for status in [200, 404, 500] {
        get(&host, "my-app.gw.example.com", &[]);
        let mut stream = Stream::new(Some(Rc::clone(&shared)));
        assert_eq!(stream.on_request_headers(&host), Flow::Continue);
        host.take_calls();
        host.response.set(Some(status));
        assert_eq!(stream.on_response_headers(&host), Flow::Continue);
        assert_eq!(host.take_calls(), [], "{status} is the app's answer");
    }

    get(&host, "my-app.gw.example.com", &[]);
    let mut stream = Stream::new(Some(Rc::clone(&shared)));
    assert_eq!(stream.on_request_headers(&host), Flow::Continue);
    host.take_calls();
    host.response.set(Some(503));
    // The backstop: the answer is held while the sidecar checks the app.
    assert_eq!(stream.on_response_headers(&host), Flow::Pause);
    let calls = host.take_calls();
    assert_eq!(counts(&calls), [Metric::NotRunning, Metric::Callout]);
    assert!(calls.contains(&Call::SetShared(
        cache::key("my-app"),
        cache::tombstone(NOW)
    )));
    assert_eq!(
        the_dispatch(&calls).body.as_deref(),
        Some(r#"{"app":"my-app","region":null,"verify":true,"background":true}"#)
    );
    // It serves (its own 503): the answer goes on.
    host.answer(
        "200",
        JSON,
        r#"{"app":"my-app","region":"osc-fr1","upstream_host":"my-app.osc-fr1.scalingo.io"}"#,
    );
    stream.on_call_answer(&host, 1, 2, 10);
    assert_eq!(host.take_calls(), [Call::ResumeResponse]);

    // The next request is a miss whose wake asks the sidecar to verify.
    get(&host, "my-app.gw.example.com", &[]);
    let mut next = Stream::new(Some(Rc::clone(&shared)));
    assert_eq!(next.on_request_headers(&host), Flow::Pause);
    let calls = host.take_calls();
    assert_eq!(counts(&calls), [Metric::CacheMiss, Metric::Callout]);
    assert_eq!(
        the_dispatch(&calls).body.as_deref(),
        Some(r#"{"app":"my-app","region":null,"verify":true}"#)
    );

    // The report goes with the next flush, and its answer does not refresh
    // the reported app.
    let mut flusher = Flusher::default();
    flusher.tick(&host, &shared);
    let calls = host.take_calls();
    assert_eq!(
        the_dispatch(&calls).body,
        Some(format!(
            r#"{{"apps":["my-app"],"not_running":["my-app"]{}}}"#,
            renewal(&shared)
        ))
    );
    host.answer(
        "200",
        JSON,
        r#"{"awake":[{"app":"my-app","region":"osc-fr1","upstream_host":"my-app.osc-fr1.scalingo.io"}]}"#,
    );
    flusher.on_call_answer(&host, &shared, 1, 2, 10);
    assert_eq!(host.take_calls(), []);

    // A request answered locally reads nothing of the response.
    host.refuse_dispatch.set(true);
    get(&host, "my-app.gw.example.com", &[]);
    let mut local = Stream::new(Some(shared));
    assert_eq!(local.on_request_headers(&host), Flow::Pause);
    host.take_calls();
    assert_eq!(local.on_response_headers(&host), Flow::Continue);
    assert_eq!(host.take_calls(), []);
}

/// A routed request of `accept` answered 503 by the router, then the
/// sidecar's answer to the check: the calls made.
fn backstop(accept: &str, status: &str, body: &str) -> Vec<Call> {
    let host = FakeHost::at(NOW);
    let shared = shared("");
    cached(&host, NOW + 10_000);
    get(&host, "my-app.gw.example.com", &[("accept", accept)]);
    let mut stream = Stream::new(Some(Rc::clone(&shared)));
    assert_eq!(stream.on_request_headers(&host), Flow::Continue);
    host.response.set(Some(503));
    assert_eq!(stream.on_response_headers(&host), Flow::Pause);
    let body_sent = the_dispatch(&host.take_calls()).body.unwrap();
    assert!(body_sent.contains(r#""background":true"#), "{body_sent}");
    assert_eq!(
        body_sent.contains(r#""client":"browser""#),
        accept.contains("html"),
        "{body_sent}"
    );
    // The lease is given back: the next renewal does not name the app.
    let mut held = true;
    shared.with_activity(|a| held = a.holds("my-app"));
    assert!(!held);
    host.answer(status, JSON, body);
    stream.on_call_answer(&host, 1, 2, 10);
    host.take_calls()
}

#[test]
fn the_router_page_is_never_passed_on_for_an_app_that_does_not_serve() {
    let waking = r#"{"waiting":true,"app":"my-app","target":"my-app","linked_apps":[]}"#;
    // A browser: the waiting page (which polls and lands on the app).
    let calls = backstop("text/html", "202", waking);
    let reply = the_reply(&calls);
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("paastis-waiting"), "{}", reply.body);
    assert!(!reply.body.contains("scalingo"), "{}", reply.body);
    assert_eq!(counts(&calls), [Metric::WaitingPage]);
    // An API client: our 503 JSON with Retry-After.
    let calls = backstop("application/json", "202", waking);
    let reply = the_reply(&calls);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(reply.json()["app"], "my-app");
    // A failed wake: our page saying so.
    let calls = backstop(
        "application/json",
        "503",
        r#"{"error":"wake_failed","message":"crashed","retry_after":10}"#,
    );
    let reply = the_reply(&calls);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"], "wake_failed");
    assert_eq!(reply.header("retry-after"), Some("10"));
    // The sidecar unreachable: our 503, not the router's.
    let calls = backstop("text/html", "500", "oops");
    let reply = the_reply(&calls);
    assert_eq!(reply.status, 503);
    assert!(!calls.contains(&Call::ResumeResponse));
}

#[test]
fn an_idle_vm_renews_its_leases_on_every_tick_and_gives_back_the_ones_taken_back() {
    let host = FakeHost::at(NOW);
    let shared = shared("");
    let mut flusher = Flusher::default();
    for app in ["app-one", "app-two"] {
        host.put_shared(
            &cache::key(app),
            &cache::encode(NOW + 30_000, "fr1", &format!("{app}.osc-fr1.scalingo.io")),
        );
    }
    shared.with_activity(|a| {
        a.served("app-one");
        a.served("app-two");
    });
    flusher.tick(&host, &shared);
    host.take_calls();
    let both = r#"{"awake":[
        {"app":"app-one","region":"osc-fr1","upstream_host":"app-one.osc-fr1.scalingo.io"},
        {"app":"app-two","region":"osc-fr1","upstream_host":"app-two.osc-fr1.scalingo.io"}]}"#;
    host.answer("200", JSON, both);
    flusher.on_call_answer(&host, &shared, 1, 2, 10);
    host.take_calls();

    // No traffic: the next tick renews both all the same.
    host.advance(1_000);
    flusher.tick(&host, &shared);
    let calls = host.take_calls();
    assert_eq!(
        the_dispatch(&calls).body,
        Some(format!(
            r#"{{"apps":[],"held":["app-one","app-two"]{}}}"#,
            renewal(&shared)
        ))
    );
    // app-one renewed (its entry extended), app-two taken back (a pause).
    host.answer(
        "200",
        JSON,
        r#"{"awake":[{"app":"app-one","region":"osc-fr1","upstream_host":"app-one.osc-fr1.scalingo.io"}],"asleep":["app-two"]}"#,
    );
    flusher.on_call_answer(&host, &shared, 2, 2, 10);
    assert_eq!(
        host.take_calls(),
        [
            Call::SetShared(
                cache::key("app-one"),
                cache::encode(NOW + 31_000, "fr1", "app-one.osc-fr1.scalingo.io")
            ),
            Call::SetShared(cache::key("app-two"), String::new()),
        ]
    );
    // Only app-one is named from now on; a renewal does not revive an
    // entry the traffic dropped meanwhile.
    host.advance(1_000);
    flusher.tick(&host, &shared);
    let calls = host.take_calls();
    assert_eq!(
        the_dispatch(&calls).body,
        Some(format!(
            r#"{{"apps":[],"held":["app-one"]{}}}"#,
            renewal(&shared)
        ))
    );
    host.put_shared(&cache::key("app-one"), &cache::tombstone(NOW));
    host.answer(
        "200",
        JSON,
        r#"{"awake":[{"app":"app-one","region":"osc-fr1","upstream_host":"app-one.osc-fr1.scalingo.io"}]}"#,
    );
    flusher.on_call_answer(&host, &shared, 3, 2, 10);
    assert_eq!(host.take_calls(), [], "the tombstone stays");
    // Nothing held any more: an idle VM sends nothing.
    host.advance(1_000);
    flusher.tick(&host, &shared);
    assert_eq!(host.take_calls(), []);
}

#[test]
fn an_activity_answer_drops_the_apps_the_sidecar_does_not_know_awake() {
    let host = FakeHost::at(NOW);
    let shared = shared("");
    let mut flusher = Flusher::default();
    // Written a second before the flush.
    for app in ["app-one", "app-two", "app-three"] {
        host.put_shared(
            &cache::key(app),
            &cache::encode(NOW + 29_000, "fr1", "x.osc-fr1.scalingo.io"),
        );
    }
    shared.with_activity(|a| {
        a.served("app-one");
        a.served("app-two");
        a.served("app-three");
    });
    flusher.tick(&host, &shared);
    host.take_calls();
    // Meanwhile app-three was woken again: its newer entry stays.
    host.advance(500);
    host.put_shared(
        &cache::key("app-three"),
        &cache::encode(NOW + 30_500, "fr1", "x.osc-fr1.scalingo.io"),
    );
    host.answer(
        "200",
        JSON,
        r#"{"awake":[],"asleep":["app-one","app-three","not-asked"]}"#,
    );
    flusher.on_call_answer(&host, &shared, 1, 2, 10);
    assert_eq!(
        host.take_calls(),
        [Call::SetShared(cache::key("app-one"), String::new())]
    );
    // A dropped entry is a plain miss (no warning, no verify).
    get(&host, "app-one.gw.example.com", &[]);
    let mut stream = Stream::new(Some(shared));
    assert_eq!(stream.on_request_headers(&host), Flow::Pause);
    assert_eq!(
        the_dispatch(&host.take_calls()).body.as_deref(),
        Some(r#"{"app":"app-one","region":null}"#)
    );
}

fn request(host: &FakeHost, shared: &Rc<Shared>) -> (Stream, Flow, Vec<Call>) {
    get(host, "my-app.gw.example.com", &[]);
    let mut stream = Stream::new(Some(Rc::clone(shared)));
    let flow = stream.on_request_headers(host);
    (stream, flow, host.take_calls())
}

#[test]
fn known_apps_are_served_stale_while_the_sidecar_is_unreachable() {
    let host = FakeHost::at(NOW);
    let shared = shared(r#","stale_ttl_ms":60000"#);
    cached(&host, NOW);
    host.refuse_dispatch.set(true);

    // The first request finds out (its callout fails) and routes stale.
    let (_, flow, calls) = request(&host, &shared);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(
        counts(&calls),
        [Metric::CacheMiss, Metric::CalloutError, Metric::StaleHit]
    );
    assert!(routed(&calls));
    assert!(shared.sidecar_down());
    // The next ones route at once, without a callout.
    host.advance(59_000);
    let (_, flow, calls) = request(&host, &shared);
    assert_eq!(flow, Flow::Continue);
    assert!(routed(&calls));
    // Counted in the VM, as a cache hit: on the host on the tick.
    assert_eq!(counts(&calls), []);
    shared.flush_counts(&host);
    assert_eq!(counts(&host.take_calls()), [Metric::StaleHit]);
    // Their activity is kept for when the sidecar is back.
    let mut pending = 0;
    shared.with_activity(|a| pending = a.pending());
    assert_eq!(pending, 1);
    // Past the stale window: the failure policy.
    host.advance(1_000);
    let (_, flow, calls) = request(&host, &shared);
    assert_eq!(flow, Flow::Pause);
    assert_eq!(the_reply(&calls).status, 503);
    assert_eq!(the_reply(&calls).header("retry-after"), Some("5"));

    // The flush sees the sidecar come back: expired entries go through the
    // sidecar again.
    host.refuse_dispatch.set(false);
    cached(&host, NOW);
    let mut flusher = Flusher::default();
    flusher.tick(&host, &shared);
    host.take_calls();
    host.answer("200", JSON, r#"{"awake":[]}"#);
    flusher.on_call_answer(&host, &shared, 1, 2, 10);
    assert!(!shared.sidecar_down());
    let (_, flow, calls) = request(&host, &shared);
    assert_eq!(flow, Flow::Pause);
    assert_eq!(counts(&calls), [Metric::CacheMiss, Metric::Callout]);
}

#[test]
fn an_unusable_wake_answer_routes_stale_and_a_zero_stale_ttl_never_does() {
    for (stale_ttl, served) in [(60_000, true), (0, false)] {
        let host = FakeHost::at(NOW + 10);
        let shared = shared(&format!(r#","stale_ttl_ms":{stale_ttl}"#));
        cached(&host, NOW);
        let (mut stream, flow, _) = request(&host, &shared);
        assert_eq!(flow, Flow::Pause);
        host.answer("503", "text/plain", "upstream connect error");
        stream.on_call_answer(&host, 1, 2, 10);
        let calls = host.take_calls();
        assert_eq!(routed(&calls), served, "stale_ttl_ms {stale_ttl}");
        assert_eq!(calls.last() == Some(&Call::Resume), served);
        assert!(!calls.iter().any(|c| matches!(c, Call::SetShared(..))));
        if !served {
            assert_eq!(the_reply(&calls).status, 503);
        }
    }
}

#[test]
fn only_a_first_requests_wake_may_wait_on_the_hold_cluster() {
    let host = FakeHost::at(NOW);
    let shared = shared(r#","stale_ttl_ms":60000,"sidecar_hold_cluster":"hold""#);
    // No entry: a first request, held across a restart of the sidecar.
    let (_, flow, calls) = request(&host, &shared);
    assert_eq!(flow, Flow::Pause);
    assert_eq!(the_dispatch(&calls).cluster, "hold");
    // An expired entry still usable stale: the wake must fail fast, so
    // that the stale entry is served at once while the sidecar is down.
    cached(&host, NOW - 1_000);
    let (_, flow, calls) = request(&host, &shared);
    assert_eq!(flow, Flow::Pause);
    assert_eq!(the_dispatch(&calls).cluster, "sidecar");
    // The activity flush tells the filter the sidecar is down: fast too.
    shared.with_activity(|a| a.served("my-app"));
    Flusher::default().tick(&host, &shared);
    assert_eq!(the_dispatch(&host.take_calls()).cluster, "sidecar");
}
