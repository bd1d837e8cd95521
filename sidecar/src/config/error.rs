//! [`ConfigError`]: what is wrong with the configuration, naming the
//! variable, or the file, rule and field.

use std::path::PathBuf;

use paastis_rules::AppRuleError;
use thiserror::Error;

/// A configuration error. Its text is printed as `invalid configuration: ...`
/// and the process exits with code 64.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {message}")]
    ReadRules { file: PathBuf, message: String },
    #[error("{file}: {message}")]
    ParseRules { file: PathBuf, message: String },
    #[error("{file}: {source}")]
    Rule {
        file: PathBuf,
        #[source]
        source: AppRuleError,
    },
    #[error("{file}: {message}", file = file.display())]
    EnvFile { file: PathBuf, message: String },
    #[error("{name}: {message}")]
    Env { name: &'static str, message: String },
}

pub(super) fn env_error(name: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Env {
        name,
        message: message.into(),
    }
}
