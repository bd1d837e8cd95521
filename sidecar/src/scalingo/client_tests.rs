//! Unit tests of `client.rs`.

use super::*;
use crate::scalingo::stub::{Reply, Stub};

#[test]
fn config_is_checked() {
    let mut config = ScalingoConfig::new("");
    assert!(matches!(
        ScalingoClient::new(config.clone()),
        Err(ScalingoError::Config(_))
    ));
    config.api_token = "tk-us-x".into();
    config.auth_url = Url::parse("ftp://auth.example.com").unwrap();
    assert!(matches!(
        ScalingoClient::new(config.clone()),
        Err(ScalingoError::Config(_))
    ));
    config.auth_url = Url::parse("https://user:pw@auth.example.com").unwrap();
    assert!(matches!(
        ScalingoClient::new(config.clone()),
        Err(ScalingoError::Config(_))
    ));
    config.auth_url = Url::parse("https://auth.example.com").unwrap();
    let client = ScalingoClient::new(config).unwrap();
    let debug = format!("{client:?}");
    assert!(!debug.contains("tk-us-x"), "{debug}");
}

#[test]
fn only_a_404_about_the_app_forgets_where_it_lives() {
    let client = ScalingoClient::new(ScalingoConfig::new("tk-us-x")).unwrap();
    let inner = &client.inner;
    let app: crate::scalingo::App =
        serde_json::from_value(serde_json::json!({"id": "1", "name": "my-app-one"})).unwrap();
    inner.locations.record_listing("osc-fr1", &[app]);
    for other in [
        ScalingoError::UnknownContainerType("not found".into()),
        ScalingoError::ResourceNotFound {
            resource: "operation".into(),
        },
        ScalingoError::Busy("is scaling".into()),
    ] {
        assert_eq!(
            inner.app_error("osc-fr1", "my-app-one", other.clone()),
            other
        );
        assert_eq!(
            inner.locations.get("my-app-one").as_deref(),
            Some("osc-fr1")
        );
    }
    // A 404 from another region says nothing of this one.
    inner.app_error("osc-secnum-fr1", "my-app-one", ScalingoError::NotFound);
    assert!(inner.locations.get("my-app-one").is_some());
    assert_eq!(
        inner.app_error("osc-fr1", "my-app-one", ScalingoError::NotFound),
        ScalingoError::NotFound
    );
    assert_eq!(inner.locations.get("my-app-one"), None);
}

fn autoscalers_stub() -> impl Fn(&Method, &str, &str) -> Reply + Send + Sync + 'static {
    |method, path, _body| match (method.as_str(), path) {
        ("GET", "/v1/apps/my-app-one/autoscalers") => (
            200,
            vec![],
            r#"{"autoscalers":[{"id":"as-1","container_type":"web","min_containers":1,
            "max_containers":3,"disabled":true,"new_field":"x"},{"id":7}]}"#
                .to_owned(),
        ),
        ("PATCH", "/v1/apps/my-app-one/autoscalers/as-1") => (
            200,
            vec![],
            r#"{"autoscaler":{"id":"as-1","container_type":"web","disabled":false}}"#.to_owned(),
        ),
        ("PATCH", "/v1/apps/my-app-one/autoscalers/as-2") => (200, vec![], String::new()),
        ("PATCH", _) => (
            404,
            vec![],
            r#"{"resource":"autoscaler","error":"not found"}"#.to_owned(),
        ),
        _ => (
            404,
            vec![],
            r#"{"resource":"app","error":"not found"}"#.to_owned(),
        ),
    }
}

#[tokio::test]
async fn autoscalers_are_listed_and_turned_back_on() {
    let stub = Stub::start(autoscalers_stub()).await;
    let client = ScalingoClient::with_tuning(stub.config(), Stub::tuning()).unwrap();
    let list = client
        .list_autoscalers("osc-fr1", "my-app-one")
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
    assert!(list[0].disabled);
    assert_eq!(list[1].id, "7");

    let updated = client
        .set_autoscaler_disabled("osc-fr1", "my-app-one", "as-1", false)
        .await
        .unwrap()
        .expect("the answer's autoscaler");
    assert!(!updated.disabled);
    let patch = stub
        .seen()
        .into_iter()
        .find(|s| s.method == Method::PATCH)
        .expect("a PATCH");
    assert_eq!(patch.path, "/v1/apps/my-app-one/autoscalers/as-1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&patch.body).unwrap(),
        serde_json::json!({"autoscaler": {"disabled": false}})
    );
    // An accepted change whose answer says nothing.
    assert_eq!(
        client
            .set_autoscaler_disabled("osc-fr1", "my-app-one", "as-2", true)
            .await,
        Ok(None)
    );
    assert_eq!(
        client
            .set_autoscaler_disabled("osc-fr1", "my-app-one", "as-9", false)
            .await,
        Err(ScalingoError::ResourceNotFound {
            resource: "autoscaler".into()
        })
    );
    assert_eq!(
        client.list_autoscalers("osc-fr1", "other-app").await,
        Err(ScalingoError::NotFound)
    );
    assert!(matches!(
        client
            .set_autoscaler_disabled("osc-fr1", "my-app-one", "..", false)
            .await,
        Err(ScalingoError::Decode(_))
    ));
}

