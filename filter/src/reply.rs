//! Local replies: the answers the filter sends itself instead of routing.
//!
//! Browsers (`Accept` containing `text/html`) get a small HTML page, anything
//! else a JSON object `{"error":code,"message":...,"app":...}`. Every reply
//! carries `cache-control: no-store` (a "waking up" page must not be cached
//! in place of the app), 503s carry `Retry-After`. The messages are the
//! filter's own: nothing the sidecar says is echoed to the client, and what is
//! echoed (the app name) is escaped in HTML.

use std::borrow::Cow;
use std::fmt::Write as _;

use paastis_api::mini;
use paastis_api::{ErrorCode, LocalReplyBody};

/// Why the filter answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// 400: missing, malformed or non-UTF-8 Host/`:authority`.
    InvalidHost,
    /// 400: the host names something that is not a valid app name, or the
    /// sidecar refused the app as invalid.
    InvalidApp,
    /// 404: no rule and no domain matches the host (`unmatched_hosts: reject`).
    UnknownHost,
    /// 404: the sidecar does not know the app.
    UnknownApp,
    /// 503: the sidecar tried to wake the app and failed.
    WakeFailed,
    /// 503: the app is still waking up after the sidecar's timeout.
    WakeTimeout,
    /// 503: the sidecar could not be reached or answered nonsense
    /// (`failure_policy: closed`), or the filter is not configured.
    Unavailable,
}

impl ReplyKind {
    pub const fn status(self) -> u32 {
        match self {
            Self::InvalidHost | Self::InvalidApp => 400,
            Self::UnknownHost | Self::UnknownApp => 404,
            Self::WakeFailed | Self::WakeTimeout | Self::Unavailable => 503,
        }
    }

    /// The machine-readable `error` code of the JSON body.
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::InvalidHost => ErrorCode::InvalidHost,
            Self::InvalidApp => ErrorCode::InvalidApp,
            Self::UnknownHost => ErrorCode::UnknownHost,
            Self::UnknownApp => ErrorCode::UnknownApp,
            Self::WakeFailed => ErrorCode::WakeFailed,
            Self::WakeTimeout => ErrorCode::WakeTimeout,
            Self::Unavailable => ErrorCode::Unavailable,
        }
    }

    const fn title(self) -> &'static str {
        match self {
            Self::InvalidHost | Self::InvalidApp => "Bad request",
            Self::UnknownHost | Self::UnknownApp => "Not found",
            Self::WakeTimeout => "Waking up",
            Self::WakeFailed | Self::Unavailable => "Service unavailable",
        }
    }
}

/// A local reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub kind: ReplyKind,
    /// The app concerned, when known and valid (never a raw host).
    pub app: Option<String>,
    /// Seconds for `Retry-After`; set for 503s.
    pub retry_after: Option<u32>,
}

impl LocalReply {
    pub fn new(kind: ReplyKind) -> Self {
        Self {
            kind,
            app: None,
            retry_after: None,
        }
    }

