//! The sidecar against the fake Scalingo: the waker in process, its HTTP API
//! served on a port-0 listener, and the binary's configuration checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use paastis_e2e::fake::{Endpoint, FakeApp, FakeConfig, FakeScalingo, Fault, FaultKind};
use paastis_e2e::harness::sidecar_bin;
use paastis_e2e::setup::{fake_with, sidecar_env};
use paastis_sidecar::config::{env_from_map, Config, Env};
use paastis_sidecar::wake::{WakeError, Waker};
use serde_json::{json, Value};

struct Setup {
    fake: FakeScalingo,
    waker: Arc<Waker>,
    scheduler: Arc<paastis_sidecar::scheduler::Scheduler>,
    _dir: tempfile::TempDir,
}

async fn setup(apps: Vec<FakeApp>, rules: &str, extra: &[(&str, &str)]) -> Setup {
    let fake = fake_with(apps, Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let rules_file = dir.path().join("paastis.yml");
    std::fs::write(&rules_file, rules).unwrap();
    let vars = sidecar_env(&fake, &rules_file, extra);
    let get = env_from_map(&vars);
    let config = Config::from_env(&Env::new(&get)).expect("valid config");
    let gateway = paastis_sidecar::build(&config)
        .await
        .expect("gateway builds");
    Setup {
        fake,
        waker: gateway.waker,
        scheduler: gateway.scheduler,
        _dir: dir,
    }
}

fn scalingo_calls(fake: &FakeScalingo) -> usize {
    Endpoint::ALL
        .iter()
        .filter(|e| **e != Endpoint::Front)
        .map(|e| fake.calls(*e))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wakes_of_one_app_make_one_scale_call() {
    let s = setup(vec![FakeApp::web("shop-front", "osc-fr1", 0)], "", &[]).await;
    s.fake.set_boot_delay(Duration::from_millis(600));
    let wakes = (0..50).map(|_| {
        let waker = Arc::clone(&s.waker);
        tokio::spawn(async move { waker.wake("shop-front", None).await })
    });
    for result in futures::future::join_all(wakes).await {
        let answer = result.unwrap().expect("woken");
        assert_eq!(answer.region, "osc-fr1");
        assert_eq!(answer.upstream_host, "shop-front.osc-fr1.scalingo.io");
    }
    assert_eq!(s.fake.scale_calls("shop-front"), 1);
    assert!(s.fake.app("shop-front").unwrap().web_running);

    // Known awake now: a further wake makes no Scalingo call at all.
    let before = scalingo_calls(&s.fake);
    s.waker.wake("shop-front", None).await.unwrap();
    assert_eq!(scalingo_calls(&s.fake), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_apps_are_woken_too_and_rules_rename_apps() {
    let rules = "rules:\n  - pattern: '^(.*)-front$'\n    linked_apps: ['$1-api-1', '$1-jobs-1']\n  - pattern: '^old-name-app$'\n    app_name: new-name-app\n";
    let s = setup(
        vec![
            FakeApp::web("shop-front", "osc-fr1", 0),
            FakeApp::web("shop-api-1", "osc-secnum-fr1", 0),
            FakeApp::web("new-name-app", "osc-fr1", 0),
        ],
        rules,
        &[],
    )
    .await;
    let answer = s.waker.wake("shop-front", None).await.unwrap();
    assert!(s.fake.app("shop-api-1").unwrap().web_running);
    let linked: Vec<(String, bool)> = answer
        .linked_apps
        .iter()
        .map(|l| (l.app.clone(), l.running))
        .collect();
    assert_eq!(
        linked,
        [
            ("shop-api-1".to_owned(), true),
            ("shop-jobs-1".to_owned(), false)
        ],
        "a linked app that does not exist is reported, and does not fail the wake"
    );

    let answer = s.waker.wake("old-name-app", None).await.unwrap();
    assert_eq!(answer.target, "new-name-app");
    assert_eq!(answer.upstream_host, "new-name-app.osc-fr1.scalingo.io");
    assert!(s.fake.app("new-name-app").unwrap().web_running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_restores_the_remembered_formation() {
    let s = setup(
        vec![FakeApp::web("shop-front", "osc-fr1", 0).with_type("worker", 0, "M")],
        "",
        &[],
    )
    .await;
    s.waker
        .registry()
        .remember_formation("shop-front", vec![("web".into(), 2), ("worker".into(), 1)])
        .await
        .unwrap();
    s.waker.wake("shop-front", None).await.unwrap();
    let app = s.fake.app("shop-front").unwrap();
    let amounts: HashMap<String, u32> = app
        .formation
        .iter()
        .map(|(name, amount, _)| (name.clone(), *amount))
        .collect();
    assert_eq!(amounts["web"], 2);
    assert_eq!(amounts["worker"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_invalid_apps_are_refused() {
    let s = setup(vec![], "", &[]).await;
    assert!(matches!(
        s.waker.wake("Bad_Name", None).await,
        Err(WakeError::InvalidApp(_))
    ));
    assert_eq!(
        scalingo_calls(&s.fake),
        0,
        "an invalid name makes no Scalingo call"
    );
    assert!(matches!(
        s.waker.wake("nobody-here", None).await,
        Err(WakeError::UnknownApp(_))
    ));
    // A region pinned by a rule that does not hold the app: unknown too.
    assert!(matches!(
        s.waker.wake("nobody-here", Some("osc-secnum-fr1")).await,
        Err(WakeError::UnknownApp(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_app_is_waited_for_and_a_slow_boot_times_out() {
    let s = setup(
        vec![
            FakeApp::web("shop-front", "osc-fr1", 0),
            FakeApp::web("slow-app", "osc-fr1", 0),
        ],
        "",
        &[("PAASTIS_WAKE_TIMEOUT", "2")],
    )
    .await;
    // A 2 s wake timeout leaves no room for the router's boot window after
    // the busy wait: this test is about the wait.
    s.fake.set_front_boot_window(Duration::ZERO);
    s.fake
        .inject(Fault::new(Endpoint::Scale, FaultKind::IsScaling).for_app("shop-front"));
    s.waker
        .wake("shop-front", None)
        .await
        .expect("woken after the other operation");
    assert_eq!(s.fake.scale_calls("shop-front"), 2);

    s.fake.set_boot_delay(Duration::from_secs(6));
    let err = s.waker.wake("slow-app", None).await.unwrap_err();
    assert!(matches!(err, WakeError::Timeout(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_apps_are_routed_but_never_scaled() {
    let s = setup(
        vec![FakeApp::web("keep-as-is", "osc-fr1", 0)],
        "",
        &[("REGISTRY_IGNORED_APPS", "keep-as-is")],
    )
    .await;
    let answer = s.waker.wake("keep-as-is", None).await.unwrap();
    assert_eq!(answer.region, "osc-fr1");
    assert_eq!(s.fake.scale_calls("keep-as-is"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_answers_the_filter() {
    let s = setup(
        vec![
            FakeApp::web("shop-front", "osc-fr1", 0),
            FakeApp::web("shop-api-1", "osc-fr1", 0),
        ],
        "rules:\n  - pattern: '^(.*)-front$'\n    linked_apps: ['$1-api-1']\n",
        &[],
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(paastis_sidecar::server::run(
        listener,
        Arc::clone(&s.waker),
        async {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("http://{addr}{path}"))
            .json(&body)
            .send()
    };

    let ok = post("/v1/wake", json!({"app": "shop-front"}))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok: Value = ok.json().await.unwrap();
    assert_eq!(ok["upstream_host"], "shop-front.osc-fr1.scalingo.io");
    assert_eq!(ok["linked_apps"][0]["app"], "shop-api-1");

    let missing = post("/v1/wake", json!({"app": "nobody-here"}))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"],
        "unknown_app"
    );

    let invalid = post("/v1/wake", json!({"app": "../etc"})).await.unwrap();
    assert_eq!(invalid.status(), 400);

    let activity = post(
        "/v1/activity",
        json!({"apps": ["shop-front", "Not Valid", "never-seen"]}),
    )
    .await
    .unwrap();
    assert_eq!(activity.status(), 200);
    let activity: Value = activity.json().await.unwrap();
    assert_eq!(
        activity["awake"],
        json!([{"app": "shop-front", "region": "osc-fr1", "upstream_host": "shop-front.osc-fr1.scalingo.io"}])
    );

    let get_json = |path: &str| {
        let request = client.get(format!("http://{addr}{path}")).send();
        async move { request.await.unwrap().json::<Value>().await.unwrap() }
    };
    let registry = get_json("/v1/apps").await;
    let names: Vec<&str> = registry["apps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["app"].as_str())
        .collect();
    assert_eq!(
        names,
        ["shop-api-1", "shop-front"],
        "activity touches linked apps too, and never registers a name the gateway did not resolve"
    );

    let events = get_json("/v1/events?limit=50").await;
    let mut woken: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "woken" && e["duration_ms"].is_u64())
        .filter_map(|e| e["app"].as_str())
        .collect();
    woken.sort();
    assert_eq!(woken, ["shop-api-1", "shop-front"], "{events}");

    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let metrics = metrics.text().await.unwrap();
    for needle in [
        // shop-front and its linked shop-api-1: two wakes, one request.
        "paastis_wakes_total{result=\"woken\"} 2",
        "paastis_wakes_total{result=\"unknown_app\"} 1",
        "paastis_wake_duration_seconds_count 1",
        "paastis_scalingo_calls_total{endpoint=\"scale\",status=\"202\"} 2",
        "paastis_registry_apps 2",
        "paastis_registry_refused_total{reason=\"unknown\"} 1",
        "paastis_activity_batches_total 1",
        "paastis_activity_apps_total 3",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in:\n{metrics}");
    }

    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[test]
fn the_binary_refuses_a_bad_configuration_with_exit_code_64() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("paastis.yml");
    std::fs::write(&rules, "rules:\n  - pattern: ok\n  - pattern: '(broken'\n").unwrap();
    let out = std::process::Command::new(sidecar_bin())
        .env_clear()
        .env("PROVIDER_SCALINGO_API_TOKEN", "tk-us-secret-token-value")
        .env("PAASTIS_RULES_FILE", &rules)
        .env("PAASTIS_LISTEN", "127.0.0.1:0")
        .output()
        .expect("the sidecar binary runs (make build)");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "invalid configuration: {}: rules[1].pattern:",
        rules.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        !stderr.contains("secret-token-value"),
        "the token is never printed"
    );
    assert!(out.stdout.is_empty(), "nothing was bound");

    let out = std::process::Command::new(sidecar_bin())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("invalid configuration: PROVIDER_SCALINGO_API_TOKEN"));
}

#[test]
fn keep_awake_windows_exit_64_when_malformed_and_check_config_prints_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("paastis.yml");
    let run = |args: &[&str]| {
        std::process::Command::new(sidecar_bin())
            .env_clear()
            .env("PROVIDER_SCALINGO_API_TOKEN", "tk-us-secret-token-value")
            .env("PAASTIS_RULES_FILE", &rules)
            .env("PAASTIS_LISTEN", "127.0.0.1:0")
            .args(args)
            .output()
            .expect("the sidecar binary runs (make build)")
    };
    std::fs::write(
        &rules,
        "rules:\n  - pattern: x\n  - pattern: '^office-'\n    keep_awake: ['Mon-Fri 08:30-19:00 Europe/Parsi']\n",
    )
    .unwrap();
    for args in [&[][..], &["check-config"][..]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!(
            "invalid configuration: {}: rules[1].keep_awake[0]: \"Mon-Fri 08:30-19:00 Europe/Parsi\" is not a window (\"Europe/Parsi\" is not an IANA time zone)",
            rules.display()
        );
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing was bound");
    }
    std::fs::write(
        &rules,
        "rules:\n  - pattern: '^office-'\n    keep_awake: ['Daily 00:00-24:00 UTC']\n    prewarm: 5\n",
    )
    .unwrap();
    let out = run(&[
        "check-config",
        "office-app.example.com",
        "other-app.example.com",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let office = stdout
        .lines()
        .skip_while(|l| !l.contains("office-app.example.com"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        office.contains(", kept awake now, until ")
            && office.ends_with("T00:00:00Z, woken 5 min before"),
        "{stdout}"
    );
    let other = stdout
        .lines()
        .skip_while(|l| !l.contains("other-app.example.com"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        !other.contains("keep-awake") && !other.contains("kept awake"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_pauses_idle_apps_and_the_next_wake_restores_their_formation() {
    let s = setup(
        vec![
            FakeApp::web("idle-app-1", "osc-fr1", 2).with_type("worker", 1, "S"),
            FakeApp::web("busy-app-1", "osc-secnum-fr1", 1),
            FakeApp::web("always-on-1", "osc-fr1", 1),
            FakeApp::web("ignored-app", "osc-fr1", 1),
            FakeApp::web("asleep-app-1", "osc-fr1", 0),
        ],
        "rules:\n  - pattern: '^always-on'\n    app_max_idle_time: 0\n",
        &[("REGISTRY_IGNORED_APPS", "ignored-app")],
    )
    .await;
    // A scale-down as the real one behaves (`scaling`, 422 `is scaling`,
    // `stopping` containers) but 3 s long instead of up to 30 s, so that
    // a wake right after a pause fits this suite's 20 s wake timeout.
    s.fake.set_stop_delay(Duration::from_secs(3));
    let now = paastis_sidecar::wake::now_ms();
    let minute = 60_000;

    // Discovery: running apps the registry did not know start their idle clock now.
    let report = s.scheduler.pass(now).await.unwrap();
    let mut discovered = report.discovered.clone();
    discovered.sort();
    assert_eq!(discovered, ["always-on-1", "busy-app-1", "idle-app-1"]);
    assert!(report.paused.is_empty());

    // busy-app-1 is used 10 minutes later; 16 minutes later idle-app-1 is idle.
    s.waker
        .registry()
        .touch(&["busy-app-1".to_owned()], now + 10 * minute)
        .await
        .unwrap();
    let report = s.scheduler.pass(now + 16 * minute).await.unwrap();
    assert_eq!(report.paused, ["idle-app-1"], "{report:?}");
    let idle = s.fake.app("idle-app-1").unwrap();
    assert!(
        idle.formation.iter().all(|(_, amount, _)| *amount == 0),
        "{idle:?}"
    );
    assert_eq!(s.fake.scale_calls("busy-app-1"), 0);
    assert_eq!(
        s.fake.scale_calls("always-on-1"),
        0,
        "max idle 0 never pauses"
    );
    assert_eq!(s.fake.scale_calls("ignored-app"), 0);
    let record = s.waker.registry().get("idle-app-1").await.unwrap().unwrap();
    assert_eq!(
        record.formation,
        vec![("web".to_owned(), 2), ("worker".to_owned(), 1)]
    );

    // A pass later: the paused app stays registered (its formation is needed).
    let report = s.scheduler.pass(now + 17 * minute).await.unwrap();
    assert!(
        report.paused.is_empty() && report.forgotten.is_empty(),
        "{report:?}"
    );

    // Its next request wakes it with the formation it had.
    s.waker.wake("idle-app-1", None).await.unwrap();
    let idle = s.fake.app("idle-app-1").unwrap();
    let amounts: HashMap<String, u32> = idle
        .formation
        .iter()
        .map(|(n, a, _)| (n.clone(), *a))
        .collect();
    assert_eq!((amounts["web"], amounts["worker"]), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_back_end_is_kept_awake_by_its_front_ends_traffic() {
    let s = setup(
        vec![
            FakeApp::web("shop-front", "osc-fr1", 1),
            FakeApp::web("shop-api", "osc-fr1", 1),
            FakeApp::web("lonely-app", "osc-fr1", 1),
        ],
        "rules:\n  - pattern: '^shop-front$'\n    linked_apps: [shop-api]\n",
        &[],
    )
    .await;
    let now = paastis_sidecar::wake::now_ms();
    let minute = 60_000;
    let report = s.scheduler.pass(now - 30 * minute).await.unwrap();
    assert_eq!(report.discovered.len(), 3, "{report:?}");

    // Only the front end is requested (what the filter reports)...
    s.waker.activity(&["shop-front".to_owned()]).await;
    let api = s.waker.registry().get("shop-api").await.unwrap().unwrap();
    assert!(api.last_access_ms >= now, "the back end was touched too");

    // ...and the back end it calls stays up with it.
    let report = s.scheduler.pass(now + minute).await.unwrap();
    assert_eq!(report.paused, ["lonely-app"], "{report:?}");
    assert_eq!(s.fake.scale_calls("shop-api"), 0);
    assert_eq!(s.fake.scale_calls("shop-front"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_pass_stops_and_the_next_one_does_the_rest() {
    let apps = ["idle-app-1", "idle-app-2", "idle-app-3"];
    let s = setup(
        apps.iter()
            .map(|a| FakeApp::web(*a, "osc-fr1", 1))
            .collect(),
        "",
        &[],
    )
    .await;
    let now = paastis_sidecar::wake::now_ms();
    let minute = 60_000;
    s.scheduler.pass(now - 30 * minute).await.unwrap();

    // Every try of the first scale (the client retries 429s) is refused;
    // each 429 stops all Scalingo calls for its `Retry-After`.
    s.fake.inject(
        Fault::new(Endpoint::Scale, FaultKind::TooManyRetryAfter(1))
            .times(paastis_sidecar::scalingo::DEFAULT_RETRY_ATTEMPTS as usize),
    );
    let report = s.scheduler.pass(now).await.unwrap();
    assert!(report.paused.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "no call after the 429: {report:?}");
    for app in apps {
        assert!(s.fake.app(app).unwrap().web_running, "{app}");
    }

    // The next pass waits out the pause, then does the rest.
    let report = s.scheduler.pass(now).await.unwrap();
    let mut paused = report.paused.clone();
    paused.sort();
    assert_eq!(paused, apps, "{report:?}");
}

#[test]
fn check_config_shows_what_sample_hosts_map_to() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("paastis.yml");
    std::fs::write(
        &rules,
        "rules:\n  - pattern: '^(.*)-front$'\n    linked_apps: ['$1-api']\n    app_max_idle_time: 30\n",
    )
    .unwrap();
    let filter = dir.path().join("filter.json");
    std::fs::write(
        &filter,
        r#"{"sidecar_cluster": "paastis_sidecar", "domains": ["gateway.example.com"]}"#,
    )
    .unwrap();
    let run = |filter_json: &std::path::Path| {
        std::process::Command::new(sidecar_bin())
            .env_clear()
            .env("PROVIDER_SCALINGO_API_TOKEN", "tk-us-secret-token-value")
            .env("PAASTIS_RULES_FILE", &rules)
            .arg("check-config")
            .arg("--filter-config")
            .arg(filter_json)
            .arg("shop-front.gateway.example.com")
            .arg("elsewhere.example.org")
            .output()
            .expect("the sidecar binary runs (make build)")
    };
    let out = run(&filter);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration: ok"), "{stdout}");
    assert!(
        stdout.contains("app shop-front, region found by listing the regions, wakes with [shop-api], paused after 30 min idle"),
        "{stdout}"
    );
    assert!(
        stdout.contains("matches no host rule nor domain"),
        "{stdout}"
    );
    assert!(!stdout.contains("tk-us-secret-token-value"));

    // A bad filter configuration is a configuration error naming the field.
    std::fs::write(
        &filter,
        r#"{"sidecar_cluster": "paastis_sidecar", "domainz": []}"#,
    )
    .unwrap();
    let out = run(&filter);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("domainz"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_wake_in_flight_before_exiting() {
    use std::io::{BufRead, BufReader};
    let fake = FakeScalingo::start(FakeConfig {
        boot_delay: Duration::from_millis(1_500),
        ..FakeConfig::default()
    })
    .await
    .expect("fake starts");
    fake.add_app(FakeApp::web("shop-front", "osc-fr1", 0));
    let mut child = std::process::Command::new(sidecar_bin())
        .env_clear()
        .env("PROVIDER_SCALINGO_API_TOKEN", &fake.config().api_token)
        .env("PROVIDER_SCALINGO_AUTH_URL", fake.auth_url())
        .env("PAASTIS_RULES_FILE", "/dev/null")
        .env("PAASTIS_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the sidecar binary runs (make build)");
    let stdout = child.stdout.take().unwrap();
    let addr = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line.trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_owned()
    })
    .await
    .unwrap();

    let wake = tokio::spawn(
        reqwest::Client::new()
            .post(format!("http://{addr}/v1/wake"))
            .json(&json!({"app": "shop-front"}))
            .send(),
    );
    // The wake is under way (the fake boots for 1.5 s) when the signal comes.
    let started = std::time::Instant::now();
    while fake.scale_calls("shop-front") == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.scale_calls("shop-front"), 1);
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());

    let answer = wake
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(answer.status(), 200);
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_wake_is_seen_ready_on_the_apps_front_not_by_polling_the_api() {
    let s = setup(vec![FakeApp::web("shop-front", "osc-fr1", 0)], "", &[]).await;
    s.fake.set_boot_delay(Duration::from_secs(3));
    let answer = s
        .waker
        .wake("shop-front", Some("osc-fr1"))
        .await
        .expect("woken");
    assert_eq!(answer.region, "osc-fr1");
    assert!(s.fake.app("shop-front").unwrap().web_running);
    assert!(s.fake.calls(Endpoint::Front) >= 2, "the front was probed");
    // The boot is shorter than the first API check (5 s): the regions list
    // (once per process), the formation read and the scale call only,
    // never ps nor the operation.
    assert_eq!(s.fake.calls(Endpoint::Ps), 0);
    assert_eq!(s.fake.calls(Endpoint::Operation), 0);
    assert_eq!(s.fake.calls(Endpoint::Scale), 1);
    assert_eq!(s.fake.calls(Endpoint::Regions), 1);
    let api = scalingo_calls(&s.fake) - s.fake.calls(Endpoint::Exchange);
    assert_eq!(api, 3, "regions, formation and scale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_app_backs_off_and_costs_no_call_meanwhile() {
    let s = setup(
        vec![FakeApp::web("crashy-app", "osc-fr1", 0).crash_on_boot()],
        "",
        &[("PAASTIS_WAKE_TIMEOUT", "3")],
    )
    .await;
    let err = s
        .waker
        .wake("crashy-app", Some("osc-fr1"))
        .await
        .unwrap_err();
    assert!(matches!(err, WakeError::Timeout(_)), "{err:?}");
    // The request's timeout and its wake's deadline are the same instant:
    // let the wake task record its failure.
    while s.waker.wakes_in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let calls = scalingo_calls(&s.fake);
    for _ in 0..30 {
        let err = s
            .waker
            .wake("crashy-app", Some("osc-fr1"))
            .await
            .unwrap_err();
        assert!(matches!(err, WakeError::BackingOff { .. }), "{err:?}");
    }
    assert_eq!(
        scalingo_calls(&s.fake),
        calls,
        "no Scalingo call while backing off"
    );
    assert_eq!(s.fake.scale_calls("crashy-app"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaler_is_turned_back_on_by_the_wake_after_a_pause() {
    let s = setup(
        vec![FakeApp::web("auto-app", "osc-fr1", 2).with_autoscaler("web", 1, 4)],
        "",
        &[],
    )
    .await;
    s.fake.set_stop_delay(Duration::ZERO);
    let now = paastis_sidecar::wake::now_ms();
    let minute = 60_000;
    s.scheduler.pass(now).await.unwrap();
    let report = s.scheduler.pass(now + 16 * minute).await.unwrap();
    assert_eq!(report.paused, ["auto-app"], "{report:?}");
    let paused = s.fake.app("auto-app").unwrap();
    assert!(paused.autoscalers.iter().all(|a| a.disabled), "{paused:?}");
    let record = s.waker.registry().get("auto-app").await.unwrap().unwrap();
    assert_eq!(record.autoscalers.len(), 1, "{record:?}");

    s.waker.wake("auto-app", None).await.expect("woken");
    let woken = s.fake.app("auto-app").unwrap();
    assert!(woken.web_running);
    assert!(woken.autoscalers.iter().all(|a| !a.disabled), "{woken:?}");
    let events = s.waker.events().recent(20).await.unwrap();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert!(
        kinds.contains(&"autoscalers_recorded".to_owned()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"autoscalers_restored".to_owned()),
        "{kinds:?}"
    );
}
