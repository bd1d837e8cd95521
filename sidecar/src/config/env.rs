//! [`Env`]: reads the environment through a function, so that tests and
//! `check-config` need not touch the process's environment.

use std::collections::HashMap;
use std::time::Duration;

use super::error::{env_error, ConfigError};

/// Reads the environment through `get` (so tests need not touch the
/// process's environment).
pub struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub fn new(get: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { get }
    }

    /// The first of `names` that is set and not blank.
    pub(super) fn first(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names.iter().find_map(|&name| {
            (self.get)(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(|v| (name, v))
        })
    }

    /// True when `name` is set to nothing but blanks (a secret a template
    /// left empty, say).
    pub(super) fn is_blank(&self, name: &str) -> bool {
        (self.get)(name).is_some_and(|v| v.trim().is_empty())
    }

    pub(super) fn count(
        &self,
        name: &'static str,
        default: u32,
        max: u32,
    ) -> Result<u32, ConfigError> {
        match self.first(&[name]) {
            None => Ok(default),
            Some((name, value)) => match value.parse::<u32>() {
                Ok(n) if n > 0 && n <= max => Ok(n),
                _ => Err(env_error(
                    name,
                    format!("{value:?} is not a whole number between 1 and {max}"),
                )),
            },
        }
    }

    pub(super) fn secs(
        &self,
        names: &[&'static str],
        default: u64,
        max: u64,
    ) -> Result<Duration, ConfigError> {
        match self.first(names) {
            None => Ok(Duration::from_secs(default)),
            Some((name, value)) => match value.parse::<u64>() {
                Ok(n) if n > 0 && n <= max => Ok(Duration::from_secs(n)),
                _ => Err(env_error(
                    name,
                    format!("{value:?} is not a number of seconds between 1 and {max}"),
                )),
            },
        }
    }
}

/// Builds an [`Env`] reader over a fixed map, for tests and `check-config`.
pub fn env_from_map(map: &HashMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| map.get(name).cloned()
}
