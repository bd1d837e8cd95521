//! Probing an app's own front: readiness that costs no Scalingo API call.
//!
//! After a scale call, the waker asks `https://APP.REGION.scalingo.io` +
//! the rule's `health_path` (default `/`) whether the app answers. What
//! tells the app from the platform's router ([`classify`]):
//!
//! - **502, 503 or 504 is the router** (no `web` container serves: stopped,
//!   booting, crashed, or one that does not listen yet): not ready. This is
//!   what Scalingo's router answers for an app without a serving container,
//!   and what the fake's fronts answer too (with their body marker, which
//!   the gateway does not need to read);
//! - **any other status is the app** (200, but also 401, 404, 500 ...): a
//!   container serves requests, so the app is up. An app whose probed path
//!   answers 503 itself would never read as ready: give it a `health_path`
//!   that answers something else.
//! - no HTTP answer at all (DNS, connect, TLS, per-probe timeout) is
//!   [`FrontProbe::Unreachable`]: the waker then falls back to the API.
//!
//! Each probe carries `x-paastis-probe: readiness` ([`PROBE_HEADER`]).
//! Redirects are not followed (a redirect is an answer of the app or of its
//! domain settings: the app serves). The body is never read.
//!
//! The base URL may be replaced per region ([`FrontUrls`], from
//! `PAASTIS_FRONT_URLS`): the probe then goes to that URL with the `Host`
//! header the real front would get (`APP.REGION.scalingo.io`), as Envoy's
//! clusters do; tests point it at the fake's front listeners.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::HOST;
use reqwest::Url;
use thiserror::Error;

use super::FrontProbe;

/// The header every probe carries (value `readiness`), so that an app's
/// logs (and the test kit's fake) can tell probes from its users' traffic.
pub const PROBE_HEADER: &str = "x-paastis-probe";

/// Longest wait for one probe's answer (headers).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The first label of the host [`FrontProber::reach`] asks for: five
/// characters, so no app's (Scalingo app names have 6 to 48): the check
/// reaches a region's front and never an app.
pub const REACH_LABEL: &str = "probe";

/// A malformed `PAASTIS_FRONT_URLS`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct FrontUrlsError(String);

/// Per-region base URLs of the app fronts that replace
/// `https://APP.REGION.scalingo.io` (scheme, host and port only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontUrls(BTreeMap<String, Url>);

impl FrontUrls {
    /// Parses `region=url,region=url` (blanks around items ignored); an
    /// empty text is no override.
    pub fn parse(text: &str) -> Result<Self, FrontUrlsError> {
        let mut map = BTreeMap::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (region, url) = item
                .split_once('=')
                .ok_or_else(|| FrontUrlsError(format!("{item:?} is not region=url")))?;
            let region = region.trim();
            if region.is_empty() {
                return Err(FrontUrlsError(format!("{item:?} names no region")));
            }
            let url =
                Url::parse(url.trim()).map_err(|e| FrontUrlsError(format!("{item:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https")
                || url.host_str().is_none()
                || url.path() != "/"
                || url.query().is_some()
            {
                return Err(FrontUrlsError(format!(
                    "{item:?}: an http(s) URL with a host and no path"
                )));
            }
            map.insert(region.to_owned(), url);
        }
        Ok(Self(map))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for FrontUrls {
    /// `region=url, ...`, or the default fronts when nothing is overridden.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("https://APP.REGION.scalingo.io");
        }
        let items: Vec<String> = self.0.iter().map(|(r, u)| format!("{r}={u}")).collect();
        f.write_str(&items.join(", "))
    }
}

/// The host of `app`'s default domain, what its front routes on.
pub fn front_host(region: &str, app: &str) -> String {
    format!("{app}.{region}.scalingo.io")
}

/// Reads a front's answer status; see the module's documentation.
pub fn classify(status: u16) -> FrontProbe {
    if paastis_api::is_router_status(u32::from(status)) {
        FrontProbe::Router
    } else {
        FrontProbe::App
    }
}

/// Whether a region's fronts can be reached from here, and what it costs
/// when they cannot: the line `check-config` prints and the sidecar logs at
/// start-up.
pub fn reach_line(region: &str, reached: &Result<u16, String>, calls_per_minute: u32) -> String {
    match reached {
        Ok(status) => format!("{region}: the apps' fronts answer (HTTP {status} for a host no app has): readiness is probed there, at no API call"),
        Err(reason) => format!(
            "{region}: the apps' fronts cannot be reached from here ({reason}): each wake reads its readiness from the Scalingo API instead, one `ps` call every 1 to 5 s of boot (6 for a 20 s boot), so a burst of first requests waits for its turn in the budget of {calls_per_minute} calls a minute; allow egress to https://APP.{region}.scalingo.io or set PAASTIS_FRONT_URLS"
        ),
    }
}

/// Sends the probes; one per gateway (its connections are reused).
#[derive(Debug, Clone)]
pub struct FrontProber {
    http: reqwest::Client,
    urls: FrontUrls,
}

impl FrontProber {
    pub fn new(urls: FrontUrls) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROBE_TIMEOUT)
            .user_agent(concat!(
                "paastis-gateway/",
                env!("CARGO_PKG_VERSION"),
                " (readiness)"
            ))
            .build()
            .map_err(|e| format!("front probe client: {e}"))?;
        Ok(Self { http, urls })
    }

    /// The URL probed for `app` at `path`, and the `Host` to send when the
    /// region's base URL is overridden.
    pub fn target(
        &self,
        region: &str,
        app: &str,
        path: &str,
    ) -> Result<(Url, Option<String>), String> {
        let host = front_host(region, app);
        let (base, host_header) = match self.urls.0.get(region) {
            Some(base) => (base.clone(), Some(host)),
            None => (
                Url::parse(&format!("https://{host}/")).map_err(|e| e.to_string())?,
                None,
            ),
        };
        let url = base.join(path).map_err(|e| e.to_string())?;
        Ok((url, host_header))
    }

    /// Whether `region`'s fronts answer: one request for a host no app has
    /// ([`REACH_LABEL`]); any HTTP answer is one (the status is returned),
    /// no answer (DNS, connect, TLS, timeout) is the error's text.
    pub async fn reach(&self, region: &str) -> Result<u16, String> {
        let (url, host) = self.target(region, REACH_LABEL, "/")?;
        let mut request = self.http.get(url).header(PROBE_HEADER, "reach");
        if let Some(host) = host {
            request = request.header(HOST, host);
        }
        match request.send().await {
            Ok(answer) => Ok(answer.status().as_u16()),
            Err(e) => Err(error_chain(&e)),
        }
    }

    /// One probe; see the module's documentation.
    pub async fn probe(&self, region: &str, app: &str, path: &str) -> FrontProbe {
        let (url, host) = match self.target(region, app, path) {
            Ok(t) => t,
            Err(e) => return FrontProbe::Unreachable(e),
        };
        let mut request = self.http.get(url).header(PROBE_HEADER, "readiness");
        if let Some(host) = host {
            request = request.header(HOST, host);
        }
        match request.send().await {
            Ok(answer) => classify(answer.status().as_u16()),
            Err(e) => FrontProbe::Unreachable(e.to_string()),
        }
    }
}

