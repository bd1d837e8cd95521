//! An Envoy started on a rendered configuration for a benchmark.
//!
//! Unlike the e2e harness's Envoy (which always runs `envoy/fake.yaml.tmpl`
//! with the filter's debug logs on, useful when a test fails), this one takes
//! any configuration and logs at `warning` only: a debug line per request
//! would be measured as the filter's cost.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paastis_e2e::harness::{blocking_get, envoy_bin, wait_envoy_ready};
use serde_json::{json, Value};

use crate::util::{pinned, Guard};

/// The filter configuration of `envoy/gateway.yaml`, the shipped one, with
/// the sidecar's `token`.
pub fn shipped_filter_config(token: &str) -> serde_json::Value {
    json!({
        "sidecar_cluster": "paastis_sidecar",
        "sidecar_hold_cluster": "paastis_sidecar_hold",
        "sidecar_token": token,
        "domains": ["gateway.example.com", "localhost"],
        "unmatched_hosts": "reject",
        "failure_policy": "closed",
        "cache_ttl_ms": 30000
    })
}

pub struct Envoy {
    process: Guard,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
    admin_path: PathBuf,
    name: String,
}

impl Envoy {
    /// Writes `config` into `dir`, starts Envoy on it with `concurrency`
    /// workers (on `cpus` when given), and returns once the admin says LIVE
    /// and the listener is bound. The configuration must bind its listener
    /// and admin to port 0.
    pub fn start(
        dir: &Path,
        name: &str,
        config: &str,
        concurrency: u32,
        cpus: Option<&str>,
    ) -> Result<Self, String> {
        let mut envoy = Self::spawn(dir, name, config, concurrency, cpus, &[])?;
        envoy.ready(Duration::from_secs(30))?;
        Ok(envoy)
    }

    /// Starts Envoy as [`Envoy::start`] does, run by the command `under`
    /// when not empty (its program and arguments, Envoy's command line
    /// after them: valgrind), without waiting: [`Envoy::ready`] waits.
    pub fn spawn(
        dir: &Path,
        name: &str,
        config: &str,
        concurrency: u32,
        cpus: Option<&str>,
        under: &[String],
    ) -> Result<Self, String> {
        let config_path = dir.join(format!("{name}.yaml"));
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log = dir.join(format!("{name}.log"));
        let admin_path = dir.join(format!("{name}.admin"));
        let mut command = match under.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(envoy_bin());
                command
            }
            None => pinned(&envoy_bin(), cpus),
        };
        let child = command
            .arg("-c")
            .arg(&config_path)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                &concurrency.to_string(),
            ])
            .args(["-l", "warning"])
            .arg("--log-path")
            .arg(&log)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start envoy {}: {e}", envoy_bin().display()))?;
        Ok(Self {
            process: Guard::new(child),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            admin_path,
            name: name.to_owned(),
        })
    }

    /// Waits, `within` at most, until the admin says LIVE and the listener
    /// is bound (the process is stopped if not).
    pub fn ready(&mut self, within: Duration) -> Result<(), String> {
        match self.wait_ready(within) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.process.stop();
                Err(format!(
                    "envoy {}: {e}; its log:\n{}",
                    self.name,
                    self.log_text()
                ))
            }
        }
    }

    fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let child = self
            .process
            .child_mut()
            .ok_or_else(|| "not running".to_owned())?;
        // The test kit's wait allows 30 s; a slower start (Envoy under
        // valgrind takes a minute or more) is first awaited here, until the
        // admin answers `/ready`.
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("envoy exited: {status}"));
            }
            let admin = std::fs::read_to_string(&self.admin_path)
                .ok()
                .and_then(|s| s.trim().parse::<SocketAddr>().ok());
            if admin.is_some_and(|a| matches!(blocking_get(a, "/ready"), Ok((200, _)))) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "envoy did not become ready in {} s",
                    within.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let (admin, listen) = wait_envoy_ready(child, &self.admin_path)?;
        self.admin = admin;
        self.listen = listen;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of the counter whose name ends with `suffix` (0 when Envoy
    /// does not list it).
    pub fn counter(&self, suffix: &str) -> u64 {
        self.stats("paastis|upstream_rq_|downstream_rq_")
            .into_iter()
            .find(|(name, _)| name.ends_with(suffix))
            .map_or(0, |(_, v)| v)
    }

    /// The counters and gauges whose names match `filter` (a regular
    /// expression, the admin's `/stats?filter=`), empty when the admin does
    /// not answer.
    pub fn stats(&self, filter: &str) -> Vec<(String, u64)> {
        blocking_get(self.admin, &format!("/stats?filter={filter}"))
            .map(|(_, body)| {
                body.lines()
                    .filter_map(|l| l.split_once(": "))
                    .filter_map(|(name, v)| Some((name.to_owned(), v.trim().parse().ok()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Envoy's own accounting of its heap (`/memory`): bytes allocated and
    /// heap size.
    pub fn heap(&self) -> Option<(u64, u64)> {
        let (_, body) = blocking_get(self.admin, "/memory").ok()?;
        let parsed: Value = serde_json::from_str(&body).ok()?;
        let field = |name: &str| -> Option<u64> {
            match &parsed[name] {
                Value::String(s) => s.parse().ok(),
                v => v.as_u64(),
            }
        };
        Some((field("allocated")?, field("heap_size")?))
    }
}

/// The gateway as the tests run it (`envoy/fake.yaml.tmpl`: region clusters
/// on the fake's front-ends) with the shipped filter configuration, in front
/// of the sidecar listening on `sidecar_port`.
pub fn gateway(
    dir: &Path,
    name: &str,
    fake: &paastis_e2e::fake::FakeScalingo,
    sidecar: &paastis_e2e::harness::Sidecar,
    concurrency: u32,
) -> Result<Envoy, String> {
    let template = std::fs::read_to_string(
        paastis_e2e::harness::workspace_root().join("envoy/fake.yaml.tmpl"),
    )
    .map_err(|e| e.to_string())?;
    let front = |region: &str| {
        fake.front_addr(region)
            .map(|a| a.port().to_string())
            .ok_or_else(|| format!("the fake has no front for {region}"))
    };
    let config = paastis_e2e::harness::render_template(
        &template,
        &[
            ("LISTEN_PORT", "0".to_owned()),
            ("ADMIN_PORT", "0".to_owned()),
            ("SIDECAR_PORT", sidecar.addr.port().to_string()),
            ("FRONT_OSC_FR1_PORT", front("osc-fr1")?),
            ("FRONT_OSC_SECNUM_FR1_PORT", front("osc-secnum-fr1")?),
            (
                "WASM_PATH",
                paastis_e2e::harness::wasm_path().display().to_string(),
            ),
            (
                "FILTER_CONFIG",
                shipped_filter_config(&sidecar.token).to_string(),
            ),
        ],
    )?;
    tokio::task::block_in_place(|| Envoy::start(dir, name, &config, concurrency, None))
}
