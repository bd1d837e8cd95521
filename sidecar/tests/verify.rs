//! The sidecar's side of "the traffic tells the truth", through its HTTP
//! API against the fake Scalingo: apps the filter reports not running
//! (`not_running` in an activity batch, `verify` on a wake) are checked once
//! per period, forgotten when they do not run, and woken by the next wake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paastis_e2e::fake::{Endpoint, FakeApp, FakeScalingo};
use paastis_e2e::setup::{fake_with, sidecar_env};
use paastis_sidecar::config::{env_from_map, Config, Env};
use serde_json::{json, Value};

const APP: &str = "shop-front";

struct Api {
    fake: FakeScalingo,
    addr: SocketAddr,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Self {
        let fake = fake_with(
            vec![FakeApp::web(APP, "osc-fr1", 0)],
            Duration::from_millis(200),
        )
        .await;
        let dir = tempfile::tempdir().expect("dir");
        let rules = dir.path().join("paastis.yml");
        std::fs::write(&rules, "").expect("rules");
        let vars = sidecar_env(&fake, &rules, &[]);
        let get = env_from_map(&vars);
        let config = Config::from_env(&Env::new(&get)).expect("valid config");
        let gateway = paastis_sidecar::build(&config).await.expect("gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(paastis_sidecar::server::run(
            listener,
            Arc::clone(&gateway.waker),
            std::future::pending(),
        ));
        Self {
            fake,
            addr,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let answer = self
            .client
            .post(format!("http://{}{path}", self.addr))
            .json(&body)
            .send()
            .await
            .expect("sidecar");
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    async fn activity(&self, not_running: &[&str]) -> Value {
        let (status, body) = self
            .post(
                "/v1/activity",
                json!({"apps": [APP], "not_running": not_running}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_to_verify_finds_an_app_stopped_outside_and_wakes_it() {
    let api = Api::start().await;
    let (status, _) = api.post("/v1/wake", json!({"app": APP})).await;
    assert_eq!(status, 200);
    let awake = api.activity(&[]).await;
    assert_eq!(awake["awake"][0]["app"], APP, "{awake}");

    assert!(api.fake.stop_app(APP));
    // From memory, the sidecar still takes it as awake; asked to verify,
    // it checks first, forgets it, and wakes it.
    let (status, body) = api
        .post("/v1/wake", json!({"app": APP, "verify": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.fake.scale_calls(APP), 2);
    assert!(api.fake.app(APP).expect("app").web_running);
    let awake = api.activity(&[]).await;
    assert_eq!(awake["awake"][0]["app"], APP, "{awake}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_checked_once_per_period_and_answered_asleep() {
    let api = Api::start().await;
    let (status, _) = api.post("/v1/wake", json!({"app": APP})).await;
    assert_eq!(status, 200);
    assert!(api.fake.stop_app(APP));
    let reads = api.fake.calls(Endpoint::GetApp);

    // Every worker of every Envoy reports it: one check.
    for _ in 0..20 {
        let answer = api.activity(&[APP]).await;
        assert_eq!(answer["awake"], json!([]), "{answer}");
        assert_eq!(answer["asleep"], json!([APP]), "{answer}");
    }
    // The check runs in the background; its one status read forgets the
    // app, after which it is asleep without being reported.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = api.activity(&[]).await;
        if answer["asleep"] == json!([APP]) {
            break;
        }
        assert!(Instant::now() < deadline, "not forgotten: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // At most one (none if a scheduler pass forgot it first).
    assert!(api.fake.calls(Endpoint::GetApp) - reads <= 1);
    assert_eq!(api.fake.scale_calls(APP), 1, "a report wakes nothing");
}
