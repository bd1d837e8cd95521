//! Long responses through the shipped routes: no total route timeout cuts
//! them (defect 8 of issue 10: a 60 s `timeout` killed server-sent events
//! and long downloads at 61 s). Real Envoy on `envoy/fake.yaml.tmpl`, the
//! sidecar, the fake Scalingo's front streaming `GET /stream`.

use std::time::Duration;

use paastis_e2e::fake::FakeApp;
use paastis_e2e::harness::{Stack, StackOptions};

const APP: &str = "stream-app";
/// 14 chunks 5 s apart: the last one 65 s after the first, past the 60 s a
/// total route timeout used to allow, and each gap well under the route's
/// idle timeout.
const CHUNKS: u64 = 14;
const INTERVAL_MS: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_a_minute_arrives_whole() {
    let stack = Stack::start(StackOptions {
        // Running already: the test is about the stream, not the wake.
        apps: vec![FakeApp::web(APP, "osc-fr1", 1)],
        ..StackOptions::default()
    })
    .await;
    // The stack's client gives up after 60 s: this one only when the test
    // has failed anyway.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(180))
        .build()
        .unwrap();
    let response = client
        .get(format!(
            "http://{}/stream?chunks={CHUNKS}&interval_ms={INTERVAL_MS}",
            stack.envoy.listen
        ))
        .header("host", format!("{APP}.gateway.example.com"))
        .send()
        .await
        .expect("the stream starts");
    assert_eq!(response.status(), 200);
    let mut response = response;
    let mut body = String::new();
    let mut error = None;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => body.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) => break,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let expected: String = (0..CHUNKS).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(
        body,
        expected,
        "every chunk arrived (stream error: {error:?}); Envoy log:\n{}",
        stack.envoy.log()
    );
    assert!(error.is_none(), "{error:?}");
    assert!(
        !stack.envoy.log().contains("upstream_rq_timeout")
            && stack.envoy.counter("upstream_rq_timeout") == 0,
        "no route timeout fired"
    );
}
