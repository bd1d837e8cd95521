//! `paastis-filter-config`: the Paastis filter's plugin configuration, the
//! JSON string Envoy hands to the filter's `on_configure`, parsed and
//! validated once, field by field.
//!
//! It owns the fields, their defaults and bounds, and the checks of cluster
//! and header names. It must not depend on proxy-wasm (nor on the filter):
//! the native sidecar's `check-config` parses the same JSON with it, so both
//! agree on every field.
//!
//! The plugin `configuration` is a JSON object ([`Config::parse`]). On any
//! error the filter logs `invalid configuration: <field>: <why>` at critical
//! level and refuses to load. Unknown fields are errors.
//!
//! | field | type, default | meaning |
//! |---|---|---|
//! | `sidecar_cluster` | string, required | Envoy cluster of the sidecar |
//! | `sidecar_hold_cluster` | string, `sidecar_cluster` | cluster of the wake callouts of first requests (no usable cache entry): one whose route retries while the sidecar cannot be reached, so that they are held across a restart of the sidecar (`envoy/gateway.yaml`: `paastis_sidecar_hold`); every other callout (activity, stale entries, the backstop, status) goes to `sidecar_cluster` and fails fast |
//! | `sidecar_authority` | string, `"paastis-sidecar"` | `:authority` of callouts |
//! | `sidecar_token` | string, none | sent as `Authorization: Bearer TOKEN` on every callout; the sidecar's `PAASTIS_SIDECAR_TOKEN` (16+ visible ASCII characters); never logged |
//! | `callout_timeout_ms` | u64, `65000` | wake callout timeout, `1..=300000` (the sidecar's own wake timeout is 60 s) |
//! | `routing_header` | string, `"x-paastis-cluster"` | lower-case header name, not a pseudo-header nor a header requests need |
//! | `cache_ttl_ms` | u64, `30000` | lifetime of "awake" cache entries, `1..=86400000` |
//! | `activity_flush_ms` | u64, `1000` | activity tick period, `1..=3600000` (should be below `cache_ttl_ms`) |
//! | `stale_ttl_ms` | u64, `300000` | while the sidecar is unreachable, apps known awake keep being routed this long past their cache entry's expiry; `0` = off, at most `86400000` |
//! | `domains` | \[string\], `[]` | default rule: the single label right under one of these is the app |
//! | `host_rules` | \[{`pattern`, `app`, `region`?}\], `[]` | explicit rules tried first (anchored regex over the normalised host, `$1..$9` in `app`) |
//! | `unmatched_hosts` | `"reject"`\|`"pass"`, `"reject"` | reject: local 404; pass: continue untouched, no routing header |
//! | `region_clusters` | {region: cluster}, `{}` | cluster per region; a region not listed uses its own name |
//! | `failure_policy` | `"closed"`\|`"open"`, `"closed"` | sidecar unreachable or answering nonsense: closed = 503 + `Retry-After`; open = route to `APP.REGION.scalingo.io` (rule region, else the region of the app's last cache entry, else `default_region`) without waking |
//! | `default_region` | string, `"osc-fr1"` | region for `failure_policy: open` when the rule pins none |
//! | `upstream_scheme` | `"https"`\|`"http"`, `"https"` | scheme used when rewriting `Origin` |
//! | `retry_after_s` | u32, `5` | `Retry-After` of 503s, `1..=3600` |
//!
//! At least one of `domains` and `host_rules` must be non-empty.
//!
//! Every error names the field it is about (`host_rules[2].pattern: ...`,
//! `callout_timeout_ms: must be ...`), and a field the filter does not know is
//! an error rather than being ignored (the effect of serde's
//! `deny_unknown_fields`, but reporting the field's path), so that a typo such
//! as `cache_tll_ms` cannot silently fall back to a default. A value of the
//! wrong type is told in serde's words (`cache_ttl_ms: invalid type: string
//! "1s", expected u64`).
//!
//! The JSON is parsed by miniserde into one value tree, then read field by
//! field: no code generated per type (serde_json's is the bulk of a `.wasm`).
//! Its parser says nothing about where a text stops being JSON: such a
//! configuration is refused as `(root): invalid JSON`.

use miniserde::json::{Number, Value};
use paastis_rules::{check_region, normalize_host, HostRule, HostRules, RuleError};
use thiserror::Error;

mod token;
pub use token::{SidecarToken, MIN_SIDECAR_TOKEN_LEN};

