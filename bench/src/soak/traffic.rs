//! The soak's clients: one task per app that alternates quiet phases (long
//! enough, most of the time, for the scheduler to pause the app) and active
//! phases (a burst of first requests, then GETs, POST bodies checked by
//! digest, streams, a few WebSockets held past the idle time), through
//! either gateway instance. Every request ends up in the request log with
//! what its client saw, classified.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use paastis_e2e::fake::{APP_HEADER, ROUTER_MARKER};
use sha2::{Digest as _, Sha256};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

/// What a client may wait for one answer: a wake may take the sidecar's
/// wake timeout (60 s) after a pause's 30 s scale-down, and a stream runs
/// up to 45 s after that.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(150);

/// The kinds of requests the soak sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// One of the burst of first requests of an active phase.
    Burst,
    Get,
    Post,
    Stream,
    WebSocket,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Burst => "burst GET",
            Kind::Get => "GET",
            Kind::Post => "POST body",
            Kind::Stream => "stream",
            Kind::WebSocket => "WebSocket",
        }
    }
}

/// One request as its client saw it. Times are seconds since the soak's
/// start.
#[derive(Clone, Debug)]
pub struct Record {
    pub app: String,
    pub kind: Kind,
    pub instance: usize,
    pub start: f64,
    pub end: f64,
    /// `ok`, or the class of the error (`503 wake_failed (Retry-After)`,
    /// `503 router page`, `transport error: timeout`...).
    pub class: String,
    /// The app itself answered (its header), whatever came after.
    pub from_app: bool,
    /// The first bytes of the answer, for the report's examples.
    pub detail: String,
}

impl Record {
    pub fn ok(&self) -> bool {
        self.class == "ok"
    }
}

/// Shared by every client task.
pub struct Traffic {
    pub client: reqwest::Client,
    pub envoys: Vec<SocketAddr>,
    pub t0: Instant,
    pub until: Instant,
    pub log: Mutex<Vec<Record>>,
}

impl Traffic {
    pub fn new(envoys: Vec<SocketAddr>, t0: Instant, until: Instant) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(CLIENT_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            envoys,
            t0,
            until,
            log: Mutex::new(Vec::new()),
        })
    }

    fn since(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.t0).as_secs_f64()
    }

    fn push(&self, record: Record) {
        if let Ok(mut log) = self.log.lock() {
            log.push(record);
        }
    }

    pub fn records(&self) -> Vec<Record> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn host(app: &str) -> String {
    format!("{app}.gateway.example.com")
}

/// The life of one app's users until the end of the soak.
pub async fn app_loop(traffic: std::sync::Arc<Traffic>, app: String, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    // The first active phase starts within the first minute.
    let mut quiet = Duration::from_millis(rng.u64(0..60_000));
    loop {
        tokio::time::sleep(quiet.min(traffic.until.saturating_duration_since(Instant::now())))
            .await;
        if Instant::now() >= traffic.until {
            return;
        }
        let mut inflight = JoinSet::new();
        // A burst of first requests, over both instances, to an app that
        // has most likely been paused.
        for _ in 0..rng.usize(3..=12) {
            let plan = Plan::pick(Kind::Burst, &mut rng);
            inflight.spawn(one(traffic.clone(), app.clone(), plan));
        }
        let active_end = Instant::now() + Duration::from_millis(rng.u64(15_000..60_000));
        while Instant::now() < active_end.min(traffic.until) {
            let kind = match rng.u32(0..100) {
                0..70 => Kind::Get,
                70..85 => Kind::Post,
                85..96 => Kind::Stream,
                _ => Kind::WebSocket,
            };
            let plan = Plan::pick(kind, &mut rng);
            inflight.spawn(one(traffic.clone(), app.clone(), plan));
            tokio::time::sleep(Duration::from_millis(rng.u64(500..4_000))).await;
        }
        while inflight.join_next().await.is_some() {}
        // Mostly longer than the app's idle time (it gets paused), now and
        // then shorter (it must not be).
        quiet = if rng.u32(0..100) < 20 {
            Duration::from_millis(rng.u64(10_000..50_000))
        } else {
            Duration::from_millis(rng.u64(70_000..180_000))
        };
    }
}

/// One request, drawn before it is sent (the task's generator stays with
/// the task).
struct Plan {
    kind: Kind,
    instance: usize,
    body: Vec<u8>,
    chunks: u64,
    interval_ms: u64,
    hold: Duration,
}

