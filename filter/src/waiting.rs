//! The waiting page and the status path.
//!
//! When the sidecar answers a browser's wake with 202 (the app's rules say
//! `strategy: waiting_page`), the filter answers at once with
//! [`WaitingPage`]: a self-contained HTML page (inline CSS and JS, no
//! external asset) that lists the app and its linked apps, polls
//! [`STATUS_PATH`] on the same origin every second, and reloads the original
//! URL when the app runs. Without JS a `<meta http-equiv="refresh">` reloads
//! it every `Retry-After` seconds. It is a 503 with `Retry-After` and
//! `Cache-Control: no-store`, so that caches keep nothing and crawlers come
//! back later.
//!
//! [`STATUS_PATH`] is reserved on every host the filter maps to an app: the
//! filter answers it itself (never forwarded, never routed) with
//! `{"app", "ready", "apps": [{"app", "state"}], "error"?}`, at once from the
//! awake cache, else from the sidecar's `GET /v1/status?app=NAME`.
//!
//! Everything shown comes from validated data (app names checked against
//! Scalingo's rule, states and error codes from fixed sets) and is escaped;
//! nothing the sidecar says is echoed as is.

use paastis_api::mini;
pub use paastis_api::{AppState, AppStatus};
use paastis_api::{ErrorAnswer, ErrorCode, PublicStatus, StatusAnswer, StatusQuery};
use paastis_rules::{is_valid_app_name, MAX_LINKED_APPS};

use crate::answer::{sidecar_json_status, AnswerError, Awake};
use crate::reply::{escape_html_into, LocalReply, RenderedReply, ReplyKind};

/// The reserved path of the waiting page's status, on every gateway host.
pub use paastis_api::PUBLIC_STATUS_PATH as STATUS_PATH;
/// Bound on a status callout (the sidecar answers from memory).
pub const STATUS_TIMEOUT_MS: u64 = 5_000;

/// True when `path` (as received, query included) is [`STATUS_PATH`],
/// with or without a query. A few byte comparisons: cheap enough for every
/// request.
pub fn is_status_path(path: &[u8]) -> bool {
    match path.strip_prefix(STATUS_PATH.as_bytes()) {
        Some(rest) => rest.is_empty() || rest.first() == Some(&b'?'),
        None => false,
    }
}

/// The `:path` of the status callout for `app` (a valid app name, so
/// nothing needs escaping).
pub fn sidecar_status_path(app: &str) -> String {
    StatusQuery::path(app)
}

/// The waiting page of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingPage {
    /// The app the host named.
    pub app: String,
    /// The app being woken first, then its linked apps.
    pub apps: Vec<String>,
    /// `Retry-After` and the no-JS refresh period, in seconds.
    pub retry_after: u32,
    /// How long a wake usually takes (the sidecar's estimate, bounded):
    /// the page says "usually ready in about N s" and its progress bar
    /// fills over that time, with or without JavaScript.
    pub expected_ms: Option<u64>,
}

/// Longest estimate the page shows (the sidecar's own wake bound is 60 s;
/// a longer one is a store gone wrong).
pub const MAX_ESTIMATE_MS: u64 = 10 * 60_000;

/// An estimate the page may show: at least a second, at most
/// [`MAX_ESTIMATE_MS`]; `None` for 0.
pub fn bounded_estimate(ms: u64) -> Option<u64> {
    (ms > 0).then(|| ms.clamp(1_000, MAX_ESTIMATE_MS))
}

/// Whole seconds of an estimate, rounded to the nearest, at least 1.
fn estimate_seconds(ms: u64) -> u64 {
    ((ms + 500) / 1_000).max(1)
}

