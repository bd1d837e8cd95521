//! The end-to-end harness: a real Envoy loading the built `.wasm`, the real
//! sidecar binary and the fake Scalingo (in process), wired together on
//! loopback ports chosen by the kernel.
//!
//! Paths come from the environment the Makefile exports: `ENVOY_BIN`,
//! `PAASTIS_WASM`, `PAASTIS_SIDECAR_BIN` (with fallbacks relative to the
//! workspace for a plain `cargo test` after `make build`).
//!
//! A [`Stack`] always tears down: its `Drop` kills Envoy and the sidecar, and
//! when the test is failing (panicking) it prints Envoy's and the sidecar's
//! logs first.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fake::{FakeApp, FakeConfig, FakeScalingo};

/// Root of the workspace (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn path_from_env(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(fallback))
}

pub fn envoy_bin() -> PathBuf {
    path_from_env("ENVOY_BIN", "bin/envoy")
}

pub fn wasm_path() -> PathBuf {
    path_from_env(
        "PAASTIS_WASM",
        "target/wasm32-wasip1/release/paastis_filter.wasm",
    )
}

pub fn sidecar_bin() -> PathBuf {
    path_from_env("PAASTIS_SIDECAR_BIN", "target/debug/paastis-sidecar")
}

/// Fills `${NAME}` placeholders; every placeholder must be given.
pub fn render_template(template: &str, vars: &[(&str, String)]) -> Result<String, String> {
    let mut out = template.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    match out.find("${") {
        Some(pos) => Err(format!(
            "unfilled placeholder near: {}",
            &out[pos..out.len().min(pos + 40)]
        )),
        None => Ok(out),
    }
}

/// How to start a stack.
pub struct StackOptions {
    pub fake: FakeConfig,
    pub apps: Vec<FakeApp>,
    /// Contents of `paastis.yml`.
    pub rules_yaml: String,
    /// Merged over the default filter configuration.
    pub filter: Value,
    /// Extra environment for the sidecar.
    pub sidecar_env: Vec<(String, String)>,
    /// Envoy worker threads.
    pub concurrency: u32,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            fake: FakeConfig {
                boot_delay: Duration::from_millis(300),
                ..FakeConfig::default()
            },
            apps: Vec::new(),
            rules_yaml: String::new(),
            filter: json!({}),
            sidecar_env: Vec::new(),
            concurrency: 2,
        }
    }
}

/// The default filter configuration of the tests: apps are
/// `APP.gateway.example.com`, plus one explicit rule pinning
/// `APP.secure.example.com` to osc-secnum-fr1.
pub fn default_filter_config() -> Value {
    json!({
        "sidecar_cluster": "paastis_sidecar",
        "sidecar_hold_cluster": "paastis_sidecar_hold",
        "domains": ["gateway.example.com"],
        "host_rules": [
            { "pattern": "([a-z0-9-]+)\\.secure\\.example\\.com", "app": "$1", "region": "osc-secnum-fr1" }
        ],
        "unmatched_hosts": "reject",
        "failure_policy": "closed",
        "callout_timeout_ms": 30000,
        "cache_ttl_ms": 60000,
        "activity_flush_ms": 500
    })
}

fn merge(base: &mut Value, over: &Value) {
    if let (Some(base), Some(over)) = (base.as_object_mut(), over.as_object()) {
        for (k, v) in over {
            base.insert(k.clone(), v.clone());
        }
    }
}

/// The sidecar environment that turns its admin API on: `token` as
/// `PAASTIS_ADMIN_TOKEN`, listening on a loopback port the sidecar binds
/// itself (port 0: no port picked beforehand that another test could take
/// meanwhile); [`Sidecar::admin`] is where it listens.
pub fn admin_env(token: &str) -> Vec<(String, String)> {
    vec![
        ("PAASTIS_ADMIN_TOKEN".into(), token.into()),
        ("PAASTIS_ADMIN_LISTEN".into(), "127.0.0.1:0".into()),
    ]
}

/// A fresh `PAASTIS_SIDECAR_TOKEN` (32 random alphanumerics): each
/// sidecar a test starts has its own.
pub fn fresh_sidecar_token() -> String {
    let random: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(32)
        .collect();
    format!("test-{random}")
}

/// A running sidecar process.
pub struct Sidecar {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Where its admin API listens, when `PAASTIS_ADMIN_LISTEN` is set.
    pub admin: Option<SocketAddr>,
    /// Its `PAASTIS_SIDECAR_TOKEN`: the filter's `sidecar_token`, and what
    /// a test calling `/v1/wake`, `/v1/status` or `/v1/activity` itself
    /// must send (`Authorization: Bearer TOKEN`).
    pub token: String,
    log: PathBuf,
}

