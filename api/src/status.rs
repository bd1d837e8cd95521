//! `GET /v1/status?app=NAME`: where the wake of a waiting page stands.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::STATUS_PATH;

/// The query of `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusQuery {
    /// The app the host named.
    pub app: String,
}

impl StatusQuery {
    /// The request path for `app`. `app` must be a valid app name
    /// (lower-case letters, digits and dashes): nothing is escaped.
    pub fn path(app: &str) -> String {
        format!("{STATUS_PATH}?app={app}")
    }
}

/// The state of one app on the waiting page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    /// Seen running within the awake TTL.
    Running,
    /// Being woken.
    Waking,
    /// Its wake failed.
    Failed,
    /// Neither running nor being woken, as far as the sidecar knows (the
    /// page then reloads, which starts a wake again).
    Asleep,
}

impl AppState {
    /// Every state.
    pub const ALL: [AppState; 4] = [Self::Running, Self::Waking, Self::Failed, Self::Asleep];

    /// The state on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Waking => "waking",
            Self::Failed => "failed",
            Self::Asleep => "asleep",
        }
    }
}

/// One app of a wake and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    pub app: String,
    pub state: AppState,
}

/// 200 answer of `GET /v1/status?app=NAME`. The filter reads `app` (checked
/// when present), `ready`, `region` and `upstream_host` (required when
/// `ready`), `apps` and `error`; `target` defaults when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// The app the host named (always sent by the sidecar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The app the rules resolved it to.
    #[serde(default)]
    pub target: String,
    /// True when the target runs and none of its linked apps is still being
    /// woken: a request now is served at once.
    pub ready: bool,
    /// Where the target runs, when `ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_host: Option<String>,
    /// The target first, then its linked apps.
    pub apps: Vec<AppStatus>,
    /// The error of the target's failed wake (`wake_failed`, `wake_timeout`,
    /// `unknown_app`, `invalid_app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorCode>,
    /// Why the target's wake failed, for humans (the waiting page): its
    /// scale operation's error, "crashed", ...; with `error` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long a wake of the target usually takes (the median of its
    /// recent wakes, shared by the instances), in milliseconds; absent
    /// while none was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_ms: Option<u64>,
}

/// The filter's answer on the public status path (`PUBLIC_STATUS_PATH`),
/// read by the waiting page: 200, or 503 with `Retry-After` when `error` is
/// `unavailable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicStatus {
    /// The app the host named.
    pub app: String,
    /// A request now is served at once: the page reloads.
    pub ready: bool,
    /// The app woken first, then its linked apps.
    pub apps: Vec<AppStatus>,
    /// `wake_failed`, `wake_timeout`, `unknown_app`, `invalid_app`, or
    /// `unavailable` when the sidecar cannot tell (the page keeps polling
    /// for a while).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorCode>,
    /// Why the wake failed, in words (with `error`; short plain text, shown
    /// as text by the page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long a wake usually takes, in milliseconds (the sidecar's
    /// estimate); the page's progress bar follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips() {
        assert_eq!(StatusQuery::path("shop-front"), "/v1/status?app=shop-front");
        let s = StatusAnswer {
            app: Some("shop-front".into()),
            target: "shop-front".into(),
            ready: false,
            region: None,
            upstream_host: None,
            apps: vec![AppStatus {
                app: "shop-front".into(),
                state: AppState::Failed,
            }],
            error: Some(ErrorCode::WakeFailed),
            reason: None,
            expected_ms: None,
        };
        let value = serde_json::to_value(&s).unwrap();
        assert_eq!(
            value,
            json!({"app": "shop-front", "target": "shop-front", "ready": false, "apps": [{"app": "shop-front", "state": "failed"}], "error": "wake_failed"})
        );
        assert_eq!(serde_json::from_value::<StatusAnswer>(value).unwrap(), s);
        let with_reason = StatusAnswer {
            reason: Some("the app crashed".into()),
            expected_ms: Some(3_500),
            ..s
        };
        let value = serde_json::to_value(&with_reason).unwrap();
        assert_eq!(value["reason"], "the app crashed");
        assert_eq!(value["expected_ms"], 3_500);
        assert_eq!(
            serde_json::from_value::<StatusAnswer>(value).unwrap(),
            with_reason
        );
        for state in [
            AppState::Running,
            AppState::Waking,
            AppState::Failed,
            AppState::Asleep,
        ] {
            let text = serde_json::to_string(&state).unwrap();
            assert_eq!(serde_json::from_str::<AppState>(&text).unwrap(), state);
        }
        assert!(serde_json::from_str::<AppState>(r#""exploded""#).is_err());

        let p = PublicStatus {
            app: "shop-front".into(),
            ready: false,
            apps: Vec::new(),
            error: Some(ErrorCode::Unavailable),
            reason: None,
            expected_ms: None,
        };
        let value = serde_json::to_value(&p).unwrap();
        assert_eq!(
            value,
            json!({"app": "shop-front", "ready": false, "apps": [], "error": "unavailable"})
        );
        assert_eq!(serde_json::from_value::<PublicStatus>(value).unwrap(), p);
    }
}