/// Default `sidecar_authority`.
pub const DEFAULT_SIDECAR_AUTHORITY: &str = "paastis-sidecar";
/// Default `callout_timeout_ms`: a bit more than the sidecar's own 60 s wake
/// timeout, so that the sidecar answers `wake_timeout` before Envoy gives up.
pub const DEFAULT_CALLOUT_TIMEOUT_MS: u64 = 65_000;
/// Upper bound of `callout_timeout_ms` (5 minutes).
pub const MAX_CALLOUT_TIMEOUT_MS: u64 = 300_000;
/// Default `routing_header`.
pub const DEFAULT_ROUTING_HEADER: &str = "x-paastis-cluster";
/// Default `cache_ttl_ms`.
pub const DEFAULT_CACHE_TTL_MS: u64 = 30_000;
/// Upper bound of `cache_ttl_ms` (one day).
pub const MAX_CACHE_TTL_MS: u64 = 86_400_000;
/// Default `activity_flush_ms`.
pub const DEFAULT_ACTIVITY_FLUSH_MS: u64 = 1_000;
/// Upper bound of `activity_flush_ms` (one hour).
pub const MAX_ACTIVITY_FLUSH_MS: u64 = 3_600_000;
/// Default `stale_ttl_ms` (five minutes).
pub const DEFAULT_STALE_TTL_MS: u64 = 300_000;
/// Upper bound of `stale_ttl_ms` (one day).
pub const MAX_STALE_TTL_MS: u64 = 86_400_000;
/// Default `default_region`.
pub const DEFAULT_REGION: &str = "osc-fr1";
/// Default `retry_after_s`.
pub const DEFAULT_RETRY_AFTER_S: u32 = 5;
/// Upper bound of `retry_after_s` and of any `retry_after` the sidecar sends.
pub const MAX_RETRY_AFTER_S: u32 = 3_600;
/// Longest cluster name accepted (Envoy has no hard limit; this keeps a
/// header value small).
const CLUSTER_NAME_MAX: usize = 255;

/// Headers the routing header must not be: the filter removes the routing
/// header from every request, so naming one of these would strip something
/// the request or the filter itself needs.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "x-forwarded-host",
    "origin",
    "accept",
    "x-request-id",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "cookie",
    "authorization",
];

/// The top-level fields, in documentation order.
const FIELDS: &[&str] = &[
    "sidecar_cluster",
    "sidecar_hold_cluster",
    "sidecar_authority",
    "sidecar_token",
    "callout_timeout_ms",
    "routing_header",
    "cache_ttl_ms",
    "activity_flush_ms",
    "stale_ttl_ms",
    "domains",
    "host_rules",
    "unmatched_hosts",
    "region_clusters",
    "failure_policy",
    "default_region",
    "upstream_scheme",
    "retry_after_s",
];

/// The fields of one `host_rules` item.
const RULE_FIELDS: &[&str] = &["pattern", "app", "region"];

/// Why a configuration was refused. The `Display` text always starts with the
/// path of the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The whole string is not a JSON object.
    #[error("(root): {0}")]
    NotAnObject(String),
    /// A field the filter does not know (a typo, most likely).
    #[error("{field}: unknown field, expected one of: {expected}")]
    UnknownField { field: String, expected: String },
    /// A required field is absent.
    #[error("{0}: missing required field")]
    Missing(String),
    /// A field has the wrong type or an out-of-range value.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A host rule, domain or region refused by `paastis-rules` (its message
    /// already names the field).
    #[error(transparent)]
    Rule(#[from] RuleError),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// What to do with a host that no rule and no domain matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmatchedHosts {
    /// Answer a local 404.
    Reject,
    /// Let the request continue untouched (no routing header is set, so the
    /// Envoy route must handle it some other way).
    Pass,
}

/// What to do when the sidecar cannot be reached or answers something that
/// is not its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Answer 503 with `Retry-After`.
    Closed,
    /// Route to the app's default Scalingo host without waking it.
    Open,
}

/// Scheme used when rewriting `Origin` for the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
        }
    }
}

/// The validated plugin configuration. Built only by [`Config::parse`], so
/// every value in it has been checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Envoy cluster of the sidecar (a valid cluster name).
    pub sidecar_cluster: String,
    /// Cluster of the wake callouts that may wait for the sidecar to come
    /// back (first requests); `sidecar_cluster` unless set (a valid cluster
    /// name).
    pub sidecar_hold_cluster: String,
    /// `:authority` of callouts to the sidecar (a valid host, port allowed).
    pub sidecar_authority: String,
    /// Sent on every callout when set (the sidecar's
    /// `PAASTIS_SIDECAR_TOKEN`); its `Debug` is redacted.
    pub sidecar_token: Option<SidecarToken>,
    /// Timeout of a wake callout, in `1..=300_000` ms.
    pub callout_timeout_ms: u64,
    /// Lower-case header name, not a pseudo-header nor a header the request
    /// needs, set to the upstream cluster (the route's `cluster_header`).
    pub routing_header: String,
    /// Lifetime of "awake" cache entries, in `1..=86_400_000` ms.
    pub cache_ttl_ms: u64,
    /// Period of the activity flush tick, in `1..=3_600_000` ms.
    pub activity_flush_ms: u64,
    /// How long past its expiry a cache entry may still route while the
    /// sidecar is unreachable (serve stale), in `0..=86_400_000` ms; `0`:
    /// never.
    pub stale_ttl_ms: u64,
    /// Host rules then domains, compiled.
    pub rules: HostRules,
    pub unmatched_hosts: UnmatchedHosts,
    /// Region (valid region name) to cluster (valid cluster name), in
    /// region order, each region once. A list rather than a map: a few
    /// entries, and no map code in the filter's `.wasm`.
    pub region_clusters: Vec<(String, String)>,
    pub failure_policy: FailurePolicy,
    /// A valid region name.
    pub default_region: String,
    pub upstream_scheme: Scheme,
    /// In `1..=3600`.
    pub retry_after_s: u32,
}

