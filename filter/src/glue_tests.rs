//! Native tests of the glue ([`Stream`], [`Flusher`], [`Shared::configure`])
//! against the fake host: which host calls a request, a callout answer or a
//! tick makes (headers set, local replies, callouts, counters), in the
//! spirit of proxy-wasm's test framework (`expect_http_call`,
//! `expect_send_local_response`).

use std::rc::Rc;

use crate::cache;
use crate::fake_host::{counts, headers_set, the_dispatch, the_reply, Call, FakeHost};
use crate::flusher::Flusher;
use crate::host::Flow;
use crate::metrics::Metric;
use crate::shared::Shared;
use crate::stream::Stream;
use crate::waiting::STATUS_PATH;

pub(crate) const NOW: u64 = 1_700_000_000_000;
pub(crate) const JSON: &str = "application/json";

pub(crate) fn shared(extra: &str) -> Rc<Shared> {
    let json = format!(
        r#"{{"sidecar_cluster":"sidecar","domains":["gw.example.com"],"region_clusters":{{"osc-fr1":"fr1"}}{extra}}}"#
    );
    Rc::new(Shared::configure(json.as_bytes(), None).unwrap())
}

/// The end of every activity body of `shared`'s VM: its id and lease.
pub(crate) fn renewal(shared: &Shared) -> String {
    format!(
        r#","vm":"{}","lease_ms":{}"#,
        shared.vm_id(),
        shared.config.cache_ttl_ms
    )
}

pub(crate) fn get(host: &FakeHost, authority: &str, extra: &[(&str, &str)]) {
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/"),
        (":authority", authority),
    ];
    headers.extend_from_slice(extra);
    host.request(&headers);
}

fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_bad_configuration_is_refused_naming_the_field() {
    let e = Shared::configure(
        br#"{"sidecar_cluster":"s","domains":["a.io"],"cache_tll_ms":1}"#,
        None,
    )
    .err()
    .unwrap();
    assert!(e.starts_with("invalid configuration: cache_tll_ms"), "{e}");
    let e = Shared::configure(b"not json", None).err().unwrap();
    assert!(e.starts_with("invalid configuration: "), "{e}");
}

#[test]
fn without_configuration_every_request_is_refused() {
    let host = FakeHost::at(NOW);
    get(&host, "my-app.gw.example.com", &[]);
    let mut stream = Stream::new(None);
    assert_eq!(stream.on_request_headers(&host), Flow::Pause);
    let calls = host.take_calls();
    let reply = the_reply(&calls);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(reply.json()["error"], "unavailable");
    assert_eq!(counts(&calls), []);
}

#[test]
fn a_cache_hit_routes_at_once_without_a_callout() {
    let host = FakeHost::at(NOW);
    let shared = shared("");
    host.put_shared(
        &cache::key("my-app"),
        &cache::encode(NOW + 1_000, "fr1", "my-app.osc-fr1.scalingo.io"),
    );
    get(
        &host,
        "my-app.gw.example.com",
        &[
            ("x-paastis-cluster", "evil"),
            ("origin", "https://my-app.gw.example.com"),
        ],
    );
    let mut stream = Stream::new(Some(Rc::clone(&shared)));
    assert_eq!(stream.on_request_headers(&host), Flow::Continue);
    let calls = host.take_calls();
    assert_eq!(calls[0], Call::RemoveHeader("x-paastis-cluster".into()));
    assert_eq!(
        headers_set(&calls),
        set(&[
            ("x-paastis-cluster", "fr1"),
            ("x-forwarded-host", "my-app.gw.example.com"),
            (":authority", "my-app.osc-fr1.scalingo.io"),
            ("origin", "https://my-app.osc-fr1.scalingo.io"),
        ])
    );
    // Counted in the VM: the host's counter moves on the tick.
    assert_eq!(counts(&calls), []);
    shared.flush_counts(&host);
    assert_eq!(counts(&host.take_calls()), [Metric::CacheHit]);
    assert!(!calls.iter().any(|c| matches!(c, Call::Dispatch(_))));
    // The stream keeps its app active until it ends.
    let mut open = 0;
    shared.with_activity(|a| open = a.open_streams("my-app"));
    assert_eq!(open, 1);
    stream.close();
    shared.with_activity(|a| open = a.open_streams("my-app"));
    assert_eq!(open, 0);
}

