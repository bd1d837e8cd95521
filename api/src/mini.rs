//! The filter's JSON for the same wire types (feature `miniserde`): reads
//! and writes what serde does, with far less code in the filter's `.wasm`.
//!
//! serde_json monomorphises a parser per derived type (and links float
//! formatting through its error paths): half of the filter's `.wasm`. Here
//! miniserde parses every body into one [`Value`] tree (no generics, no
//! recursion on the call stack), and each type the filter reads takes its
//! fields from it by name ([`FromJson`]); each type the filter writes streams
//! its fields in declaration order ([`Serialize`]), so that the text is the
//! one serde writes, byte for byte.
//!
//! The rules are serde's, as the types' attributes say: unknown fields are
//! ignored, `#[serde(default)]` fields default when absent, an `Option`
//! field is `None` when absent or `null`, `skip_serializing_if` fields are
//! not written. Differences, all on malformed input: a key given twice keeps
//! its last value (serde refuses it), and a struct is never read from a JSON
//! array (serde reads its fields by position). The contract tests
//! (`mini_tests.rs`, run by this crate's `cargo test`) check both mechanisms against each other on
//! every type the filter reads or writes.

use std::borrow::Cow;
use std::fmt;

use miniserde::json::{Number, Value};
use miniserde::ser::{Fragment, Map, Serialize};

use crate::activity::{ActivityAnswer, ActivityRequest, RunningApp};
use crate::error::{ErrorAnswer, ErrorCode, LocalReplyBody};
use crate::status::{AppState, AppStatus, PublicStatus, StatusAnswer};
use crate::wake::{Client, LinkedResult, WaitingAnswer, WakeAnswer, WakeRequest};

/// The JSON text of `value` (what `serde_json::to_string` writes).
pub fn to_string<T: Serialize>(value: &T) -> String {
    miniserde::json::to_string(value)
}

/// Reads a `T` from a JSON body.
pub fn from_slice<T: FromJson>(bytes: &[u8]) -> Result<T, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::new("not UTF-8"))?;
    // miniserde's error says nothing more than "not JSON".
    let value: Value =
        miniserde::json::from_str(text).map_err(|_| JsonError::new("not valid JSON"))?;
    T::from_json(value)
}

/// Why a body is not the expected JSON; names the field at fault
/// (`linked_apps[0].running: invalid type: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    path: String,
    message: String,
}

impl JsonError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            path: String::new(),
            message: message.into(),
        }
    }

    /// The same error, inside the field (or `[index]`) `segment`.
    fn at(mut self, segment: &str) -> Self {
        if !self.path.is_empty() && !self.path.starts_with('[') {
            self.path.insert(0, '.');
        }
        self.path.insert_str(0, segment);
        self
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for JsonError {}

/// serde's words for a JSON value of the wrong type (`string "1s"`,
/// `integer `-1``, `sequence`, ...). A float is written by miniserde's
/// formatter: core's would add 15 KiB to the `.wasm`.
pub fn unexpected(value: &Value) -> String {
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

fn invalid_type(value: &Value, expected: &str) -> JsonError {
    JsonError::new(format!(
        "invalid type: {}, expected {expected}",
        unexpected(value)
    ))
}

/// A type read from a parsed JSON value.
pub trait FromJson: Sized {
    fn from_json(value: Value) -> Result<Self, JsonError>;
}

impl FromJson for String {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(invalid_type(&other, "a string")),
        }
    }
}

impl FromJson for bool {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        match value {
            Value::Bool(b) => Ok(b),
            other => Err(invalid_type(&other, "a boolean")),
        }
    }
}

impl FromJson for u64 {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        match value {
            Value::Number(Number::U64(n)) => Ok(n),
            Value::Number(n @ Number::I64(_)) => Err(JsonError::new(format!(
                "invalid value: integer `{n}`, expected u64"
            ))),
            other => Err(invalid_type(&other, "u64")),
        }
    }
}

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_json(other).map(Some),
        }
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let Value::Array(mut items) = value else {
            return Err(invalid_type(&value, "a sequence"));
        };
        let items = std::mem::take(&mut *items);
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            out.push(T::from_json(item).map_err(|e| e.at(&format!("[{index}]")))?);
        }
        Ok(out)
    }
}