impl Config {
    /// Parses and validates the plugin configuration. An empty string is read
    /// as `{}` (and then fails on the missing `sidecar_cluster`).
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let mut fields = if bytes.iter().all(u8::is_ascii_whitespace) {
            Fields::empty()
        } else {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ConfigError::NotAnObject("not UTF-8".to_owned()))?;
            // miniserde's error tells nothing more.
            let value: Value = miniserde::json::from_str(text)
                .map_err(|_| ConfigError::NotAnObject("invalid JSON".to_owned()))?;
            Fields::new(value, "", FIELDS)?
        };

        let sidecar_cluster: String = fields.required("sidecar_cluster")?;
        check_cluster_name("sidecar_cluster", &sidecar_cluster)?;
        let sidecar_hold_cluster = match fields.optional::<String>("sidecar_hold_cluster")? {
            Some(cluster) => {
                check_cluster_name("sidecar_hold_cluster", &cluster)?;
                cluster
            }
            None => sidecar_cluster.clone(),
        };

        let sidecar_authority = fields
            .optional::<String>("sidecar_authority")?
            .unwrap_or_else(|| DEFAULT_SIDECAR_AUTHORITY.to_owned());
        if normalize_host(&sidecar_authority).is_err() {
            return Err(invalid(
                "sidecar_authority",
                format!("{sidecar_authority:?} is not a valid host[:port]"),
            ));
        }

        let sidecar_token = fields
            .optional::<String>("sidecar_token")?
            .map(|t| SidecarToken::new(t).map_err(|e| invalid("sidecar_token", e)))
            .transpose()?;

        let callout_timeout_ms = fields
            .optional("callout_timeout_ms")?
            .unwrap_or(DEFAULT_CALLOUT_TIMEOUT_MS);
        check_range(
            "callout_timeout_ms",
            callout_timeout_ms,
            1,
            MAX_CALLOUT_TIMEOUT_MS,
        )?;

        let routing_header = fields
            .optional::<String>("routing_header")?
            .unwrap_or_else(|| DEFAULT_ROUTING_HEADER.to_owned());
        check_routing_header(&routing_header)?;

        let cache_ttl_ms = fields
            .optional("cache_ttl_ms")?
            .unwrap_or(DEFAULT_CACHE_TTL_MS);
        check_range("cache_ttl_ms", cache_ttl_ms, 1, MAX_CACHE_TTL_MS)?;

        let activity_flush_ms = fields
            .optional("activity_flush_ms")?
            .unwrap_or(DEFAULT_ACTIVITY_FLUSH_MS);
        check_range(
            "activity_flush_ms",
            activity_flush_ms,
            1,
            MAX_ACTIVITY_FLUSH_MS,
        )?;

        let stale_ttl_ms = fields
            .optional("stale_ttl_ms")?
            .unwrap_or(DEFAULT_STALE_TTL_MS);
        check_range("stale_ttl_ms", stale_ttl_ms, 0, MAX_STALE_TTL_MS)?;

        let domains: Vec<String> = fields.optional("domains")?.unwrap_or_default();
        let raw_rules: Vec<Value> = fields.optional("host_rules")?.unwrap_or_default();
        if domains.is_empty() && raw_rules.is_empty() {
            return Err(invalid(
                "domains",
                "at least one of domains and host_rules must be non-empty",
            ));
        }
        let mut host_rules = Vec::with_capacity(raw_rules.len());
        for (index, raw) in raw_rules.into_iter().enumerate() {
            host_rules.push(parse_host_rule(index, raw)?);
        }
        let rules = HostRules::new(host_rules, &domains)?;

        let unmatched_hosts = fields
            .optional("unmatched_hosts")?
            .unwrap_or(UnmatchedHosts::Reject);

        let region_clusters: Vec<(String, String)> =
            fields.optional("region_clusters")?.unwrap_or_default();
        for (region, cluster) in &region_clusters {
            check_region(&format!("region_clusters.{region}"), region)?;
            check_cluster_name(&format!("region_clusters.{region}"), cluster)?;
        }

        let failure_policy = fields
            .optional("failure_policy")?
            .unwrap_or(FailurePolicy::Closed);

        let default_region = fields
            .optional::<String>("default_region")?
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        check_region("default_region", &default_region)?;

        let upstream_scheme = fields.optional("upstream_scheme")?.unwrap_or(Scheme::Https);

        let retry_after_s: u32 = fields
            .optional("retry_after_s")?
            .unwrap_or(DEFAULT_RETRY_AFTER_S);
        check_range(
            "retry_after_s",
            u64::from(retry_after_s),
            1,
            u64::from(MAX_RETRY_AFTER_S),
        )?;

        Ok(Self {
            sidecar_cluster,
            sidecar_hold_cluster,
            sidecar_authority,
            sidecar_token,
            callout_timeout_ms,
            routing_header,
            cache_ttl_ms,
            activity_flush_ms,
            stale_ttl_ms,
            rules,
            unmatched_hosts,
            region_clusters,
            failure_policy,
            default_region,
            upstream_scheme,
            retry_after_s,
        })
    }

    /// The Envoy cluster serving `region`: its `region_clusters` entry, or
    /// the region's own name.
    pub fn cluster_for<'a>(&'a self, region: &'a str) -> &'a str {
        self.region_clusters
            .iter()
            .find(|(r, _)| r == region)
            .map_or(region, |(_, cluster)| cluster.as_str())
    }

    /// True when activity flushes come often enough to refresh a cache entry
    /// before it expires (otherwise hot apps miss once per TTL).
    pub fn flush_refreshes_cache(&self) -> bool {
        self.activity_flush_ms < self.cache_ttl_ms
    }
}

