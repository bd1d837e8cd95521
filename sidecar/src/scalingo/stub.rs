//! A scripted Scalingo for the client's unit tests: one local HTTP server
//! that answers the token exchange and `/v1/regions` itself (its own base
//! is the one region, `osc-fr1`), hands every other request to a closure,
//! and records what it received.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use url::Url;

use super::config::{RetryPolicy, ScalingoConfig, ScalingoTuning};

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub body: String,
}

/// What the closure answers: status, extra headers, body.
pub type Reply = (u16, Vec<(&'static str, String)>, String);

type Handler = dyn Fn(&Method, &str, &str) -> Reply + Send + Sync;

pub struct Stub {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    /// Serves until dropped; `handler` answers every request but the token
    /// exchange and `/v1/regions`.
    pub async fn start(
        handler: impl Fn(&Method, &str, &str) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stub");
        let addr = listener.local_addr().expect("stub address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let app = Router::new().fallback({
            let seen = seen.clone();
            move |method: Method, uri: Uri, body: Bytes| {
                let seen = seen.clone();
                let handler = handler.clone();
                async move {
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let path = uri.path().to_owned();
                    seen.lock().unwrap().push(Seen {
                        method: method.clone(),
                        path: path.clone(),
                        body: body.clone(),
                    });
                    let (status, headers, body) = match path.as_str() {
                        "/v1/tokens/exchange" => (200, vec![], r#"{"token":"jwt"}"#.to_owned()),
                        "/v1/regions" => (
                            200,
                            vec![],
                            format!(
                                r#"{{"regions":[{{"name":"osc-fr1","api":"http://{addr}"}}]}}"#
                            ),
                        ),
                        _ => handler(&method, &path, &body),
                    };
                    let mut response: Response =
                        (StatusCode::from_u16(status).expect("a status"), body).into_response();
                    for (name, value) in headers {
                        response
                            .headers_mut()
                            .insert(name, value.parse().expect("a header value"));
                    }
                    response
                }
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, seen, task }
    }

    /// A client configuration pointing at the stub.
    pub fn config(&self) -> ScalingoConfig {
        let mut config = ScalingoConfig::new("tk-us-stub");
        config.auth_url = Url::parse(&format!("http://{}", self.addr)).expect("stub URL");
        config
    }

    /// Tuning with short retry pauses.
    pub fn tuning() -> ScalingoTuning {
        ScalingoTuning {
            retry: RetryPolicy {
                attempts: 3,
                base_delay: std::time::Duration::from_millis(5),
                max_delay: std::time::Duration::from_millis(20),
            },
            ..ScalingoTuning::default()
        }
    }

    /// Requests received so far, the exchange and the regions included.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}