/// A unit variant from its wire name.
fn variant<T: Copy>(
    value: Value,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, JsonError> {
    let Value::String(s) = value else {
        return Err(invalid_type(&value, "a string"));
    };
    all.iter().copied().find(|v| name(*v) == s).ok_or_else(|| {
        let mut message = format!("unknown variant `{s}`, expected one of ");
        for (i, v) in all.iter().enumerate() {
            if i > 0 {
                message.push_str(", ");
            }
            message.push('`');
            message.push_str(name(*v));
            message.push('`');
        }
        JsonError::new(message)
    })
}

impl FromJson for ErrorCode {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        variant(value, &ErrorCode::ALL, ErrorCode::as_str)
    }
}

impl FromJson for AppState {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        variant(value, &AppState::ALL, AppState::as_str)
    }
}

/// The fields of one JSON object, taken by name. A list, not the parsed
/// `BTreeMap`: its removal code would cost the `.wasm` 10 KiB, for objects of
/// a few fields.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn of(value: Value) -> Result<Self, JsonError> {
        match value {
            Value::Object(mut o) => Ok(Self(std::mem::take(&mut *o).into_iter().collect())),
            other => Err(invalid_type(&other, "a map")),
        }
    }

    // Not inlined: once per field type, not once per field (a third of
    // these impls' code).
    #[inline(never)]
    fn take<T: FromJson>(&mut self, name: &str) -> Option<Result<T, JsonError>> {
        let at = self.0.iter().position(|(key, _)| key == name)?;
        let (_, value) = self.0.swap_remove(at);
        Some(T::from_json(value).map_err(|e| e.at(name)))
    }

    /// A field without `#[serde(default)]` (an `Option` one is `None` when
    /// absent, as with serde).
    #[inline(never)]
    fn required<T: FromJson>(&mut self, name: &str) -> Result<T, JsonError> {
        self.take(name)
            .unwrap_or_else(|| Err(JsonError::new(format!("missing field `{name}`"))))
    }

    /// A `#[serde(default)]` field, or an `Option` one.
    #[inline(never)]
    fn or_default<T: FromJson + Default>(&mut self, name: &str) -> Result<T, JsonError> {
        self.take(name).unwrap_or_else(|| Ok(T::default()))
    }
}

impl FromJson for WakeAnswer {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let mut f = Fields::of(value)?;
        Ok(Self {
            app: f.or_default("app")?,
            target: f.or_default("target")?,
            region: f.required("region")?,
            upstream_host: f.required("upstream_host")?,
            linked_apps: f.or_default("linked_apps")?,
            waited_ms: f.or_default("waited_ms")?,
        })
    }
}

impl FromJson for LinkedResult {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let mut f = Fields::of(value)?;
        Ok(Self {
            app: f.required("app")?,
            running: f.required("running")?,
            error: f.or_default("error")?,
        })
    }
}

impl FromJson for WaitingAnswer {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let mut f = Fields::of(value)?;
        Ok(Self {
            waiting: f.required("waiting")?,
            app: f.or_default("app")?,
            target: f.required("target")?,
            linked_apps: f.or_default("linked_apps")?,
            expected_ms: f.or_default("expected_ms")?,
        })
    }
}

impl FromJson for ErrorAnswer {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let mut f = Fields::of(value)?;
        Ok(Self {
            error: f.required("error")?,
            message: f.or_default("message")?,
            retry_after: f.or_default("retry_after")?,
        })
    }
}

impl FromJson for AppStatus {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let mut f = Fields::of(value)?;
        Ok(Self {
            app: f.required("app")?,
            state: f.required("state")?,
        })
    }
}

