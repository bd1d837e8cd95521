//! The contract between the two JSON mechanisms of the wire types: what the
//! filter writes with [`mini`] is what serde writes, byte for byte, and what
//! serde (the sidecar) writes the filter reads back as the same value; on
//! hand-written bodies (absent fields, `null`s, unknown fields, wrong types)
//! both accept the same ones, with the same values.

use std::borrow::Cow;
use std::fmt::Debug;

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::mini::{self, FromJson};
use crate::*;

/// `value` as the filter writes it is serde's text, and serde reads it back.
fn written_alike<T>(value: &T)
where
    T: Serialize + DeserializeOwned + miniserde::Serialize + PartialEq + Debug,
{
    let text = mini::to_string(value);
    assert_eq!(text, serde_json::to_string(value).unwrap(), "{value:?}");
    assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), value, "{text}");
}

/// `value` as serde (the sidecar) writes it, the filter reads back.
fn read_back<T>(value: &T)
where
    T: Serialize + FromJson + PartialEq + Debug,
{
    let text = serde_json::to_string(value).unwrap();
    assert_eq!(
        &mini::from_slice::<T>(text.as_bytes()).unwrap(),
        value,
        "{text}"
    );
}

/// Both mechanisms accept `text` with the same value, or both refuse it.
fn agree<T>(text: &str, accepted: bool)
where
    T: DeserializeOwned + FromJson + PartialEq + Debug,
{
    let serde = serde_json::from_str::<T>(text).ok();
    let mini = mini::from_slice::<T>(text.as_bytes());
    assert_eq!(serde.is_some(), accepted, "serde on {text}");
    match (serde, mini) {
        (Some(s), Ok(m)) => assert_eq!(s, m, "{text}"),
        (None, Err(_)) => {}
        (s, m) => panic!("{text}: serde {s:?}, mini {m:?}"),
    }
}

const STRINGS: [&str; 5] = [
    "",
    "my-app",
    "quote \" backslash \\ slash / </script>",
    "control \u{0} \u{1f} \n \t \u{7f}",
    "unicode é 🚀 \u{2028}",
];

#[test]
fn requests_are_written_alike() {
    for app in STRINGS {
        for region in [None, Some(app.to_owned())] {
            for client in [None, Some(Client::Browser), Some(Client::Api)] {
                for verify in [false, true] {
                    written_alike(&WakeRequest {
                        app: app.to_owned(),
                        region: region.clone(),
                        client,
                        verify,
                        background: verify,
                    });
                }
            }
        }
        let apps = vec![app.to_owned(), "b".to_owned()];
        for not_running in [&[][..], &apps[..1]] {
            written_alike(&ActivityRequest {
                apps: Cow::Borrowed(&apps),
                not_running: Cow::Borrowed(not_running),
                held: Cow::Borrowed(not_running),
                vm: Some(Cow::Borrowed(app)),
                lease_ms: Some(30_000),
            });
        }
        written_alike(&ActivityRequest {
            apps: Cow::Borrowed(&[]),
            not_running: Cow::Borrowed(&[]),
            held: Cow::Borrowed(&[]),
            vm: None,
            lease_ms: None,
        });
    }
}

#[test]
fn local_replies_and_public_status_are_written_alike() {
    for text in STRINGS {
        for code in ErrorCode::ALL {
            for app in [None, Some(Cow::Borrowed(text))] {
                written_alike(&LocalReplyBody {
                    error: code,
                    message: Cow::Borrowed(text),
                    app,
                });
            }
        }
        let apps: Vec<AppStatus> = AppState::ALL
            .into_iter()
            .map(|state| AppStatus {
                app: text.to_owned(),
                state,
            })
            .collect();
        for (error, reason, expected_ms) in [
            (None, None, None),
            (Some(ErrorCode::WakeFailed), Some(text.to_owned()), None),
            (Some(ErrorCode::Unavailable), None, Some(u64::MAX)),
        ] {
            for apps in [Vec::new(), apps.clone()] {
                written_alike(&PublicStatus {
                    app: text.to_owned(),
                    ready: error.is_none(),
                    apps,
                    error,
                    reason: reason.clone(),
                    expected_ms,
                });
            }
        }
    }
}

#[test]
fn answers_are_read_back() {
    for text in STRINGS {
        let s = text.to_owned();
        for app in [None, Some(s.clone())] {
            read_back(&WakeAnswer {
                app: app.clone(),
                target: s.clone(),
                region: s.clone(),
                upstream_host: s.clone(),
                linked_apps: vec![
                    LinkedResult {
                        app: s.clone(),
                        running: true,
                        error: None,
                    },
                    LinkedResult {
                        app: s.clone(),
                        running: false,
                        error: Some(s.clone()),
                    },
                ],
                waited_ms: u64::MAX,
            });
            read_back(&WaitingAnswer {
                waiting: true,
                app: app.clone(),
                target: s.clone(),
                linked_apps: vec![s.clone()],
                expected_ms: Some(0),
            });
            read_back(&StatusAnswer {
                app: app.clone(),
                target: s.clone(),
                ready: app.is_some(),
                region: app.clone(),
                upstream_host: app.clone(),
                apps: AppState::ALL
                    .into_iter()
                    .map(|state| AppStatus {
                        app: s.clone(),
                        state,
                    })
                    .collect(),
                error: app.as_ref().map(|_| ErrorCode::WakeTimeout),
                reason: app.clone(),
                expected_ms: Some(7),
            });
        }
        for code in ErrorCode::ALL {
            read_back(&ErrorAnswer::new(code, text).retry_after(Some(3)));
            read_back(&ErrorAnswer::new(code, text));
        }
        read_back(&ActivityAnswer {
            awake: vec![RunningApp {
                app: s.clone(),
                region: s.clone(),
                upstream_host: s.clone(),
            }],
            asleep: vec![s.clone(), s.clone()],
        });
        read_back(&ActivityAnswer {
            awake: Vec::new(),
            asleep: Vec::new(),
        });
    }
}