impl Plan {
    fn pick(kind: Kind, rng: &mut fastrand::Rng) -> Self {
        let instance = rng.usize(0..2);
        let mut plan = Plan {
            kind,
            instance,
            body: Vec::new(),
            chunks: 0,
            interval_ms: 0,
            hold: Duration::ZERO,
        };
        match kind {
            Kind::Post => {
                let len = match rng.u32(0..100) {
                    0..70 => rng.usize(1..64 * 1024),
                    70..95 => rng.usize(64 * 1024..2 * 1024 * 1024),
                    _ => rng.usize(2 * 1024 * 1024..8 * 1024 * 1024),
                };
                let mut body = vec![0u8; len];
                rng.fill(&mut body);
                plan.body = body;
            }
            Kind::Stream => {
                plan.chunks = rng.u64(5..30);
                plan.interval_ms = rng.u64(200..1_500);
            }
            // Often past the app's idle time (60 s): the open socket is
            // the app's only activity meanwhile.
            Kind::WebSocket => plan.hold = Duration::from_millis(rng.u64(20_000..100_000)),
            Kind::Burst | Kind::Get => {}
        }
        plan
    }
}

/// What a client saw.
struct Seen {
    class: String,
    from_app: bool,
    detail: String,
}

impl Seen {
    fn ok() -> Self {
        Seen {
            class: "ok".into(),
            from_app: true,
            detail: String::new(),
        }
    }
}

async fn one(traffic: std::sync::Arc<Traffic>, app: String, plan: Plan) {
    let started = Instant::now();
    let addr = traffic.envoys[plan.instance % traffic.envoys.len()];
    let seen = match plan.kind {
        Kind::Burst | Kind::Get => get(&traffic.client, addr, &app, "/soak").await,
        Kind::Post => post(&traffic.client, addr, &app, plan.body).await,
        Kind::Stream => stream(&traffic.client, addr, &app, plan.chunks, plan.interval_ms).await,
        Kind::WebSocket => {
            let hold = plan
                .hold
                .min(traffic.until.saturating_duration_since(Instant::now()));
            websocket(addr, &app, hold).await
        }
    };
    traffic.push(Record {
        app,
        kind: plan.kind,
        instance: plan.instance,
        start: traffic.since(started),
        end: traffic.since(Instant::now()),
        class: seen.class,
        from_app: seen.from_app,
        detail: seen.detail,
    });
}

fn served_by_app(headers: &reqwest::header::HeaderMap, app: &str) -> bool {
    headers
        .get(APP_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == app)
}

/// The class of an answer that is not the app's 200: the router's page,
/// the gateway's JSON error (with or without `Retry-After`), or other.
pub fn classify(status: u16, retry_after: bool, from_app: bool, body: &str) -> String {
    if body.contains(ROUTER_MARKER) {
        return format!("{status} router page");
    }
    if from_app {
        return format!("{status} from the app");
    }
    let code = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    let retry = if retry_after { " (Retry-After)" } else { "" };
    match code {
        Some(code) => format!("{status} {code}{retry}"),
        None => format!("{status} other{retry}"),
    }
}

fn transport(e: &reqwest::Error) -> Seen {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body cut"
    } else {
        "request"
    };
    Seen {
        class: format!("transport error: {kind}"),
        from_app: false,
        detail: e.to_string(),
    }
}

pub fn snippet(text: &str) -> String {
    text.chars()
        .take(160)
        .collect::<String>()
        .replace(['\n', '\r'], " ")
}

/// The app's own 200 (its body for the caller to check), or what the
/// client saw instead.
async fn answer(reply: reqwest::Response, app: &str) -> Result<(reqwest::Response, bool), Seen> {
    let status = reply.status().as_u16();
    let from_app = served_by_app(reply.headers(), app);
    if status == 200 && from_app {
        return Ok((reply, from_app));
    }
    let retry_after = reply.headers().contains_key("retry-after");
    let body = reply.text().await.unwrap_or_default();
    Err(Seen {
        class: classify(status, retry_after, from_app, &body),
        from_app,
        detail: snippet(&body),
    })
}

async fn get(client: &reqwest::Client, addr: SocketAddr, app: &str, path: &str) -> Seen {
    let sent = client
        .get(format!("http://{addr}{path}"))
        .header("host", host(app))
        .send()
        .await;
    match sent {
        Err(e) => transport(&e),
        Ok(reply) => match answer(reply, app).await {
            Err(seen) => seen,
            Ok((reply, _)) => match reply.bytes().await {
                Ok(_) => Seen::ok(),
                Err(e) => Seen {
                    from_app: true,
                    ..transport(&e)
                },
            },
        },
    }
}

