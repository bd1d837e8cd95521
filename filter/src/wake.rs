//! The wake callout: its request body, reading the sidecar's answer, and what
//! the request does next (route, answer, or apply the failure policy).
//!
//! The sidecar is trusted to decide, not to be well-formed: every answer is
//! checked (status, content type, JSON shape, region and upstream host) and
//! anything unexpected is a sidecar failure, handled by `failure_policy`.

use paastis_api::mini;
use paastis_api::{Client, ErrorAnswer, ErrorCode, WaitingAnswer, WakeAnswer, WakeRequest};
use paastis_rules::{is_valid_app_name, MAX_LINKED_APPS};

use crate::answer::{sidecar_json_status, AnswerError, Awake};
use crate::config::{Config, FailurePolicy, MAX_RETRY_AFTER_S};
use crate::reply::{LocalReply, ReplyKind};
use crate::waiting::WaitingPage;

pub use paastis_api::WAKE_PATH;
/// The JSON body of `POST /v1/wake`: `{"app":...,"region":...|null}`, plus
/// `"client":"browser"` for a browser navigating (which the sidecar may
/// answer with 202: show the waiting page), and `"verify":true` when the
/// traffic showed the app not running (its cache entry is a tombstone),
/// with `"background":true` when the filter answers the request itself
/// (the backstop on a router's answer).
pub fn wake_body(
    app: &str,
    region: Option<&str>,
    browser: bool,
    verify: bool,
    background: bool,
) -> Vec<u8> {
    mini::to_string(&WakeRequest {
        app: app.to_owned(),
        region: region.map(str::to_owned),
        client: browser.then_some(Client::Browser),
        verify,
        background,
    })
    .into_bytes()
}

/// What the sidecar said about a wake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeOutcome {
    /// 200: the app is awake.
    Awake(Awake),
    /// 202: the app is being woken in the background; show the waiting
    /// page. `apps`: the app woken (the rules' target) then its linked apps,
    /// all valid app names, at most `MAX_LINKED_APPS`.
    Waiting {
        apps: Vec<String>,
        /// The sidecar's usual wake time, bounded ([`crate::waiting::bounded_estimate`]).
        expected_ms: Option<u64>,
    },
    /// 404 `unknown_app`.
    UnknownApp,
    /// 400 `invalid_app`.
    InvalidApp,
    /// 503 `wake_failed` / 504 `wake_timeout`, with the sidecar's
    /// `retry_after` clamped to `1..=3600`.
    NotReady {
        timed_out: bool,
        retry_after: Option<u32>,
    },
    /// Anything else: a sidecar failure.
    Unusable(AnswerError),
}

