//! The sidecar's listeners against hostile clients: the filter's token
//! (missing, wrong, right, any scheme case), the header-read timeout and the
//! connection cap. In process, on loopback, against the fake Scalingo.

use std::sync::Arc;
use std::time::Duration;

use paastis_e2e::fake::{FakeApp, FakeScalingo};
use paastis_e2e::setup::{fake_with, sidecar_env};
use paastis_sidecar::config::{env_from_map, Config, Env};
use paastis_sidecar::listener::Limits;
use paastis_sidecar::scalingo::Secret;
use paastis_sidecar::server::ServeOptions;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "sidecar-token-for-tests-0123";

struct Api {
    _fake: FakeScalingo,
    addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(token: Option<&str>, limits: Limits) -> Api {
    let fake = fake_with(
        vec![FakeApp::web("shop-front", "osc-fr1", 0)],
        Duration::from_millis(100),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("paastis.yml");
    std::fs::write(&rules, "").unwrap();
    let vars = sidecar_env(&fake, &rules, &[]);
    let get = env_from_map(&vars);
    let config = Config::from_env(&Env::new(&get)).expect("valid config");
    let gateway = paastis_sidecar::build(&config).await.expect("builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(paastis_sidecar::server::run_with(
        listener,
        Arc::clone(&gateway.waker),
        ServeOptions {
            token: token.map(Secret::new),
            limits,
        },
        async {
            let _ = stopped.await;
        },
    ));
    Api {
        _fake: fake,
        addr,
        _stop: stop,
        _dir: dir,
    }
}

/// `method path` with `authorization` (if any): status and JSON body (null
/// when not JSON).
async fn call(
    api: &Api,
    method: &str,
    path: &str,
    body: Option<Value>,
    authorization: Option<&str>,
) -> (u16, Value, Option<String>) {
    let client = reqwest::Client::new();
    let url = format!("http://{}{path}", api.addr);
    let mut request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        challenge,
    )
}

fn filter_calls() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("POST", "/v1/wake", Some(json!({"app": "shop-front"}))),
        (
            "POST",
            "/v1/activity",
            Some(json!({"apps": ["shop-front"]})),
        ),
        ("GET", "/v1/status?app=shop-front", None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_endpoints_require_the_token() {
    let api = start(Some(TOKEN), Limits::default()).await;
    let wrong = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");
    let refused: [Option<&str>; 5] = [
        None,
        Some(wrong.as_str()),
        Some("Bearer sidecar-token-for-tests-012"),
        Some(basic.as_str()),
        Some("Bearer "),
    ];
    for (method, path, body) in filter_calls() {
        for authorization in refused {
            let (status, answer, challenge) =
                call(&api, method, path, body.clone(), authorization).await;
            assert_eq!(status, 401, "{method} {path} with {authorization:?}");
            assert_eq!(answer["error"], "unauthorized", "{answer}");
            assert!(
                !answer.to_string().contains(TOKEN),
                "the answer never echoes a token"
            );
            assert_eq!(
                challenge.as_deref(),
                Some("Bearer realm=\"paastis-sidecar\"")
            );
        }
    }
    // Nothing refused reached the wake: the app was never scaled.
    assert_eq!(api._fake.scale_calls("shop-front"), 0);

    // The right token, with the scheme in any case (RFC 7235).
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let authorization = format!("{scheme} {TOKEN}");
        for (method, path, body) in filter_calls() {
            let (status, answer, _) =
                call(&api, method, path, body, Some(authorization.as_str())).await;
            assert_eq!(status, 200, "{method} {path} with {scheme}: {answer}");
        }
    }
    // Probes and scrapers carry no token.
    for path in ["/healthz", "/metrics"] {
        let (status, _, _) = call(&api, "GET", path, None, None).await;
        assert_eq!(status, 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_filter_endpoints_are_open() {
    let api = start(None, Limits::default()).await;
    let (status, _, _) = call(
        &api,
        "POST",
        "/v1/activity",
        Some(json!({"apps": ["shop-front"]})),
        None,
    )
    .await;
    assert_eq!(status, 200);
}

/// Reads until the peer closes (or resets) the connection.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_cannot_hold_a_socket() {
    let api = start(
        None,
        Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    )
    .await;
    // Half a request head, then nothing: the sidecar hangs up. (The bound is
    // a failure bound, far above the timeout: no timing is asserted.)
    let mut slow = TcpStream::connect(api.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\nX-Slow: ")
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(20), closed_by_peer(&mut slow)).await;
    assert_eq!(closed, Ok(true), "the slow connection is closed");

    // A connection that sends nothing at all, too.
    let mut silent = TcpStream::connect(api.addr).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(20), closed_by_peer(&mut silent)).await;
    assert_eq!(closed, Ok(true), "the silent connection is closed");

    // Prompt clients are served.
    let (status, _, _) = call(&api, "GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_for_a_free_one() {
    let api = start(
        None,
        Limits {
            // Long: the held connections stay until the test drops them.
            header_read_timeout: Duration::from_secs(120),
            max_connections: 2,
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(api.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    let addr = api.addr;
    let third = tokio::spawn(async move {
        let client = reqwest::Client::new();
        client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    // Not served while both slots are held (checked over a short window: a
    // served request would answer within it on loopback).
    let mut third = third;
    let early = tokio::time::timeout(Duration::from_millis(500), &mut third).await;
    assert!(early.is_err(), "served past the cap: {early:?}");
    // One slot frees: the waiting connection is served.
    drop(held.pop());
    let served = tokio::time::timeout(Duration::from_secs(20), third).await;
    assert!(
        matches!(served, Ok(Ok(Ok(200)))),
        "served once a slot freed: {served:?}"
    );
}

/// The binary with `vars` (and a valid Scalingo token): its exit code and
/// standard error.
fn run_binary(vars: &[(&str, &str)]) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(paastis_e2e::harness::sidecar_bin());
    cmd.env_clear()
        .current_dir(dir.path())
        .env("PROVIDER_SCALINGO_API_TOKEN", "tk-us-dummy-token")
        .env("PAASTIS_RULES_FILE", "/dev/null");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the sidecar binary runs (make build)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.stdout.is_empty(),
    )
}

#[test]
fn blank_tokens_and_an_exposed_listener_without_a_token_exit_64() {
    for (name, value) in [
        ("PAASTIS_ADMIN_TOKEN", "   "),
        ("PAASTIS_ADMIN_TOKEN", ""),
        ("PAASTIS_SIDECAR_TOKEN", " "),
    ] {
        let (code, stderr, nothing_bound) =
            run_binary(&[(name, value), ("PAASTIS_LISTEN", "127.0.0.1:0")]);
        assert_eq!(code, Some(64), "{name}={value:?}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid configuration: {name}: is set but blank")),
            "{stderr}"
        );
        assert!(nothing_bound);
    }
    let (code, stderr, nothing_bound) = run_binary(&[("PAASTIS_LISTEN", "0.0.0.0:0")]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr
            .contains("invalid configuration: PAASTIS_LISTEN: 0.0.0.0:0 is not a loopback address"),
        "{stderr}"
    );
    assert!(nothing_bound);
    let (code, stderr, _) = run_binary(&[
        ("PAASTIS_LISTEN", "0.0.0.0:0"),
        ("PAASTIS_SIDECAR_TOKEN", "short-secret"),
    ]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(!stderr.contains("short-secret"), "never echoed: {stderr}");
}