/// An error with its causes (reqwest's own text alone says only "error
/// sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reach_label_is_no_app_name() {
        assert!(!paastis_rules::is_valid_app_name(REACH_LABEL));
        assert!(paastis_rules::is_valid_app_name("probe-app"));
    }

    #[tokio::test]
    async fn a_front_that_answers_is_reached_and_a_closed_port_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = tokio::io::AsyncReadExt::read(&mut socket, &mut buf)
                .await
                .unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            tokio::io::AsyncWriteExt::write_all(
                &mut socket,
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await
            .unwrap();
            head
        });
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let prober = FrontProber::new(
            FrontUrls::parse(&format!(
                "osc-fr1=http://{addr},osc-secnum-fr1=http://{closed}"
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(prober.reach("osc-fr1").await, Ok(404));
        let head = server.await.unwrap();
        assert!(head.contains("host: probe.osc-fr1.scalingo.io"), "{head}");
        let refused = prober.reach("osc-secnum-fr1").await.unwrap_err();
        let line = reach_line("osc-secnum-fr1", &Err(refused.clone()), 55);
        assert!(line.contains("cannot be reached"), "{line}");
        assert!(line.contains("55 calls a minute"), "{line}");
        assert!(line.contains(&refused), "{line}");
        assert!(reach_line("osc-fr1", &Ok(404), 55).contains("no API call"));
    }

    #[test]
    fn the_router_is_502_to_504_and_anything_else_is_the_app() {
        for status in [502, 503, 504] {
            assert_eq!(classify(status), FrontProbe::Router, "{status}");
        }
        for status in [200, 204, 301, 401, 404, 500, 501] {
            assert_eq!(classify(status), FrontProbe::App, "{status}");
        }
    }

    #[test]
    fn overrides_keep_the_real_host_in_the_host_header() {
        let prober =
            FrontProber::new(FrontUrls::parse(" osc-fr1=http://127.0.0.1:8081 ,").unwrap())
                .unwrap();
        let (url, host) = prober.target("osc-fr1", "my-app", "/healthz?x=1").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8081/healthz?x=1");
        assert_eq!(host.as_deref(), Some("my-app.osc-fr1.scalingo.io"));
        let (url, host) = prober.target("osc-secnum-fr1", "my-app", "/").unwrap();
        assert_eq!(url.as_str(), "https://my-app.osc-secnum-fr1.scalingo.io/");
        assert_eq!(host, None);
    }

    #[test]
    fn malformed_overrides_are_refused() {
        assert!(FrontUrls::parse("").unwrap().is_empty());
        assert_eq!(
            FrontUrls::default().to_string(),
            "https://APP.REGION.scalingo.io"
        );
        assert_eq!(
            FrontUrls::parse("osc-fr1=http://127.0.0.1:81")
                .unwrap()
                .to_string(),
            "osc-fr1=http://127.0.0.1:81/"
        );
        for bad in [
            "osc-fr1",
            "=http://x",
            "osc-fr1=ftp://x",
            "osc-fr1=http://x/path",
            "osc-fr1=nonsense",
        ] {
            assert!(FrontUrls::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_front_that_does_not_answer_is_unreachable() {
        // A port nobody listens on (bound, then closed).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let urls = FrontUrls::parse(&format!("osc-fr1=http://127.0.0.1:{port}")).unwrap();
        let prober = FrontProber::new(urls).unwrap();
        assert!(matches!(
            prober.probe("osc-fr1", "my-app", "/").await,
            FrontProbe::Unreachable(_)
        ));
    }
}
