//! The two bearer tokens of the sidecar, read and checked before a port is
//! bound, never echoed:
//!
//! - `PAASTIS_ADMIN_TOKEN` turns the admin API on ([`admin`]);
//! - `PAASTIS_SIDECAR_TOKEN` is the secret the filter sends on every
//!   callout ([`sidecar_token`]); without it the filter-facing API may only
//!   listen on loopback ([`check_exposure`]).
//!
//! A variable that is set but blank is an error (exit 64), never "off": a
//! template that left a secret empty must not silently open, or close, an
//! API.

use std::net::SocketAddr;

use super::env::Env;
use super::error::{env_error, ConfigError};
use super::AdminConfig;
use crate::scalingo::Secret;

/// Shortest token accepted: a guessable token would be worse than none.
pub const MIN_TOKEN_LEN: usize = 16;

/// Reads the token in `name`: `None` when unset; an error when set but
/// blank, shorter than [`MIN_TOKEN_LEN`], or holding anything but visible
/// ASCII (it goes in a header). The value is never part of an error.
fn token(env: &Env<'_>, name: &'static str) -> Result<Option<Secret>, ConfigError> {
    if env.is_blank(name) {
        return Err(env_error(
            name,
            "is set but blank: give a token, or unset the variable",
        ));
    }
    let Some((name, token)) = env.first(&[name]) else {
        return Ok(None);
    };
    if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(env_error(
            name,
            format!("must be at least {MIN_TOKEN_LEN} visible ASCII characters without spaces"),
        ));
    }
    Ok(Some(Secret::new(token)))
}

/// The admin API's configuration: on only when `PAASTIS_ADMIN_TOKEN` is
/// set (and valid).
pub(super) fn admin(env: &Env<'_>) -> Result<Option<AdminConfig>, ConfigError> {
    let Some(token) = token(env, "PAASTIS_ADMIN_TOKEN")? else {
        return Ok(None);
    };
    let listen = match env.first(&["PAASTIS_ADMIN_LISTEN"]) {
        None => SocketAddr::from(([127, 0, 0, 1], 7071)),
        Some((name, v)) => v
            .parse()
            .map_err(|_| env_error(name, format!("{v:?} is not an address like 127.0.0.1:7071")))?,
    };
    Ok(Some(AdminConfig { listen, token }))
}

/// `PAASTIS_SIDECAR_TOKEN`: the secret the filter's callouts must carry
/// (`Authorization: Bearer TOKEN`, the filter's `sidecar_token`).
pub(super) fn sidecar_token(env: &Env<'_>) -> Result<Option<Secret>, ConfigError> {
    token(env, "PAASTIS_SIDECAR_TOKEN")
}

/// The filter-facing API can wake any app and spend the Scalingo budget: on
/// an address other hosts can reach it requires a token.
pub(super) fn check_exposure(
    listen: SocketAddr,
    token: Option<&Secret>,
) -> Result<(), ConfigError> {
    if token.is_none() && !listen.ip().is_loopback() {
        return Err(env_error(
            "PAASTIS_LISTEN",
            format!(
                "{listen} is not a loopback address: set PAASTIS_SIDECAR_TOKEN (and the filter's sidecar_token) to expose the API"
            ),
        ));
    }
    Ok(())
}