fn parse_host_rule(index: usize, raw: Value) -> Result<HostRule, ConfigError> {
    let prefix = format!("host_rules[{index}]");
    let mut fields = Fields::new(raw, &prefix, RULE_FIELDS)?;
    let pattern: String = fields.required("pattern")?;
    if pattern.is_empty() {
        return Err(invalid(format!("{prefix}.pattern"), "must not be empty"));
    }
    let app: String = fields.required("app")?;
    let region: Option<String> = fields.optional("region")?;
    Ok(HostRule::new(index, &pattern, &app, region.as_deref())?)
}

/// The fields of one JSON object, taken one by one so that each error names
/// its field. A list in key order, not the parsed `BTreeMap`: its removal
/// code would cost the filter's `.wasm` 10 KiB, for a few fields.
struct Fields {
    map: Vec<(String, Value)>,
    prefix: String,
}

impl Fields {
    /// The fields of `{}`.
    fn empty() -> Self {
        Self {
            map: Vec::new(),
            prefix: String::new(),
        }
    }

    /// Checks that `value` is an object with only `known` keys. A key given
    /// twice keeps its last value, and of several unknown keys the first in
    /// byte order is reported.
    fn new(value: Value, prefix: &str, known: &[&str]) -> Result<Self, ConfigError> {
        let Value::Object(mut object) = value else {
            let at = if prefix.is_empty() { "(root)" } else { prefix };
            return Err(invalid(at, "expected a JSON object"));
        };
        let map: Vec<(String, Value)> = std::mem::take(&mut *object).into_iter().collect();
        if let Some((unknown, _)) = map.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            return Err(ConfigError::UnknownField {
                field: join(prefix, unknown),
                expected: known.join(", "),
            });
        }
        Ok(Self {
            map,
            prefix: prefix.to_owned(),
        })
    }

    /// An optional field; `null` counts as absent.
    fn optional<T: FromValue>(&mut self, name: &str) -> Result<Option<T>, ConfigError> {
        let value = self
            .map
            .iter()
            .position(|(key, _)| key == name)
            .map(|at| self.map.swap_remove(at).1);
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::from_value(value, &join(&self.prefix, name)).map(Some),
        }
    }

    fn required<T: FromValue>(&mut self, name: &str) -> Result<T, ConfigError> {
        self.optional(name)?
            .ok_or_else(|| ConfigError::Missing(join(&self.prefix, name)))
    }
}

/// A field's value read as `Self`; errors name `field` (or the item inside
/// it: `domains[1]`, `region_clusters.osc-fr1`).
trait FromValue: Sized {
    fn from_value(value: Value, field: &str) -> Result<Self, ConfigError>;
}

/// serde's words for a value of the wrong type (`string "1s"`, `integer
/// `-1``, `sequence`, ...). A float is written by miniserde's formatter: core's
/// would add 15 KiB to the filter's `.wasm`.
fn unexpected(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n @ Number::F64(_)) => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_owned(),
        Value::Object(_) => "map".to_owned(),
    }
}