#[test]
fn config_debug_redacts_the_token() {
    let config = ScalingoConfig::new("tk-us-secret");
    let debug = format!("{config:?}");
    assert!(!debug.contains("tk-us-secret"), "{debug}");
    assert!(debug.contains("[redacted]"));
}

#[tokio::test]
async fn invalid_names_are_refused_before_any_call() {
    // The auth URL is unroutable: any HTTP call would fail with Transport.
    let mut config = ScalingoConfig::new("tk-us-x");
    config.auth_url = Url::parse("http://127.0.0.1:1").unwrap();
    let client = ScalingoClient::new(config).unwrap();
    for bad in [
        "Bad",
        "ab",
        "-abcdef",
        "abc--def",
        "../../etc",
        "my app x",
        "my-app.evil.com",
    ] {
        assert!(
            matches!(
                client.get_app("osc-fr1", bad).await,
                Err(ScalingoError::InvalidAppName(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                client.locate(bad).await,
                Err(ScalingoError::InvalidAppName(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                client
                    .scale("osc-fr1", bad, &[ContainerAmount::new("web", 1)])
                    .await,
                Err(ScalingoError::InvalidAppName(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                client.ps("osc-fr1", bad).await,
                Err(ScalingoError::InvalidAppName(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                client.formation("osc-fr1", bad).await,
                Err(ScalingoError::InvalidAppName(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                client.operation("osc-fr1", bad, "op").await,
                Err(ScalingoError::InvalidAppName(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                client
                    .wait_web_running("osc-fr1", bad, Instant::now())
                    .await,
                Err(ScalingoError::InvalidAppName(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                client
                    .wait_operation("osc-fr1", bad, "op", Instant::now())
                    .await,
                Err(ScalingoError::InvalidAppName(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn client_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<ScalingoClient>();
    fn assert_error<T: std::error::Error + Send + Sync + Clone + 'static>() {}
    assert_error::<ScalingoError>();
}

/// A stub that knows one app, `my-app-one`; `/ps` answers 429 `Retry later`
/// (with `Retry-After: 1`) while `rate_limited` is above 0.
fn budget_stub(
    rate_limited: Arc<std::sync::atomic::AtomicU32>,
) -> impl Fn(&Method, &str, &str) -> Reply + Send + Sync + 'static {
    use std::sync::atomic::Ordering;
    move |method, path, _body| match (method.as_str(), path) {
        ("GET", "/v1/apps/my-app-one/ps") => {
            if rate_limited
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                (
                    429,
                    vec![("retry-after", "1".to_owned())],
                    "Retry later".to_owned(),
                )
            } else {
                (200, vec![], r#"{"containers":[]}"#.to_owned())
            }
        }
        ("POST", "/v1/apps/my-app-one/scale") => (
            400,
            vec![],
            r#"{"error":"no change in containers formation"}"#.to_owned(),
        ),
        _ => (404, vec![], r#"{"resource":"app"}"#.to_owned()),
    }
}

fn budget_of(calls_per_minute: u32) -> Arc<Budget> {
    Arc::new(Budget::in_memory(BudgetConfig::new(calls_per_minute)).unwrap())
}

#[tokio::test]
async fn every_request_draws_from_the_budget_the_token_exchange_included() {
    use crate::budget::Rank;
    let stub = Stub::start(budget_stub(Arc::default())).await;
    let budget = budget_of(4);
    let client =
        ScalingoClient::with_budget(stub.config(), Stub::tuning(), budget.clone()).unwrap();
    // Exchange, regions, ps: three calls of a wake's checks.
    client.ps("osc-fr1", "my-app-one").await.unwrap();
    assert_eq!(stub.seen().len(), 3);
    assert_eq!(budget.stats().spent(Rank::WakeCheck), 3);
    // A wake's scale call is ranked above its checks.
    client
        .scale("osc-fr1", "my-app-one", &[ContainerAmount::new("web", 1)])
        .await
        .unwrap();
    assert_eq!(budget.stats().spent(Rank::WakeScale), 1);
    // The budget is spent: nothing is sent, the caller hears it at once.
    let soon = Instant::now() + std::time::Duration::from_secs(5);
    assert_eq!(
        client.with_deadline(soon).ps("osc-fr1", "my-app-one").await,
        Err(ScalingoError::BudgetExhausted)
    );
    assert_eq!(stub.seen().len(), 4, "no request without a slot");
    assert!(ScalingoError::BudgetExhausted.is_transient());
}

#[tokio::test]
async fn background_views_draw_at_their_own_rank_and_share_the_budget() {
    use crate::budget::Rank;
    let stub = Stub::start(budget_stub(Arc::default())).await;
    let budget = budget_of(40);
    let client =
        ScalingoClient::with_budget(stub.config(), Stub::tuning(), budget.clone()).unwrap();
    let background = client.with_priority(Priority::Background);
    assert_eq!(background.priority(), Priority::Background);
    assert_eq!(
        client.priority(),
        Priority::Wake,
        "the original view is unchanged"
    );
    background
        .scale("osc-fr1", "my-app-one", &[ContainerAmount::new("web", 0)])
        .await
        .unwrap();
    // The scale call at the background's rank; the token exchange and the
    // region list, which wakes share, at a wake's.
    assert_eq!(budget.stats().spent(Rank::Background), 1);
    assert_eq!(budget.stats().spent(Rank::WakeCheck), 2);
    client.ps("osc-fr1", "my-app-one").await.unwrap();
    assert_eq!(
        budget.stats().spent(Rank::WakeCheck),
        3,
        "JWT and regions shared"
    );
    assert!(Arc::ptr_eq(client.budget(), background.budget()));
}

#[tokio::test]
async fn a_429_pauses_every_caller_until_its_retry_after() {
    let rate_limited = Arc::new(std::sync::atomic::AtomicU32::new(1));
    let stub = Stub::start(budget_stub(rate_limited)).await;
    let budget = budget_of(40);
    let client =
        ScalingoClient::with_budget(stub.config(), Stub::tuning(), budget.clone()).unwrap();
    client.regions().await.unwrap();
    let start = Instant::now();
    client.ps("osc-fr1", "my-app-one").await.unwrap();
    // The retry waited for the budget's pause (Retry-After: 1 s), not only
    // the retry policy's 20 ms. A lower bound, which a loaded machine
    // cannot break.
    assert!(start.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(budget.stats().rate_limited(), 1);
    let ps_calls = stub
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/ps"))
        .count();
    assert_eq!(ps_calls, 2);
}

#[tokio::test]
async fn a_retry_the_budget_cannot_fit_ends_with_the_429() {
    let rate_limited = Arc::new(std::sync::atomic::AtomicU32::new(1));
    let stub = Stub::start(budget_stub(rate_limited)).await;
    let budget = budget_of(40);
    let client =
        ScalingoClient::with_budget(stub.config(), Stub::tuning(), budget.clone()).unwrap();
    client.regions().await.unwrap();
    // Retry-After: 1 s, but this caller may wait only half a second.
    let soon = Instant::now() + std::time::Duration::from_millis(500);
    assert_eq!(
        client.with_deadline(soon).ps("osc-fr1", "my-app-one").await,
        Err(ScalingoError::RateLimited)
    );
    assert_eq!(budget.stats().rate_limited(), 1);
    assert_eq!(budget.stats().exhausted(), 1);
}

#[tokio::test]
async fn a_read_if_the_budget_is_free_is_skipped_at_once_and_quietly() {
    use crate::budget::Rank;
    let stub = Stub::start(budget_stub(Arc::default())).await;
    // A wake's checks may use 4 of 5 (a fifth is left to scale calls).
    let budget = budget_of(5);
    let client =
        ScalingoClient::with_budget(stub.config(), Stub::tuning(), budget.clone()).unwrap();
    let checks = client.if_budget_free();
    // Exchange, regions (shared fetches), then two reads.
    checks.ps("osc-fr1", "my-app-one").await.unwrap();
    checks.ps("osc-fr1", "my-app-one").await.unwrap();
    assert_eq!(budget.stats().spent(Rank::WakeCheck), 4);
    assert_eq!(
        checks.ps("osc-fr1", "my-app-one").await,
        Err(ScalingoError::BudgetExhausted)
    );
    assert_eq!(stub.seen().len(), 4, "nothing sent");
    assert_eq!(budget.stats().skipped(), 1);
    assert_eq!(budget.stats().exhausted(), 0, "a skip is no failure");
    // The scale call still has its slot.
    client
        .scale("osc-fr1", "my-app-one", &[ContainerAmount::new("web", 1)])
        .await
        .unwrap();
    assert_eq!(budget.stats().spent(Rank::WakeScale), 1);
}