    pub fn for_app(kind: ReplyKind, app: &str) -> Self {
        Self {
            kind,
            app: Some(app.to_owned()),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The human-readable message.
    pub fn message(&self) -> String {
        let app = self.app.as_deref().unwrap_or("the app");
        let retry = match self.retry_after {
            Some(s) => format!(", retry in {s} s"),
            None => String::new(),
        };
        match self.kind {
            ReplyKind::InvalidHost => "invalid Host header".to_owned(),
            ReplyKind::InvalidApp => match &self.app {
                Some(app) => format!("invalid app name {app}"),
                None => "the Host header does not name a valid app".to_owned(),
            },
            ReplyKind::UnknownHost => "no app is served at this host".to_owned(),
            ReplyKind::UnknownApp => match &self.app {
                Some(app) => format!("unknown app {app}"),
                None => "unknown app".to_owned(),
            },
            ReplyKind::WakeFailed => format!("app {app} could not be woken up{retry}"),
            ReplyKind::WakeTimeout => format!("app {app} is waking up{retry}"),
            ReplyKind::Unavailable => format!("app {app} is temporarily unavailable{retry}"),
        }
    }

    /// Renders the reply for a browser (`html`) or a program.
    pub fn render(&self, html: bool) -> RenderedReply {
        let message = self.message();
        let mut headers = Vec::with_capacity(3);
        let body = if html {
            headers.push(("content-type", "text/html; charset=utf-8".to_owned()));
            render_html(self.kind.title(), &message, self.retry_after)
        } else {
            headers.push(("content-type", "application/json".to_owned()));
            render_json(self.kind.code(), &message, self.app.as_deref())
        };
        headers.push(("cache-control", "no-store".to_owned()));
        if let Some(seconds) = self.retry_after {
            headers.push(("retry-after", seconds.to_string()));
        }
        RenderedReply {
            status: self.kind.status(),
            headers,
            body,
        }
    }
}

/// What the glue hands to `send_http_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

fn render_json(code: ErrorCode, message: &str, app: Option<&str>) -> String {
    let body = LocalReplyBody {
        error: code,
        message: Cow::Borrowed(message),
        app: app.map(Cow::Borrowed),
    };
    mini::to_string(&body)
}

fn render_html(title: &str, message: &str, retry_after: Option<u32>) -> String {
    let mut out = String::with_capacity(400 + message.len());
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    // A waking app: let the browser retry by itself.
    if let Some(seconds) = retry_after {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{seconds}\">");
    }
    out.push_str("<title>");
    escape_html_into(&mut out, title);
    out.push_str("</title><style>body{font-family:sans-serif;margin:3em auto;max-width:40em;padding:0 1em;color:#333}</style></head><body><h1>");
    escape_html_into(&mut out, title);
    out.push_str("</h1><p>");
    escape_html_into(&mut out, message);
    out.push_str("</p></body></html>\n");
    out
}

/// Escapes `text` for an HTML text node or a quoted attribute.
pub fn escape_html_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header<'a>(r: &'a RenderedReply, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn json_for_programs() {
        let r = LocalReply::for_app(ReplyKind::WakeTimeout, "my-app")
            .retry_after(7)
            .render(false);
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        assert_eq!(header(&r, "retry-after"), Some("7"));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error":"wake_timeout","message":"app my-app is waking up, retry in 7 s","app":"my-app"})
        );
    }

    #[test]
    fn html_for_browsers() {
        let r = LocalReply::new(ReplyKind::InvalidHost).render(true);
        assert_eq!(r.status, 400);
        assert_eq!(header(&r, "content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(header(&r, "retry-after"), None);
        assert!(r.body.contains("<p>invalid Host header</p>"));
        assert!(!r.body.contains("refresh"));
        let r = LocalReply::for_app(ReplyKind::WakeFailed, "my-app")
            .retry_after(5)
            .render(true);
        assert!(r.body.contains("content=\"5\""));
        assert!(r
            .body
            .contains("app my-app could not be woken up, retry in 5 s"));
    }

    #[test]
    fn statuses_and_codes() {
        let r = LocalReply::new(ReplyKind::UnknownHost).render(false);
        assert_eq!(r.status, 404);
        assert!(r.body.contains("\"app\":null"));
        assert_eq!(
            LocalReply::new(ReplyKind::InvalidApp).message(),
            "the Host header does not name a valid app"
        );
        assert_eq!(
            LocalReply::for_app(ReplyKind::UnknownApp, "ghost-app").message(),
            "unknown app ghost-app"
        );
        assert_eq!(ReplyKind::Unavailable.status(), 503);
    }

    proptest! {
        #[test]
        fn html_is_escaped(app in "\\PC{0,40}") {
            let r = LocalReply::for_app(ReplyKind::UnknownApp, &app).render(true);
            let start = r.body.find("<p>").unwrap() + 3;
            let end = r.body.rfind("</p>").unwrap();
            let text = &r.body[start..end];
            prop_assert!(!text.contains('<') && !text.contains('>') && !text.contains('"'));
        }

        #[test]
        fn json_is_always_valid(app in "\\PC{0,40}", retry in proptest::option::of(0u32..5000)) {
            let mut reply = LocalReply::for_app(ReplyKind::WakeFailed, &app);
            reply.retry_after = retry;
            let r = reply.render(false);
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            prop_assert_eq!(body["app"].as_str(), Some(app.as_str()));
        }
    }
}
