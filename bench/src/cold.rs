//! 2. Cold wake: what the gateway adds to an app's own boot time.
//!
//! Each of N sleeping apps gets one request through Envoy; the fake boots it
//! in a known delay, so the time to the app's answer minus that delay is the
//! gateway's own overhead (filter, callout, sidecar, the Scalingo calls, and
//! how late the sidecar's polling notices the boot is over).
//!
//! The boot delay is known but not the same for every wake: it steps evenly
//! across one second (`base + i/N s`). With one fixed delay every wake would
//! land at the same point between two polls, and the overhead would say more
//! about that lucky or unlucky point than about the gateway; the steps sample
//! every point, as real boots (whose length nobody controls) do.
//!
//! The same requests to apps that already run but that neither the filter
//! nor the sidecar know (a wake without a boot: two Scalingo calls, no
//! polling wait) give the fixed part of the overhead.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use paastis_e2e::fake::{Endpoint, FakeApp, FakeConfig, FakeScalingo};

use crate::envoy;
use crate::report::{f0, table, Section, Target};
use crate::util::{self, max, median, min, percentile};

#[derive(Clone, Copy)]
pub struct Plan {
    pub wakes: usize,
    /// Boot delay of the first wake.
    pub boot_base: Duration,
    /// The delays step evenly over this span.
    pub boot_span: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            wakes: 20,
            boot_base: Duration::from_millis(1000),
            boot_span: Duration::from_millis(1000),
        }
    }
}

fn host(app: &str) -> String {
    format!("{app}.gateway.example.com")
}

/// One request; its duration when the app itself answered 200.
async fn first_request(
    client: &reqwest::Client,
    envoy: &envoy::Envoy,
    app: &str,
) -> Result<Duration, String> {
    let started = Instant::now();
    let reply = client
        .get(format!("http://{}/", envoy.listen))
        .header("host", host(app))
        .send()
        .await
        .map_err(|e| format!("{app}: {e}"))?;
    let elapsed = started.elapsed();
    let status = reply.status().as_u16();
    let served_by = util::served_by(&reply);
    if status != 200 || served_by != app {
        let body = reply.text().await.unwrap_or_default();
        return Err(format!(
            "{app}: answered {status} (served by {served_by:?}): {body}"
        ));
    }
    Ok(elapsed)
}

struct Wake {
    app: String,
    boot_ms: f64,
    total_ms: f64,
    overhead_ms: f64,
    operation_polls: usize,
    ps_polls: usize,
}

pub async fn run(plan: Plan, dir: PathBuf) -> Result<Section, String> {
    let began = Instant::now();
    let fake = FakeScalingo::start(FakeConfig {
        boot_delay: plan.boot_base,
        // kinder than the real platform until the sidecar lives within it (issue 9); the strict fake is for the tests
        ..FakeConfig::lenient()
    })
    .await
    .map_err(|e| e.to_string())?;
    let sleeping: Vec<String> = (1..=plan.wakes)
        .map(|i| format!("cold-app-{i:02}"))
        .collect();
    let running: Vec<String> = (1..=plan.wakes)
        .map(|i| format!("running-app-{i:02}"))
        .collect();
    for app in &sleeping {
        fake.add_app(FakeApp::web(app, "osc-fr1", 0));
    }
    for app in &running {
        fake.add_app(FakeApp::web(app, "osc-fr1", 1));
    }
    fake.add_app(FakeApp::web("warm-up-app", "osc-fr1", 0));
    let sidecar = util::start_sidecar(&fake, &dir, "info")?;
    let envoy = envoy::gateway(&dir, "gateway", &fake, &sidecar, 2)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())?;

    let result = async {
        // Not counted: the first wake of a fresh sidecar also exchanges the
        // token and lists the regions, once in its life.
        let warm_up = first_request(&client, &envoy, "warm-up-app").await?;

        let mut fixed = Vec::new();
        for app in &running {
            fixed.push(util::ms(first_request(&client, &envoy, app).await?));
        }

        let mut wakes = Vec::new();
        for (i, app) in sleeping.iter().enumerate() {
            let boot = plan.boot_base + plan.boot_span.mul_f64(i as f64 / plan.wakes as f64);
            fake.set_boot_delay(boot);
            let (ops, ps) = (fake.calls(Endpoint::Operation), fake.calls(Endpoint::Ps));
            let total = first_request(&client, &envoy, app).await?;
            wakes.push(Wake {
                app: app.clone(),
                boot_ms: util::ms(boot),
                total_ms: util::ms(total),
                overhead_ms: util::ms(total) - util::ms(boot),
                operation_polls: fake.calls(Endpoint::Operation) - ops,
                ps_polls: fake.calls(Endpoint::Ps) - ps,
            });
        }
        let scale_calls: usize = sleeping.iter().map(|a| fake.scale_calls(a)).sum();
        Ok::<_, String>((util::ms(warm_up), fixed, wakes, scale_calls))
    }
    .await;
    let (warm_up_ms, fixed, wakes, scale_calls) = match result {
        Ok(r) => r,
        Err(e) => {
            return Err(format!(
                "{e}\nenvoy log:\n{}\nsidecar log:\n{}",
                envoy.log_text(),
                sidecar.log()
            ))
        }
    };
    drop(envoy);
    drop(sidecar);
    Ok(section(
        plan,
        warm_up_ms,
        &fixed,
        &wakes,
        scale_calls,
        began.elapsed(),
    ))
}

