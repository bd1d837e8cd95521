//! A coarse profile of a running Envoy with `perf` (when the machine has it
//! and allows it): the share of its CPU samples in the wasm code (V8's JIT),
//! in Envoy itself (the host side of every proxy-wasm call, V8's runtime,
//! HTTP), in the kernel and in libc. Envoy's binary is stripped, so the
//! profile stops at that level; it is enough to tell the filter's own code
//! from what calling the host costs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::has_command;

pub struct Recording {
    child: Child,
    file: PathBuf,
}

/// Samples per part of the process.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub wasm: u64,
    pub envoy: u64,
    pub kernel: u64,
    pub other: u64,
}

impl Split {
    pub fn total(&self) -> u64 {
        self.wasm + self.envoy + self.kernel + self.other
    }

    /// Each part's share of the samples.
    pub fn shares(&self) -> [f64; 4] {
        let total = self.total().max(1) as f64;
        [self.wasm, self.envoy, self.kernel, self.other].map(|n| n as f64 / total)
    }
}

impl Recording {
    /// Samples `pid` for `duration`; `None` when perf is missing or refused.
    pub fn start(pid: u32, duration: Duration, dir: &Path, name: &str) -> Option<Self> {
        if !has_command("perf") {
            return None;
        }
        let file = dir.join(format!("{name}.perf"));
        let child = Command::new("perf")
            .args(["record", "-F", "999", "-p", &pid.to_string(), "-o"])
            .arg(&file)
            .args(["--", "sleep", &format!("{:.1}", duration.as_secs_f64())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self { child, file })
    }

    /// Waits for the recording to end and splits its samples.
    pub fn finish(mut self) -> Option<Split> {
        let status = self.child.wait().ok()?;
        if !status.success() {
            return None;
        }
        let out = Command::new("perf")
            .args(["report", "-n", "--sort", "dso", "--stdio", "-i"])
            .arg(&self.file)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let _ = std::fs::remove_file(&self.file);
        let text = String::from_utf8_lossy(&out.stdout);
        let split = parse(&text);
        (split.total() > 0).then_some(split)
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads `perf report -n --sort dso` lines: `  74.36%  13101  envoy`.
fn parse(text: &str) -> Split {
    let mut split = Split::default();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut words = line.split_whitespace();
        let (Some(percent), Some(samples)) = (words.next(), words.next()) else {
            continue;
        };
        if !percent.ends_with('%') {
            continue;
        }
        let Ok(samples) = samples.parse::<u64>() else {
            continue;
        };
        let dso = words.collect::<Vec<_>>().join(" ");
        if dso.starts_with("[JIT]") || dso.contains("perf-") {
            split.wasm += samples;
        } else if dso == "envoy" || dso.ends_with("/envoy") {
            split.envoy += samples;
        } else if dso.starts_with("[kernel") {
            split.kernel += samples;
        } else {
            split.other += samples;
        }
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_report() {
        let text = "# Samples: 17K\n#\n    74.43%  12674  envoy\n    17.07%   2907  [kernel.kallsyms]\n     5.36%    912  [JIT] tid 27242\n     2.62%    447  libc.so.6\n";
        let s = parse(text);
        assert_eq!(
            (s.wasm, s.envoy, s.kernel, s.other),
            (912, 12674, 2907, 447)
        );
        assert!((s.shares().iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
