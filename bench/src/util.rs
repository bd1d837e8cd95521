//! Small helpers shared by the benchmarks: percentiles, `/proc` readings,
//! child processes that die with their owner, the machine's facts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// The `p`-th percentile (0..=100) of `values`, nearest rank, on a sorted
/// copy. `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Nearest rank: the smallest value with at least p % of the values at or
    // below it.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 50.0)
}

pub fn max(values: &[f64]) -> Option<f64> {
    values.iter().copied().max_by(f64::total_cmp)
}

pub fn min(values: &[f64]) -> Option<f64> {
    values.iter().copied().min_by(f64::total_cmp)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `VmRSS` of a process, in KiB.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, so 12 and 13
    // here (the state is field 3).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks() as f64,
    ))
}

/// CPU time (user + system) of the children a process has waited for.
pub fn children_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // cutime and cstime: fields 16 and 17 of the whole line.
    let cutime: u64 = fields.get(13)?.parse().ok()?;
    let cstime: u64 = fields.get(14)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (cutime + cstime) as f64 / clock_ticks() as f64,
    ))
}

/// CPU time the whole machine spent busy so far (every core, from
/// `/proc/stat`: user, nice, system, irq, softirq, steal).
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| v.get(*i))
        .sum::<u64>();
    Some(Duration::from_secs_f64(busy as f64 / clock_ticks() as f64))
}

/// `sysconf(_SC_CLK_TCK)`, through `getconf` (100 on every Linux we know).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        command_output("getconf", &["CLK_TCK"])
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// Trimmed stdout of a command that succeeded.
pub fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn has_command(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `taskset -c CPUS` in front of a command when the machine has two cores or
/// more and `taskset` exists; the plain command otherwise.
pub fn pinned(program: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) if has_command("taskset") => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpus).arg(program);
            cmd
        }
        _ => Command::new(program),
    }
}

/// A child process killed (and reaped) when dropped.
pub struct Guard {
    child: Option<Child>,
}

impl Guard {
    pub fn new(child: Child) -> Self {
        Self { child: Some(child) }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Facts about the machine the figures were taken on.
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub envoy: String,
    pub wrk: String,
    pub rustc: String,
    pub date: String,
}

impl Machine {
    pub fn read(envoy_bin: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".to_owned());
        let envoy = command_output(&envoy_bin.display().to_string(), &["--version"])
            .and_then(|v| {
                v.split_whitespace()
                    .skip_while(|w| *w != "version:")
                    .nth(1)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".to_owned());
        // wrk prints its version on stderr with the usage, and exits 1.
        let wrk = Command::new("wrk")
            .arg("--version")
            .output()
            .ok()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout).to_string()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines().next().unwrap_or("").trim().to_owned()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "not installed".to_owned());
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned()),
            envoy,
            wrk,
            rustc: command_output("rustc", &["--version"]).unwrap_or_else(|| "unknown".to_owned()),
            date: paastis_e2e::fake::iso_ms(std::time::SystemTime::now()),
        }
    }
}

/// Path of a binary built by cargo in the workspace's `target/<profile>/`.
pub fn target_bin(profile: &str, name: &str) -> PathBuf {
    paastis_e2e::harness::workspace_root()
        .join("target")
        .join(profile)
        .join(name)
}

/// Formats a number of bytes as KiB or MiB.
pub fn bytes(n: u64) -> String {
    if n >= 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / 1024.0 / 1024.0)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// The sidecar binary on `fake`, without rules, logging at `rust_log`.
pub fn start_sidecar(
    fake: &paastis_e2e::fake::FakeScalingo,
    dir: &Path,
    rust_log: &str,
) -> Result<paastis_e2e::harness::Sidecar, String> {
    let rules = dir.join("paastis.yml");
    std::fs::write(&rules, "").map_err(|e| e.to_string())?;
    // These sections run on the lenient fake (no rate limit) and measure
    // the gateway's own costs; how it lives within Scalingo's budget is
    // measured against the strict fake in the `scalingo` section.
    let env = [
        ("RUST_LOG".to_owned(), rust_log.to_owned()),
        (
            "PAASTIS_SCALINGO_CALLS_PER_MINUTE".to_owned(),
            "100000".to_owned(),
        ),
    ];
    tokio::task::block_in_place(|| paastis_e2e::harness::Sidecar::start(fake, &rules, dir, &env))
}

/// Which app the fake's front-end says served `reply` (empty if none).
pub fn served_by(reply: &reqwest::Response) -> String {
    reply
        .headers()
        .get("x-fake-app")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(vm_rss_kib(pid).is_some_and(|k| k > 0));
        assert!(cpu_time(pid).is_some());
        assert!(children_cpu_time(pid).is_some());
        assert!(machine_busy().is_some());
    }
}
