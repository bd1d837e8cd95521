//! [`ScalingoError`] and the mapping of Scalingo's error responses (the
//! "Errors and limits" table of the contract) to it.

use serde_json::Value;

/// Longest message kept from an error body; bodies are untrusted and may be huge.
const MAX_MESSAGE_CHARS: usize = 300;
/// Longest rejected app name echoed back in [`ScalingoError::InvalidAppName`].
const MAX_ECHOED_NAME_CHARS: usize = 64;

/// Messages of a 422 meaning "another operation runs on this app, retry later".
const BUSY_MESSAGES: [&str; 3] = ["is scaling", "is restarting", "is booting"];

/// What went wrong with a Scalingo call. Cheap to clone (messages are plain
/// strings), and never carries the API token or the JWT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalingoError {
    /// The name is not a valid Scalingo app name; no HTTP call was made.
    #[error("invalid app name {0:?}")]
    InvalidAppName(String),
    /// The API token was refused by the token exchange (or a fresh JWT was refused).
    #[error("Scalingo refused the API token")]
    Unauthorized,
    /// 404 about the app: it does not exist in that region (the body's
    /// `resource` is `app`, or absent: every 404 path of this client is an
    /// app path). The only error that drops the app from the location cache.
    #[error("not found")]
    NotFound,
    /// 404 `{"resource":"container_type"}` on a scale: the formation names a
    /// process type the app does not have. The app exists. (A 422 about the
    /// types stays [`Rejected`](Self::Rejected), with its field messages:
    /// their wording is free text, not a contract.)
    #[error("unknown container type: {0}")]
    UnknownContainerType(String),
    /// 404 about another resource than the app (`operation`, `autoscaler`
    /// ...), named as Scalingo sent it. The app exists.
    #[error("{resource} not found")]
    ResourceNotFound { resource: String },
    /// 422: another operation is running on the app (`is scaling`, `is restarting`, `is booting`).
    #[error("app is busy: {0}")]
    Busy(String),
    /// Any other 4xx (400, 402, 422 ...), with the message from the body.
    #[error("request rejected ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// Still 429 after every retry.
    #[error("rate limited by Scalingo")]
    RateLimited,
    /// No slot of the gateway's API budget freed (or a 429 pause did not end)
    /// before the caller's deadline; nothing was sent.
    #[error("Scalingo API budget exhausted")]
    BudgetExhausted,
    /// 5xx (503 after every retry).
    #[error("Scalingo server error ({status}, request id {}): {message}", request_id.as_deref().unwrap_or("-"))]
    Server {
        status: u16,
        request_id: Option<String>,
        message: String,
    },
    /// The operation ended in status `error`, with its message.
    #[error("operation failed: {0}")]
    OperationFailed(String),
    /// The caller's deadline passed.
    #[error("deadline passed")]
    Timeout,
    /// The call did not get an HTTP answer (connect error, per-request timeout, reset ...).
    #[error("transport error: {0}")]
    Transport(String),
    /// A success answer could not be decoded.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The region is not among the usable regions (unknown, or excluded by the configuration).
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
    /// A `Location` did not point at the region's API host (the bearer is never sent there).
    #[error("untrusted Location {0:?}")]
    UntrustedLocation(String),
    /// The client configuration is unusable.
    #[error("invalid Scalingo configuration: {0}")]
    Config(String),
}

impl ScalingoError {
    /// Builds [`ScalingoError::InvalidAppName`], truncating the echoed name
    /// (it may come from a Host header).
    pub(crate) fn invalid_app_name(name: &str) -> Self {
        Self::InvalidAppName(truncate(name, MAX_ECHOED_NAME_CHARS))
    }

    /// True for errors that may go away by themselves (worth retrying later):
    /// rate limiting (Scalingo's, or our own budget), 5xx, transport errors,
    /// an app busy with another operation.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::BudgetExhausted
                | Self::Server { .. }
                | Self::Transport(_)
                | Self::Busy(_)
        )
    }
}

