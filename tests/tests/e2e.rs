//! End-to-end: real Envoy with the built `.wasm`, the sidecar binary, the
//! fake Scalingo. Every test starts its own stack (ports chosen by the
//! kernel) and tears it down; a failing test prints Envoy's and the
//! sidecar's logs.

use std::time::Duration;

use paastis_e2e::fake::{Endpoint, FakeApp, Fault, FaultKind};
use paastis_e2e::harness::{Stack, StackOptions};

const FRONT: &str = "shop-front";
const API: &str = "shop-api-1";

fn sleeping(name: &str, region: &str) -> FakeApp {
    FakeApp::web(name, region, 0)
}

fn host(app: &str) -> String {
    format!("{app}.gateway.example.com")
}

/// Calls to the app-scoped Scalingo endpoints. The sidecar's scheduler lists
/// apps on its own timer (token exchange, regions, app lists), so tests that
/// check "Scalingo was not asked about this request" count only these.
fn app_api_calls(stack: &Stack) -> usize {
    [
        Endpoint::GetApp,
        Endpoint::Containers,
        Endpoint::Scale,
        Endpoint::Operation,
        Endpoint::Ps,
    ]
    .iter()
    .map(|e| stack.fake.calls(*e))
    .sum()
}

async fn stack_with(apps: Vec<FakeApp>) -> Stack {
    Stack::start(StackOptions {
        apps,
        ..StackOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_app_is_woken_by_its_first_request_and_then_served_without_callouts() {
    let stack = stack_with(vec![sleeping(FRONT, "osc-fr1")]).await;
    assert!(!stack.fake.app(FRONT).unwrap().web_running);

    let first = stack.get(&host(FRONT), "/products?page=2").await;
    assert_eq!(first.status, 200, "{first:?}");
    let body = first.json();
    assert_eq!(
        body["app"], FRONT,
        "served by the app itself, not the front's 503 page"
    );
    assert_eq!(body["region"], "osc-fr1");
    assert_eq!(body["path"], "/products");
    assert_eq!(body["query"], "page=2");
    assert_eq!(body["headers"]["x-forwarded-host"], host(FRONT));
    assert_eq!(stack.fake.scale_calls(FRONT), 1);
    assert!(stack.fake.app(FRONT).unwrap().web_running);
    assert_eq!(stack.envoy.counter("paastis.callout"), 1);

    let scalingo_calls = app_api_calls(&stack);
    for _ in 0..20 {
        let again = stack.get(&host(FRONT), "/").await;
        assert_eq!(again.status, 200);
        assert_eq!(again.json()["app"], FRONT);
    }
    // Served from the filter's cache: no callout, no Scalingo call.
    assert_eq!(stack.envoy.counter("paastis.callout"), 1);
    // Hits are counted in the VM and reach Envoy's counter on the root
    // context's tick (every 500 ms in the test configuration).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stack.envoy.counter("paastis.cache_hit") < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hits never reached the counter"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = app_api_calls(&stack);
    assert_eq!(after, scalingo_calls);
    assert_eq!(stack.fake.scale_calls(FRONT), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_apps_are_woken_with_the_app() {
    let stack = Stack::start(StackOptions {
        apps: vec![sleeping(FRONT, "osc-fr1"), sleeping(API, "osc-fr1")],
        rules_yaml: "rules:\n  - pattern: '^(.*)-front$'\n    linked_apps: ['$1-api-1']\n"
            .to_owned(),
        ..StackOptions::default()
    })
    .await;
    let reply = stack.get(&host(FRONT), "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        stack.fake.app(API).unwrap().web_running,
        "the linked app runs too"
    );
    assert_eq!(stack.fake.scale_calls(API), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_first_requests_make_one_scale_call() {
    let stack = stack_with(vec![sleeping(FRONT, "osc-fr1")]).await;
    stack.fake.set_boot_delay(Duration::from_millis(800));
    let requests = (0..50).map(|i| {
        let stack = &stack;
        async move { stack.get(&host(FRONT), &format!("/item/{i}")).await }
    });
    let replies = futures::future::join_all(requests).await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json()["app"], FRONT);
    }
    assert_eq!(stack.fake.scale_calls(FRONT), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_routed_to_their_region() {
    let stack = stack_with(vec![
        sleeping("bank-app", "osc-secnum-fr1"),
        FakeApp::web("blog-app", "osc-fr1", 1),
    ])
    .await;
    // Found by listing the regions (no rule pins it).
    let reply = stack.get(&host("bank-app"), "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["region"], "osc-secnum-fr1");
    assert_eq!(
        reply.json()["headers"]["host"],
        "bank-app.osc-secnum-fr1.scalingo.io"
    );
    assert_eq!(stack.fake.front_hits("bank-app"), 1);

    // Pinned by the host rule of the test config.
    let reply = stack.get("bank-app.secure.example.com", "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["region"], "osc-secnum-fr1");

    // An app already running is not scaled.
    let reply = stack.get(&host("blog-app"), "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["region"], "osc-fr1");
    assert_eq!(stack.fake.scale_calls("blog-app"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_apps_get_404_and_invalid_hosts_get_400_without_any_scalingo_call() {
    let stack = stack_with(vec![sleeping(FRONT, "osc-fr1")]).await;

    for (bad, code) in [
        ("x.gateway.example.com", "invalid_app"),
        ("bad--name.gateway.example.com", "invalid_app"),
        ("UPPER_case.gateway.example.com", "invalid_host"),
        ("app%2f..gateway.example.com", "invalid_host"),
        ("shop-front.gateway.example.com:99999", "invalid_host"),
    ] {
        let reply = stack.get(bad, "/").await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
        assert_eq!(reply.json()["error"], code, "{bad}");
    }
    assert_eq!(stack.envoy.counter("paastis.callout"), 0);
    assert_eq!(
        app_api_calls(&stack),
        0,
        "no Scalingo call for invalid hosts"
    );
    // Nothing forwarded (the sidecar's start-up check of the fronts is a
    // probe, no app's hit).
    assert_eq!(stack.fake.front_hits(FRONT), 0);
    assert_eq!(stack.fake.front_hits("x"), 0);

    let reply = stack.get(&host("nobody-here"), "/").await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(reply.json()["error"], "unknown_app");

    // A host outside every rule is refused (unmatched_hosts: reject).
    let reply = stack.get("example.org", "/").await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(stack.fake.scale_calls(FRONT), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_html_and_api_clients_json() {
    let stack = stack_with(vec![]).await;
    let reply = stack
        .request(
            &host("nobody-here"),
            "/",
            &[("accept", "text/html,application/xhtml+xml")],
        )
        .await;
    assert_eq!(reply.status, 404);
    assert!(
        reply
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{reply:?}"
    );
    assert!(reply.body.contains("nobody-here"));
    let reply = stack
        .request(&host("nobody-here"), "/", &[("accept", "application/json")])
        .await;
    assert!(
        reply
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_routing_header_changes_nothing() {
    let stack = stack_with(vec![FakeApp::web("blog-app", "osc-fr1", 1)]).await;
    let spoof = [
        ("x-paastis-cluster", "osc-secnum-fr1"),
        ("x-paastis-upstream", "evil.example.com"),
    ];
    // Cold (through the sidecar) and then hot (from the cache).
    for _ in 0..2 {
        let reply = stack.request(&host("blog-app"), "/", &spoof).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json()["region"], "osc-fr1");
        assert!(reply.json()["headers"].get("x-paastis-upstream").is_none());
    }
    // A host that maps to no app cannot be routed by the header either.
    let reply = stack
        .request("example.org", "/", &[("x-paastis-cluster", "osc-fr1")])
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(stack.fake.front_hits("blog-app"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_down_cold_apps_are_held_then_get_503_hot_apps_still_served() {
    let mut stack = stack_with(vec![
        FakeApp::web("blog-app", "osc-fr1", 1),
        sleeping(FRONT, "osc-fr1"),
    ])
    .await;
    assert_eq!(stack.get(&host("blog-app"), "/").await.status, 200);

    stack.sidecar.stop();

    // Envoy's route to the sidecar retries the refused connections (a
    // restart would be over by then), then the filter answers our 503.
    let cold = stack.get(&host(FRONT), "/").await;
    assert_eq!(cold.status, 503, "{cold:?}");
    assert!(cold.header("retry-after").is_some(), "{cold:?}");
    let direct = |name: &str| {
        stack
            .envoy
            .counter(&format!("cluster.paastis_sidecar.{name}"))
    };
    assert!(direct("upstream_cx_connect_fail") >= 2);
    assert!(direct("upstream_rq_retry") >= 1);
    assert_eq!(direct("upstream_rq_timeout"), 0);
    assert_eq!(
        stack
            .envoy
            .counter("cluster.paastis_sidecar.upstream_rq_timeout"),
        0
    );
    assert_eq!(stack.fake.scale_calls(FRONT), 0);

    let hot = stack.get(&host("blog-app"), "/").await;
    assert_eq!(hot.status, 200, "{hot:?}");
    assert_eq!(hot.json()["app"], "blog-app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scalingo_error_during_a_wake_gives_a_clear_503() {
    let stack = stack_with(vec![sleeping(FRONT, "osc-fr1")]).await;
    stack.fake.inject(
        Fault::new(Endpoint::Scale, FaultKind::Status(500))
            .for_app(FRONT)
            .times(10),
    );
    let reply = stack.get(&host(FRONT), "/").await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.header("retry-after").is_some());
    let body = reply.json();
    assert_eq!(body["error"], "wake_failed");
    assert!(
        body["message"].as_str().unwrap_or("").contains(FRONT),
        "{body}"
    );

    // Once Scalingo answers again, the next request after the failed
    // wake's back-off (its Retry-After; meanwhile 503s that cost no
    // Scalingo call) wakes the app.
    stack.fake.clear_faults();
    let scales = stack.fake.scale_calls(FRONT);
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let reply = stack.get(&host(FRONT), "/").await;
        if reply.status != 503 || std::time::Instant::now() > give_up {
            break reply;
        }
        assert_eq!(stack.fake.scale_calls(FRONT), scales, "backing off");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// Milliseconds since the Unix epoch, the registry's clock.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The last access the sidecar's registry holds for `app`.
async fn registry_access(stack: &Stack, app: &str) -> Option<u64> {
    let url = format!("http://{}/v1/apps", stack.sidecar.addr);
    let apps: serde_json::Value = stack.client.get(url).send().await.ok()?.json().await.ok()?;
    apps["apps"].as_array()?.iter().find(|a| a["app"] == app)?["last_access_ms"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_reaches_the_sidecar_in_batches() {
    let stack = Stack::start(StackOptions {
        apps: vec![sleeping(FRONT, "osc-fr1"), sleeping(API, "osc-fr1")],
        rules_yaml: "rules:\n  - pattern: '^(.*)-front$'\n    linked_apps: ['$1-api-1']\n".into(),
        ..StackOptions::default()
    })
    .await;
    assert_eq!(stack.get(&host(FRONT), "/").await.status, 200);
    // Registered right after the answer (bookkeeping follows it); the
    // scheduler's first pass never forgets it, whatever its listing saw.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let woken_at = loop {
        if let Some(at) = registry_access(&stack, FRONT).await {
            break at;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "registered by the wake"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // The accesses below must read later than the wake's: wait for the
    // wall clock (milliseconds, as the registry keeps it) to move past it.
    while now_ms() <= woken_at {
        tokio::task::yield_now().await;
    }
    let front_host = host(FRONT);
    let requests = (0..40).map(|_| stack.get(&front_host, "/"));
    for reply in futures::future::join_all(requests).await {
        assert_eq!(reply.status, 200);
    }
    // The root context flushes every 500 ms in the test configuration.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let front = registry_access(&stack, FRONT).await.unwrap_or(0);
        let api = registry_access(&stack, API).await.unwrap_or(0);
        if front > woken_at && api > woken_at {
            break; // the front and, as in Paastis, its linked back end
        }
        assert!(
            std::time::Instant::now() < deadline,
            "activity never reached the registry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flushes = stack.envoy.counter("paastis.activity_flush");
    assert!(
        (1..40).contains(&flushes),
        "batched, not one callout per request: {flushes}"
    );
}

#[test]
fn every_shipped_envoy_config_passes_validation() {
    use paastis_e2e::harness::{
        default_filter_config, envoy_bin, render_template, wasm_path, workspace_root,
    };
    let root = workspace_root();
    let validate = |config: &std::path::Path| {
        let out = std::process::Command::new(envoy_bin())
            .current_dir(&root)
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(config)
            .output()
            .expect("envoy runs");
        assert!(
            out.status.success(),
            "{} does not validate:\n{}{}",
            config.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    validate(&root.join("envoy/gateway.yaml"));

    let dir = tempfile::tempdir().unwrap();
    let template = std::fs::read_to_string(root.join("envoy/fake.yaml.tmpl")).unwrap();
    let rendered = render_template(
        &template,
        &[
            ("LISTEN_PORT", "8080".into()),
            ("ADMIN_PORT", "9901".into()),
            ("SIDECAR_PORT", "7070".into()),
            ("FRONT_OSC_FR1_PORT", "9111".into()),
            ("FRONT_OSC_SECNUM_FR1_PORT", "9112".into()),
            ("WASM_PATH", wasm_path().display().to_string()),
            ("FILTER_CONFIG", default_filter_config().to_string()),
        ],
    )
    .unwrap();
    let path = dir.path().join("fake.yaml");
    std::fs::write(&path, rendered).unwrap();
    validate(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_follows_the_wake_from_envoy_to_scalingo_and_the_app() {
    let stack = stack_with(vec![sleeping(FRONT, "osc-fr1")]).await;
    let reply = stack.get(&host(FRONT), "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // Envoy's id for this request, as the app received it.
    let id = reply.json()["headers"]["x-request-id"]
        .as_str()
        .expect("Envoy sets x-request-id")
        .to_owned();
    let log = stack.sidecar.log();
    let scale_line = log
        .lines()
        .find(|l| l.contains("scale started"))
        .unwrap_or_else(|| panic!("no scale in the sidecar log:\n{log}"));
    assert!(
        scale_line.contains(&format!("request_id={id}")),
        "the Scalingo call is logged under the request's id {id}: {scale_line}"
    );
    assert!(
        !log.contains(&stack.fake.config().api_token),
        "no secret in logs"
    );
    // The filter's callouts carried the sidecar's token (the wake was
    // served); the app never sees it, and no log shows it.
    assert!(
        !reply.body.contains(&stack.sidecar.token),
        "the token stays between the filter and the sidecar: {}",
        reply.body
    );
    assert!(
        !log.contains(&stack.sidecar.token),
        "not in the sidecar's log"
    );
    assert!(
        !stack.envoy.log().contains(&stack.sidecar.token),
        "not in Envoy's log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_with_another_token_wakes_nothing() {
    let stack = Stack::start(StackOptions {
        apps: vec![sleeping(FRONT, "osc-fr1")],
        filter: serde_json::json!({ "sidecar_token": "not-the-sidecars-token-0123" }),
        ..StackOptions::default()
    })
    .await;
    let reply = stack.get(&host(FRONT), "/").await;
    // failure_policy: closed: the sidecar's 401 is "unavailable".
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.json()["error"], "unavailable", "{reply:?}");
    assert_eq!(stack.fake.scale_calls(FRONT), 0, "nothing woken");
    assert!(!stack.envoy.log().contains("not-the-sidecars-token-0123"));
}

/// The documents of a multi-document YAML file, as JSON values.
fn yaml_documents(path: &std::path::Path) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            serde_json::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_istio_manifests_agree_with_the_filter_and_the_sidecar() {
    use paastis_e2e::harness::{sidecar_bin, workspace_root};
    let root = workspace_root().join("envoy/istio");
    let dir = tempfile::tempdir().unwrap();
    let plugin_docs = yaml_documents(&root.join("wasmplugin.yaml"));
    let routing = yaml_documents(&root.join("routing.yaml"));
    let sidecar = yaml_documents(&root.join("sidecar.yaml"));

    // The plugin configuration passes the filter's own parser, and maps a
    // host as intended.
    let plugin = &of_kind(&plugin_docs, "WasmPlugin")[0]["spec"];
    assert_eq!(plugin["failStrategy"], "FAIL_CLOSE");
    let config = &plugin["pluginConfig"];
    let plugin_json = dir.path().join("plugin.json");
    std::fs::write(&plugin_json, config.to_string()).unwrap();
    let out = std::process::Command::new(sidecar_bin())
        .env_clear()
        .env("PROVIDER_SCALINGO_API_TOKEN", "tk-us-dummy")
        .env("PAASTIS_RULES_FILE", "/dev/null")
        .arg("check-config")
        .arg("--filter-config")
        .arg(&plugin_json)
        .arg("shop-front.gateway.example.com")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("app shop-front,"), "{stdout}");

    // The VirtualService matches exactly the values the filter sets, and
    // every destination has its ServiceEntry and DestinationRule.
    let mut header_values: Vec<String> = config["region_clusters"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    header_values.sort();
    let vs = &of_kind(&routing, "VirtualService")[0]["spec"];
    let mut matched = Vec::new();
    for route in vs["http"].as_array().unwrap() {
        let Some(matches) = route["match"].as_array() else {
            assert_eq!(route["directResponse"]["status"], 404, "{route}");
            continue;
        };
        let value = matches[0]["headers"][config["routing_header"].as_str().unwrap()]["exact"]
            .as_str()
            .unwrap();
        matched.push(value.to_owned());
        let host = route["route"][0]["destination"]["host"].as_str().unwrap();
        assert!(
            of_kind(&routing, "ServiceEntry")
                .iter()
                .any(|se| se["spec"]["hosts"][0] == host),
            "{host} has no ServiceEntry"
        );
        assert!(
            of_kind(&routing, "DestinationRule")
                .iter()
                .any(|dr| dr["spec"]["host"] == host
                    && dr["spec"]["trafficPolicy"]["tls"]["mode"] == "SIMPLE"),
            "{host} has no TLS DestinationRule"
        );
        assert_eq!(
            route["headers"]["request"]["remove"][0], config["routing_header"],
            "the routing header never leaves the gateway"
        );
    }
    matched.sort();
    assert_eq!(matched, header_values);

    // The Deployment's environment is a valid sidecar configuration (secrets
    // replaced by dummies), with the ConfigMap's rules.
    let rules = of_kind(&sidecar, "ConfigMap")[0]["data"]["paastis.yml"]
        .as_str()
        .unwrap();
    let rules_file = dir.path().join("paastis.yml");
    std::fs::write(&rules_file, rules).unwrap();
    let deployment = of_kind(&sidecar, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut cmd = std::process::Command::new(sidecar_bin());
    cmd.env_clear().arg("check-config");
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        let value = match (var["value"].as_str(), name) {
            (_, "PAASTIS_RULES_FILE") => rules_file.display().to_string(),
            (Some(v), _) => v.to_owned(),
            (None, "REGISTRY_REDIS_URL") => "redis://:pw@127.0.0.1:6390/0".to_owned(),
            (None, "PAASTIS_ADMIN_TOKEN") => "0123456789abcdef0123456789abcdef".to_owned(),
            (None, "PAASTIS_SIDECAR_TOKEN") => "fedcba9876543210fedcba9876543210".to_owned(),
            (None, "PROVIDER_SCALINGO_API_TOKEN") => "tk-us-dummy".to_owned(),
            (None, _) => "pod-1".to_owned(),
        };
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("registry           redis"), "{stdout}");
    assert!(!stdout.contains(":pw@"), "no secret printed: {stdout}");
    assert!(
        !stdout.contains("fedcba9876543210"),
        "no token printed: {stdout}"
    );

    istio_policies_admit_only_the_gateway(&plugin_docs, &sidecar, config, container);
}

/// The sidecar's API is no open door: it listens beyond loopback only with
/// a token taken from the secret, the filter sends one, and the policies
/// select the sidecar's pods and admit only the ingress gateway (the
/// `WasmPlugin`'s pods) on the Service's port.
fn istio_policies_admit_only_the_gateway(
    plugin_docs: &[serde_json::Value],
    sidecar: &[serde_json::Value],
    plugin_config: &serde_json::Value,
    container: &serde_json::Value,
) {
    let env = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("the Deployment sets no {name}"))
    };
    assert_eq!(
        env("PAASTIS_SIDECAR_TOKEN")["valueFrom"]["secretKeyRef"]["name"],
        "paastis-secrets",
        "the token comes from the secret, never from the manifest"
    );
    let listen = env("PAASTIS_LISTEN")["value"].as_str().unwrap().to_owned();
    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        plugin_config["sidecar_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 16),
        "the filter sends a sidecar_token: {plugin_config}"
    );
    assert!(
        plugin_config["sidecar_cluster"]
            .as_str()
            .unwrap()
            .starts_with(&format!("outbound|{port}||")),
        "the filter calls the port the sidecar listens on"
    );

    let gateway_labels = &of_kind(plugin_docs, "WasmPlugin")[0]["spec"]["selector"]["matchLabels"];
    let deployment = of_kind(sidecar, "Deployment")[0];
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selects_the_sidecar = |selector: &serde_json::Value| {
        let selector = selector.as_object().expect("a label selector");
        !selector.is_empty() && selector.iter().all(|(k, v)| &pod_labels[k] == v)
    };
    let services = of_kind(sidecar, "Service");
    assert_eq!(services[0]["spec"]["ports"][0]["port"], port);

    let peer = of_kind(sidecar, "PeerAuthentication");
    assert_eq!(peer.len(), 1);
    assert_eq!(peer[0]["spec"]["mtls"]["mode"], "STRICT");

    let authz = of_kind(sidecar, "AuthorizationPolicy");
    assert_eq!(authz.len(), 1, "one AuthorizationPolicy");
    let authz = &authz[0]["spec"];
    assert!(selects_the_sidecar(&authz["selector"]["matchLabels"]));
    assert_eq!(authz["action"], "ALLOW");
    for rule in authz["rules"].as_array().unwrap() {
        let principals = rule["from"][0]["source"]["principals"].as_array().unwrap();
        assert_eq!(
            principals,
            &[serde_json::json!(
                "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
            )],
            "only the ingress gateway's identity"
        );
        assert_eq!(
            rule["to"][0]["operation"]["ports"],
            serde_json::json!([port.to_string()])
        );
    }

    let netpol = of_kind(sidecar, "NetworkPolicy");
    assert_eq!(netpol.len(), 1, "one NetworkPolicy");
    let netpol = &netpol[0]["spec"];
    assert!(selects_the_sidecar(&netpol["podSelector"]["matchLabels"]));
    assert_eq!(netpol["policyTypes"], serde_json::json!(["Ingress"]));
    let ingress = netpol["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        &ingress[0]["from"][0]["podSelector"]["matchLabels"], gateway_labels,
        "the pods the filter runs in"
    );
    assert_eq!(
        ingress[0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "istio-system"
    );
    assert_eq!(
        ingress[0]["ports"],
        serde_json::json!([{ "protocol": "TCP", "port": port }])
    );
}