#[test]
fn hand_written_answers_agree() {
    let unknown = r#""future":{"a":[1,2.5,null,{"b":true}]},"x":-1"#;
    // WakeAnswer: only region and upstream_host are required.
    for (text, ok) in [
        (r#"{"region":"r","upstream_host":"h"}"#.to_owned(), true),
        (format!(r#"{{"region":"r","upstream_host":"h",{unknown}}}"#), true),
        (r#"{"app":null,"region":"r","upstream_host":"h","linked_apps":[{"app":"a","running":true,"error":null,"extra":1}]}"#.to_owned(), true),
        (r#"{"region":"r"}"#.to_owned(), false),
        (r#"{"region":"r","upstream_host":null}"#.to_owned(), false),
        (r#"{"region":"r","upstream_host":"h","target":null}"#.to_owned(), false),
        (r#"{"region":"r","upstream_host":"h","waited_ms":-1}"#.to_owned(), false),
        (r#"{"region":"r","upstream_host":"h","waited_ms":1.5}"#.to_owned(), false),
        (r#"{"region":"r","upstream_host":"h","waited_ms":"1"}"#.to_owned(), false),
        (r#"{"region":"r","upstream_host":"h","linked_apps":[{"app":"a"}]}"#.to_owned(), false),
        (r#"{"region":"r","upstream_host":"h","linked_apps":{}}"#.to_owned(), false),
        (r#"{"region":1,"upstream_host":"h"}"#.to_owned(), false),
        ("[]".to_owned(), false),
        ("null".to_owned(), false),
        (r#"{"region":"r","upstream_host":"h"} x"#.to_owned(), false),
        (r#"{"region":"r","upstream_host":"h""#.to_owned(), false),
    ] {
        agree::<WakeAnswer>(&text, ok);
    }
    for (text, ok) in [
        (r#"{"waiting":true,"target":"t"}"#.to_owned(), true),
        (
            format!(r#"{{"waiting":false,"target":"t","expected_ms":null,{unknown}}}"#),
            true,
        ),
        (r#"{"target":"t"}"#.to_owned(), false),
        (r#"{"waiting":"yes","target":"t"}"#.to_owned(), false),
        (
            r#"{"waiting":true,"target":"t","linked_apps":[1]}"#.to_owned(),
            false,
        ),
    ] {
        agree::<WaitingAnswer>(&text, ok);
    }
    for (text, ok) in [
        (r#"{"error":"wake_timeout"}"#.to_owned(), true),
        (
            format!(r#"{{"error":"wake_failed","message":"m","retry_after":null,{unknown}}}"#),
            true,
        ),
        (r#"{"error":"exploded"}"#.to_owned(), false),
        (r#"{"error":"Wake_Failed"}"#.to_owned(), false),
        (r#"{"error":null}"#.to_owned(), false),
        (r#"{"message":"m"}"#.to_owned(), false),
        (
            r#"{"error":"wake_failed","retry_after":-5}"#.to_owned(),
            false,
        ),
    ] {
        agree::<ErrorAnswer>(&text, ok);
    }
    for (text, ok) in [
        (r#"{"ready":false,"apps":[]}"#.to_owned(), true),
        (
            format!(
                r#"{{"ready":true,"region":"r","upstream_host":"h","apps":[{{"app":"a","state":"running","x":0}}],{unknown}}}"#
            ),
            true,
        ),
        (
            r#"{"ready":false,"apps":[],"error":null,"reason":null,"expected_ms":null,"app":null}"#
                .to_owned(),
            true,
        ),
        (r#"{"ready":false}"#.to_owned(), false),
        (r#"{"apps":[]}"#.to_owned(), false),
        (
            r#"{"ready":false,"apps":[{"app":"a","state":"exploded"}]}"#.to_owned(),
            false,
        ),
        (r#"{"ready":false,"apps":[{"app":"a"}]}"#.to_owned(), false),
        (
            r#"{"ready":false,"apps":[],"error":"nope"}"#.to_owned(),
            false,
        ),
    ] {
        agree::<StatusAnswer>(&text, ok);
    }
    for (text, ok) in [
        ("{}".to_owned(), true),
        (format!(r#"{{"asleep":["a"],{unknown}}}"#), true),
        (
            r#"{"awake":[{"app":"a","region":"r","upstream_host":"h","since":1}]}"#.to_owned(),
            true,
        ),
        (r#"{"awake":[{"app":"a","region":"r"}]}"#.to_owned(), false),
        (r#"{"awake":null}"#.to_owned(), false),
        (r#"{"asleep":[null]}"#.to_owned(), false),
    ] {
        agree::<ActivityAnswer>(&text, ok);
    }
}

#[test]
fn errors_name_the_field() {
    let error = |text: &str| {
        mini::from_slice::<WakeAnswer>(text.as_bytes())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(error(r#"{"region":"r"}"#), "missing field `upstream_host`");
    assert_eq!(
        error(r#"{"region":"r","upstream_host":"h","linked_apps":[{"app":"a","running":1}]}"#),
        "linked_apps[0].running: invalid type: integer `1`, expected a boolean"
    );
    assert_eq!(
        error(r#"{"region":"r","upstream_host":"h","waited_ms":-1}"#),
        "waited_ms: invalid value: integer `-1`, expected u64"
    );
    assert_eq!(
        error(r#"{"region":"r","upstream_host":"h","waited_ms":1.5}"#),
        "waited_ms: invalid type: floating point `1.5`, expected u64"
    );
    assert_eq!(error("{"), "not valid JSON");
    assert_eq!(error("[]"), "invalid type: sequence, expected a map");
    assert_eq!(
        mini::from_slice::<ErrorAnswer>(br#"{"error":"x"}"#)
            .unwrap_err()
            .to_string(),
        "error: unknown variant `x`, expected one of `invalid_app`, `unknown_app`, `wake_failed`, `wake_timeout`, `registry_unavailable`, `unauthorized`, `unavailable`, `invalid_host`, `unknown_host`"
    );
    assert_eq!(
        mini::from_slice::<WakeAnswer>(b"\xff")
            .unwrap_err()
            .to_string(),
        "not UTF-8"
    );
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z0-9-]{0,12}"]
}

fn app_status() -> impl Strategy<Value = AppStatus> {
    (text(), prop::sample::select(AppState::ALL.to_vec()))
        .prop_map(|(app, state)| AppStatus { app, state })
}

proptest! {
    #[test]
    fn random_values_agree(
        a in text(),
        b in proptest::option::of(text()),
        n in any::<u64>(),
        flag in any::<bool>(),
        code in prop::sample::select(ErrorCode::ALL.to_vec()),
        apps in prop::collection::vec(app_status(), 0..4),
        names in prop::collection::vec(text(), 0..4),
    ) {
        written_alike(&WakeRequest { app: a.clone(), region: b.clone(), client: flag.then_some(Client::Browser), verify: !flag, background: !flag });
        written_alike(&ActivityRequest { apps: Cow::Borrowed(&names), not_running: Cow::Borrowed(&names[..names.len().min(1)]), held: Cow::Borrowed(&names[names.len().min(1)..]), vm: b.as_deref().map(Cow::Borrowed), lease_ms: flag.then_some(n) });
        written_alike(&LocalReplyBody { error: code, message: Cow::Borrowed(&a), app: b.as_deref().map(Cow::Borrowed) });
        written_alike(&PublicStatus { app: a.clone(), ready: flag, apps: apps.clone(), error: flag.then_some(code), reason: b.clone(), expected_ms: b.as_ref().map(|_| n) });
        read_back(&WakeAnswer { app: b.clone(), target: a.clone(), region: a.clone(), upstream_host: a.clone(), linked_apps: names.iter().map(|app| LinkedResult { app: app.clone(), running: flag, error: b.clone() }).collect(), waited_ms: n });
        read_back(&WaitingAnswer { waiting: flag, app: b.clone(), target: a.clone(), linked_apps: names.clone(), expected_ms: b.as_ref().map(|_| n) });
        read_back(&StatusAnswer { app: b.clone(), target: a.clone(), ready: flag, region: b.clone(), upstream_host: b.clone(), apps, error: flag.then_some(code), reason: b.clone(), expected_ms: Some(n) });
        read_back(&ErrorAnswer::new(code, a.clone()).retry_after(b.as_ref().map(|_| n)));
        read_back(&ActivityAnswer { awake: names.iter().map(|app| RunningApp { app: app.clone(), region: a.clone(), upstream_host: a.clone() }).collect(), asleep: names });
    }

    /// Any body is read or refused, never a panic (nor a stack overflow on
    /// deep nesting).
    #[test]
    fn any_body_is_handled(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            "[\\[\\]{}\",:0-9a-z.eE+\\-\\\\ ]{0,80}".prop_map(String::into_bytes),
            (1usize..5000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
            (1usize..5000).prop_map(|depth| format!("{{\"awake\":{}", "{\"a\":".repeat(depth)).into_bytes()),
        ],
    ) {
        let _ = mini::from_slice::<WakeAnswer>(&body);
        let _ = mini::from_slice::<WaitingAnswer>(&body);
        let _ = mini::from_slice::<ErrorAnswer>(&body);
        let _ = mini::from_slice::<StatusAnswer>(&body);
        let _ = mini::from_slice::<ActivityAnswer>(&body);
    }
}