fn invalid_type(field: &str, value: &Value, expected: &str) -> ConfigError {
    invalid(
        field,
        format!("invalid type: {}, expected {expected}", unexpected(value)),
    )
}

impl FromValue for Value {
    fn from_value(value: Value, _field: &str) -> Result<Self, ConfigError> {
        Ok(value)
    }
}

impl FromValue for String {
    fn from_value(value: Value, field: &str) -> Result<Self, ConfigError> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(invalid_type(field, &other, "a string")),
        }
    }
}

impl FromValue for u64 {
    fn from_value(value: Value, field: &str) -> Result<Self, ConfigError> {
        match value {
            Value::Number(Number::U64(n)) => Ok(n),
            Value::Number(n @ Number::I64(_)) => Err(invalid(
                field,
                format!("invalid value: integer `{n}`, expected u64"),
            )),
            other => Err(invalid_type(field, &other, "u64")),
        }
    }
}

impl FromValue for u32 {
    fn from_value(value: Value, field: &str) -> Result<Self, ConfigError> {
        match value {
            Value::Number(Number::U64(n)) if n <= u64::from(u32::MAX) => Ok(n as u32),
            Value::Number(n @ (Number::U64(_) | Number::I64(_))) => Err(invalid(
                field,
                format!("invalid value: integer `{n}`, expected u32"),
            )),
            other => Err(invalid_type(field, &other, "u32")),
        }
    }
}

impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(value: Value, field: &str) -> Result<Self, ConfigError> {
        let Value::Array(mut items) = value else {
            return Err(invalid_type(field, &value, "a sequence"));
        };
        std::mem::take(&mut *items)
            .into_iter()
            .enumerate()
            .map(|(index, item)| T::from_value(item, &format!("{field}[{index}]")))
            .collect()
    }
}

/// An object of strings, in key order.
impl FromValue for Vec<(String, String)> {
    fn from_value(value: Value, field: &str) -> Result<Self, ConfigError> {
        let Value::Object(mut object) = value else {
            return Err(invalid_type(field, &value, "a map"));
        };
        std::mem::take(&mut *object)
            .into_iter()
            .map(|(key, item)| {
                let item = String::from_value(item, &format!("{field}.{key}"))?;
                Ok((key, item))
            })
            .collect()
    }
}

/// A unit variant from its lower-case name.
fn variant<T: Copy>(value: Value, field: &str, variants: [(&str, T); 2]) -> Result<T, ConfigError> {
    let Value::String(name) = value else {
        return Err(invalid_type(field, &value, "a string"));
    };
    match variants.iter().find(|(n, _)| *n == name) {
        Some((_, v)) => Ok(*v),
        None => Err(invalid(
            field,
            format!(
                "unknown variant `{name}`, expected `{}` or `{}`",
                variants[0].0, variants[1].0
            ),
        )),
    }
}

impl FromValue for UnmatchedHosts {
    fn from_value(value: Value, field: &str) -> Result<Self, ConfigError> {
        variant(
            value,
            field,
            [("reject", Self::Reject), ("pass", Self::Pass)],
        )
    }
}

impl FromValue for FailurePolicy {
    fn from_value(value: Value, field: &str) -> Result<Self, ConfigError> {
        variant(
            value,
            field,
            [("closed", Self::Closed), ("open", Self::Open)],
        )
    }
}

impl FromValue for Scheme {
    fn from_value(value: Value, field: &str) -> Result<Self, ConfigError> {
        variant(value, field, [("https", Self::Https), ("http", Self::Http)])
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ))
    }
}

/// True for a name usable both as an Envoy cluster name and as a header
/// value: 1 to 255 visible ASCII characters, no space.
pub fn is_cluster_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= CLUSTER_NAME_MAX && name.bytes().all(|b| b.is_ascii_graphic())
}

fn check_cluster_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if is_cluster_name(name) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{name:?} is not a valid cluster name (1 to 255 visible ASCII characters)"),
        ))
    }
}

/// RFC 9110 `tchar`, lower-case letters only.
fn is_lower_token_char(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~')
}