impl Sidecar {
    /// Starts the sidecar binary against `fake`, with `paastis.yml` at
    /// `rules`, and waits for its `listening on` line. It requires a fresh
    /// token ([`Sidecar::token`]) unless `extra_env` sets
    /// `PAASTIS_SIDECAR_TOKEN` itself.
    pub fn start(
        fake: &FakeScalingo,
        rules: &Path,
        dir: &Path,
        extra_env: &[(String, String)],
    ) -> Result<Self, String> {
        let log = dir.join("sidecar.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let token = extra_env
            .iter()
            .find(|(k, _)| k == "PAASTIS_SIDECAR_TOKEN")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(fresh_sidecar_token);
        let mut cmd = Command::new(sidecar_bin());
        cmd.env_clear()
            .env("PAASTIS_SIDECAR_TOKEN", &token)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PROVIDER_SCALINGO_API_TOKEN", &fake.config().api_token)
            .env("PROVIDER_SCALINGO_AUTH_URL", fake.auth_url())
            .env("PAASTIS_LISTEN", "127.0.0.1:0")
            .env("PAASTIS_RULES_FILE", rules)
            .env("PAASTIS_WAKE_TIMEOUT", "20")
            .env("PAASTIS_FRONT_URLS", crate::setup::front_urls(fake))
            .env("RUST_LOG", "info,paastis_sidecar=debug")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the sidecar {}: {e}", sidecar_bin().display()))?;
        let stdout = child.stdout.take().ok_or("no sidecar stdout")?;
        let mut reader = BufReader::new(stdout);
        // `listening on ADDR`, then `admin listening on ADDR` when the
        // admin API is on (printed once each listener is bound).
        let mut announced = |prefix: &str| {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 => line
                    .trim()
                    .strip_prefix(prefix)
                    .and_then(|a| a.parse::<SocketAddr>().ok()),
                _ => None,
            }
        };
        let addr = announced("listening on ");
        let with_admin = extra_env.iter().any(|(k, _)| k == "PAASTIS_ADMIN_LISTEN");
        let admin = if addr.is_some() && with_admin {
            announced("admin listening on ")
        } else {
            None
        };
        // Later lines must find a reader: a closed pipe would make the
        // sidecar's `println!` panic.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let mut sidecar = Self {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin,
            token,
            log,
        };
        match addr.filter(|_| !with_admin || admin.is_some()) {
            Some(addr) => {
                sidecar.addr = addr;
                Ok(sidecar)
            }
            None => {
                sidecar.stop();
                Err(format!(
                    "the sidecar did not start; its log:\n{}",
                    std::fs::read_to_string(&sidecar.log).unwrap_or_default()
                ))
            }
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `Authorization` value its filter-facing endpoints require.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The process id while it runs (the benchmarks read its memory in
    /// `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running Envoy with the gateway configuration.
pub struct Envoy {
    child: Option<Child>,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
}

impl Envoy {
    /// Renders `envoy/fake.yaml.tmpl` and starts Envoy on it; returns once
    /// the listener is bound and the admin says LIVE.
    pub fn start(dir: &Path, vars: &[(&str, String)], concurrency: u32) -> Result<Self, String> {
        let template = std::fs::read_to_string(workspace_root().join("envoy/fake.yaml.tmpl"))
            .map_err(|e| e.to_string())?;
        let mut all_vars: Vec<(&str, String)> =
            vec![("LISTEN_PORT", "0".into()), ("ADMIN_PORT", "0".into())];
        all_vars.extend(vars.iter().cloned());
        let config = render_template(&template, &all_vars)?;
        let config_path = dir.join("envoy.yaml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log = dir.join("envoy.log");
        let admin_path = dir.join("admin.addr");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&config_path)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                &concurrency.to_string(),
            ])
            .args(["-l", "info", "--component-log-level", "wasm:debug"])
            .arg("--log-path")
            .arg(&log)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start envoy {}: {e}", envoy_bin().display()))?;
        let mut envoy = Self {
            child: Some(child),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match envoy.wait_ready(&admin_path) {
            Ok(()) => Ok(envoy),
            Err(e) => {
                envoy.stop();
                Err(format!("{e}; envoy log:\n{}", envoy.log()))
            }
        }
    }

    fn wait_ready(&mut self, admin_path: &Path) -> Result<(), String> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| "envoy is not running".to_owned())?;
        let (admin, listen) = wait_envoy_ready(child, admin_path)?;
        self.admin = admin;
        self.listen = listen;
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads counters from the admin's `/stats`: every stat whose name
    /// contains `fragment`, with its value.
    pub fn stats(&self, fragment: &str) -> Vec<(String, u64)> {
        blocking_get(self.admin, "/stats")
            .map(|(_, body)| {
                body.lines()
                    .filter_map(|l| l.split_once(": "))
                    .filter(|(name, _)| name.contains(fragment))
                    .filter_map(|(name, v)| v.trim().parse().ok().map(|v| (name.to_owned(), v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of the one counter whose name ends with `suffix` (0 when
    /// absent, as Envoy does not list a counter never incremented by a
    /// filter that has not defined it yet).
    pub fn counter(&self, suffix: &str) -> u64 {
        self.stats(suffix)
            .into_iter()
            .find(|(name, _)| name.ends_with(suffix))
            .map(|(_, v)| v)
            .unwrap_or(0)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits (30 s at most) until the Envoy `child`, started with
/// `--admin-address-path admin_path`, is ready; returns its admin address
/// and the port its first listener bound (listeners on port 0).
pub fn wait_envoy_ready(
    child: &mut Child,
    admin_path: &Path,
) -> Result<(SocketAddr, SocketAddr), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("envoy exited: {status}"));
        }
        if Instant::now() > deadline {
            return Err("envoy did not become ready in 30 s".into());
        }
        if let Some(admin) = std::fs::read_to_string(admin_path)
            .ok()
            .and_then(|s| s.trim().parse::<SocketAddr>().ok())
        {
            if let (Ok((200, _)), Ok((_, listeners))) = (
                blocking_get(admin, "/ready"),
                blocking_get(admin, "/listeners?format=json"),
            ) {
                let parsed: Value = serde_json::from_str(&listeners).unwrap_or(Value::Null);
                // The public listener (the others are internal, no port).
                let gateway = parsed["listener_statuses"]
                    .as_array()
                    .and_then(|all| all.iter().find(|l| l["name"] == "gateway"));
                let port = gateway
                    .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0);
                if let Some(port) = port {
                    return Ok((admin, SocketAddr::from(([127, 0, 0, 1], port))));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tiny blocking HTTP/1.1 GET (Envoy refuses HTTP/1.0) for the admin interface (no client runtime
/// needed inside `Drop` or sync code).
pub fn blocking_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

/// Decodes an HTTP/1.1 chunked body (the admin interface answers chunked).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// Envoy + sidecar + fake Scalingo.
pub struct Stack {
    pub fake: FakeScalingo,
    pub sidecar: Sidecar,
    pub envoy: Envoy,
    pub client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Stack {
    pub async fn start(options: StackOptions) -> Self {
        match Self::try_start(options).await {
            Ok(stack) => stack,
            Err(e) => panic!("cannot start the stack: {e}"),
        }
    }

    pub async fn try_start(options: StackOptions) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let fake = FakeScalingo::start(options.fake)
            .await
            .map_err(|e| e.to_string())?;
        for app in options.apps {
            fake.add_app(app);
        }
        let rules = dir.path().join("paastis.yml");
        std::fs::write(&rules, &options.rules_yaml).map_err(|e| e.to_string())?;
        let sidecar = Sidecar::start(&fake, &rules, dir.path(), &options.sidecar_env)?;

        let mut filter = default_filter_config();
        merge(&mut filter, &json!({ "sidecar_token": sidecar.token }));
        merge(&mut filter, &options.filter);
        let front = |region: &str| {
            fake.front_addr(region)
                .map(|a| a.port().to_string())
                .ok_or_else(|| format!("the fake has no front for {region}"))
        };
        let vars = [
            ("SIDECAR_PORT", sidecar.addr.port().to_string()),
            ("FRONT_OSC_FR1_PORT", front("osc-fr1")?),
            ("FRONT_OSC_SECNUM_FR1_PORT", front("osc-secnum-fr1")?),
            ("WASM_PATH", wasm_path().display().to_string()),
            ("FILTER_CONFIG", filter.to_string()),
        ];
        let envoy = Envoy::start(dir.path(), &vars, options.concurrency)?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            fake,
            sidecar,
            envoy,
            client,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `GET http://<envoy>/path` with the given Host.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.request(host, path, &[]).await
    }

    /// A GET with extra headers.
    pub async fn request(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let url = format!("http://{}{}", self.envoy.listen, path);
        let mut req = self.client.get(&url).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let started = Instant::now();
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp.text().await.unwrap_or_default();
                Reply {
                    status,
                    headers,
                    body,
                    elapsed: started.elapsed(),
                }
            }
            Err(e) => panic!("request to {host}{path} failed: {e}"),
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== envoy log ({}) =====\n{}",
                self.dir.path().display(),
                self.envoy.log()
            );
            eprintln!("===== sidecar log =====\n{}", self.sidecar.log());
        }
        self.envoy.stop();
        self.sidecar.stop();
    }
}

/// An HTTP answer seen by a client of the gateway.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub elapsed: Duration,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
