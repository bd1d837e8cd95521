//! The vocabulary of the sidecar's answers, shared by the three callouts
//! (wake, status, activity): reading `:status` and the content type, why an
//! answer is unusable, and a validated "this app is awake here".
//!
//! The sidecar is trusted to decide, not to be well-formed: every answer is
//! checked, and anything unexpected is an [`AnswerError`] (a sidecar
//! failure). This module depends on no other callout module, so each of them
//! can use it without importing another.

use std::str;

use paastis_api::ErrorCode;
use paastis_rules::check_region;
use thiserror::Error;

use crate::cache::is_upstream_host;

/// Largest answer body read from the sidecar; a longer body is truncated and
/// then fails to parse (a sidecar failure).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why a sidecar answer is not usable. Logged, then handled by the failure
/// policy.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnswerError {
    #[error("no answer (the callout failed before any response)")]
    NoResponse,
    #[error("answer without a valid :status")]
    NoStatus,
    #[error("answer {0} is not JSON (content-type)")]
    NotJson(u16),
    #[error("answer {status} has an unexpected body: {message}")]
    BadBody { status: u16, message: String },
    #[error("answer {0} is not one the sidecar sends")]
    UnexpectedStatus(u16),
    #[error("answer {status} has unexpected error code {code:?}")]
    UnexpectedCode { status: u16, code: ErrorCode },
    #[error("answer is for app {0:?}, not the one requested")]
    WrongApp(String),
    #[error("answer has an invalid region {0:?}")]
    InvalidRegion(String),
    #[error("answer has an invalid upstream host {0:?}")]
    InvalidUpstreamHost(String),
}

/// A validated "this app is awake here".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awake {
    /// A valid region name.
    pub region: String,
    /// A valid upstream host (no port).
    pub upstream_host: String,
}

impl Awake {
    /// Validates a region and upstream host given by the sidecar.
    pub fn checked(region: String, upstream_host: String) -> Result<Self, AnswerError> {
        if check_region("region", &region).is_err() {
            return Err(AnswerError::InvalidRegion(region));
        }
        if !is_upstream_host(&upstream_host) {
            return Err(AnswerError::InvalidUpstreamHost(upstream_host));
        }
        Ok(Self {
            region,
            upstream_host,
        })
    }
}

/// Parses `:status` (three digits, 100 to 599).
pub fn parse_status(value: &[u8]) -> Option<u16> {
    if value.len() != 3 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    str::from_utf8(value)
        .ok()?
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))
}

/// True for `application/json`, with or without parameters.
pub fn is_json_content_type(value: &[u8]) -> bool {
    let media = value.split(|&b| b == b';').next().unwrap_or_default();
    media.trim_ascii().eq_ignore_ascii_case(b"application/json")
}

/// The status of a sidecar answer, when it is one of `expected` and the body
/// is JSON. Envoy's own 503/504 (sidecar down, callout timeout) are plain
/// text: the content type tells them from the sidecar's.
pub fn sidecar_json_status(
    status: Option<&[u8]>,
    content_type: Option<&[u8]>,
    expected: &[u16],
) -> Result<u16, AnswerError> {
    let status = status.and_then(parse_status).ok_or(AnswerError::NoStatus)?;
    if !expected.contains(&status) {
        return Err(AnswerError::UnexpectedStatus(status));
    }
    if !content_type.is_some_and(is_json_content_type) {
        return Err(AnswerError::NotJson(status));
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_and_statuses() {
        assert!(is_json_content_type(b"application/json"));
        assert!(is_json_content_type(b"Application/JSON; charset=utf-8"));
        assert!(!is_json_content_type(b"application/jsonx"));
        assert!(!is_json_content_type(b"text/plain"));
        assert_eq!(parse_status(b"200"), Some(200));
        assert_eq!(parse_status(b"099"), None);
        assert_eq!(parse_status(b"600"), None);
        assert_eq!(parse_status(b"+20"), None);
    }
}