fn check_routing_header(name: &str) -> Result<(), ConfigError> {
    let field = "routing_header";
    if name.starts_with(':') {
        return Err(invalid(
            field,
            format!("{name:?} is a pseudo-header; use a regular header name"),
        ));
    }
    if name.is_empty() || !name.bytes().all(is_lower_token_char) {
        return Err(invalid(
            field,
            format!("{name:?} is not a valid lower-case header name"),
        ));
    }
    if RESERVED_HEADERS.contains(&name) {
        return Err(invalid(
            field,
            format!("{name:?} is a header the request needs; the routing header is stripped from every request"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use paastis_rules::HostMatch;

    fn parse(json: &str) -> Result<Config, ConfigError> {
        Config::parse(json.as_bytes())
    }

    fn error(json: &str) -> String {
        match parse(json) {
            Ok(_) => panic!("accepted: {json}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let c =
            parse(r#"{"sidecar_cluster":"sidecar","domains":["gateway.example.com"]}"#).unwrap();
        assert_eq!(c.sidecar_authority, "paastis-sidecar");
        assert_eq!(
            c.sidecar_hold_cluster, "sidecar",
            "sidecar_cluster unless set"
        );
        assert_eq!(c.callout_timeout_ms, 65_000);
        assert_eq!(c.routing_header, "x-paastis-cluster");
        assert_eq!(c.cache_ttl_ms, 30_000);
        assert_eq!(c.activity_flush_ms, 1_000);
        assert_eq!(c.stale_ttl_ms, 300_000);
        assert_eq!(c.unmatched_hosts, UnmatchedHosts::Reject);
        assert!(c.region_clusters.is_empty());
        assert_eq!(c.failure_policy, FailurePolicy::Closed);
        assert_eq!(c.default_region, "osc-fr1");
        assert_eq!(c.upstream_scheme, Scheme::Https);
        assert_eq!(c.retry_after_s, 5);
        assert!(c.flush_refreshes_cache());
        assert_eq!(c.cluster_for("osc-fr1"), "osc-fr1");
    }

    #[test]
    fn full_configuration() {
        let c = parse(
            r#"{
                "sidecar_cluster": "paastis_sidecar",
                "sidecar_authority": "sidecar.local:8080",
                "callout_timeout_ms": 1000,
                "routing_header": "x-upstream-cluster",
                "cache_ttl_ms": 5000,
                "activity_flush_ms": 250,
                "stale_ttl_ms": 0,
                "domains": ["gateway.example.com"],
                "host_rules": [
                    {"pattern": "([a-z0-9-]+)\\.secure\\.example\\.org", "app": "$1", "region": "osc-secnum-fr1"},
                    {"pattern": "review-(\\d+)\\.example\\.org", "app": "front-pr$1", "region": null}
                ],
                "unmatched_hosts": "pass",
                "region_clusters": {"osc-fr1": "scalingo_osc_fr1"},
                "failure_policy": "open",
                "default_region": "osc-secnum-fr1",
                "upstream_scheme": "http",
                "retry_after_s": 10
            }"#,
        )
        .unwrap();
        assert_eq!(c.cluster_for("osc-fr1"), "scalingo_osc_fr1");
        assert_eq!(c.cluster_for("osc-secnum-fr1"), "osc-secnum-fr1");
        assert_eq!(c.unmatched_hosts, UnmatchedHosts::Pass);
        assert_eq!(c.failure_policy, FailurePolicy::Open);
        assert_eq!(c.upstream_scheme, Scheme::Http);
        assert_eq!(c.stale_ttl_ms, 0);
        assert_eq!(
            c.rules.match_host("my-bank.secure.example.org"),
            HostMatch::App {
                app: "my-bank".into(),
                region: Some("osc-secnum-fr1")
            }
        );
        assert_eq!(
            c.rules.match_host("review-7.example.org"),
            HostMatch::App {
                app: "front-pr7".into(),
                region: None
            }
        );
    }

    /// Fields are read from their raw JSON text: what a parsed JSON object
    /// gave must not change (surrounding whitespace, `null` as absent, the
    /// last of duplicate keys, the first unknown key in byte order, and no
    /// position of the value inside the field in messages).
    #[test]
    fn raw_fields_read_like_a_json_object() {
        let c = parse(
            "\n  {\"sidecar_cluster\" : \"s\" , \"domains\":[ \"gw.example.com\" ],\n \"retry_after_s\": 3, \"retry_after_s\" :\t9, \"sidecar_token\": null }\n",
        )
        .unwrap();
        assert_eq!(c.retry_after_s, 9);
        assert!(c.sidecar_token.is_none());
        assert_eq!(
            error(r#"{"sidecar_cluster":"s","domains":["gw.example.com"],"zz":1,"ab":2}"#),
            "ab: unknown field, expected one of: ".to_owned() + &FIELDS.join(", ")
        );
        assert_eq!(
            error(r#"{"sidecar_cluster":"s","domains":["gw.example.com"],"cache_ttl_ms": "1s"}"#),
            r#"cache_ttl_ms: invalid type: string "1s", expected u64"#
        );
        assert_eq!(error("  [1] "), "(root): expected a JSON object");
    }

    #[test]
    fn errors_name_the_field() {
        let base = r#""sidecar_cluster":"s","domains":["gw.example.com"]"#;
        let cases = [
            (r#"{"domains":["gw.example.com"]}"#.to_owned(), "sidecar_cluster: missing required field"),
            (format!(r#"{{{base},"cache_tll_ms":1}}"#), "cache_tll_ms: unknown field"),
            (format!(r#"{{{base},"callout_timeout_ms":0}}"#), "callout_timeout_ms: must be between 1 and 300000"),
            (format!(r#"{{{base},"callout_timeout_ms":300001}}"#), "callout_timeout_ms: must be between"),
            (format!(r#"{{{base},"callout_timeout_ms":"1s"}}"#), "callout_timeout_ms: invalid type"),
            (format!(r#"{{{base},"callout_timeout_ms":-1}}"#), "callout_timeout_ms: invalid value"),
            (format!(r#"{{{base},"routing_header":"X-Cluster"}}"#), "routing_header: \"X-Cluster\" is not a valid lower-case header name"),
            (format!(r#"{{{base},"routing_header":":authority"}}"#), "routing_header: \":authority\" is a pseudo-header"),
            (format!(r#"{{{base},"routing_header":"host"}}"#), "routing_header: \"host\" is a header the request needs"),
            (format!(r#"{{{base},"routing_header":"x cluster"}}"#), "routing_header:"),
            (format!(r#"{{{base},"routing_header":""}}"#), "routing_header:"),
            (format!(r#"{{{base},"cache_ttl_ms":0}}"#), "cache_ttl_ms: must be between"),
            (format!(r#"{{{base},"activity_flush_ms":0}}"#), "activity_flush_ms: must be between"),
            (format!(r#"{{{base},"stale_ttl_ms":86400001}}"#), "stale_ttl_ms: must be between 0 and 86400000"),
            (format!(r#"{{{base},"stale_ttl_ms":-1}}"#), "stale_ttl_ms: invalid value"),
            (format!(r#"{{{base},"unmatched_hosts":"drop"}}"#), "unmatched_hosts: unknown variant `drop`"),
            (format!(r#"{{{base},"failure_policy":"Open"}}"#), "failure_policy: unknown variant"),
            (format!(r#"{{{base},"upstream_scheme":"ftp"}}"#), "upstream_scheme: unknown variant"),
            (format!(r#"{{{base},"default_region":"Paris"}}"#), "default_region: \"Paris\" is not a valid region name"),
            (format!(r#"{{{base},"region_clusters":{{"osc-fr1":""}}}}"#), "region_clusters.osc-fr1: \"\" is not a valid cluster name"),
            (format!(r#"{{{base},"region_clusters":{{"OSC":"c"}}}}"#), "region_clusters.OSC: \"OSC\" is not a valid region name"),
            (format!(r#"{{{base},"retry_after_s":0}}"#), "retry_after_s: must be between 1 and 3600"),
            (format!(r#"{{{base},"retry_after_s":5000000000}}"#), "retry_after_s: invalid value"),
            (format!(r#"{{{base},"sidecar_authority":"a b"}}"#), "sidecar_authority:"),
            (format!(r#"{{{base},"sidecar_token":"too-short"}}"#), "sidecar_token: must be at least 16"),
            (format!(r#"{{{base},"sidecar_token":"has a space in it, long"}}"#), "sidecar_token: must be"),
            (format!(r#"{{{base},"sidecar_token":7}}"#), "sidecar_token: invalid type"),
            (r#"{"sidecar_cluster":"has space","domains":["gw.example.com"]}"#.to_owned(), "sidecar_cluster: \"has space\" is not a valid cluster name"),
            (r#"{"sidecar_cluster":"s","sidecar_hold_cluster":"a b","domains":["gw.example.com"]}"#.to_owned(), "sidecar_hold_cluster: \"a b\" is not a valid cluster name"),
            (r#"{"sidecar_cluster":"s"}"#.to_owned(), "domains: at least one of domains and host_rules must be non-empty"),
            (r#"{"sidecar_cluster":"s","domains":["bad domain"]}"#.to_owned(), "domains[0]:"),
            (r#"{"sidecar_cluster":"s","domains":"gw.example.com"}"#.to_owned(), "domains: invalid type"),
            (r#"{"sidecar_cluster":"s","host_rules":[{"pattern":"a","app":"x"},{"pattern":"(","app":"x"}]}"#.to_owned(), "host_rules[1].pattern:"),
            (r#"{"sidecar_cluster":"s","host_rules":[{"pattern":"","app":"x"}]}"#.to_owned(), "host_rules[0].pattern: must not be empty"),
            (r#"{"sidecar_cluster":"s","host_rules":[{"pattern":"(a)","app":"$2"}]}"#.to_owned(), "host_rules[0].app: uses $2"),
            (r#"{"sidecar_cluster":"s","host_rules":[{"pattern":"a","app":3}]}"#.to_owned(), "host_rules[0].app: invalid type"),
            (r#"{"sidecar_cluster":"s","host_rules":[{"pattern":"a","app":"x","regin":"osc-fr1"}]}"#.to_owned(), "host_rules[0].regin: unknown field"),
            (r#"{"sidecar_cluster":"s","host_rules":[{"app":"x"}]}"#.to_owned(), "host_rules[0].pattern: missing required field"),
            (r#"{"sidecar_cluster":"s","host_rules":["a"]}"#.to_owned(), "host_rules[0]: expected a JSON object"),
            (r#"{"sidecar_cluster":"s","host_rules":[{"pattern":"a","app":"x","region":"EU"}]}"#.to_owned(), "host_rules[0].region:"),
            ("[1]".to_owned(), "(root): expected a JSON object"),
            ("{".to_owned(), "(root): invalid JSON"),
            ("{\"sidecar_cluster\":\"s\"} x".to_owned(), "(root): invalid JSON"),
            ("".to_owned(), "sidecar_cluster: missing required field"),
        ];
        for (json, expected) in cases {
            let message = error(&json);
            assert!(
                message.starts_with(expected),
                "{json}\n  gave: {message}\n  want: {expected}..."
            );
        }
    }

    #[test]
    fn null_means_default() {
        let c = parse(
            r#"{"sidecar_cluster":"s","domains":["gw.example.com"],"host_rules":null,"retry_after_s":null}"#,
        )
        .unwrap();
        assert_eq!(c.retry_after_s, DEFAULT_RETRY_AFTER_S);
    }

    /// Types in serde's words, items named by index or key.
    #[test]
    fn wrong_types_are_told_like_serde() {
        let base = r#""sidecar_cluster":"s","domains":["gw.example.com"]"#;
        for (extra, expected) in [
            (
                r#""cache_ttl_ms":1.5"#,
                "cache_ttl_ms: invalid type: floating point `1.5`, expected u64",
            ),
            (
                r#""cache_ttl_ms":true"#,
                "cache_ttl_ms: invalid type: boolean `true`, expected u64",
            ),
            (
                r#""retry_after_s":-1"#,
                "retry_after_s: invalid value: integer `-1`, expected u32",
            ),
            (
                r#""retry_after_s":[]"#,
                "retry_after_s: invalid type: sequence, expected u32",
            ),
            (
                r#""sidecar_token":{}"#,
                "sidecar_token: invalid type: map, expected a string",
            ),
            (
                r#""unmatched_hosts":"drop""#,
                "unmatched_hosts: unknown variant `drop`, expected `reject` or `pass`",
            ),
            (
                r#""failure_policy":1"#,
                "failure_policy: invalid type: integer `1`, expected a string",
            ),
            (
                r#""region_clusters":{"osc-fr1":2}"#,
                "region_clusters.osc-fr1: invalid type: integer `2`, expected a string",
            ),
            (
                r#""region_clusters":[]"#,
                "region_clusters: invalid type: sequence, expected a map",
            ),
            (
                r#""domains":["gw.example.com",false]"#,
                "domains[1]: invalid type: boolean `false`, expected a string",
            ),
        ] {
            assert_eq!(error(&format!("{{{base},{extra}}}")), expected);
        }
        assert_eq!(error("{\"a\" 1}"), "(root): invalid JSON");
        assert_eq!(
            Config::parse(b"{\xff}").unwrap_err().to_string(),
            "(root): not UTF-8"
        );
    }

    use proptest::prelude::*;

    proptest! {
        /// Any configuration is accepted or refused, never a panic (nor a
        /// stack overflow on deep nesting).
        #[test]
        fn any_configuration_is_handled(
            text in prop_oneof![
                any::<String>(),
                "[\\[\\]{}\",:0-9a-z_.\\- ]{0,80}",
                "\\{\"(sidecar_cluster|domains|host_rules|region_clusters|retry_after_s)\":(\"[a-z.]{0,8}\"|[0-9-]{1,12}|\\[\"[a-z.]{0,12}\"\\]|\\{\"[a-z-]{0,8}\":\"[a-z]{0,3}\"\\}|\\[\\{\"pattern\":\"[a-z()\\\\.]{0,6}\",\"app\":\"[a-z$1]{0,4}\"\\}\\]|null|true)\\}",
                (1usize..5000).prop_map(|depth| format!("{{\"domains\":{}", "[".repeat(depth))),
            ],
        ) {
            let _ = Config::parse(text.as_bytes());
        }
    }

    #[test]
    fn slow_flush_is_reported() {
        let c = parse(r#"{"sidecar_cluster":"s","domains":["gw.example.com"],"cache_ttl_ms":500}"#)
            .unwrap();
        assert!(!c.flush_refreshes_cache());
    }
}
