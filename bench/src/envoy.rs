//! An Envoy started on a rendered configuration for a benchmark.
//!
//! Unlike the e2e harness's Envoy (which always runs `envoy/fake.yaml.tmpl`
//! with the filter's debug logs on, useful when a test fails), this one takes
//! any configuration and logs at `warning` only: a debug line per request
//! would be measured as the filter's cost.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use paastis_e2e::harness::{blocking_get, envoy_bin, wait_envoy_ready};
use serde_json::{json, Value};

use crate::util::{pinned, Guard};

/// The filter configuration of `envoy/gateway.yaml`, the shipped one, with
/// the sidecar's `token`.
pub fn shipped_filter_config(token: &str) -> serde_json::Value {
    json!({
        "sidecar_cluster": "paastis_sidecar",
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
        let config_path = dir.join(format!("{name}.yaml"));
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log = dir.join(format!("{name}.log"));
        let admin_path = dir.join(format!("{name}.admin"));
        let child = pinned(&envoy_bin(), cpus)
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
        let mut envoy = Self {
            process: Guard::new(child),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match envoy.wait_ready(&admin_path) {
            Ok(()) => Ok(envoy),
            Err(e) => {
                envoy.process.stop();
                Err(format!("envoy {name}: {e}; its log:\n{}", envoy.log_text()))
            }
        }
    }

    fn wait_ready(&mut self, admin_path: &Path) -> Result<(), String> {
        let child = self
            .process
            .child_mut()
            .ok_or_else(|| "not running".to_owned())?;
        let (admin, listen) = wait_envoy_ready(child, admin_path)?;
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
        blocking_get(
            self.admin,
            "/stats?filter=paastis|upstream_rq_|downstream_rq_",
        )
        .ok()
        .and_then(|(_, body)| {
            body.lines()
                .filter_map(|l| l.split_once(": "))
                .find(|(name, _)| name.ends_with(suffix))
                .and_then(|(_, v)| v.trim().parse().ok())
        })
        .unwrap_or(0)
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
