//! Runs `wrk` and reads its results through a Lua `done` hook (exact
//! percentiles in microseconds, error counts), instead of parsing its
//! rounded human-readable report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::pinned;

const SCRIPT: &str = r#"-- Written by paastis-bench: one machine-readable line at the end of a run.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "PAASTIS_BENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50=%d p99=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Run {
    pub requests: u64,
    pub seconds: f64,
    /// Connect, read, write errors, timeouts and non-2xx/3xx answers.
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Run {
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// How wrk loads the target.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: u32,
    pub duration: Duration,
}

pub struct Wrk {
    script: PathBuf,
    cpus: Option<String>,
}

impl Wrk {
    /// Writes the Lua hook into `dir`; wrk runs on `cpus` when given.
    pub fn new(dir: &Path, cpus: Option<&str>) -> Result<Self, String> {
        let script = dir.join("paastis-bench.lua");
        std::fs::write(&script, SCRIPT).map_err(|e| e.to_string())?;
        Ok(Self {
            script,
            cpus: cpus.map(str::to_owned),
        })
    }

    /// One run of `GET /` with `Host: host` against `target`, one thread.
    pub fn run(&self, target: SocketAddr, host: &str, load: Load) -> Result<Run, String> {
        let out = pinned(Path::new("wrk"), self.cpus.as_deref())
            .args(["-t", "1", "-c", &load.connections.to_string()])
            .args(["-d", &format!("{}s", load.duration.as_secs().max(1))])
            .args(["--timeout", "5s", "-s"])
            .arg(&self.script)
            .args(["-H", &format!("Host: {host}")])
            .arg(format!("http://{target}/"))
            .output()
            .map_err(|e| format!("cannot run wrk (make bench installs it): {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("PAASTIS_BENCH "))
            .ok_or_else(|| {
                format!(
                    "wrk printed no result ({}): {stdout} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        parse(line)
    }
}

fn parse(line: &str) -> Result<Run, String> {
    let field = |name: &str| -> Result<f64, String> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {name} in wrk's result {line:?}"))
    };
    let errors = ["connect", "read", "write", "status", "timeout"]
        .iter()
        .map(|n| field(n))
        .sum::<Result<f64, String>>()?;
    Ok(Run {
        requests: field("requests")? as u64,
        seconds: field("duration_us")? / 1e6,
        errors: errors as u64,
        p50_us: field("p50")?,
        p99_us: field("p99")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_hook_line() {
        let run = parse("PAASTIS_BENCH requests=200 duration_us=2000000 connect=0 read=1 write=0 status=2 timeout=0 p50=100 p99=300").unwrap();
        assert_eq!(run.requests, 200);
        assert_eq!(run.errors, 3);
        assert!((run.rps() - 100.0).abs() < 1e-9);
        assert_eq!(run.p99_us, 300.0);
        assert!(parse("PAASTIS_BENCH requests=1").is_err());
    }
}
