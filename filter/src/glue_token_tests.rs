//! Native tests of the filter's `sidecar_token`: every kind of callout
//! carries it (wake, status, activity), none carries one when it is not
//! configured, and the configuration never shows it.

use std::rc::Rc;

use crate::fake_host::{the_dispatch, FakeHost};
use crate::flusher::Flusher;
use crate::host::Flow;
use crate::shared::Shared;
use crate::stream::Stream;
use crate::waiting::STATUS_PATH;

const NOW: u64 = 1_700_000_000_000;
const TOKEN: &str = "0123456789abcdef-filter-secret";

fn shared(with_token: bool) -> Rc<Shared> {
    let token = if with_token {
        format!(r#","sidecar_token":"{TOKEN}""#)
    } else {
        String::new()
    };
    let json = format!(r#"{{"sidecar_cluster":"sidecar","domains":["gw.example.com"]{token}}}"#);
    Rc::new(Shared::configure(json.as_bytes(), None).unwrap())
}

/// The `authorization` header of each callout: a wake, a status, an
/// activity flush.
fn callout_authorizations(shared: &Rc<Shared>) -> Vec<Option<String>> {
    let host = FakeHost::at(NOW);
    let authorization = |host: &FakeHost| {
        the_dispatch(&host.take_calls())
            .headers
            .iter()
            .find(|(name, _)| name == "authorization")
            .map(|(_, value)| value.clone())
    };
    let mut seen = Vec::new();
    for path in ["/", STATUS_PATH] {
        host.request(&[
            (":method", "GET"),
            (":path", path),
            (":authority", "shop-front.gw.example.com"),
        ]);
        let mut stream = Stream::new(Some(Rc::clone(shared)));
        assert_eq!(stream.on_request_headers(&host), Flow::Pause);
        seen.push(authorization(&host));
    }
    shared.with_activity(|a| a.served("shop-front"));
    Flusher::default().tick(&host, shared);
    seen.push(authorization(&host));
    seen
}

#[test]
fn every_callout_carries_the_sidecar_token() {
    let expected = Some(format!("Bearer {TOKEN}"));
    assert_eq!(callout_authorizations(&shared(true)), vec![expected; 3]);
}

#[test]
fn no_token_configured_no_authorization_sent() {
    assert_eq!(callout_authorizations(&shared(false)), vec![None; 3]);
}

#[test]
fn the_configuration_never_shows_the_token() {
    let shared = shared(true);
    let shown = format!("{:?}", shared.config);
    assert!(!shown.contains(TOKEN), "{shown}");
    let e = Shared::configure(
        br#"{"sidecar_cluster":"s","domains":["gw.example.com"],"sidecar_token":"short-secret"}"#,
        None,
    )
    .err()
    .unwrap();
    assert!(
        e.starts_with("invalid configuration: sidecar_token:"),
        "{e}"
    );
    assert!(!e.contains("short-secret"), "{e}");
}
