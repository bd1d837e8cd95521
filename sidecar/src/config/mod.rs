//! Configuration: the environment (Paastis's names accepted) and the rules of
//! `paastis.yml`. Everything is read and checked before a port is bound; an
//! error names the file, rule and field, or the variable.
//!
//! - this module: [`Config`] and its reading from the environment;
//! - [`env`](mod@env), the environment reader, and [`dotenv`], the `.env`
//!   file of the working directory (as Paastis read it);
//! - [`rules`], `paastis.yml`;
//! - [`scope`], which apps are managed (`PAASTIS_MANAGED_APPS`,
//!   `REGISTRY_IGNORED_APPS`);
//! - [`tokens`], the admin and filter-facing bearer tokens;
//! - [`schedule`], when the scheduler runs (an interval or Paastis's cron);
//! - [`paastis`], the Node.js Paastis's variables that are refused or have
//!   no effect here;
//! - [`error`], [`ConfigError`].

pub mod dotenv;
pub mod env;
pub mod error;
pub mod paastis;
pub mod rules;
pub mod schedule;
pub mod scope;
pub mod tokens;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use paastis_rules::{is_valid_app_name, AppRules, Strategy, APP_NAME_MIN};
use url::Url;

pub use env::{env_from_map, Env};
use error::env_error;
pub use error::ConfigError;
pub use paastis::{IgnoredVar, KNOWN_REGIONS};
pub use rules::parse_rules;
pub use schedule::{CronSchedule, PassSchedule};
pub use scope::{AppScope, ManagedApps, Unmanaged};

pub use crate::hooks::Hooks;
pub use crate::listener::Limits;
pub use crate::platform::front::FrontUrls;
pub use crate::registry::DEFAULT_MAX_IDLE_MINUTES;
use crate::scalingo::{ScalingoConfig, Secret};

/// The Scalingo API budget a minute, a little under Scalingo's 60 a minute
/// per token (see [`crate::budget`]).
pub use crate::budget::DEFAULT_CALLS_PER_MINUTE;

/// Which registry keeps the last access of each app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryKind {
    InMemory,
    /// Shared by several gateway instances.
    Redis {
        url: String,
        prefix: String,
    },
}

/// The admin API: on only when a token is configured.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token the admin API requires; never logged.
    pub token: Secret,
}

/// Shortest admin token accepted: a guessable token on a listener that can
/// pause every app would be worse than none.
pub const MIN_ADMIN_TOKEN_LEN: usize = tokens::MIN_TOKEN_LEN;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The sidecar's whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub scalingo: ScalingoConfig,
    /// The variable that named `scalingo.regions`, for errors about them.
    pub regions_var: &'static str,
    pub rules: AppRules,
    pub rules_file: Option<PathBuf>,
    /// Apps the gateway routes but never scales (Paastis's
    /// `REGISTRY_IGNORED_APPS`).
    pub ignored_apps: BTreeSet<String>,
    /// `PAASTIS_MANAGED_APPS`: apps not matching it are left alone like
    /// ignored ones (see [`scope`]).
    pub managed_apps: ManagedApps,
    /// `PAASTIS_DRY_RUN`: the scheduler records `would_pause` events and
    /// scales nothing.
    pub dry_run: bool,
    pub registry: RegistryKind,
    /// Upper bound on how long a wake request waits for its apps to run.
    pub wake_timeout: Duration,
    /// How long the sidecar trusts that an app it saw running still runs,
    /// before it checks again with Scalingo.
    pub awake_ttl: Duration,
    /// Period of the idle scheduler's passes; with a cron expression, the
    /// gap between its next two times (for display: `scheduler_schedule`
    /// is what the scheduler follows).
    pub scheduler_interval: Duration,
    /// When the scheduler runs its passes.
    pub scheduler_schedule: PassSchedule,
    /// The Scalingo API budget: calls a minute for everything the gateway
    /// does, shared by every instance (Scalingo allows 60 a minute per
    /// token); the scheduler's calls are also paced at this rate.
    pub scheduler_calls_per_minute: u32,
    /// Gateway instances expected to share the budget: while Redis is
    /// unreachable each instance spends only its share of it.
    pub gateway_instances: u32,
    /// `PAASTIS_SCALINGO_PAUSE_AFTER_429`: how long every call waits after
    /// a 429 that came without a usable `Retry-After` (default a minute,
    /// Scalingo's window).
    pub pause_after_429: Duration,
    /// `PAASTIS_REGISTRY_MAX_APPS`: most apps the registry holds; a wake or
    /// a listing that would register one more is refused (counted in
    /// `paastis_registry_refused_total`).
    pub registry_max_apps: u32,
    /// Name of this instance in leases and events.
    pub instance: String,
    pub admin: Option<AdminConfig>,
    /// `PAASTIS_SIDECAR_TOKEN`: the bearer token the filter-facing
    /// endpoints require; `None` only on a loopback `listen`. Never logged.
    pub sidecar_token: Option<Secret>,
    /// `PAASTIS_HEADER_READ_TIMEOUT`, `PAASTIS_MAX_CONNECTIONS`: the
    /// bounds of both listeners.
    pub listener_limits: Limits,
    pub log_format: LogFormat,
    pub hooks: Hooks,
    /// Per-region base URLs of the app fronts probed for readiness
    /// (`PAASTIS_FRONT_URLS=region=url,...`; default: the real
    /// `https://APP.REGION.scalingo.io`).
    pub front_urls: FrontUrls,
    /// What is accepted but probably not what was meant (printed at start
    /// and by `check-config`).
    pub warnings: Vec<String>,
    /// Paastis variables that are set but have no effect here.
    pub ignored_vars: Vec<IgnoredVar>,
    /// The `.env` file read besides the process environment, if any.
    pub env_file: Option<PathBuf>,
}