async fn post(client: &reqwest::Client, addr: SocketAddr, app: &str, body: Vec<u8>) -> Seen {
    let digest = hex(&Sha256::digest(&body));
    let len = body.len();
    let sent = client
        .post(format!("http://{addr}/upload"))
        .header("host", host(app))
        .body(body)
        .send()
        .await;
    let reply = match sent {
        Err(e) => return transport(&e),
        Ok(reply) => match answer(reply, app).await {
            Err(seen) => return seen,
            Ok((reply, _)) => reply,
        },
    };
    let echo: serde_json::Value = match reply.json().await {
        Ok(v) => v,
        Err(e) => {
            return Seen {
                from_app: true,
                ..transport(&e)
            }
        }
    };
    if echo["body_sha256"].as_str() == Some(digest.as_str())
        && echo["body_len"].as_u64() == Some(len as u64)
    {
        Seen::ok()
    } else {
        Seen {
            class: "200 body digest mismatch".into(),
            from_app: true,
            detail: format!("sent {len} bytes, the app read {}", echo["body_len"]),
        }
    }
}

async fn stream(
    client: &reqwest::Client,
    addr: SocketAddr,
    app: &str,
    chunks: u64,
    interval_ms: u64,
) -> Seen {
    let sent = client
        .get(format!(
            "http://{addr}/stream?chunks={chunks}&interval_ms={interval_ms}"
        ))
        .header("host", host(app))
        .send()
        .await;
    let reply = match sent {
        Err(e) => return transport(&e),
        Ok(reply) => match answer(reply, app).await {
            Err(seen) => return seen,
            Ok((reply, _)) => reply,
        },
    };
    match reply.text().await {
        Ok(text) if text.lines().count() as u64 == chunks => Seen::ok(),
        Ok(text) => Seen {
            class: "200 stream cut".into(),
            from_app: true,
            detail: format!("{} of {chunks} chunks", text.lines().count()),
        },
        Err(e) => Seen {
            class: "200 stream cut".into(),
            from_app: true,
            detail: e.to_string(),
        },
    }
}

/// Opens a WebSocket through the gateway, sends a message every 5 s for
/// `hold` and checks each echo.
async fn websocket(addr: SocketAddr, app: &str, hold: Duration) -> Seen {
    let mut request = match format!("ws://{addr}/ws").into_client_request() {
        Ok(r) => r,
        Err(e) => {
            return Seen {
                class: "WebSocket request".into(),
                from_app: false,
                detail: e.to_string(),
            }
        }
    };
    if let Ok(value) = host(app).parse() {
        request.headers_mut().insert("host", value);
    }
    let connected =
        tokio::time::timeout(CLIENT_TIMEOUT, tokio_tungstenite::connect_async(request)).await;
    let mut ws = match connected {
        Err(_) => {
            return Seen {
                class: "transport error: timeout".into(),
                from_app: false,
                detail: "WebSocket handshake".into(),
            }
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(res))) => {
            let body = res
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let from_app = res
                .headers()
                .get(APP_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == app);
            return Seen {
                class: classify(
                    res.status().as_u16(),
                    res.headers().contains_key("retry-after"),
                    from_app,
                    &body,
                ),
                from_app,
                detail: snippet(&body),
            };
        }
        Ok(Err(e)) => {
            return Seen {
                class: "transport error: WebSocket".into(),
                from_app: false,
                detail: e.to_string(),
            }
        }
        Ok(Ok((ws, _))) => ws,
    };
    let until = Instant::now() + hold;
    let mut i = 0u64;
    loop {
        let text = format!("soak {i}");
        if let Err(e) = ws.send(Message::text(text.clone())).await {
            return cut(i, e.to_string());
        }
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(echo)))) if echo.as_str() == text => {}
            Ok(other) => return cut(i, format!("{other:?}")),
            Err(_) => return cut(i, "no echo in 30 s".into()),
        }
        i += 1;
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep(
            Duration::from_secs(5).min(until.saturating_duration_since(Instant::now())),
        )
        .await;
    }
    let _ = ws.close(None).await;
    Seen::ok()
}

fn cut(echoes: u64, detail: String) -> Seen {
    Seen {
        class: "WebSocket cut".into(),
        from_app: true,
        detail: format!("after {echoes} echoes: {}", snippet(&detail)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_tell_router_gateway_and_app_apart() {
        let router = format!("<html>{ROUTER_MARKER}</html>");
        assert_eq!(classify(503, false, false, &router), "503 router page");
        assert_eq!(
            classify(503, true, false, r#"{"error":"wake_failed","message":"x"}"#),
            "503 wake_failed (Retry-After)"
        );
        assert_eq!(classify(502, false, false, "boom"), "502 other");
        assert_eq!(classify(500, false, true, "{}"), "500 from the app");
    }
}
