//! A real headless Chromium for end-to-end tests, driven through
//! `chromedriver` over the W3C WebDriver protocol (plain HTTP + JSON with
//! reqwest; no extra crate).
//!
//! Binaries: `$CHROMEDRIVER_BIN` (default `chromedriver`) and
//! `$CHROMIUM_BIN` (default `chromium`), from Debian's `chromium` and
//! `chromium-driver` packages (`make deps` installs them).
//!
//! A [`Browser`] always tears down: its `Drop` ends the WebDriver session
//! (which quits Chromium) and kills chromedriver's whole process group, so
//! no Chromium process outlives a test, even a failing one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

fn bin(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// `$CHROMEDRIVER_BIN` or `chromedriver`.
pub fn chromedriver_bin() -> PathBuf {
    bin("CHROMEDRIVER_BIN", "chromedriver")
}

/// `$CHROMIUM_BIN` or `chromium`.
pub fn chromium_bin() -> PathBuf {
    bin("CHROMIUM_BIN", "chromium")
}

/// Where a program named `name` (or a path) resolves on `PATH`.
fn which(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// How to start the browser.
pub struct BrowserOptions {
    /// Chromium's `--host-resolver-rules`, e.g.
    /// `MAP *.gateway.example.com 127.0.0.1`.
    pub host_resolver_rules: Option<String>,
    pub window: (u32, u32),
    /// chromedriver's log goes here.
    pub log_dir: PathBuf,
}

/// A running chromedriver with one session of headless Chromium.
pub struct Browser {
    driver: Option<Child>,
    addr: SocketAddr,
    session: Option<String>,
    http: reqwest::Client,
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session.
    pub async fn start(options: BrowserOptions) -> Result<Self, String> {
        let driver_bin = which(&chromedriver_bin()).ok_or_else(|| {
            format!(
                "{} not found: install Debian's chromium and chromium-driver (make deps)",
                chromedriver_bin().display()
            )
        })?;
        let chromium = which(&chromium_bin()).ok_or_else(|| {
            format!(
                "{} not found: install Debian's chromium (make deps)",
                chromium_bin().display()
            )
        })?;
        let log = options.log_dir.join("chromedriver.log");
        // The free port can be taken between our probe and chromedriver's
        // bind (tests run in parallel): then it exits, and another port is
        // tried.
        let mut attempts = 0;
        let mut browser = loop {
            attempts += 1;
            let mut browser = Self::spawn_driver(&driver_bin, &log)?;
            match browser.wait_driver().await {
                Ok(()) => break browser,
                Err(e) if attempts < 5 && e.starts_with("chromedriver exited") => continue,
                Err(e) => return Err(e),
            }
        };
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--no-proxy-server".to_owned(),
            // Plain http to a gateway host: no HTTPS upgrade attempt.
            "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable".to_owned(),
            format!("--window-size={},{}", options.window.0, options.window.1),
        ];
        if let Some(rules) = &options.host_resolver_rules {
            args.push(format!("--host-resolver-rules={rules}"));
        }
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": args,
                    }
                }
            }
        });
        let value = browser.command("POST", "/session", Some(caps)).await?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {value}"))?;
        browser.session = Some(id.to_owned());
        Ok(browser)
    }

    /// Starts chromedriver on a loopback port free a moment ago.
    fn spawn_driver(driver_bin: &Path, log: &Path) -> Result<Self, String> {
        let port = free_port()?;
        let child = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: teardown kills it and every Chromium
            // process it started at once.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", driver_bin.display()))?;
        let browser = Self {
            driver: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .no_proxy()
                .build()
                .map_err(|e| e.to_string())?,
        };
        Ok(browser)
    }

    async fn wait_driver(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.driver.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("chromedriver exited: {status}"));
                }
            }
            if let Ok(v) = self.command("GET", "/status", None).await {
                if v["ready"].as_bool() == Some(true) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("chromedriver did not become ready in 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One WebDriver command; returns its `value`, or the WebDriver error.
    pub async fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("http://{}{}", self.addr, path);
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = self.http.request(method, &url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let value: Value = resp.json().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(value["value"].clone())
        } else {
            Err(format!(
                "{status}: {} {}",
                value["value"]["error"], value["value"]["message"]
            ))
        }
    }

    fn session_path(&self, rest: &str) -> Result<String, String> {
        let id = self.session.as_deref().ok_or("no session")?;
        Ok(format!("/session/{id}{rest}"))
    }

    /// Navigates to `url` and waits for the page load (WebDriver's `normal`
    /// strategy).
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        let path = self.session_path("/url")?;
        self.command("POST", &path, Some(json!({ "url": url })))
            .await
            .map(|_| ())
    }

    pub async fn title(&self) -> Result<String, String> {
        let path = self.session_path("/title")?;
        let v = self.command("GET", &path, None).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    pub async fn current_url(&self) -> Result<String, String> {
        let path = self.session_path("/url")?;
        let v = self.command("GET", &path, None).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` (a function body) in the page and returns its result.
    pub async fn execute(&self, script: &str) -> Result<Value, String> {
        let path = self.session_path("/execute/sync")?;
        self.command("POST", &path, Some(json!({ "script": script, "args": [] })))
            .await
    }

    /// A PNG of the viewport, written to `file` (its folder is created).
    pub async fn screenshot(&self, file: &Path) -> Result<(), String> {
        let path = self.session_path("/screenshot")?;
        let v = self.command("GET", &path, None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(file, png).map_err(|e| e.to_string())
    }

    /// Ends the session (Chromium quits) and stops chromedriver.
    pub fn stop(&mut self) {
        if let Some(id) = self.session.take() {
            // Blocking on purpose: also runs from `Drop`, maybe outside any
            // runtime.
            let _ = blocking_delete(self.addr, &format!("/session/{id}"));
        }
        if let Some(mut child) = self.driver.take() {
            // The whole group: chromedriver and the Chromium it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `DELETE path` over HTTP/1.1, blocking, bounded in time.
fn blocking_delete(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        stream,
        "DELETE {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut status = String::new();
    BufReader::new(&mut stream).read_line(&mut status)?;
    let mut rest = String::new();
    let _ = stream.read_to_string(&mut rest);
    Ok(status)
}

impl Browser {
    /// The WebDriver reference of the first element matching `css` (the
    /// W3C spec's element identifier key).
    async fn element(&self, css: &str) -> Result<String, String> {
        let path = self.session_path("/element")?;
        let v = self
            .command(
                "POST",
                &path,
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no element reference for {css}: {v}"))
    }

    /// Types `text` into the element matching `css`, as keys (it gets the
    /// focus first). `\u{E007}` is Enter.
    pub async fn send_keys(&self, css: &str, text: &str) -> Result<(), String> {
        let id = self.element(css).await?;
        let path = self.session_path(&format!("/element/{id}/value"))?;
        self.command("POST", &path, Some(json!({ "text": text })))
            .await
            .map(|_| ())
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) -> Result<(), String> {
        let id = self.element(css).await?;
        let path = self.session_path(&format!("/element/{id}/click"))?;
        self.command("POST", &path, Some(json!({})))
            .await
            .map(|_| ())
    }
}

/// The page's text parsed as the fake app's JSON echo, if it is one.
pub async fn app_answer(browser: &Browser) -> Option<Value> {
    let text = browser
        .execute("return document.body ? document.body.innerText : '';")
        .await
        .ok()?;
    serde_json::from_str::<Value>(text.as_str()?.trim())
        .ok()
        .filter(|v| v.get("app").is_some())
}