impl Config {
    /// Reads the process environment, then the `.env` file of the working
    /// directory for what it does not set (as Paastis did with dotenv).
    pub fn from_process_env() -> Result<Self, ConfigError> {
        let file = PathBuf::from(".env");
        let dotenv = dotenv::read_env_file(&file)?;
        let get = |name: &str| {
            std::env::var(name)
                .ok()
                .or_else(|| dotenv.as_ref().and_then(|vars| vars.get(name).cloned()))
        };
        let mut config = Self::from_env(&Env::new(&get))?;
        config.env_file = dotenv.is_some().then_some(file);
        Ok(config)
    }

    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        paastis::check_provider(env)?;
        let mut warnings = Vec::new();
        let listen = match env.first(&["PAASTIS_LISTEN"]) {
            None => SocketAddr::from(([127, 0, 0, 1], 7070)),
            Some((name, v)) => v.parse().map_err(|_| {
                env_error(name, format!("{v:?} is not an address like 127.0.0.1:7070"))
            })?,
        };

        let (_, token) = env
            .first(&["PROVIDER_SCALINGO_API_TOKEN", "SCALINGO_API_TOKEN"])
            .ok_or_else(|| {
                env_error(
                    "PROVIDER_SCALINGO_API_TOKEN",
                    "is required (a Scalingo API token, tk-us-...)",
                )
            })?;
        let auth_url = match env.first(&["PROVIDER_SCALINGO_AUTH_URL"]) {
            None => Url::parse("https://auth.scalingo.com")
                .map_err(|e| env_error("PROVIDER_SCALINGO_AUTH_URL", e.to_string()))?,
            Some((name, v)) => match Url::parse(&v) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
                _ => return Err(env_error(name, format!("{v:?} is not an http(s) URL"))),
            },
        };
        let mut regions_var = "PROVIDER_SCALINGO_REGIONS";
        let regions = match env.first(&["PROVIDER_SCALINGO_REGIONS", "PROVIDER_REGION"]) {
            None => None,
            Some((name, v)) => {
                regions_var = name;
                let list: Vec<String> = v
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
                for region in &list {
                    paastis_rules::check_region(name, region)
                        .map_err(|e| env_error(name, e.to_string()))?;
                }
                Some(list)
            }
        };
        let request_timeout = env.secs(&["PROVIDER_SCALINGO_REQUEST_TIMEOUT"], 10, 300)?;

        let default_max_idle = match env.first(&["START_AND_STOP_MAX_IDLE_TIME"]) {
            None => DEFAULT_MAX_IDLE_MINUTES,
            Some((name, v)) => v
                .parse()
                .map_err(|_| env_error(name, format!("{v:?} is not a number of minutes")))?,
        };

        let ignored_apps = match env.first(&["REGISTRY_IGNORED_APPS"]) {
            None => BTreeSet::new(),
            Some((name, v)) => {
                let mut set = BTreeSet::new();
                for app in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if app.len() < APP_NAME_MIN
                        && is_valid_app_name(&format!("{app}{}", "0".repeat(APP_NAME_MIN)))
                    {
                        // Too short to be an app (Paastis accepted it): it
                        // matches nothing, so ignoring it changes nothing.
                        warnings.push(format!(
                            "{name}: {app:?} cannot be a Scalingo app name (at least {APP_NAME_MIN} characters): it ignores no app"
                        ));
                        continue;
                    }
                    if !is_valid_app_name(app) {
                        return Err(env_error(
                            name,
                            format!("{app:?} is not a valid Scalingo app name"),
                        ));
                    }
                    set.insert(app.to_owned());
                }
                set
            }
        };
        let managed_apps = match env.first(&["PAASTIS_MANAGED_APPS"]) {
            None => ManagedApps::all(),
            Some((name, v)) => ManagedApps::matching(&v)
                .map_err(|e| env_error(name, format!("{v:?} is not a regular expression: {e}")))?,
        };
        let dry_run = match env.first(&["PAASTIS_DRY_RUN"]) {
            None => false,
            Some((name, v)) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(env_error(name, format!("{v:?} is not true or false"))),
            },
        };

        let mut ignored_vars = paastis::ignored_vars(env);
        let registry = match env.first(&["REGISTRY_TYPE"]) {
            None => RegistryKind::InMemory,
            Some((_, v)) if v == "in-memory" || v == "memory" => RegistryKind::InMemory,
            Some((_, v)) if v == "redis" => {
                let (name, url) =
                    env.first(&["REGISTRY_REDIS_URL", "REDIS_URL"])
                        .ok_or_else(|| {
                            env_error(
                                "REGISTRY_REDIS_URL",
                                "is required when REGISTRY_TYPE is redis",
                            )
                        })?;
                if !(url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("unix://"))
                {
                    // The value may hold a password: never echo it.
                    return Err(env_error(name, "is not a redis:// or rediss:// URL"));
                }
                if redis::Client::open(url.as_str()).is_err() {
                    return Err(env_error(name, "is not a valid Redis URL"));
                }
                let prefix = env
                    .first(&["REGISTRY_REDIS_KEY_PREFIX"])
                    .map(|(_, p)| p)
                    .unwrap_or_else(|| "paastis:".to_owned());
                RegistryKind::Redis { url, prefix }
            }
            Some((name, v)) => {
                return Err(env_error(
                    name,
                    format!("{v:?} is not supported (in-memory or redis)"),
                ));
            }
        };
        if registry == RegistryKind::InMemory {
            for name in [
                "REGISTRY_REDIS_URL",
                "REDIS_URL",
                "REGISTRY_REDIS_KEY_PREFIX",
            ] {
                if env.first(&[name]).is_some() {
                    ignored_vars.push(IgnoredVar {
                        name,
                        why: "REGISTRY_TYPE is in-memory: Redis is not used",
                    });
                }
            }
        }
        let (scheduler_interval, scheduler_schedule) =
            match env.first(&["START_AND_STOP_CHECKING_INTERVAL_CRON"]) {
                None => {
                    let every = env.secs(&["PAASTIS_SCHEDULER_INTERVAL"], 60, 86_400)?;
                    (every, PassSchedule::Every(every))
                }
                Some((name, expr)) => {
                    if env.first(&["PAASTIS_SCHEDULER_INTERVAL"]).is_some() {
                        return Err(env_error(
                            name,
                            "and PAASTIS_SCHEDULER_INTERVAL are both set: keep one",
                        ));
                    }
                    let cron = CronSchedule::parse(&expr).map_err(|e| env_error(name, e))?;
                    let period = cron
                        .period_after(&chrono::Local::now())
                        .unwrap_or(Duration::from_secs(60));
                    (period, PassSchedule::Cron(cron))
                }
            };
        let scheduler_calls_per_minute = env.count(
            "PAASTIS_SCALINGO_CALLS_PER_MINUTE",
            DEFAULT_CALLS_PER_MINUTE,
            1_000_000,
        )?;
        // With a shared registry there are, as a rule, several instances.
        let default_instances = match registry {
            RegistryKind::InMemory => 1,
            RegistryKind::Redis { .. } => 2,
        };
        let gateway_instances = env.count("PAASTIS_GATEWAY_INSTANCES", default_instances, 1_000)?;
        let pause_after_429 = env.secs(
            &["PAASTIS_SCALINGO_PAUSE_AFTER_429"],
            crate::budget::DEFAULT_PAUSE_AFTER_429.as_secs(),
            crate::budget::DEFAULT_MAX_PAUSE.as_secs(),
        )?;
        let registry_max_apps = env.count(
            "PAASTIS_REGISTRY_MAX_APPS",
            crate::registry::DEFAULT_MAX_APPS,
            10_000_000,
        )?;
        let instance = env
            .first(&["PAASTIS_INSTANCE"])
            .map(|(_, v)| v)
            .unwrap_or_else(|| format!("{}-{}", std::process::id(), now_nanos() % 1_000_000));

        let admin = tokens::admin(env)?;
        let sidecar_token = tokens::sidecar_token(env)?;
        tokens::check_exposure(listen, sidecar_token.as_ref())?;
        let listener_limits = Limits {
            header_read_timeout: env.secs(
                &["PAASTIS_HEADER_READ_TIMEOUT"],
                crate::listener::DEFAULT_HEADER_READ_TIMEOUT.as_secs(),
                3_600,
            )?,
            max_connections: usize::try_from(env.count(
                "PAASTIS_MAX_CONNECTIONS",
                u32::try_from(crate::listener::DEFAULT_MAX_CONNECTIONS).unwrap_or(u32::MAX),
                1_000_000,
            )?)
            .unwrap_or(usize::MAX),
        };
        let log_format = match env
            .first(&["PAASTIS_LOG_FORMAT"])
            .as_ref()
            .map(|(n, v)| (*n, v.as_str()))
        {
            None | Some((_, "text")) => LogFormat::Text,
            Some((_, "json")) => LogFormat::Json,
            Some((name, v)) => {
                return Err(env_error(
                    name,
                    format!("{v:?} is not supported (text or json)"),
                ))
            }
        };
        let hook = |name: &'static str| env.first(&[name]).map(|(_, v)| v);
        let hooks = Hooks {
            before_start: hook("HOOKS_BEFORE_START"),
            after_start: hook("HOOKS_AFTER_START"),
            before_stop: hook("HOOKS_BEFORE_STOP"),
            after_stop: hook("HOOKS_AFTER_STOP"),
            timeout: env.secs(&["HOOKS_TIMEOUT"], 30, 3_600)?,
        };

        let wake_timeout = env.secs(
            &[
                "PAASTIS_WAKE_TIMEOUT",
                "PROVIDER_SCALINGO_OPERATION_TIMEOUT",
                "SCALINGO_OPERATION_TIMEOUT",
            ],
            60,
            600,
        )?;
        let awake_ttl = env.secs(&["PAASTIS_AWAKE_TTL"], 600, 86_400)?;
        let default_strategy = match env.first(&["PAASTIS_DEFAULT_STRATEGY"]) {
            None => Strategy::Blocking,
            Some((name, v)) => Strategy::parse(&v).ok_or_else(|| {
                env_error(
                    name,
                    format!("{v:?} is not a strategy (blocking or waiting_page)"),
                )
            })?,
        };

        // As in Paastis, `paastis.yml` in the working directory is read when
        // present; an explicitly named file must exist.
        let (rules_file, text) = match env.first(&["PAASTIS_RULES_FILE", "PAASTIS_CONFIG_FILE"]) {
            Some((_, path)) => {
                let path = PathBuf::from(path);
                let text = rules::read_rules_file(&path).map_err(|e| ConfigError::ReadRules {
                    file: path.clone(),
                    message: e.to_string(),
                })?;
                (Some(path), text)
            }
            None => {
                let path = PathBuf::from("paastis.yml");
                match rules::read_rules_file(&path) {
                    Ok(text) => (Some(path), text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, String::new()),
                    Err(e) => {
                        return Err(ConfigError::ReadRules {
                            file: path,
                            message: e.to_string(),
                        })
                    }
                }
            }
        };
        let rules = match &rules_file {
            Some(file) => parse_rules(file, &text, default_max_idle)?,
            None => AppRules::new(Vec::new(), default_max_idle),
        }
        .with_default_strategy(default_strategy);

        let front_urls = match env.first(&["PAASTIS_FRONT_URLS"]) {
            None => FrontUrls::default(),
            Some((name, v)) => FrontUrls::parse(&v).map_err(|e| env_error(name, e.to_string()))?,
        };

        Ok(Self {
            listen,
            scalingo: ScalingoConfig {
                api_token: Secret::new(token),
                auth_url,
                regions,
                request_timeout,
                user_agent: concat!("paastis-gateway/", env!("CARGO_PKG_VERSION")).to_owned(),
            },
            regions_var,
            rules,
            rules_file,
            ignored_apps,
            managed_apps,
            dry_run,
            registry,
            wake_timeout,
            awake_ttl,
            scheduler_interval,
            scheduler_schedule,
            scheduler_calls_per_minute,
            gateway_instances,
            pause_after_429,
            registry_max_apps,
            instance,
            admin,
            sidecar_token,
            listener_limits,
            log_format,
            hooks,
            front_urls,
            warnings,
            ignored_vars,
            env_file: None,
        })
    }

    /// Which apps this configuration manages.
    pub fn scope(&self) -> AppScope<'_> {
        AppScope {
            ignored: &self.ignored_apps,
            managed: &self.managed_apps,
        }
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