#[test]
fn an_expired_entry_is_a_miss() {
    let host = FakeHost::at(NOW);
    host.put_shared(
        &cache::key("my-app"),
        &cache::encode(NOW, "fr1", "my-app.osc-fr1.scalingo.io"),
    );
    get(&host, "my-app.gw.example.com", &[]);
    let mut stream = Stream::new(Some(shared("")));
    assert_eq!(stream.on_request_headers(&host), Flow::Pause);
    assert_eq!(
        counts(&host.take_calls()),
        [Metric::CacheMiss, Metric::Callout]
    );
}

#[test]
fn a_miss_wakes_through_the_sidecar_then_routes_and_caches() {
    let host = FakeHost::at(NOW);
    get(&host, "my-app.gw.example.com", &[("x-request-id", "req-1")]);
    let mut stream = Stream::new(Some(shared("")));
    assert_eq!(stream.on_request_headers(&host), Flow::Pause);
    let calls = host.take_calls();
    assert_eq!(counts(&calls), [Metric::CacheMiss, Metric::Callout]);
    let d = the_dispatch(&calls);
    assert_eq!(d.cluster, "sidecar");
    assert_eq!(
        d.headers,
        set(&[
            (":method", "POST"),
            (":path", "/v1/wake"),
            (":authority", "paastis-sidecar"),
            ("content-type", "application/json"),
            ("x-request-id", "req-1"),
        ])
    );
    assert_eq!(d.body.as_deref(), Some(r#"{"app":"my-app","region":null}"#));
    assert_eq!(d.timeout_ms, 65_000);
    assert!(
        headers_set(&calls).is_empty(),
        "nothing routed before the answer"
    );

    host.answer(
        "200",
        JSON,
        r#"{"app":"my-app","target":"my-app","region":"osc-fr1","upstream_host":"my-app.osc-fr1.scalingo.io","linked_apps":[],"waited_ms":1}"#,
    );
    stream.on_call_answer(&host, 1, 2, 10);
    let calls = host.take_calls();
    assert_eq!(
        calls[0],
        Call::SetShared(
            "paastis/app/my-app".into(),
            cache::encode(NOW + 30_000, "fr1", "my-app.osc-fr1.scalingo.io")
        )
    );
    assert_eq!(
        headers_set(&calls),
        set(&[
            ("x-paastis-cluster", "fr1"),
            ("x-forwarded-host", "my-app.gw.example.com"),
            (":authority", "my-app.osc-fr1.scalingo.io"),
        ])
    );
    // Resumed last, once the headers are set.
    assert_eq!(calls.last(), Some(&Call::Resume));
}

#[test]
fn a_failed_wake_is_a_503_with_the_sidecars_retry_after() {
    let host = FakeHost::at(NOW);
    get(&host, "my-app.gw.example.com", &[]);
    let mut stream = Stream::new(Some(shared("")));
    stream.on_request_headers(&host);
    host.take_calls();
    host.answer(
        "503",
        JSON,
        r#"{"error":"wake_failed","message":"boom","retry_after":9}"#,
    );
    stream.on_call_answer(&host, 1, 2, 10);
    let calls = host.take_calls();
    let reply = the_reply(&calls);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("9"));
    assert_eq!(reply.json()["error"], "wake_failed");
    assert_eq!(counts(&calls), [Metric::WakeFailed]);
    assert!(!calls.contains(&Call::Resume));
}

#[test]
fn an_unusable_answer_or_no_answer_applies_the_failure_policy() {
    for (open, answer) in [(false, true), (false, false), (true, true)] {
        let host = FakeHost::at(NOW);
        get(&host, "my-app.gw.example.com", &[]);
        let extra = if open {
            r#","failure_policy":"open""#
        } else {
            ""
        };
        let mut stream = Stream::new(Some(shared(extra)));
        stream.on_request_headers(&host);
        host.take_calls();
        // Envoy's own 503 (sidecar down) is plain text; no headers at all
        // when the callout failed before any response.
        host.answer("503", "text/plain", "upstream connect error");
        stream.on_call_answer(&host, 1, usize::from(answer), 10);
        let calls = host.take_calls();
        assert_eq!(counts(&calls)[0], Metric::CalloutError);
        if open {
            assert_eq!(
                headers_set(&calls)[2],
                (":authority".into(), "my-app.osc-fr1.scalingo.io".into())
            );
            assert!(!calls.iter().any(|c| matches!(c, Call::SetShared(..))));
            assert_eq!(calls.last(), Some(&Call::Resume));
        } else {
            let reply = the_reply(&calls);
            assert_eq!(reply.status, 503);
            assert_eq!(reply.json()["error"], "unavailable");
        }
    }
}

#[test]
fn a_callout_that_cannot_be_sent_applies_the_failure_policy() {
    let host = FakeHost::at(NOW);
    host.refuse_dispatch.set(true);
    get(&host, "my-app.gw.example.com", &[]);
    let mut stream = Stream::new(Some(shared("")));
    assert_eq!(stream.on_request_headers(&host), Flow::Pause);
    let calls = host.take_calls();
    assert_eq!(counts(&calls), [Metric::CacheMiss, Metric::CalloutError]);
    assert_eq!(the_reply(&calls).json()["error"], "unavailable");

    let mut stream = Stream::new(Some(shared(r#","failure_policy":"open""#)));
    get(&host, "my-app.gw.example.com", &[]);
    assert_eq!(stream.on_request_headers(&host), Flow::Continue);
    let calls = host.take_calls();
    assert_eq!(
        headers_set(&calls)[0],
        ("x-paastis-cluster".into(), "fr1".into())
    );
    assert!(!calls.contains(&Call::Resume), "never paused");
}

#[test]
fn a_browser_may_get_the_waiting_page() {
    let host = FakeHost::at(NOW);
    get(
        &host,
        "shop-front.gw.example.com",
        &[("accept", "text/html")],
    );
    let mut stream = Stream::new(Some(shared("")));
    stream.on_request_headers(&host);
    let d = the_dispatch(&host.take_calls());
    assert_eq!(
        d.body.as_deref(),
        Some(r#"{"app":"shop-front","region":null,"client":"browser"}"#)
    );
    host.answer(
        "202",
        JSON,
        r#"{"waiting":true,"app":"shop-front","target":"shop-front","linked_apps":["shop-api-1"]}"#,
    );
    stream.on_call_answer(&host, 1, 2, 10);
    let calls = host.take_calls();
    let page = the_reply(&calls);
    assert_eq!(page.status, 503);
    assert!(page.header("content-security-policy").is_some());
    assert!(page.body.contains("shop-api-1"));
    assert_eq!(counts(&calls), [Metric::WaitingPage]);
    assert!(!calls.contains(&Call::Resume));
}

#[test]
fn the_status_path_is_answered_from_the_cache_or_the_sidecar() {
    let host = FakeHost::at(NOW);
    let shared = shared("");
    let status = |host: &FakeHost| {
        host.request(&[
            (":method", "GET"),
            (":path", STATUS_PATH),
            (":authority", "shop-front.gw.example.com"),
        ])
    };
    status(&host);
    let mut stream = Stream::new(Some(Rc::clone(&shared)));
    assert_eq!(stream.on_request_headers(&host), Flow::Pause);
    let calls = host.take_calls();
    let d = the_dispatch(&calls);
    assert_eq!(
        d.headers,
        set(&[
            (":method", "GET"),
            (":path", "/v1/status?app=shop-front"),
            (":authority", "paastis-sidecar"),
            ("accept", "application/json"),
        ])
    );
    assert_eq!((d.body, d.timeout_ms), (None, 5_000));
    assert_eq!(counts(&calls), [Metric::StatusCallout]);

    host.answer(
        "200",
        JSON,
        r#"{"app":"shop-front","target":"shop-front","ready":true,"region":"osc-fr1","upstream_host":"shop-front.osc-fr1.scalingo.io","apps":[{"app":"shop-front","state":"running"}]}"#,
    );
    stream.on_call_answer(&host, 1, 2, 10);
    let calls = host.take_calls();
    assert!(matches!(&calls[0], Call::SetShared(key, _) if key == "paastis/app/shop-front"));
    let reply = the_reply(&calls);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["ready"], true);
    assert!(headers_set(&calls).is_empty(), "never routed");

    // Now in the cache: no callout.
    status(&host);
    let mut stream = Stream::new(Some(shared));
    stream.on_request_headers(&host);
    let calls = host.take_calls();
    assert_eq!(the_reply(&calls).json()["ready"], true);
    assert!(!calls.iter().any(|c| matches!(c, Call::Dispatch(_))));
}

#[test]
fn hosts_are_rejected_or_passed_with_their_counter() {
    let host = FakeHost::at(NOW);
    get(&host, "bad--name.gw.example.com", &[]);
    let mut stream = Stream::new(Some(shared("")));
    assert_eq!(stream.on_request_headers(&host), Flow::Pause);
    let calls = host.take_calls();
    assert_eq!(the_reply(&calls).status, 400);
    assert_eq!(counts(&calls), [Metric::HostRejected]);

    get(&host, "elsewhere.example.org", &[]);
    let mut stream = Stream::new(Some(shared(r#","unmatched_hosts":"pass""#)));
    assert_eq!(stream.on_request_headers(&host), Flow::Continue);
    let calls = host.take_calls();
    assert_eq!(counts(&calls), [Metric::Unmatched]);
    assert!(headers_set(&calls).is_empty());
}

#[test]
fn an_answer_to_another_callout_is_ignored() {
    let host = FakeHost::at(NOW);
    get(&host, "my-app.gw.example.com", &[]);
    let mut stream = Stream::new(Some(shared("")));
    stream.on_request_headers(&host);
    host.take_calls();
    host.answer("200", JSON, "{}");
    stream.on_call_answer(&host, 42, 2, 2);
    assert_eq!(host.take_calls(), []);
    host.answer("404", JSON, r#"{"error":"unknown_app","message":"no"}"#);
    stream.on_call_answer(&host, 1, 2, 10);
    let calls = host.take_calls();
    assert_eq!(the_reply(&calls).status, 404);
    assert_eq!(counts(&calls), [Metric::HostRejected]);
}

#[test]
fn the_tick_flushes_activity_and_refreshes_the_cache() {
    let host = FakeHost::at(NOW);
    let shared = shared("");
    let mut flusher = Flusher::default();
    flusher.tick(&host, &shared);
    assert_eq!(host.take_calls(), [], "nothing to flush");

    shared.with_activity(|a| {
        a.served("app-two");
        a.served("app-one");
    });
    flusher.tick(&host, &shared);
    let calls = host.take_calls();
    assert_eq!(counts(&calls), [Metric::ActivityFlush]);
    let d = the_dispatch(&calls);
    assert_eq!(
        d.headers,
        set(&[
            (":method", "POST"),
            (":path", "/v1/activity"),
            (":authority", "paastis-sidecar"),
            ("content-type", "application/json"),
        ])
    );
    assert_eq!(
        d.body,
        Some(format!(
            r#"{{"apps":["app-one","app-two"]{}}}"#,
            renewal(&shared)
        ))
    );
    assert_eq!(d.timeout_ms, 10_000);

    host.answer(
        "200",
        JSON,
        r#"{"awake":[{"app":"app-one","region":"osc-fr1","upstream_host":"app-one.osc-fr1.scalingo.io"}]}"#,
    );
    flusher.on_call_answer(&host, &shared, 1, 2, 10);
    let calls = host.take_calls();
    assert_eq!(
        calls,
        [Call::SetShared(
            "paastis/app/app-one".into(),
            cache::encode(NOW + 30_000, "fr1", "app-one.osc-fr1.scalingo.io")
        )]
    );
}

#[test]
fn a_failed_or_lost_flush_is_merged_back() {
    let host = FakeHost::at(NOW);
    let shared = shared("");
    let mut flusher = Flusher::default();
    let pending = |shared: &Shared| {
        let mut n = 0;
        shared.with_activity(|a| n = a.pending());
        n
    };

    shared.with_activity(|a| a.served("app-one"));
    host.refuse_dispatch.set(true);
    flusher.tick(&host, &shared);
    assert_eq!(counts(&host.take_calls()), [Metric::ActivityFlushError]);
    assert_eq!(pending(&shared), 1);

    host.refuse_dispatch.set(false);
    flusher.tick(&host, &shared);
    assert_eq!(counts(&host.take_calls()), [Metric::ActivityFlush]);
    assert_eq!(pending(&shared), 0);
    host.answer("503", "text/plain", "down");
    flusher.on_call_answer(&host, &shared, 1, 2, 4);
    assert_eq!(counts(&host.take_calls()), [Metric::ActivityFlushError]);
    assert_eq!(pending(&shared), 1);

    // A flush whose answer never comes blocks the next ones only until its
    // timeout and a margin have passed.
    flusher.tick(&host, &shared);
    host.take_calls();
    shared.with_activity(|a| a.served("app-two"));
    host.advance(15_000);
    flusher.tick(&host, &shared);
    assert_eq!(host.take_calls(), [], "still waiting");
    host.advance(1);
    flusher.tick(&host, &shared);
    let calls = host.take_calls();
    assert_eq!(
        counts(&calls),
        [Metric::ActivityFlushError, Metric::ActivityFlush]
    );
    assert_eq!(
        the_dispatch(&calls).body,
        Some(format!(
            r#"{{"apps":["app-one","app-two"]{}}}"#,
            renewal(&shared)
        ))
    );
}