fn section(
    plan: Plan,
    warm_up_ms: f64,
    fixed: &[f64],
    wakes: &[Wake],
    scale_calls: usize,
    took: Duration,
) -> Section {
    let overheads: Vec<f64> = wakes.iter().map(|w| w.overhead_ms).collect();
    let p50 = median(&overheads).unwrap_or(f64::NAN);
    let worst = max(&overheads).unwrap_or(f64::NAN);
    let best = min(&overheads).unwrap_or(f64::NAN);
    let fixed_p50 = median(fixed).unwrap_or(f64::NAN);
    let polls: Vec<f64> = wakes.iter().map(|w| w.operation_polls as f64).collect();
    let mean_polls = polls.iter().sum::<f64>() / polls.len().max(1) as f64;
    let mut body = format!(
        "{} wakes, boot delays {:.0} to {:.0} ms in even steps. Overhead = time to the app's answer − its boot delay.\n\n",
        wakes.len(),
        plan.boot_base.as_secs_f64() * 1000.0,
        wakes.last().map_or(0.0, |w| w.boot_ms),
    );
    body.push_str(&table(
        &["", "p50", "min", "max"],
        &[
            vec![
                "**cold wake overhead (ms)**".into(),
                format!("**{}**", f0(p50)),
                f0(best),
                f0(worst),
            ],
            vec![
                "wake of an app already running (ms, no boot, no polling wait)".into(),
                f0(fixed_p50),
                f0(min(fixed).unwrap_or(f64::NAN)),
                f0(max(fixed).unwrap_or(f64::NAN)),
            ],
        ],
    ));
    body.push_str(&format!(
        "\nPolling lag (overhead − the running-app wake at p50): p50 {:.0} ms, p90 {:.0} ms. \
         Operation polls per wake: {:.1} on average; scale calls: {} for {} wakes. \
         The uncounted first wake of the fresh sidecar (token exchange, region list) took {:.0} ms.\n\n",
        p50 - fixed_p50,
        percentile(&overheads, 90.0).unwrap_or(f64::NAN) - fixed_p50,
        mean_polls,
        scale_calls,
        wakes.len(),
        warm_up_ms,
    ));
    let rows: Vec<Vec<String>> = wakes
        .iter()
        .map(|w| {
            vec![
                w.app.clone(),
                f0(w.boot_ms),
                f0(w.total_ms),
                f0(w.overhead_ms),
                w.operation_polls.to_string(),
                w.ps_polls.to_string(),
            ]
        })
        .collect();
    body.push_str("<details><summary>Every wake</summary>\n\n");
    body.push_str(&table(
        &[
            "app",
            "boot delay (ms)",
            "first answer (ms)",
            "overhead (ms)",
            "operation polls",
            "ps polls",
        ],
        &rows,
    ));
    body.push_str("\n</details>\n\n");
    body.push_str(
        "Method: the fake Scalingo in process, the release sidecar (in-memory registry, `RUST_LOG=info`), \
         Envoy (2 workers, `-l warning`) on `envoy/fake.yaml.tmpl` with the shipped filter configuration; \
         one request at a time from a client in the bench, each to a different sleeping app. \
         The fake ends the scale operation and starts the web container at the same instant, so \
         everything after the boot delay is the gateway noticing it (polling) and answering.\n",
    );
    Section {
        title: "2. Cold wake".to_owned(),
        body,
        targets: vec![Target::new(
            "cold wake: gateway overhead at p50",
            "< 250 ms",
            format!("{} ms (max {})", f0(p50), f0(worst)),
            Some(p50 < 250.0),
        )],
        took,
    }
}