/// Maps a non-success answer to an error. `body` is the (possibly truncated)
/// body; it may be JSON in any of the contract's shapes, plain text, or empty.
///
/// 429 and 503 only reach here once retries are exhausted; 401 only once the
/// single re-exchange has been tried.
pub(crate) fn from_response(status: u16, request_id: Option<String>, body: &[u8]) -> ScalingoError {
    let parsed = ErrorBody::parse(body);
    match status {
        401 => ScalingoError::Unauthorized,
        404 => match parsed.resource.as_deref() {
            None | Some("app") => ScalingoError::NotFound,
            Some("container_type") => {
                ScalingoError::UnknownContainerType(parsed.message_or(status))
            }
            Some(resource) => ScalingoError::ResourceNotFound {
                resource: truncate(resource, MAX_ECHOED_NAME_CHARS),
            },
        },
        429 => ScalingoError::RateLimited,
        422 => match parsed.busy_message() {
            Some(message) => ScalingoError::Busy(message),
            None => ScalingoError::Rejected {
                status,
                message: parsed.message_or(status),
            },
        },
        500..=599 => ScalingoError::Server {
            status,
            request_id,
            message: parsed.message_or(status),
        },
        _ => ScalingoError::Rejected {
            status,
            message: parsed.message_or(status),
        },
    }
}

/// True when a 400 body says the requested formation is the current one
/// (`{"error":"no change in containers formation"}`), which is a success for us.
pub(crate) fn is_no_change(body: &[u8]) -> bool {
    ErrorBody::parse(body)
        .messages
        .iter()
        .any(|m| m.to_ascii_lowercase().contains("no change"))
}

/// The useful parts of an error body, whatever its shape.
#[derive(Debug, Default)]
struct ErrorBody {
    /// Messages in body order: `error`, then `errors` entries as `field msg`.
    messages: Vec<String>,
    /// The raw `errors` messages without their field (to recognise "is scaling").
    bare_errors: Vec<String>,
    /// `url` of a 402 (where to upgrade the account).
    url: Option<String>,
    /// `resource` of a 404 (what is missing: `app`, `container_type` ...).
    resource: Option<String>,
    /// The body itself when it is not JSON (e.g. `Retry later`).
    text: Option<String>,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> Self {
        let mut out = Self::default();
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => {
                if let Some(error) = map.get("error").and_then(Value::as_str) {
                    out.messages.push(error.to_owned());
                }
                if let Some(errors) = map.get("errors") {
                    out.collect_errors(None, errors);
                }
                if out.messages.is_empty() {
                    if let Some(message) = map.get("message").and_then(Value::as_str) {
                        out.messages.push(message.to_owned());
                    }
                }
                out.url = map.get("url").and_then(Value::as_str).map(str::to_owned);
                out.resource = map
                    .get("resource")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            Ok(_) | Err(_) => {
                let text = String::from_utf8_lossy(body).trim().to_owned();
                if !text.is_empty() {
                    out.text = Some(text);
                }
            }
        }
        out
    }

    /// Flattens `{"errors":{"field":["msg",...]}}`, tolerating a bare string or
    /// array instead of the map (the shape is treated as open).
    fn collect_errors(&mut self, field: Option<&str>, value: &Value) {
        match value {
            Value::String(message) => {
                self.bare_errors.push(message.clone());
                self.messages.push(match field {
                    Some(field) => format!("{field} {message}"),
                    None => message.clone(),
                });
            }
            Value::Array(items) => {
                for item in items {
                    self.collect_errors(field, item);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    self.collect_errors(Some(key), item);
                }
            }
            _ => {}
        }
    }

    fn busy_message(&self) -> Option<String> {
        self.bare_errors
            .iter()
            .chain(&self.messages)
            .find(|m| {
                let m = m.to_ascii_lowercase();
                BUSY_MESSAGES.iter().any(|busy| m.contains(busy))
            })
            .map(|m| truncate(m, MAX_MESSAGE_CHARS))
    }

    /// One readable message, falling back to the status when the body says nothing.
    fn message_or(&self, status: u16) -> String {
        let mut message = self.messages.join("; ");
        if message.is_empty() {
            message = self.text.clone().unwrap_or_default();
        }
        if let Some(url) = &self.url {
            message = if message.is_empty() {
                url.clone()
            } else {
                format!("{message} ({url})")
            };
        }
        if message.is_empty() {
            message = format!("HTTP {status}");
        }
        truncate(&message, MAX_MESSAGE_CHARS)
    }
}

