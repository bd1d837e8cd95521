//! Native tests of `failure_policy: open` for an app whose region is known:
//! with the sidecar unreachable, an app the cache last saw in another
//! region goes there (its entry expired), not to `default_region`.

use std::rc::Rc;

use crate::cache;
use crate::fake_host::{headers_set, FakeHost};
use crate::host::Flow;
use crate::shared::Shared;
use crate::stream::Stream;

const NOW: u64 = 1_700_000_000_000;

fn open() -> Rc<Shared> {
    let json = r#"{"sidecar_cluster":"sidecar","domains":["gw.example.com"],"failure_policy":"open","region_clusters":{"osc-fr1":"fr1","osc-secnum-fr1":"secnum"}}"#;
    Rc::new(Shared::configure(json.as_bytes(), None).unwrap())
}

fn get(host: &FakeHost, authority: &str) {
    host.request(&[
        (":method", "GET"),
        (":path", "/"),
        (":authority", authority),
    ]);
}

/// The cluster and authority the request was routed to.
fn routed(host: &FakeHost) -> (String, String) {
    let set = headers_set(&host.take_calls());
    let find = |name: &str| {
        set.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    (find("x-paastis-cluster"), find(":authority"))
}

#[test]
fn the_region_the_cache_last_knew_wins_over_default_region() {
    let host = FakeHost::at(NOW);
    // Expired long ago: not a route, but the region is still known.
    host.put_shared(
        &cache::key("vault-app"),
        &cache::encode(
            NOW - 3_600_000,
            "secnum",
            "vault-app.osc-secnum-fr1.scalingo.io",
        ),
    );

    // The callout cannot even be sent.
    host.refuse_dispatch.set(true);
    get(&host, "vault-app.gw.example.com");
    let mut stream = Stream::new(Some(open()));
    assert_eq!(stream.on_request_headers(&host), Flow::Continue);
    assert_eq!(
        routed(&host),
        (
            "secnum".into(),
            "vault-app.osc-secnum-fr1.scalingo.io".into()
        )
    );

    // The callout is sent but no usable answer comes back.
    host.refuse_dispatch.set(false);
    get(&host, "vault-app.gw.example.com");
    let mut stream = Stream::new(Some(open()));
    assert_eq!(stream.on_request_headers(&host), Flow::Pause);
    host.take_calls();
    host.answer("503", "text/plain", "upstream connect error");
    stream.on_call_answer(&host, 1, 1, 10);
    assert_eq!(
        routed(&host),
        (
            "secnum".into(),
            "vault-app.osc-secnum-fr1.scalingo.io".into()
        )
    );
}

#[test]
fn an_app_never_seen_goes_to_default_region() {
    let host = FakeHost::at(NOW);
    host.refuse_dispatch.set(true);
    get(&host, "fresh-app.gw.example.com");
    let mut stream = Stream::new(Some(open()));
    assert_eq!(stream.on_request_headers(&host), Flow::Continue);
    assert_eq!(
        routed(&host),
        ("fr1".into(), "fresh-app.osc-fr1.scalingo.io".into())
    );
}
