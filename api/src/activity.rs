//! `POST /v1/activity`: the apps the filter served since its last flush.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The body of `POST /v1/activity`: `{"apps": [names], "not_running"?:
/// [names]}` (each app once per list; at most 10,000 per list). Borrowed
/// when written (the filter keeps its batch to check the answer), owned when
/// read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityRequest<'a> {
    pub apps: Cow<'a, [String]>,
    /// Apps whose routed traffic showed them not running since the last
    /// flush (the platform's router answered 502, 503 or 504 for them; the
    /// filter dropped them from its cache). The sidecar checks each once
    /// per period and forgets the ones that do not run. Written only when
    /// not empty; defaults to empty.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub not_running: Cow<'a, [String]>,
}

// serde's `skip_serializing_if` hands the field itself, by reference.
#[allow(clippy::ptr_arg)]
fn is_empty(list: &Cow<'_, [String]>) -> bool {
    list.is_empty()
}

/// An app that runs, and where to send its traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningApp {
    /// The app as the filter named it.
    pub app: String,
    pub region: String,
    /// Host of the app's default domain on its region's front-end.
    pub upstream_host: String,
}

/// 200 answer of `POST /v1/activity`: `{"awake": [...], "asleep": [...]}`.
///
/// `awake`: the apps of the batch the sidecar knows to run (the filter
/// refreshes its cache from them). `asleep`: the apps of the batch it does
/// not know to run (never woken through it, paused, forgotten, or found
/// stopped): the filter drops their cache entries, so that a pause by any
/// instance stops the routing within one activity period. An app is in at
/// most one of the two; both default to empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityAnswer {
    #[serde(default)]
    pub awake: Vec<RunningApp>,
    #[serde(default)]
    pub asleep: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips() {
        let batch = vec!["app-one".to_owned(), "app-two".to_owned()];
        let r = ActivityRequest {
            apps: Cow::Borrowed(&batch),
            not_running: Cow::Borrowed(&[]),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"apps":["app-one","app-two"]}"#);
        assert_eq!(serde_json::from_str::<ActivityRequest>(&text).unwrap(), r);
        let stopped = vec!["app-two".to_owned()];
        let r = ActivityRequest {
            apps: Cow::Borrowed(&batch),
            not_running: Cow::Borrowed(&stopped),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"apps":["app-one","app-two"],"not_running":["app-two"]}"#
        );
        assert_eq!(serde_json::from_str::<ActivityRequest>(&text).unwrap(), r);
        assert!(serde_json::from_str::<ActivityRequest>(r#"{"apps":[],"x":1}"#).is_err());

        let a = ActivityAnswer {
            awake: vec![RunningApp {
                app: "app-one".into(),
                region: "osc-fr1".into(),
                upstream_host: "app-one.osc-fr1.scalingo.io".into(),
            }],
            asleep: vec!["app-two".into()],
        };
        let value = serde_json::to_value(&a).unwrap();
        assert_eq!(
            value,
            json!({"awake": [{"app": "app-one", "region": "osc-fr1", "upstream_host": "app-one.osc-fr1.scalingo.io"}], "asleep": ["app-two"]})
        );
        assert_eq!(serde_json::from_value::<ActivityAnswer>(value).unwrap(), a);
        assert_eq!(
            serde_json::from_str::<ActivityAnswer>("{}").unwrap(),
            ActivityAnswer {
                awake: Vec::new(),
                asleep: Vec::new()
            }
        );
    }
}