impl FromJson for StatusAnswer {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let mut f = Fields::of(value)?;
        Ok(Self {
            app: f.or_default("app")?,
            target: f.or_default("target")?,
            ready: f.required("ready")?,
            region: f.or_default("region")?,
            upstream_host: f.or_default("upstream_host")?,
            apps: f.required("apps")?,
            error: f.or_default("error")?,
            reason: f.or_default("reason")?,
            expected_ms: f.or_default("expected_ms")?,
        })
    }
}

impl FromJson for RunningApp {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let mut f = Fields::of(value)?;
        Ok(Self {
            app: f.required("app")?,
            region: f.required("region")?,
            upstream_host: f.required("upstream_host")?,
        })
    }
}

impl FromJson for ActivityAnswer {
    fn from_json(value: Value) -> Result<Self, JsonError> {
        let mut f = Fields::of(value)?;
        Ok(Self {
            awake: f.or_default("awake")?,
            asleep: f.or_default("asleep")?,
        })
    }
}

/// An object's fields, in the order given (serde's: declaration order).
struct Entries<'a>(std::vec::IntoIter<(&'static str, &'a dyn Serialize)>);

impl Map for Entries<'_> {
    fn next(&mut self) -> Option<(Cow<'_, str>, &dyn Serialize)> {
        self.0.next().map(|(k, v)| (Cow::Borrowed(k), v))
    }
}

type Entry<'a> = (&'static str, &'a dyn Serialize);

fn object(entries: Vec<Entry<'_>>) -> Fragment<'_> {
    Fragment::Map(Box::new(Entries(entries.into_iter())))
}

/// `skip_serializing_if = "Option::is_none"`.
fn push_some<'a, T: Serialize>(
    entries: &mut Vec<Entry<'a>>,
    name: &'static str,
    value: &'a Option<T>,
) {
    if let Some(v) = value {
        entries.push((name, v));
    }
}

impl Serialize for ErrorCode {
    fn begin(&self) -> Fragment<'_> {
        Fragment::Str(Cow::Borrowed(self.as_str()))
    }
}

impl Serialize for AppState {
    fn begin(&self) -> Fragment<'_> {
        Fragment::Str(Cow::Borrowed(self.as_str()))
    }
}

impl Serialize for Client {
    fn begin(&self) -> Fragment<'_> {
        Fragment::Str(Cow::Borrowed(self.as_str()))
    }
}

impl Serialize for WakeRequest {
    fn begin(&self) -> Fragment<'_> {
        let mut e: Vec<Entry<'_>> = vec![("app", &self.app), ("region", &self.region)];
        push_some(&mut e, "client", &self.client);
        if self.verify {
            e.push(("verify", &self.verify));
        }
        if self.background {
            e.push(("background", &self.background));
        }
        object(e)
    }
}

impl Serialize for ActivityRequest<'_> {
    fn begin(&self) -> Fragment<'_> {
        let mut e: Vec<Entry<'_>> = vec![("apps", &self.apps)];
        if !self.not_running.is_empty() {
            e.push(("not_running", &self.not_running));
        }
        if !self.held.is_empty() {
            e.push(("held", &self.held));
        }
        push_some(&mut e, "vm", &self.vm);
        push_some(&mut e, "lease_ms", &self.lease_ms);
        object(e)
    }
}

impl Serialize for LocalReplyBody<'_> {
    fn begin(&self) -> Fragment<'_> {
        object(vec![
            ("error", &self.error),
            ("message", &self.message),
            ("app", &self.app),
        ])
    }
}

impl Serialize for AppStatus {
    fn begin(&self) -> Fragment<'_> {
        object(vec![("app", &self.app), ("state", &self.state)])
    }
}

impl Serialize for PublicStatus {
    fn begin(&self) -> Fragment<'_> {
        let mut e: Vec<Entry<'_>> = vec![
            ("app", &self.app),
            ("ready", &self.ready),
            ("apps", &self.apps),
        ];
        push_some(&mut e, "error", &self.error);
        push_some(&mut e, "reason", &self.reason);
        push_some(&mut e, "expected_ms", &self.expected_ms);
        object(e)
    }
}
