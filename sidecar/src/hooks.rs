//! Paastis's hooks: operator shell commands run around app starts and stops
//! (`HOOKS_BEFORE_START`, `HOOKS_AFTER_START`, `HOOKS_BEFORE_STOP`,
//! `HOOKS_AFTER_STOP`).
//!
//! Invariants:
//! - A hook never blocks the gateway: each run is bounded by
//!   `HOOKS_TIMEOUT` (the process is killed then), and a hook that fails or
//!   times out is logged and counted, never turned into a failed wake or
//!   pause.
//! - `before_*` hooks are awaited (they run before the scale call, as in
//!   Paastis); `after_*` hooks run in the background (a request waiting for
//!   its app never waits for them).
//! - The command runs with `sh -c`, the app's name in `$PAASTIS_APP` and
//!   `$APP` (never interpolated into the command text), stdin closed, and
//!   without the gateway's secrets in its environment.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Most bytes of a hook's output kept for the log, per stream.
const OUTPUT_LOG_LIMIT: usize = 4 * 1024;

/// Environment variables a hook never inherits.
const SECRET_VARS: [&str; 4] = [
    "PROVIDER_SCALINGO_API_TOKEN",
    "SCALINGO_API_TOKEN",
    "PAASTIS_ADMIN_TOKEN",
    "REGISTRY_REDIS_URL",
];

/// Paastis's hooks: shell commands run around starts and stops, with the
/// app's name in `$PAASTIS_APP` (and `$APP`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub before_start: Option<String>,
    pub after_start: Option<String>,
    pub before_stop: Option<String>,
    pub after_stop: Option<String>,
    /// Bound on each run; a hook still running then is killed.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    BeforeStart,
    AfterStart,
    BeforeStop,
    AfterStop,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::BeforeStart => "before_start",
            Hook::AfterStart => "after_start",
            Hook::BeforeStop => "before_stop",
            Hook::AfterStop => "after_stop",
        }
    }
}

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// No command configured for this hook.
    NotConfigured,
    Ok,
    /// Exited with a failure status, or could not be started.
    Failed(String),
    /// Still running at the timeout: killed.
    TimedOut,
}

#[derive(Debug)]
pub struct HookRunner {
    hooks: Hooks,
    metrics: Arc<Metrics>,
    /// The hooks running in the background, so that shutdown can wait for
    /// them ([`HookRunner::drained`]).
    background: TaskTracker,
}

impl HookRunner {
    pub fn new(hooks: Hooks, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            hooks,
            metrics,
            background: TaskTracker::new(),
        })
    }

    /// Waits until no hook runs in the background (at shutdown, under the
    /// caller's deadline; each run is bounded by the hooks' timeout anyway).
    pub async fn drained(&self) {
        self.background.close();
        self.background.wait().await;
    }

    fn command(&self, hook: Hook) -> Option<&str> {
        match hook {
            Hook::BeforeStart => self.hooks.before_start.as_deref(),
            Hook::AfterStart => self.hooks.after_start.as_deref(),
            Hook::BeforeStop => self.hooks.before_stop.as_deref(),
            Hook::AfterStop => self.hooks.after_stop.as_deref(),
        }
    }

    /// Runs `hook` for `app` and waits for it (bounded).
    pub async fn run(&self, hook: Hook, app: &str) -> HookOutcome {
        let Some(command) = self.command(hook) else {
            return HookOutcome::NotConfigured;
        };
        let outcome = run_bounded(command, hook, app, self.hooks.timeout).await;
        let result = match &outcome {
            HookOutcome::NotConfigured => return outcome,
            HookOutcome::Ok => "ok",
            HookOutcome::Failed(_) => "failed",
            HookOutcome::TimedOut => "timeout",
        };
        self.metrics.hook(hook.name(), result);
        outcome
    }

    /// Runs `hook` for `app` in the background.
    pub fn spawn(self: &Arc<Self>, hook: Hook, app: &str) {
        if self.command(hook).is_none() {
            return;
        }
        let this = Arc::clone(self);
        let app = app.to_owned();
        self.background.spawn(async move {
            this.run(hook, &app).await;
        });
    }
}

