//! 5. Footprint: the `.wasm` sizes, the sidecar's resident memory with
//!    10,000 apps registered, and Envoy's memory with and without a wasm
//!    filter (read from the hot path's Envoys).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use paastis_e2e::fake::{FakeApp, FakeConfig, FakeScalingo};
use paastis_e2e::harness::{sidecar_bin, wasm_path};
use serde_json::Value;

use crate::hot::{noop_wasm_path, EnvoyMemory};
use crate::report::{table, Section, Target};
use crate::util::{self, bytes, vm_rss_kib};

/// `path` as the report shows it: relative to the repository when inside it
/// (the report is committed; this machine's folders mean nothing elsewhere).
fn shown(path: &std::path::Path) -> String {
    let root = paastis_e2e::harness::workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn size(path: &std::path::Path) -> String {
    std::fs::metadata(path).map_or_else(
        |_| "missing".to_owned(),
        |m| format!("{} bytes ({})", m.len(), bytes(m.len())),
    )
}

fn kib(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |k| bytes(k * 1024))
}

pub async fn run(apps: usize, envoys: Vec<EnvoyMemory>, dir: PathBuf) -> Result<Section, String> {
    let began = Instant::now();
    // kinder than the real platform until the sidecar lives within it (issue 9); the strict fake is for the tests
    let fake = FakeScalingo::start(FakeConfig::lenient())
        .await
        .map_err(|e| e.to_string())?;
    let client = reqwest::Client::new();
    let registered = |client: reqwest::Client, base: String| async move {
        let apps: Value = client
            .get(format!("{base}/v1/apps"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<usize, String>(apps["apps"].as_array().map_or(0, Vec::len))
    };

    // A sidecar with nothing to register: its memory at rest.
    let idle = {
        let dir = dir.join("idle");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let sidecar = util::start_sidecar(&fake, &dir, "warn")?;
        let pid = sidecar.pid().ok_or("the sidecar is gone")?;
        let base = format!("http://{}", sidecar.addr);
        // Let the startup work (first scheduler pass) settle before reading.
        wait_registered(&registered, &client, &base, 0).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        vm_rss_kib(pid)
    };

    // Only a wake or the scheduler's discovery registers an app (activity
    // never does): `apps` running apps in the fake, registered by the first
    // pass of a second sidecar, the same binary.
    for i in 0..apps {
        fake.add_app(FakeApp::web(format!("footprint-app-{i:05}"), "osc-fr1", 1));
    }
    let dir = dir.join("loaded");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let sidecar = util::start_sidecar(&fake, &dir, "warn")?;
    let pid = sidecar.pid().ok_or("the sidecar is gone")?;
    let base = format!("http://{}", sidecar.addr);
    let count = wait_registered(&registered, &client, &base, apps).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = vm_rss_kib(pid);
    let count = registered(client.clone(), base.clone()).await?.max(count);
    let after_list = vm_rss_kib(pid);
    drop(sidecar);

    let mut body = String::from("Sizes of the built filters:\n\n");
    body.push_str(&table(
        &["file", "size"],
        &[
            vec![format!("`{}`", shown(&wasm_path())), size(&wasm_path())],
            vec![
                format!("`{}` (do-nothing)", shown(&noop_wasm_path())),
                size(&noop_wasm_path()),
            ],
        ],
    ));
    body.push_str(&format!(
        "\nSidecar (`{}`, in-memory registry), resident memory (`VmRSS`):\n\n",
        shown(&sidecar_bin())
    ));
    body.push_str(&table(
        &["moment", "VmRSS"],
        &[
            vec!["started, no app (a first sidecar)".into(), kib(idle)],
            vec![
                format!("{count} apps registered (by the first scheduler pass's discovery)"),
                kib(loaded),
            ],
            vec![
                "after listing them (`GET /v1/apps`)".into(),
                kib(after_list),
            ],
        ],
    ));
    if envoys.is_empty() {
        body.push_str("\nEnvoy memory: measured with the hot path, which did not run.\n");
    } else {
        body.push_str("\nEnvoy (one worker; the hot path's three Envoys):\n\n");
        let rows: Vec<Vec<String>> = envoys
            .iter()
            .map(|e| {
                vec![
                    e.label.to_owned(),
                    kib(e.rss_idle_kib),
                    kib(e.rss_loaded_kib),
                    e.heap_allocated.map_or("-".into(), bytes),
                ]
            })
            .collect();
        body.push_str(&table(
            &[
                "Envoy",
                "VmRSS after its first request",
                "VmRSS after the load",
                "heap allocated (`/memory`)",
            ],
            &rows,
        ));
    }
    let per_app = match (idle, loaded) {
        (Some(a), Some(b)) if count > 0 => Some((b.saturating_sub(a) * 1024) as f64 / count as f64),
        _ => None,
    };
    if let Some(per_app) = per_app {
        body.push_str(&format!(
            "\nSidecar memory per registered app: about {per_app:.0} bytes.\n"
        ));
    }
    let mut targets = vec![
        Target::new(
            "footprint: filter .wasm",
            "reported",
            size_short(&wasm_path()),
            None,
        ),
        Target::new(
            &format!("footprint: sidecar VmRSS with {count} apps"),
            "reported",
            kib(loaded),
            None,
        ),
    ];
    for e in &envoys {
        targets.push(Target::new(
            &format!("footprint: Envoy VmRSS, {}", e.label),
            "reported",
            kib(e.rss_loaded_kib),
            None,
        ));
    }
    Ok(Section {
        title: "5. Footprint".to_owned(),
        body,
        targets,
        took: began.elapsed(),
    })
}

/// Polls the sidecar's app list until it holds `want` apps (60 s at most);
/// returns how many it holds.
async fn wait_registered<F, Fut>(
    registered: &F,
    client: &reqwest::Client,
    base: &str,
    want: usize,
) -> Result<usize, String>
where
    F: Fn(reqwest::Client, String) -> Fut,
    Fut: std::future::Future<Output = Result<usize, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = registered(client.clone(), base.to_owned()).await?;
        if count >= want {
            return Ok(count);
        }
        if Instant::now() > deadline {
            return Err(format!("{count} apps registered of {want} after 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn size_short(path: &std::path::Path) -> String {
    std::fs::metadata(path).map_or_else(|_| "missing".to_owned(), |m| bytes(m.len()))
}