/// The content security policy of the page: nothing but itself.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGE_STYLE: &str = "body{font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;background:#f4f5f7;color:#1f2933;margin:0}\
main{max-width:34em;margin:12vh auto;padding:2em 2.2em;background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08)}\
h1{font-size:1.4em;margin:.2em 0 .6em}\
.spin{width:28px;height:28px;border:4px solid #d9dee4;border-top-color:#3b6fd8;border-radius:50%;animation:r 1s linear infinite}\
@keyframes r{to{transform:rotate(360deg)}}\
main[data-state=failed] .spin{border-color:#e5484d;animation:none}\
main[data-state=ready] .spin{border-color:#30a46c;animation:none}\
ul{list-style:none;padding:0;margin:1.2em 0}\
li{display:flex;justify-content:space-between;padding:.5em .8em;border:1px solid #e4e7eb;border-radius:8px;margin:.4em 0}\
li .name{font-family:ui-monospace,monospace}\
.state{font-size:.85em;padding:.1em .6em;border-radius:1em;background:#fff4d6;color:#8a5a00}\
li[data-state=running] .state{background:#dcf5e7;color:#1a6b45}\
li[data-state=failed] .state{background:#fde2e2;color:#a3242a}\
li[data-state=asleep] .state{background:#eceff3;color:#52606d}\
.hint{color:#52606d;font-size:.9em}\
.bar{height:8px;background:#e4e7eb;border-radius:4px;overflow:hidden;margin:.6em 0 0}\
.bar span{display:block;height:100%;width:0;background:#3b6fd8;animation:fill linear forwards}\
@keyframes fill{to{width:95%}}\
main[data-state=ready] .bar span{width:100%;animation:none}\
main[data-state=failed] .bar span{background:#e5484d;animation-play-state:paused}";

/// Polls the status every second; reloads when ready; shows an error when
/// the wake failed or the gateway stops answering (30 polls in a row).
/// Three "asleep" in a row (the sidecar lost the wake) reload the page,
/// which starts a wake again. Values go to the page with `textContent`.
const PAGE_SCRIPT: &str = r#"(function(){
var S="/.well-known/paastis/status",m=document.getElementById("paastis-waiting"),msg=document.getElementById("paastis-message"),list=document.getElementById("paastis-apps"),h=document.getElementById("paastis-title"),est=document.getElementById("paastis-estimate"),bar=est.lastChild.firstChild,app=m.getAttribute("data-app"),fails=0,asleep=0,done=false;
var E={unknown_app:"There is no app named "+app+".",invalid_app:"There is no app named "+app+".",wake_timeout:app+" is taking too long to start.",wake_failed:app+" could not be started.",unavailable:"The gateway does not answer."};
function show(apps){for(var i=0;i<apps.length;i++){var a=apps[i];if(!a||typeof a.app!=="string")continue;var li=null;for(var j=0;j<list.children.length;j++){if(list.children[j].getAttribute("data-app")===a.app){li=list.children[j];}}
if(!li){li=document.createElement("li");li.setAttribute("data-app",a.app);var n=document.createElement("span");n.className="name";n.textContent=a.app;var s=document.createElement("span");s.className="state";li.appendChild(n);li.appendChild(s);list.appendChild(li);}
li.setAttribute("data-state",a.state);li.lastChild.textContent=a.state;}}
function fail(code,why){done=true;m.setAttribute("data-state","failed");document.title=h.textContent="Could not wake "+app;msg.textContent=(E[code]||E.wake_failed)+(typeof why==="string"&&why?" ("+why+")":"")+" ";var l=document.createElement("a");l.href=location.href;l.textContent="Try again";msg.appendChild(l);}
function next(){if(done)return;if(fails>=30){fail("unavailable");return;}setTimeout(poll,1000);}
function poll(){fetch(S,{cache:"no-store",credentials:"same-origin",headers:{accept:"application/json"}}).then(function(r){return r.json();}).then(function(s){
if(s&&s.apps)show(s.apps);
if(s&&typeof s.expected_ms==="number"&&est.hidden&&s.expected_ms>0){var n=Math.max(1,Math.round(Math.min(s.expected_ms,600000)/1000));est.firstChild.textContent="Usually ready in about "+n+" s.";bar.style.animationDuration=n+"s";est.hidden=false;}
if(s&&s.ready){done=true;m.setAttribute("data-state","ready");msg.textContent=app+" is running. Opening it\u2026";location.reload();return;}
if(s&&s.error&&s.error!=="unavailable"){fail(s.error,s.reason);return;}
fails=(s&&s.error)?fails+1:0;asleep=(s&&s.apps&&s.apps[0]&&s.apps[0].state==="asleep")?asleep+1:0;
if(asleep>=3){done=true;location.reload();return;}next();
}).catch(function(){fails++;next();});}
setTimeout(poll,1000);
})();"#;

impl WaitingPage {
    /// The answer: the page for a browser; for anything else (which the
    /// filter never asks a waiting page for) the JSON 503 of a wake still
    /// running.
    pub fn render(&self, html: bool) -> RenderedReply {
        if !html {
            return LocalReply::for_app(ReplyKind::WakeTimeout, &self.app)
                .retry_after(self.retry_after)
                .render(false);
        }
        RenderedReply {
            status: 503,
            headers: vec![
                ("content-type", "text/html; charset=utf-8".to_owned()),
                ("cache-control", "no-store".to_owned()),
                ("retry-after", self.retry_after.to_string()),
                ("content-security-policy", PAGE_CSP.to_owned()),
            ],
            body: self.html(),
        }
    }

    fn html(&self) -> String {
        let mut out = String::with_capacity(PAGE_STYLE.len() + PAGE_SCRIPT.len() + 1200);
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        out.push_str("<meta name=\"robots\" content=\"noindex\">");
        out.push_str("<noscript><meta http-equiv=\"refresh\" content=\"");
        out.push_str(&self.retry_after.to_string());
        out.push_str("\"></noscript><title>Waking up ");
        escape_html_into(&mut out, &self.app);
        out.push_str("</title><style>");
        out.push_str(PAGE_STYLE);
        out.push_str(
            "</style></head><body><main id=\"paastis-waiting\" data-state=\"waking\" data-app=\"",
        );
        escape_html_into(&mut out, &self.app);
        out.push_str(
            "\"><div class=\"spin\" aria-hidden=\"true\"></div><h1 id=\"paastis-title\">Waking up ",
        );
        escape_html_into(&mut out, &self.app);
        out.push_str("</h1><p id=\"paastis-message\" role=\"status\">");
        escape_html_into(&mut out, &self.app);
        out.push_str(" was asleep and is starting. This page opens it as soon as it runs.</p>");
        // The estimate, known or not: the script fills it in from the
        // status when the page came without one. The bar is a CSS
        // animation over the estimate, so it moves without JavaScript too.
        let seconds = self.expected_ms.map(estimate_seconds);
        out.push_str("<div id=\"paastis-estimate\" class=\"hint\"");
        if seconds.is_none() {
            out.push_str(" hidden");
        }
        out.push_str("><p>");
        if let Some(s) = seconds {
            out.push_str("Usually ready in about ");
            out.push_str(&s.to_string());
            out.push_str(" s.");
        }
        out.push_str(
            "</p><div class=\"bar\" aria-hidden=\"true\"><span style=\"animation-duration:",
        );
        out.push_str(&seconds.unwrap_or(0).to_string());
        out.push_str("s\"></span></div></div><ul id=\"paastis-apps\">");
        for app in &self.apps {
            out.push_str("<li data-app=\"");
            escape_html_into(&mut out, app);
            out.push_str("\" data-state=\"waking\"><span class=\"name\">");
            escape_html_into(&mut out, app);
            out.push_str("</span><span class=\"state\">waking</span></li>");
        }
        out.push_str("</ul><noscript><p class=\"hint\">This page reloads itself every ");
        out.push_str(&self.retry_after.to_string());
        out.push_str(" s.</p></noscript></main><script>");
        out.push_str(PAGE_SCRIPT);
        out.push_str("</script></body></html>\n");
        out
    }
}

/// The error the page shows, from the code the sidecar gave: one of the
/// four a wake ends with (anything else reads as `wake_failed`), so the
/// page only ever shows a fixed set.
fn page_error(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::WakeTimeout | ErrorCode::UnknownApp | ErrorCode::InvalidApp => code,
        _ => ErrorCode::WakeFailed,
    }
}

/// What the status path answers (rendered as a [`PublicStatus`]), and where
/// the app runs when it is ready (the filter writes its cache from it, so
/// the page's reload is a hit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub app: String,
    pub ready: bool,
    pub apps: Vec<AppStatus>,
    /// `wake_failed`, `wake_timeout`, `unknown_app`, `invalid_app`, or
    /// `unavailable` when the sidecar cannot tell (the page keeps polling
    /// for a while).
    pub error: Option<ErrorCode>,
    /// Why the wake failed, as the sidecar put it (bounded, printable).
    pub reason: Option<String>,
    /// Never shown: where the app runs is the gateway's business.
    pub awake: Option<Awake>,
    /// The usual wake time, bounded ([`bounded_estimate`]).
    pub expected_ms: Option<u64>,
}

impl StatusReport {
    /// Ready, from the filter's cache.
    pub fn ready_from_cache(app: &str) -> Self {
        Self {
            app: app.to_owned(),
            ready: true,
            apps: vec![AppStatus {
                app: app.to_owned(),
                state: AppState::Running,
            }],
            error: None,
            reason: None,
            awake: None,
            expected_ms: None,
        }
    }

    /// The sidecar could not tell.
    pub fn unavailable(app: &str) -> Self {
        Self {
            app: app.to_owned(),
            ready: false,
            apps: Vec::new(),
            error: Some(ErrorCode::Unavailable),
            reason: None,
            awake: None,
            expected_ms: None,
        }
    }

    /// 200 with the JSON report (503 when unavailable), never cached.
    pub fn render(&self, retry_after: u32) -> RenderedReply {
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("cache-control", "no-store".to_owned()),
        ];
        let status = if self.error == Some(ErrorCode::Unavailable) {
            headers.push(("retry-after", retry_after.to_string()));
            503
        } else {
            200
        };
        RenderedReply {
            status,
            headers,
            body: mini::to_string(&PublicStatus {
                app: self.app.clone(),
                ready: self.ready,
                apps: self.apps.clone(),
                error: self.error,
                reason: self.reason.clone(),
                expected_ms: self.expected_ms,
            }),
        }
    }
}

/// Reads the sidecar's answer to `GET /v1/status?app=requested`. An error
/// means the answer is not usable (the caller reports `unavailable`).
pub fn parse_status_answer(
    requested: &str,
    status: Option<&[u8]>,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Result<StatusReport, AnswerError> {
    let status = sidecar_json_status(status, content_type, &[200, 400, 503])?;
    let bad_body = |e: mini::JsonError| AnswerError::BadBody {
        status,
        message: e.to_string(),
    };
    if status != 200 {
        let answer: ErrorAnswer = mini::from_slice(body).map_err(bad_body)?;
        return match (status, answer.error) {
            (400, ErrorCode::InvalidApp) | (503, ErrorCode::WakeFailed) => Ok(StatusReport {
                app: requested.to_owned(),
                ready: false,
                apps: Vec::new(),
                error: Some(answer.error),
                reason: None,
                awake: None,
                expected_ms: None,
            }),
            _ => Err(AnswerError::UnexpectedCode {
                status,
                code: answer.error,
            }),
        };
    }
    let answer: StatusAnswer = mini::from_slice(body).map_err(bad_body)?;
    if let Some(app) = answer.app {
        if app != requested {
            return Err(AnswerError::WrongApp(app));
        }
    }
    if answer.apps.len() > MAX_LINKED_APPS {
        return Err(AnswerError::BadBody {
            status,
            message: format!("{} apps, more than a wake touches", answer.apps.len()),
        });
    }
    if let Some(a) = answer.apps.iter().find(|a| !is_valid_app_name(&a.app)) {
        return Err(AnswerError::BadBody {
            status,
            message: format!("{:?} is not a valid app name", a.app),
        });
    }
    let awake = match (answer.ready, answer.region, answer.upstream_host) {
        (true, Some(region), Some(upstream_host)) => Some(Awake::checked(region, upstream_host)?),
        (true, _, _) => {
            return Err(AnswerError::BadBody {
                status,
                message: "ready without region and upstream_host".to_owned(),
            })
        }
        (false, _, _) => None,
    };
    Ok(StatusReport {
        app: requested.to_owned(),
        ready: answer.ready,
        apps: answer.apps,
        error: answer.error.map(page_error),
        reason: answer
            .error
            .and(answer.reason.as_deref())
            .and_then(shown_reason),
        awake,
        expected_ms: answer.expected_ms.and_then(bounded_estimate),
    })
}

/// Longest reason the page shows, in characters.
const MAX_REASON_CHARS: usize = 200;

/// The sidecar's reason as the page may show it: printable characters only,
/// at most [`MAX_REASON_CHARS`]; `None` when nothing is left.
fn shown_reason(reason: &str) -> Option<String> {
    let shown: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect();
    let shown = shown.trim();
    (!shown.is_empty()).then(|| shown.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const JSON: Option<&[u8]> = Some(b"application/json");

    fn header<'a>(r: &'a RenderedReply, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn page() -> WaitingPage {
        WaitingPage {
            app: "shop-front".into(),
            apps: vec!["shop-front".into(), "shop-api-1".into()],
            retry_after: 5,
            expected_ms: None,
        }
    }

    #[test]
    fn the_page_carries_the_estimate_when_known() {
        let unknown = page().render(true).body;
        assert!(
            unknown.contains("<div id=\"paastis-estimate\" class=\"hint\" hidden>"),
            "{unknown}"
        );
        assert!(
            unknown.contains("hidden><p></p>"),
            "no estimate shown before one is known"
        );
        let known = WaitingPage {
            expected_ms: Some(4_600),
            ..page()
        }
        .render(true)
        .body;
        assert!(
            known.contains(
                "<div id=\"paastis-estimate\" class=\"hint\"><p>Usually ready in about 5 s.</p>"
            ),
            "{known}"
        );
        assert!(
            known.contains("animation-duration:5s"),
            "the bar fills over the estimate without JS"
        );
        assert_eq!(bounded_estimate(0), None);
        assert_eq!(bounded_estimate(20), Some(1_000));
        assert_eq!(bounded_estimate(u64::MAX), Some(MAX_ESTIMATE_MS));
    }

    #[test]
    fn status_path() {
        assert!(is_status_path(b"/.well-known/paastis/status"));
        assert!(is_status_path(b"/.well-known/paastis/status?t=1"));
        assert!(!is_status_path(b"/.well-known/paastis/statusx"));
        assert!(!is_status_path(b"/.well-known/paastis/status/x"));
        assert!(!is_status_path(b"/.well-known/paastis"));
        assert!(!is_status_path(b"/"));
        assert!(!is_status_path(b""));
        assert_eq!(sidecar_status_path("my-app"), "/v1/status?app=my-app");
    }

    #[test]
    fn the_page_for_browsers() {
        let r = page().render(true);
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        assert_eq!(header(&r, "retry-after"), Some("5"));
        assert!(header(&r, "content-security-policy")
            .unwrap()
            .starts_with("default-src 'none'"));
        let body = &r.body;
        assert!(body.contains("<title>Waking up shop-front</title>"));
        assert!(body.contains("<li data-app=\"shop-front\" data-state=\"waking\">"));
        assert!(body.contains("<li data-app=\"shop-api-1\" data-state=\"waking\">"));
        assert!(body.contains("<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>"));
        assert!(body.contains(STATUS_PATH));
        assert!(body.contains("location.reload()"));
        // No external asset: no URL to another origin, no src or href
        // attribute in the markup.
        for needle in [
            "http://", "https://", "//cdn", " src=", " href=", "@import", "url(",
        ] {
            assert!(!body.contains(needle), "{needle}");
        }
    }

    #[test]
    fn api_clients_get_json() {
        let r = page().render(false);
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "wake_timeout");
        assert_eq!(body["app"], "shop-front");
    }

    #[test]
    fn reads_the_sidecar_status() {
        let r = parse_status_answer(
            "shop-front",
            Some(b"200"),
            JSON,
            br#"{"app":"shop-front","target":"shop-front","ready":false,"apps":[{"app":"shop-front","state":"waking"},{"app":"shop-api-1","state":"running"}]}"#,
        )
        .unwrap();
        assert!(!r.ready);
        assert_eq!(r.apps[1].state, AppState::Running);
        assert_eq!(r.awake, None);
        let json: serde_json::Value = serde_json::from_str(&r.render(5).body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"app":"shop-front","ready":false,"apps":[{"app":"shop-front","state":"waking"},{"app":"shop-api-1","state":"running"}]})
        );

        let r = parse_status_answer(
            "shop-front",
            Some(b"200"),
            JSON,
            br#"{"app":"shop-front","ready":true,"region":"osc-fr1","upstream_host":"shop-front.osc-fr1.scalingo.io","apps":[{"app":"shop-front","state":"running"}]}"#,
        )
        .unwrap();
        assert!(r.ready);
        assert_eq!(
            r.awake,
            Some(Awake {
                region: "osc-fr1".into(),
                upstream_host: "shop-front.osc-fr1.scalingo.io".into()
            })
        );
        let rendered = r.render(5);
        assert_eq!(rendered.status, 200);
        assert!(!rendered.body.contains("scalingo.io"), "{}", rendered.body);

        let r = parse_status_answer(
            "shop-front",
            Some(b"200"),
            JSON,
            br#"{"app":"shop-front","ready":false,"apps":[{"app":"shop-front","state":"failed"}],"error":"wake_timeout"}"#,
        )
        .unwrap();
        assert_eq!(r.error, Some(ErrorCode::WakeTimeout));
        assert!(r.render(5).body.contains(r#""error":"wake_timeout""#));

        let r = parse_status_answer(
            "shop-front",
            Some(b"400"),
            JSON,
            br#"{"error":"invalid_app","message":"no"}"#,
        )
        .unwrap();
        assert_eq!(r.error, Some(ErrorCode::InvalidApp));
    }

    #[test]
    fn a_failed_wake_shows_its_reason_bounded_and_printable() {
        let r = parse_status_answer(
            "shop-front",
            Some(b"200"),
            JSON,
            br#"{"app":"shop-front","ready":false,"apps":[{"app":"shop-front","state":"failed"}],"error":"wake_failed","reason":"the app crashed\u0007 while booting"}"#,
        )
        .unwrap();
        assert_eq!(r.reason.as_deref(), Some("the app crashed while booting"));
        let json: serde_json::Value = serde_json::from_str(&r.render(5).body).unwrap();
        assert_eq!(json["reason"], "the app crashed while booting");

        let long = format!(
            r#"{{"app":"shop-front","ready":false,"apps":[],"error":"wake_failed","reason":"{}"}}"#,
            "x".repeat(5_000)
        );
        let r = parse_status_answer("shop-front", Some(b"200"), JSON, long.as_bytes()).unwrap();
        assert_eq!(r.reason.map(|r| r.chars().count()), Some(MAX_REASON_CHARS));

        // A reason without an error is not shown.
        let r = parse_status_answer(
            "shop-front",
            Some(b"200"),
            JSON,
            br#"{"app":"shop-front","ready":false,"apps":[],"reason":"stale"}"#,
        )
        .unwrap();
        assert_eq!(r.reason, None);
        assert!(!r.render(5).body.contains("reason"));
        // The page prints it as text, next to the error's sentence.
        let page = WaitingPage {
            app: "shop-front".into(),
            apps: Vec::new(),
            retry_after: 5,
            expected_ms: None,
        }
        .render(true)
        .body;
        assert!(page.contains("fail(s.error,s.reason)"), "{page}");
    }

    #[test]
    fn refuses_untrustworthy_status_answers() {
        let cases: [(&[u8], &[u8]); 8] = [
            (b"200", br#"{"app":"other-app","ready":false,"apps":[]}"#),
            (
                b"200",
                br#"{"ready":false,"apps":[{"app":"<script>","state":"waking"}]}"#,
            ),
            (
                b"200",
                br#"{"ready":false,"apps":[{"app":"shop-front","state":"exploded"}]}"#,
            ),
            (b"200", br#"{"ready":true,"apps":[]}"#),
            (
                b"200",
                br#"{"ready":true,"region":"osc-fr1","upstream_host":"a.io:1","apps":[]}"#,
            ),
            (b"200", b"not json"),
            (b"500", br#"{"error":"x"}"#),
            (b"503", br#"{"error":"registry_down"}"#),
        ];
        for (status, body) in cases {
            assert!(
                parse_status_answer("shop-front", Some(status), JSON, body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse_status_answer("shop-front", Some(b"200"), None, b"{}").is_err());
        assert!(parse_status_answer("shop-front", None, JSON, b"{}").is_err());
    }

    #[test]
    fn cache_and_unavailable_reports() {
        let r = StatusReport::ready_from_cache("shop-front").render(5);
        assert_eq!(r.status, 200);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap(),
            serde_json::json!({"app":"shop-front","ready":true,"apps":[{"app":"shop-front","state":"running"}]})
        );
        let r = StatusReport::unavailable("shop-front").render(7);
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("7"));
        assert!(r.body.contains(r#""error":"unavailable""#));
    }

    proptest! {
        #[test]
        fn names_are_escaped(app in "\\PC{0,40}") {
            let p = WaitingPage { app: app.clone(), apps: vec![app.clone()], retry_after: 5, expected_ms: None };
            let body = p.render(true).body;
            let start = body.find("<title>").unwrap() + 7;
            let end = body.find("</title>").unwrap();
            let title = &body[start..end];
            prop_assert!(!title.contains('<') && !title.contains('>'));
            // The script is the page's own: nothing of the name in it.
            let script = &body[body.find("<script>").unwrap()..];
            prop_assert_eq!(script.matches("<script>").count(), 1);
        }

        #[test]
        fn any_status_answer_is_handled(
            // The sidecar's real statuses as often as random bytes.
            status in prop_oneof![
                1 => proptest::option::of(prop::collection::vec(any::<u8>(), 0..4)),
                3 => Just(Some(b"200".to_vec())),
                1 => "(400|503)".prop_map(|s| Some(s.into_bytes())),
            ],
            // With each body, whether it is a well-formed status answer.
            body in prop_oneof![
                1 => prop::collection::vec(any::<u8>(), 0..100).prop_map(|b| (b, false)),
                1 => "\\{\"(app|ready|apps|error|region)\":\"\\PC{0,20}\"\\}".prop_map(|s| (s.into_bytes(), false)),
                // Status answers, ready or not, with good and bad names and
                // regions: the `Ok` branch below is reached on purpose.
                3 => (any::<bool>(), "(shop-api-1|[a-z0-9-]{0,10}|\\PC{0,6})", "(osc-fr1|[a-z0-9-]{0,8})")
                    .prop_map(|(ready, linked, region)| {
                        let body = format!(
                            r#"{{"app":"shop-front","ready":{ready},"region":"{region}","upstream_host":"shop-front.osc-fr1.scalingo.io","apps":[{{"app":"shop-front","state":"running"}},{{"app":"{linked}","state":"waking"}}]}}"#
                        );
                        let well_formed = is_valid_app_name(&linked) && (!ready || region == "osc-fr1");
                        (body.into_bytes(), well_formed)
                    }),
            ],
        ) {
            let (body, well_formed) = body;
            let result = parse_status_answer("shop-front", status.as_deref(), JSON, &body);
            if well_formed && status.as_deref() == Some(b"200".as_slice()) {
                prop_assert!(result.is_ok(), "{:?}", result);
            }
            if let Ok(report) = result {
                for a in &report.apps {
                    prop_assert!(is_valid_app_name(&a.app));
                }
                prop_assert!(!report.ready || report.awake.is_some());
                prop_assert_eq!(report.app.as_str(), "shop-front");
            }
        }
    }
}
