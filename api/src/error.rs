//! Error codes and the error answer.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Every error code of the gateway, as spelled in the `error` field of the
/// sidecar's error answers, of the filter's local replies and of the public
/// status. The spelling is the wire format: [`ErrorCode::as_str`] is the only
/// place it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a valid Scalingo app name (or a host naming none).
    InvalidApp,
    /// No app of that name in any region.
    UnknownApp,
    /// The wake failed (Scalingo refused or failed, no web process, the
    /// rules cannot resolve the app, ...).
    WakeFailed,
    /// The app did not start within the wake timeout.
    WakeTimeout,
    /// The sidecar's registry cannot be reached (operator endpoints).
    RegistryUnavailable,
    /// The sidecar requires a bearer token (`PAASTIS_SIDECAR_TOKEN`, the
    /// filter's `sidecar_token`) and the request had none or another one.
    Unauthorized,
    /// Filter only: the sidecar cannot be reached or answered nonsense.
    Unavailable,
    /// Filter only: missing or malformed `Host`/`:authority`.
    InvalidHost,
    /// Filter only: no rule matches the host.
    UnknownHost,
}

impl ErrorCode {
    /// Every code, for exhaustive checks.
    pub const ALL: [ErrorCode; 9] = [
        Self::InvalidApp,
        Self::UnknownApp,
        Self::WakeFailed,
        Self::WakeTimeout,
        Self::RegistryUnavailable,
        Self::Unauthorized,
        Self::Unavailable,
        Self::InvalidHost,
        Self::UnknownHost,
    ];

    /// The code on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidApp => "invalid_app",
            Self::UnknownApp => "unknown_app",
            Self::WakeFailed => "wake_failed",
            Self::WakeTimeout => "wake_timeout",
            Self::RegistryUnavailable => "registry_unavailable",
            Self::Unauthorized => "unauthorized",
            Self::Unavailable => "unavailable",
            Self::InvalidHost => "invalid_host",
            Self::UnknownHost => "unknown_host",
        }
    }

    /// The HTTP status of the sidecar's answer carrying this code (for the
    /// filter-only codes, of the filter's). The filter's own local replies
    /// may differ: it answers a `wake_timeout` with 503, a status clients
    /// retry, where the sidecar says 504 to the filter.
    pub const fn status(self) -> u16 {
        match self {
            Self::InvalidApp | Self::InvalidHost => 400,
            Self::Unauthorized => 401,
            Self::UnknownApp | Self::UnknownHost => 404,
            Self::WakeFailed | Self::RegistryUnavailable | Self::Unavailable => 503,
            Self::WakeTimeout => 504,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is no [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCode(pub String);

impl fmt::Display for UnknownCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown error code {:?}", self.0)
    }
}

impl std::error::Error for UnknownCode {}

impl FromStr for ErrorCode {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCode(s.to_owned()))
    }
}

/// Every error answer: `{"error": code, "message": text, "retry_after"?:
/// seconds}` with the status of [`ErrorCode::status`]. `message` is for
/// humans and logs (readers must not parse it; it defaults to empty);
/// `retry_after` is set on 503s and 504s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: ErrorCode,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ErrorAnswer {
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }
}

/// The JSON body of the filter's own local replies to clients (not to the
/// sidecar): `{"error": code, "message": text, "app": name | null}`. `app`
/// is always written, `null` when the request named no valid app. Borrowed
/// when written, owned when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalReplyBody<'a> {
    pub error: ErrorCode,
    pub message: Cow<'a, str>,
    pub app: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_serde_and_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            assert_eq!(code.to_string(), code.as_str());
        }
        assert_eq!(
            "Wake_Failed".parse::<ErrorCode>(),
            Err(UnknownCode("Wake_Failed".into()))
        );
        assert!(serde_json::from_str::<ErrorCode>(r#""exploded""#).is_err());
    }

    #[test]
    fn statuses() {
        let status = |c: ErrorCode| c.status();
        assert_eq!(status(ErrorCode::InvalidApp), 400);
        assert_eq!(status(ErrorCode::UnknownApp), 404);
        assert_eq!(status(ErrorCode::WakeFailed), 503);
        assert_eq!(status(ErrorCode::WakeTimeout), 504);
        assert_eq!(status(ErrorCode::RegistryUnavailable), 503);
        assert_eq!(status(ErrorCode::Unauthorized), 401);
    }

    #[test]
    fn error_answers() {
        let a = ErrorAnswer::new(ErrorCode::WakeFailed, "boom").retry_after(Some(10));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"error": "wake_failed", "message": "boom", "retry_after": 10})
        );
        let a = ErrorAnswer::new(ErrorCode::UnknownApp, "no");
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"error":"unknown_app","message":"no"}"#
        );
        assert_eq!(
            serde_json::from_str::<ErrorAnswer>(r#"{"error":"wake_timeout"}"#).unwrap(),
            ErrorAnswer::new(ErrorCode::WakeTimeout, "")
        );
        let local = LocalReplyBody {
            error: ErrorCode::UnknownHost,
            message: "no app is served at this host".into(),
            app: None,
        };
        let text = serde_json::to_string(&local).unwrap();
        assert_eq!(
            text,
            r#"{"error":"unknown_host","message":"no app is served at this host","app":null}"#
        );
        assert_eq!(
            serde_json::from_str::<LocalReplyBody>(&text).unwrap(),
            local
        );
    }
}
