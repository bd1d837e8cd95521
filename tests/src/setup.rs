//! Shared set-up of the in-process tests: a fake Scalingo with apps, and
//! the environment a sidecar needs to manage them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::fake::{FakeApp, FakeConfig, FakeScalingo};

/// A fake Scalingo whose apps boot in `boot`, holding `apps`.
pub async fn fake_with(apps: Vec<FakeApp>, boot: Duration) -> FakeScalingo {
    let fake = FakeScalingo::start(FakeConfig {
        boot_delay: boot,
        ..FakeConfig::default()
    })
    .await
    .expect("fake starts");
    for app in apps {
        fake.add_app(app);
    }
    fake
}

/// `PAASTIS_FRONT_URLS` for `fake`: each region's front listener, which the
/// sidecar probes for readiness with the app's real `Host`.
pub fn front_urls(fake: &FakeScalingo) -> String {
    ["osc-fr1", "osc-secnum-fr1"]
        .iter()
        .filter_map(|region| {
            fake.front_addr(region)
                .map(|addr| format!("{region}=http://{addr}"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The environment of a sidecar on `fake` with the rules in `rules_file`:
/// a 20 s wake timeout, readiness probed on the fake's fronts, and an
/// unpaced scheduler (pacing is unit-tested; here it would only slow the
/// passes down). `extra` is added last and wins.
pub fn sidecar_env(
    fake: &FakeScalingo,
    rules_file: &Path,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        (
            "PROVIDER_SCALINGO_API_TOKEN",
            fake.config().api_token.clone(),
        ),
        ("PROVIDER_SCALINGO_AUTH_URL", fake.auth_url()),
        ("PAASTIS_RULES_FILE", rules_file.display().to_string()),
        ("PAASTIS_WAKE_TIMEOUT", "20".to_owned()),
        ("PAASTIS_SCALINGO_CALLS_PER_MINUTE", "60000".to_owned()),
        ("PAASTIS_FRONT_URLS", front_urls(fake)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}