/// Cuts `s` to at most `max` characters (on a char boundary), marking the cut.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, body: &str) -> ScalingoError {
        from_response(status, Some("req-1".into()), body.as_bytes())
    }

    #[test]
    fn status_400_keeps_the_error_message() {
        assert_eq!(
            map(400, r#"{"error":"invalid amount","code":"bad"}"#),
            ScalingoError::Rejected {
                status: 400,
                message: "invalid amount".into()
            }
        );
    }

    #[test]
    fn status_400_no_change_is_recognised() {
        assert!(is_no_change(
            br#"{"error":"no change in containers formation"}"#
        ));
        assert!(!is_no_change(br#"{"error":"invalid amount"}"#));
        assert!(!is_no_change(b"garbage"));
    }

    #[test]
    fn status_401_is_unauthorized() {
        assert_eq!(
            map(401, r#"{"error":"invalid token"}"#),
            ScalingoError::Unauthorized
        );
    }

    #[test]
    fn status_402_keeps_error_and_url() {
        assert_eq!(
            map(
                402,
                r#"{"name":"free-trial","error":"free trial exceeded","url":"https://dashboard.scalingo.com/billing"}"#
            ),
            ScalingoError::Rejected {
                status: 402,
                message: "free trial exceeded (https://dashboard.scalingo.com/billing)".into()
            }
        );
    }

    #[test]
    fn status_404_with_or_without_resource_is_not_found() {
        assert_eq!(
            map(404, r#"{"resource":"app","error":"not found"}"#),
            ScalingoError::NotFound
        );
        assert_eq!(
            map(404, r#"{"error":"not found"}"#),
            ScalingoError::NotFound
        );
        assert_eq!(map(404, ""), ScalingoError::NotFound);
    }

    #[test]
    fn status_404_about_another_resource_is_not_the_app() {
        assert_eq!(
            map(404, r#"{"resource":"container_type","error":"not found"}"#),
            ScalingoError::UnknownContainerType("not found".into())
        );
        assert_eq!(
            map(404, r#"{"resource":"autoscaler","error":"not found"}"#),
            ScalingoError::ResourceNotFound {
                resource: "autoscaler".into()
            }
        );
        assert_eq!(
            map(404, r#"{"resource":"operation"}"#),
            ScalingoError::ResourceNotFound {
                resource: "operation".into()
            }
        );
        // A `resource` that is not a string says nothing: about the app.
        assert_eq!(map(404, r#"{"resource":7}"#), ScalingoError::NotFound);
        assert_eq!(map(404, "Not Found"), ScalingoError::NotFound);
    }

    #[test]
    fn status_422_busy_variants() {
        for busy in ["is scaling", "is restarting", "is booting"] {
            let body = format!(r#"{{"errors":{{"app":["{busy}"]}}}}"#);
            assert_eq!(map(422, &body), ScalingoError::Busy(busy.into()));
        }
    }

    #[test]
    fn status_422_other_errors_are_rejected_with_fields() {
        assert_eq!(
            map(
                422,
                r#"{"errors":{"containers":["unknown type clock","amount above limit"]}}"#
            ),
            ScalingoError::Rejected {
                status: 422,
                message: "containers unknown type clock; containers amount above limit".into()
            }
        );
    }

    #[test]
    fn status_429_both_formats_are_rate_limited() {
        assert_eq!(map(429, "Retry later"), ScalingoError::RateLimited);
        assert_eq!(
            map(429, r#"{"error":"too many requests","code":"rate_limit"}"#),
            ScalingoError::RateLimited
        );
    }

    #[test]
    fn status_500_keeps_message_and_request_id() {
        assert_eq!(
            map(500, r#"{"error":"internal error"}"#),
            ScalingoError::Server {
                status: 500,
                request_id: Some("req-1".into()),
                message: "internal error".into()
            }
        );
    }

    #[test]
    fn status_503_plain_or_empty() {
        assert_eq!(
            map(503, "Service Unavailable"),
            ScalingoError::Server {
                status: 503,
                request_id: Some("req-1".into()),
                message: "Service Unavailable".into()
            }
        );
        assert_eq!(
            from_response(503, None, b""),
            ScalingoError::Server {
                status: 503,
                request_id: None,
                message: "HTTP 503".into()
            }
        );
    }

    #[test]
    fn unknown_shapes_fall_back_gracefully() {
        assert_eq!(
            map(418, r#"{"message":"teapot"}"#),
            ScalingoError::Rejected {
                status: 418,
                message: "teapot".into()
            }
        );
        assert_eq!(
            map(400, r#"[1,2]"#),
            ScalingoError::Rejected {
                status: 400,
                message: "[1,2]".into()
            }
        );
        assert_eq!(
            map(422, r#"{"errors":"is scaling"}"#),
            ScalingoError::Busy("is scaling".into())
        );
    }

    #[test]
    fn long_messages_are_truncated() {
        let body = format!(r#"{{"error":"{}"}}"#, "x".repeat(10_000));
        match map(400, &body) {
            ScalingoError::Rejected { message, .. } => {
                assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1)
            }
            other => panic!("unexpected {other:?}"),
        }
        match ScalingoError::invalid_app_name(&"é".repeat(1000)) {
            ScalingoError::InvalidAppName(name) => {
                assert_eq!(name.chars().count(), MAX_ECHOED_NAME_CHARS + 1)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
