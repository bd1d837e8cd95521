//! `POST /v1/wake`: its request and its two success answers.

use serde::{Deserialize, Serialize};

/// Who sent the request the filter asks a wake for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    /// A browser navigating (`GET` with `Accept: text/html`): may get the
    /// waiting page (202).
    Browser,
    /// Anything else: always held until the app runs.
    Api,
}

impl Client {
    /// The client on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Api => "api",
        }
    }
}

/// The body of `POST /v1/wake`: `{"app", "region", "client"?, "verify"?,
/// "background"?}`. `region` is always written (`null` when the host rule
/// pins none); `client` only for a browser; `verify` and `background` only
/// when true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WakeRequest {
    /// The app the host named.
    pub app: String,
    /// The region the filter's host rule pins, if any (the sidecar's rules
    /// win over it).
    #[serde(default)]
    pub region: Option<String>,
    /// `browser` when the filter may show the waiting page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Client>,
    /// True when the filter's traffic just showed the app not running (the
    /// platform's router answered 502/503/504 for it): the sidecar must not
    /// answer from its memory of "awake" before it checked the app (once per
    /// app per period, see the sidecar's `verify`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify: bool,
    /// True when the filter will not hold the request (it answers it with
    /// the waiting page or a 503 itself, whatever the app's strategy: the
    /// platform's router answered a request it routed): the sidecar starts
    /// the wake in the background and answers 202 at once unless the app
    /// runs (200). Sent with `verify`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
}

/// 200 answer of `POST /v1/wake`: the app runs.
///
/// The filter reads `region` and `upstream_host` (and `app`, checked when
/// present); the other fields are for logs and tests and default when
/// absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeAnswer {
    /// The app the host named (always sent by the sidecar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The app the rules resolved it to (`app_name`), now running.
    #[serde(default)]
    pub target: String,
    /// The target's region.
    pub region: String,
    /// Host of the target's default domain on its region's front-end.
    pub upstream_host: String,
    /// The linked apps woken with it.
    #[serde(default)]
    pub linked_apps: Vec<LinkedResult>,
    /// How long the request waited.
    #[serde(default)]
    pub waited_ms: u64,
}

/// How the wake of one linked app went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedResult {
    pub app: String,
    pub running: bool,
    /// Why it does not run (human-readable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// 202 answer of `POST /v1/wake`: a browser is shown the waiting page while
/// the wake goes on in the background.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingAnswer {
    /// Always true: tells this answer from a 200 [`WakeAnswer`].
    pub waiting: bool,
    /// The app the host named (always sent by the sidecar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The app the rules resolved it to (`app_name`).
    pub target: String,
    /// The linked apps woken with it (followed recursively).
    #[serde(default)]
    pub linked_apps: Vec<String>,
    /// How long a wake of the target usually takes (the median of its
    /// recent wakes), in milliseconds; absent while none was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests() {
        let r = WakeRequest {
            app: "my-app".into(),
            region: None,
            client: None,
            verify: false,
            background: false,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"app":"my-app","region":null}"#
        );
        let held = WakeRequest {
            verify: true,
            background: true,
            ..r.clone()
        };
        assert_eq!(
            serde_json::to_string(&held).unwrap(),
            r#"{"app":"my-app","region":null,"verify":true,"background":true}"#
        );
        let checked = WakeRequest { verify: true, ..r };
        let text = serde_json::to_string(&checked).unwrap();
        assert_eq!(text, r#"{"app":"my-app","region":null,"verify":true}"#);
        assert_eq!(serde_json::from_str::<WakeRequest>(&text).unwrap(), checked);
        let r = WakeRequest {
            app: "my-app".into(),
            region: Some("osc-fr1".into()),
            client: Some(Client::Browser),
            verify: false,
            background: false,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"app":"my-app","region":"osc-fr1","client":"browser"}"#
        );
        assert_eq!(serde_json::from_str::<WakeRequest>(&text).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<WakeRequest>(r#"{"app":"a-b","client":"api"}"#).unwrap(),
            WakeRequest {
                app: "a-b".into(),
                region: None,
                client: Some(Client::Api),
                verify: false,
                background: false,
            }
        );
        for bad in [
            r#"{"app":"my-app","extra":1}"#,
            r#"{"app":"my-app","client":"Browser"}"#,
            r#"{"region":"osc-fr1"}"#,
        ] {
            assert!(serde_json::from_str::<WakeRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers() {
        let a = WakeAnswer {
            app: Some("my-app".into()),
            target: "my-app".into(),
            region: "osc-fr1".into(),
            upstream_host: "my-app.osc-fr1.scalingo.io".into(),
            linked_apps: vec![LinkedResult {
                app: "my-api".into(),
                running: false,
                error: Some("boom".into()),
            }],
            waited_ms: 12,
        };
        let value = serde_json::to_value(&a).unwrap();
        assert_eq!(
            value,
            json!({"app": "my-app", "target": "my-app", "region": "osc-fr1",
                   "upstream_host": "my-app.osc-fr1.scalingo.io",
                   "linked_apps": [{"app": "my-api", "running": false, "error": "boom"}],
                   "waited_ms": 12})
        );
        assert_eq!(serde_json::from_value::<WakeAnswer>(value).unwrap(), a);
        // Readers need only where the app runs.
        let minimal: WakeAnswer =
            serde_json::from_str(r#"{"region":"osc-fr1","upstream_host":"h.io"}"#).unwrap();
        assert_eq!(minimal.app, None);
        assert!(minimal.linked_apps.is_empty());

        let w = WaitingAnswer {
            waiting: true,
            app: Some("shop-front".into()),
            target: "shop-front".into(),
            linked_apps: vec!["shop-api-1".into()],
            expected_ms: None,
        };
        let value = serde_json::to_value(&w).unwrap();
        assert_eq!(
            value,
            json!({"waiting": true, "app": "shop-front", "target": "shop-front", "linked_apps": ["shop-api-1"]})
        );
        assert_eq!(serde_json::from_value::<WaitingAnswer>(value).unwrap(), w);
        let estimated = WaitingAnswer {
            expected_ms: Some(4_200),
            ..w
        };
        let value = serde_json::to_value(&estimated).unwrap();
        assert_eq!(value["expected_ms"], 4_200);
        assert_eq!(
            serde_json::from_value::<WaitingAnswer>(value).unwrap(),
            estimated
        );
    }
}
