//! What the Scalingo API returns, as far as the sidecar uses it.
//!
//! Unknown JSON fields are ignored, fields that may be absent (or `null`)
//! default, and status/state strings are open enums: a value Scalingo adds
//! later lands in `Other(String)` instead of failing the whole response.
//! Of an app list entry only `name` is required (the contract says only `id`
//! and `name` can be relied on); an entry without a usable `name` is skipped
//! with a warning instead of failing the listing.

use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

/// Decodes an absent or `null` field as its default (serde's `default` alone
/// covers only the absent case).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Defines an open string enum: known values get a variant, anything else is
/// kept verbatim in `Other`. (De)serialises as the plain string.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this client does not know (kept as sent).
            Other(String),
        }

        impl $name {
            /// The string Scalingo uses for this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(other) => other,
                }
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                match value.as_str() {
                    $($text => Self::$variant,)+
                    _ => Self::Other(value),
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                match value {
                    $name::Other(other) => other,
                    known => known.as_str().to_owned(),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

open_enum! {
    /// `status` of an app.
    AppStatus {
        /// Created, never deployed.
        New => "new",
        /// At least one container runs.
        Running => "running",
        /// No container runs (every type scaled to 0).
        Stopped => "stopped",
        Crashed => "crashed",
        Restarting => "restarting",
        /// A scale operation is in progress; no other operation is accepted.
        Scaling => "scaling",
        /// A new version is being deployed.
        Booting => "booting",
        /// Not given by Scalingo (a list entry without `status`): the app may
        /// be in any state. Never sent by this client.
        Unknown => "unknown",
    }
}

impl Default for AppStatus {
    /// What a missing `status` decodes to.
    fn default() -> Self {
        Self::Unknown
    }
}

impl AppStatus {
    /// False only when Scalingo says no container runs (`stopped`, or `new`:
    /// never deployed). [`Unknown`](Self::Unknown) and every other status may
    /// be running: a missing status never lets a caller take an app as
    /// stopped (at worst a pause costs a scale call answered "no change").
    pub fn may_be_running(&self) -> bool {
        !matches!(self, Self::Stopped | Self::New)
    }

    /// True when Scalingo gave a status (even one this client does not know).
    pub fn is_known(&self) -> bool {
        *self != Self::Unknown
    }
}

open_enum! {
    /// `status` of an operation.
    OperationStatus {
        Pending => "pending",
        Running => "running",
        Done => "done",
        /// Failed; the operation's `error` holds the message.
        Error => "error",
    }
}

impl OperationStatus {
    /// True once the operation will not change any more (`done` or `error`).
    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Done | Self::Error)
    }
}

open_enum! {
    /// `state` of a container in `ps`.
    ProcessState {
        Booting => "booting",
        Running => "running",
        Stopping => "stopping",
        /// Kept in `ps` after a scale to 0 by some answers (the contract leaves it open).
        Stopped => "stopped",
        Crashed => "crashed",
        Restarting => "restarting",
    }
}

/// A region, from the auth service's `/v1/regions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// `osc-fr1`, `osc-secnum-fr1` ...
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Base of the regional API (`https://api.osc-fr1.scalingo.com`); the only
    /// host besides the auth service that receives the bearer.
    #[serde(with = "url_string")]
    pub api: Url,
    #[serde(default)]
    pub dashboard: Option<String>,
    #[serde(default)]
    pub database_api: Option<String>,
    #[serde(default)]
    pub ssh: Option<String>,
    #[serde(default)]
    pub default: bool,
}

/// (De)serialises a [`Url`] as its string (the `url` crate's serde feature is not enabled).
mod url_string {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(url: &Url, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(url.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
        let text = String::deserialize(deserializer)?;
        Url::parse(&text).map_err(D::Error::custom)
    }
}

/// An app, from `/v1/apps` or `/v1/apps/{app}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Opaque id (empty when absent).
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub region: Option<String>,
    /// [`AppStatus::Unknown`] when the answer has none (list entries may
    /// lack it); see [`AppStatus::may_be_running`].
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: AppStatus,
    /// May be a custom domain.
    #[serde(default)]
    pub url: Option<String>,
    /// The `*.scalingo.io` URL.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    /// `None` before the first deployment.
    #[serde(default)]
    pub last_deployed_at: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub force_https: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sticky_session: bool,
}

/// One process type of the formation (`/v1/apps/{app}/containers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerType {
    /// Process type (`web`, `worker` ...).
    pub name: String,
    pub amount: u32,
    /// Container size (`M`, `L` ...), absent on some answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

/// A requested change of formation: set process type `name` to `amount` containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerAmount {
    pub name: String,
    pub amount: u32,
}

impl ContainerAmount {
    pub fn new(name: impl Into<String>, amount: u32) -> Self {
        Self {
            name: name.into(),
            amount,
        }
    }
}

