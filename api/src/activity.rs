//! `POST /v1/activity`: the apps the filter served since its last flush.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The body of `POST /v1/activity`: `{"apps": [names]}` (each app once; at
/// most 10,000 per batch). Borrowed when written (the filter keeps its batch
/// to check the answer), owned when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityRequest<'a> {
    pub apps: Cow<'a, [String]>,
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

/// 200 answer of `POST /v1/activity`: the apps of the batch the sidecar
/// knows to run (the filter refreshes its cache from them; `awake` defaults
/// to empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityAnswer {
    #[serde(default)]
    pub awake: Vec<RunningApp>,
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
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"apps":["app-one","app-two"]}"#);
        assert_eq!(serde_json::from_str::<ActivityRequest>(&text).unwrap(), r);
        assert!(serde_json::from_str::<ActivityRequest>(r#"{"apps":[],"x":1}"#).is_err());

        let a = ActivityAnswer {
            awake: vec![RunningApp {
                app: "app-one".into(),
                region: "osc-fr1".into(),
                upstream_host: "app-one.osc-fr1.scalingo.io".into(),
            }],
        };
        let value = serde_json::to_value(&a).unwrap();
        assert_eq!(
            value,
            json!({"awake": [{"app": "app-one", "region": "osc-fr1", "upstream_host": "app-one.osc-fr1.scalingo.io"}]})
        );
        assert_eq!(serde_json::from_value::<ActivityAnswer>(value).unwrap(), a);
        assert_eq!(
            serde_json::from_str::<ActivityAnswer>("{}").unwrap(),
            ActivityAnswer { awake: Vec::new() }
        );
    }
}