/// Reads the sidecar's answer to the wake of `requested`. `status` and
/// `content_type` are the raw header values (absent when the callout failed).
pub fn parse_wake_answer(
    requested: &str,
    status: Option<&[u8]>,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> WakeOutcome {
    match parse(requested, status, content_type, body) {
        Ok(outcome) => outcome,
        Err(e) => WakeOutcome::Unusable(e),
    }
}

fn parse(
    requested: &str,
    status: Option<&[u8]>,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Result<WakeOutcome, AnswerError> {
    let status = sidecar_json_status(status, content_type, &[200, 202, 400, 404, 503, 504])?;
    let bad_body = |e: mini::JsonError| AnswerError::BadBody {
        status,
        message: e.to_string(),
    };
    if status == 200 {
        let answer: WakeAnswer = mini::from_slice(body).map_err(bad_body)?;
        if let Some(app) = answer.app {
            if app != requested {
                return Err(AnswerError::WrongApp(app));
            }
        }
        return Ok(WakeOutcome::Awake(Awake::checked(
            answer.region,
            answer.upstream_host,
        )?));
    }
    if status == 202 {
        let answer: WaitingAnswer = mini::from_slice(body).map_err(bad_body)?;
        if let Some(app) = answer.app {
            if app != requested {
                return Err(AnswerError::WrongApp(app));
            }
        }
        let expected_ms = answer
            .expected_ms
            .and_then(crate::waiting::bounded_estimate);
        let mut apps = Vec::with_capacity(1 + answer.linked_apps.len());
        apps.push(answer.target);
        apps.extend(answer.linked_apps);
        let bad = |message: String| AnswerError::BadBody { status, message };
        if !answer.waiting {
            return Err(bad("202 without \"waiting\": true".to_owned()));
        }
        if apps.len() > MAX_LINKED_APPS {
            return Err(bad(format!(
                "{} apps, more than a wake touches",
                apps.len()
            )));
        }
        if let Some(name) = apps.iter().find(|a| !is_valid_app_name(a)) {
            return Err(bad(format!("{name:?} is not a valid app name")));
        }
        return Ok(WakeOutcome::Waiting { apps, expected_ms });
    }
    let answer: ErrorAnswer = mini::from_slice(body).map_err(bad_body)?;
    match (status, answer.error) {
        (404, ErrorCode::UnknownApp) => Ok(WakeOutcome::UnknownApp),
        (400, ErrorCode::InvalidApp) => Ok(WakeOutcome::InvalidApp),
        (503 | 504, ErrorCode::WakeFailed | ErrorCode::WakeTimeout) => Ok(WakeOutcome::NotReady {
            timed_out: answer.error == ErrorCode::WakeTimeout,
            retry_after: answer.retry_after.map(clamp_retry_after),
        }),
        _ => Err(AnswerError::UnexpectedCode {
            status,
            code: answer.error,
        }),
    }
}

fn clamp_retry_after(seconds: u64) -> u32 {
    u32::try_from(seconds)
        .unwrap_or(MAX_RETRY_AFTER_S)
        .clamp(1, MAX_RETRY_AFTER_S)
}

/// What the request does once the wake is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeAction {
    /// Route to `cluster` with `:authority` `upstream_host`; write the cache
    /// entry when `cache` (only for an answer from the sidecar).
    Route {
        cluster: String,
        upstream_host: String,
        cache: bool,
    },
    /// Answer locally.
    Reply(LocalReply),
    /// Answer with the waiting page (the wake goes on in the sidecar).
    Waiting(WaitingPage),
}

/// Maps the sidecar's outcome for `app` to the next step; `known_region`
/// (the host rule's, else the cache's last) is for the failure policy.
pub fn after_wake(
    config: &Config,
    app: &str,
    known_region: Option<&str>,
    outcome: WakeOutcome,
) -> WakeAction {
    match outcome {
        WakeOutcome::Awake(awake) => WakeAction::Route {
            cluster: config.cluster_for(&awake.region).to_owned(),
            upstream_host: awake.upstream_host,
            cache: true,
        },
        WakeOutcome::Waiting { apps, expected_ms } => WakeAction::Waiting(WaitingPage {
            app: app.to_owned(),
            apps,
            retry_after: config.retry_after_s,
            expected_ms,
        }),
        WakeOutcome::UnknownApp => {
            WakeAction::Reply(LocalReply::for_app(ReplyKind::UnknownApp, app))
        }
        WakeOutcome::InvalidApp => {
            WakeAction::Reply(LocalReply::for_app(ReplyKind::InvalidApp, app))
        }
        WakeOutcome::NotReady {
            timed_out,
            retry_after,
        } => {
            let kind = if timed_out {
                ReplyKind::WakeTimeout
            } else {
                ReplyKind::WakeFailed
            };
            WakeAction::Reply(
                LocalReply::for_app(kind, app)
                    .retry_after(retry_after.unwrap_or(config.retry_after_s)),
            )
        }
        WakeOutcome::Unusable(_) => failure_action(config, app, known_region),
    }
}

/// The region in `upstream_host` when it is `APP.REGION.scalingo.io` for
/// this `app` and a valid region (a cache entry's host), else `None`.
pub fn region_of_upstream(app: &str, upstream_host: &str) -> Option<String> {
    let region = upstream_host
        .strip_prefix(app)?
        .strip_prefix('.')?
        .strip_suffix(".scalingo.io")?;
    paastis_rules::check_region("region", region)
        .is_ok()
        .then(|| region.to_owned())
}

/// The failure policy, for a sidecar that cannot be reached (dispatch
/// failed) or answered something unusable. `open` routes to the app's default
/// Scalingo host, `APP.REGION.scalingo.io`, in `known_region` (the rule's,
/// else the one the cache last knew) or `default_region`, without waking it
/// and without caching.
pub fn failure_action(config: &Config, app: &str, known_region: Option<&str>) -> WakeAction {
    match config.failure_policy {
        FailurePolicy::Closed => WakeAction::Reply(
            LocalReply::for_app(ReplyKind::Unavailable, app).retry_after(config.retry_after_s),
        ),
        FailurePolicy::Open => {
            let region = known_region.unwrap_or(&config.default_region);
            WakeAction::Route {
                cluster: config.cluster_for(region).to_owned(),
                upstream_host: format!("{app}.{region}.scalingo.io"),
                cache: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::is_upstream_host;
    use paastis_rules::check_region;
    use proptest::prelude::*;

    const JSON: Option<&[u8]> = Some(b"application/json");

    fn answer(status: &str, body: &str) -> WakeOutcome {
        parse_wake_answer("my-app", Some(status.as_bytes()), JSON, body.as_bytes())
    }

    fn config(extra: &str) -> Config {
        Config::parse(
            format!(r#"{{"sidecar_cluster":"s","domains":["gw.example.com"],"region_clusters":{{"osc-fr1":"fr1"}}{extra}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn body() {
        assert_eq!(
            wake_body("my-app", None, false, false, false),
            br#"{"app":"my-app","region":null}"#
        );
        assert_eq!(
            wake_body("my-app", Some("osc-fr1"), false, false, false),
            br#"{"app":"my-app","region":"osc-fr1"}"#
        );
        assert_eq!(
            wake_body("my-app", None, true, false, false),
            br#"{"app":"my-app","region":null,"client":"browser"}"#
        );
        assert_eq!(
            wake_body("my-app", None, false, true, false),
            br#"{"app":"my-app","region":null,"verify":true}"#
        );
        assert_eq!(
            wake_body("my-app", None, true, true, true),
            br#"{"app":"my-app","region":null,"client":"browser","verify":true,"background":true}"#
        );
    }

    #[test]
    fn awake() {
        let outcome = answer(
            "200",
            r#"{"app":"my-app","target":"other-app","region":"osc-fr1","upstream_host":"other-app.osc-fr1.scalingo.io","linked_apps":[{"app":"x","running":true}],"waited_ms":123}"#,
        );
        assert_eq!(
            outcome,
            WakeOutcome::Awake(Awake {
                region: "osc-fr1".into(),
                upstream_host: "other-app.osc-fr1.scalingo.io".into()
            })
        );
        assert_eq!(
            after_wake(&config(""), "my-app", None, outcome),
            WakeAction::Route {
                cluster: "fr1".into(),
                upstream_host: "other-app.osc-fr1.scalingo.io".into(),
                cache: true
            }
        );
    }

    #[test]
    fn waiting() {
        let outcome = answer(
            "202",
            r#"{"waiting":true,"app":"my-app","target":"my-app","linked_apps":["my-api-1"]}"#,
        );
        assert_eq!(
            outcome,
            WakeOutcome::Waiting {
                apps: vec!["my-app".into(), "my-api-1".into()],
                expected_ms: None,
            }
        );
        assert_eq!(
            after_wake(&config(r#","retry_after_s":3"#), "my-app", None, outcome),
            WakeAction::Waiting(WaitingPage {
                app: "my-app".into(),
                apps: vec!["my-app".into(), "my-api-1".into()],
                retry_after: 3,
                expected_ms: None,
            })
        );
        let estimated = answer(
            "202",
            r#"{"waiting":true,"app":"my-app","target":"my-app","expected_ms":4200}"#,
        );
        assert_eq!(
            estimated,
            WakeOutcome::Waiting {
                apps: vec!["my-app".into()],
                expected_ms: Some(4_200),
            }
        );
        let too_many: Vec<String> = (0..MAX_LINKED_APPS)
            .map(|i| format!("app-{i:03}"))
            .collect();
        for body in [
            r#"{"waiting":true,"app":"other-app","target":"my-app"}"#.to_owned(),
            r#"{"waiting":false,"target":"my-app"}"#.to_owned(),
            r#"{"waiting":true,"target":"<b>x</b>"}"#.to_owned(),
            r#"{"waiting":true,"target":"my-app","linked_apps":["ok-app","Bad"]}"#.to_owned(),
            format!(
                r#"{{"waiting":true,"target":"my-app","linked_apps":{}}}"#,
                serde_json::to_string(&too_many).unwrap()
            ),
            r#"{"app":"my-app"}"#.to_owned(),
        ] {
            assert!(
                matches!(answer("202", &body), WakeOutcome::Unusable(_)),
                "{body}"
            );
        }
    }

    #[test]
    fn refuses_untrustworthy_awake_answers() {
        let cases = [
            (r#"{"region":"osc-fr1"}"#, "unexpected body"),
            (
                r#"{"app":"someone-else","region":"osc-fr1","upstream_host":"a.io"}"#,
                "not the one requested",
            ),
            (
                r#"{"region":"OSC FR1","upstream_host":"a.io"}"#,
                "invalid region",
            ),
            (
                r#"{"region":"osc-fr1","upstream_host":"a.io:8443"}"#,
                "invalid upstream host",
            ),
            (
                r#"{"region":"osc-fr1","upstream_host":"evil.io\r\nx-paastis-cluster: x"}"#,
                "invalid upstream host",
            ),
            ("not json", "unexpected body"),
        ];
        for (body, expected) in cases {
            match answer("200", body) {
                WakeOutcome::Unusable(e) => {
                    assert!(e.to_string().contains(expected), "{body}: {e}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn sidecar_errors() {
        assert_eq!(
            answer("404", r#"{"error":"unknown_app","message":"no"}"#),
            WakeOutcome::UnknownApp
        );
        assert_eq!(
            answer("400", r#"{"error":"invalid_app","message":"no"}"#),
            WakeOutcome::InvalidApp
        );
        assert_eq!(
            answer(
                "503",
                r#"{"error":"wake_failed","message":"boom","retry_after":9}"#
            ),
            WakeOutcome::NotReady {
                timed_out: false,
                retry_after: Some(9)
            }
        );
        assert_eq!(
            answer("504", r#"{"error":"wake_timeout","message":"slow"}"#),
            WakeOutcome::NotReady {
                timed_out: true,
                retry_after: None
            }
        );
        assert_eq!(
            answer(
                "503",
                r#"{"error":"wake_failed","retry_after":99999999999}"#
            ),
            WakeOutcome::NotReady {
                timed_out: false,
                retry_after: Some(3600)
            }
        );
        assert_eq!(
            answer("503", r#"{"error":"wake_failed","retry_after":0}"#),
            WakeOutcome::NotReady {
                timed_out: false,
                retry_after: Some(1)
            }
        );
        let c = config("");
        assert_eq!(
            after_wake(
                &c,
                "my-app",
                None,
                answer("504", r#"{"error":"wake_timeout"}"#)
            ),
            WakeAction::Reply(LocalReply::for_app(ReplyKind::WakeTimeout, "my-app").retry_after(5))
        );
        assert_eq!(
            after_wake(&c, "my-app", None, WakeOutcome::UnknownApp),
            WakeAction::Reply(LocalReply::for_app(ReplyKind::UnknownApp, "my-app"))
        );
    }

    #[test]
    fn envoy_errors_are_sidecar_failures() {
        // What Envoy itself answers when the sidecar is down or too slow.
        let plain: Option<&[u8]> = Some(b"text/plain");
        let cases = [
            parse_wake_answer(
                "my-app",
                Some(b"503"),
                plain,
                b"upstream connect error or disconnect/reset before headers",
            ),
            parse_wake_answer("my-app", Some(b"504"), plain, b"upstream request timeout"),
            parse_wake_answer("my-app", None, None, b""),
            parse_wake_answer("my-app", Some(b"500"), JSON, br#"{"error":"x"}"#),
            parse_wake_answer("my-app", Some(b"404"), JSON, br#"{"error":"not_found"}"#),
            parse_wake_answer("my-app", Some(b"20"), JSON, b"{}"),
            parse_wake_answer("my-app", Some(b"200"), None, b"{}"),
        ];
        for outcome in cases {
            assert!(matches!(outcome, WakeOutcome::Unusable(_)), "{outcome:?}");
        }
    }

    #[test]
    fn failure_policy() {
        let closed = config("");
        assert_eq!(
            failure_action(&closed, "my-app", None),
            WakeAction::Reply(LocalReply::for_app(ReplyKind::Unavailable, "my-app").retry_after(5))
        );
        let open = config(r#","failure_policy":"open""#);
        assert_eq!(
            after_wake(
                &open,
                "my-app",
                None,
                WakeOutcome::Unusable(AnswerError::NoResponse)
            ),
            WakeAction::Route {
                cluster: "fr1".into(),
                upstream_host: "my-app.osc-fr1.scalingo.io".into(),
                cache: false
            }
        );
        assert_eq!(
            failure_action(&open, "my-app", Some("osc-secnum-fr1")),
            WakeAction::Route {
                cluster: "osc-secnum-fr1".into(),
                upstream_host: "my-app.osc-secnum-fr1.scalingo.io".into(),
                cache: false
            }
        );
    }

    #[test]
    fn the_region_of_a_cached_upstream_host() {
        assert_eq!(
            region_of_upstream("my-app", "my-app.osc-secnum-fr1.scalingo.io").as_deref(),
            Some("osc-secnum-fr1")
        );
        for host in [
            "other-app.osc-fr1.scalingo.io",
            "my-app.scalingo.io",
            "my-app.osc-fr1.example.com",
            "my-app.OSC.scalingo.io",
            "my-app.a.b.scalingo.io",
        ] {
            assert_eq!(region_of_upstream("my-app", host), None, "{host}");
        }
    }

    proptest! {
        #[test]
        fn any_answer_is_handled(
            // The sidecar's real statuses as often as random bytes.
            status in prop_oneof![
                1 => proptest::option::of(prop::collection::vec(any::<u8>(), 0..4)),
                3 => Just(Some(b"200".to_vec())),
                1 => "(202|400|404|503|504)".prop_map(|s| Some(s.into_bytes())),
            ],
            json in prop::bool::weighted(0.75),
            body in prop_oneof![
                1 => prop::collection::vec(any::<u8>(), 0..100),
                1 => "\\{\"(app|region|upstream_host|error|retry_after)\":\"\\PC{0,20}\"\\}".prop_map(String::into_bytes),
                // Awake answers, with good and bad regions and hosts: the
                // `Awake` branch below is reached on purpose.
                3 => ("(osc-fr1|osc-secnum-fr1|[a-z0-9-]{0,12}|\\PC{0,6})", "(my-app\\.osc-fr1\\.scalingo\\.io|[a-z0-9.:-]{0,24}|\\PC{0,8})")
                    .prop_map(|(region, host)| format!(r#"{{"app":"my-app","region":"{region}","upstream_host":"{host}"}}"#).into_bytes()),
            ],
        ) {
            let content_type: Option<&[u8]> = json.then_some(b"application/json");
            let outcome = parse_wake_answer("my-app", status.as_deref(), content_type, &body);
            // Only a 200 in JSON wakes; anything else never routes.
            if !(json && status.as_deref() == Some(b"200".as_slice())) {
                prop_assert!(!matches!(outcome, WakeOutcome::Awake(_)), "{:?}", outcome);
            }
            if let WakeOutcome::Awake(a) = &outcome {
                prop_assert!(check_region("r", &a.region).is_ok());
                prop_assert!(is_upstream_host(&a.upstream_host));
            }
            if let WakeAction::Route { cluster, upstream_host, .. } = after_wake(&config(""), "my-app", None, outcome) {
                prop_assert!(crate::config::is_cluster_name(&cluster));
                prop_assert!(is_upstream_host(&upstream_host));
            }
        }
    }
}