async fn run_bounded(command: &str, hook: Hook, app: &str, timeout: Duration) -> HookOutcome {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("PAASTIS_APP", app)
        .env("APP", app)
        .env("PAASTIS_HOOK", hook.name())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for var in SECRET_VARS {
        cmd.env_remove(var);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            warn!(hook = hook.name(), %app, error = %e, "hook could not start");
            return HookOutcome::Failed(e.to_string());
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let run = async {
        // Read both streams to their end (or the limit) while the hook runs,
        // so a chatty hook never blocks on a full pipe.
        let (out, err, status) = tokio::join!(
            read_capped(stdout.as_mut()),
            read_capped(stderr.as_mut()),
            child.wait()
        );
        (out, err, status)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((out, err, status)) => {
            let status = match status {
                Ok(s) => s,
                Err(e) => return HookOutcome::Failed(e.to_string()),
            };
            if status.success() {
                info!(hook = hook.name(), %app, stdout = %out, stderr = %err, "hook ran");
                HookOutcome::Ok
            } else {
                warn!(hook = hook.name(), %app, %status, stdout = %out, stderr = %err, "hook failed");
                HookOutcome::Failed(status.to_string())
            }
        }
        Err(_) => {
            // kill_on_drop also covers a cancelled caller; here we reap it.
            let _ = child.kill().await;
            warn!(hook = hook.name(), %app, timeout_s = timeout.as_secs(), "hook timed out and was killed");
            HookOutcome::TimedOut
        }
    }
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(stream: Option<&mut R>) -> String {
    let Some(stream) = stream else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LOG_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(hooks: Hooks) -> Arc<HookRunner> {
        HookRunner::new(hooks, Arc::new(Metrics::new()))
    }

    fn hooks(before_start: &str, timeout: Duration) -> Hooks {
        Hooks {
            before_start: Some(before_start.to_owned()),
            timeout,
            ..Hooks::default()
        }
    }

    #[tokio::test]
    async fn a_hook_gets_the_app_name_in_its_environment_not_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let r = runner(hooks(
            &format!("printf '%s' \"$PAASTIS_APP/$APP\" > {}", out.display()),
            Duration::from_secs(10),
        ));
        assert_eq!(r.run(Hook::BeforeStart, "my-app").await, HookOutcome::Ok);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "my-app/my-app");
        assert_eq!(
            r.run(Hook::AfterStart, "my-app").await,
            HookOutcome::NotConfigured
        );
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_hooks_run_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let r = runner(Hooks {
            after_stop: Some(format!("sleep 0.2; printf done > {}", out.display())),
            timeout: Duration::from_secs(10),
            ..Hooks::default()
        });
        r.spawn(Hook::AfterStop, "my-app");
        r.drained().await;
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "done");
    }

    #[tokio::test]
    async fn a_failing_hook_is_reported() {
        let r = runner(hooks("echo boom >&2; exit 3", Duration::from_secs(10)));
        match r.run(Hook::BeforeStart, "my-app").await {
            HookOutcome::Failed(status) => assert!(status.contains('3'), "{status}"),
            other => panic!("{other:?}"),
        }
        let text = r.metrics.encode();
        assert!(
            text.contains("paastis_hooks_total{hook=\"before_start\",result=\"failed\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_hook_that_hangs_is_killed_at_its_timeout() {
        let r = runner(hooks("sleep 30", Duration::from_millis(200)));
        let started = std::time::Instant::now();
        assert_eq!(
            r.run(Hook::BeforeStart, "my-app").await,
            HookOutcome::TimedOut
        );
        // Bounded: far from the 30 s the command asked for. The bound
        // rules out waiting for the command (30 s); only a stall of 20 s
        // on a 200 ms timeout could break it.
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[tokio::test]
    async fn secrets_are_not_passed_to_hooks() {
        std::env::set_var("PAASTIS_ADMIN_TOKEN", "do-not-leak-this-token");
        let r = runner(hooks(
            "test -z \"$PAASTIS_ADMIN_TOKEN\"",
            Duration::from_secs(10),
        ));
        assert_eq!(r.run(Hook::BeforeStart, "my-app").await, HookOutcome::Ok);
    }
}