/// How a scale request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleOutcome {
    /// 202: an operation runs; poll it with `wait_operation`. `formation` is
    /// the complete formation requested.
    Started {
        operation_id: String,
        formation: Vec<ContainerType>,
    },
    /// 200: applied at once (the app was never deployed, nothing to start).
    Done { formation: Vec<ContainerType> },
    /// 400 "no change in containers formation": already as requested, a success.
    NoChange,
}

/// An operation, from `/v1/apps/{app}/operations/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    pub status: OperationStatus,
    /// `scale`, `restart`, `start`, `start-one-off` ... (open).
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub kind: String,
    /// Failure message when `status` is `error`.
    #[serde(default)]
    pub error: Option<String>,
}

/// A container, from `/v1/apps/{app}/ps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    #[serde(default)]
    pub id: String,
    /// Process type (`web`, `worker`, `one-off` ...).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub type_index: Option<u32>,
    /// `web-1` ...
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    pub state: ProcessState,
}

/// An autoscaler, from `/v1/apps/{app}/autoscalers`. The contract is unsure
/// of the exact field set: only `id` is required (an entry without one is
/// skipped: it could not be turned back on), the rest is optional.
///
/// A manual scale (ours included) disables the autoscalers of the types it
/// names, so a pause must record the enabled ones and a wake re-enable them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Autoscaler {
    /// Opaque id (a number is taken as its decimal string).
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    #[serde(default)]
    pub app_id: Option<String>,
    /// The process type it scales (`web` ...); empty when absent.
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_type: String,
    /// `cpu_consumption`, `rpm_per_container` ... (open).
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub target: Option<f64>,
    #[serde(default)]
    pub min_containers: Option<u32>,
    #[serde(default)]
    pub max_containers: Option<u32>,
    /// Absent means enabled.
    #[serde(default, deserialize_with = "null_as_default")]
    pub disabled: bool,
}

/// An id given as a string or as a number.
fn id_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    use serde::de::Error as _;
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(id) if !id.is_empty() => Ok(id),
        serde_json::Value::Number(id) => Ok(id.to_string()),
        other => Err(D::Error::custom(format!("unusable id {other}"))),
    }
}

/// True when at least one `web` container is `running`: the default domain
/// only routes to `web`, and stopped entries may or may not be listed, so
/// nothing else counts.
pub fn web_running(processes: &[Process]) -> bool {
    processes
        .iter()
        .any(|p| p.kind == "web" && p.state == ProcessState::Running)
}

// Root-keyed envelopes: every answer is `{"<key>": ...}`, never a bare array.

#[derive(Deserialize)]
pub(crate) struct TokenEnvelope {
    pub token: String,
}

#[derive(Deserialize)]
pub(crate) struct RegionsEnvelope {
    pub regions: Vec<Region>,
}

#[derive(Deserialize)]
pub(crate) struct AppsEnvelope {
    #[serde(default, deserialize_with = "usable_entries")]
    pub apps: Vec<App>,
}

/// The entries of a list that decode; the others (no `name`, a `name` that
/// is not a string ...) are logged and skipped, so one odd entry cannot hide
/// every other app.
fn usable_entries<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let entries = Option::<Vec<serde_json::Value>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(entries
        .into_iter()
        .filter_map(|entry| match serde_json::from_value(entry) {
            Ok(item) => Some(item),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an undecodable list entry");
                None
            }
        })
        .collect())
}

#[derive(Deserialize)]
pub(crate) struct AppEnvelope {
    pub app: App,
}

#[derive(Deserialize)]
pub(crate) struct ContainersEnvelope {
    #[serde(default)]
    pub containers: Vec<ContainerType>,
}

#[derive(Deserialize)]
pub(crate) struct AutoscalersEnvelope {
    #[serde(default, deserialize_with = "usable_entries")]
    pub autoscalers: Vec<Autoscaler>,
}

#[derive(Deserialize)]
pub(crate) struct AutoscalerEnvelope {
    pub autoscaler: Autoscaler,
}

/// `PATCH /v1/apps/{app}/autoscalers/{id}` body: `{"autoscaler":{"disabled":b}}`.
#[derive(Serialize)]
pub(crate) struct AutoscalerUpdate {
    pub autoscaler: AutoscalerDisabled,
}

#[derive(Serialize)]
pub(crate) struct AutoscalerDisabled {
    pub disabled: bool,
}

#[derive(Serialize)]
pub(crate) struct ScaleRequest<'a> {
    pub containers: &'a [ContainerAmount],
}

#[derive(Deserialize)]
pub(crate) struct OperationEnvelope {
    pub operation: Operation,
}

#[derive(Deserialize)]
pub(crate) struct PsEnvelope {
    #[serde(default)]
    pub containers: Vec<Process>,
}

#[cfg(test)]
#[path = "types_tests.rs"]
mod tests;
