//! `sidecar_token`: the shared secret the filter sends on every callout
//! (`Authorization: Bearer TOKEN`), checked by a sidecar started with the
//! same `PAASTIS_SIDECAR_TOKEN`. Never logged: its `Debug` is redacted, and
//! no error repeats it.

use std::fmt;

/// Shortest token accepted (the sidecar's own bound).
pub const MIN_SIDECAR_TOKEN_LEN: usize = 16;

/// A checked token: [`MIN_SIDECAR_TOKEN_LEN`] or more visible ASCII
/// characters (a header value with no space).
#[derive(Clone, PartialEq, Eq)]
pub struct SidecarToken(String);

impl SidecarToken {
    /// Checks `value`; the error never contains it.
    pub fn new(value: String) -> Result<Self, String> {
        if value.len() < MIN_SIDECAR_TOKEN_LEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "must be at least {MIN_SIDECAR_TOKEN_LEN} visible ASCII characters without spaces (the sidecar's PAASTIS_SIDECAR_TOKEN)"
            ));
        }
        Ok(Self(value))
    }

    /// The `Authorization` header value of a callout: only for that header.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for SidecarToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_and_never_shown() {
        let token = SidecarToken::new("0123456789abcdef-secret".into()).unwrap();
        assert_eq!(format!("{token:?}"), "[redacted]");
        assert_eq!(token.authorization(), "Bearer 0123456789abcdef-secret");
        for bad in ["short-secret", "0123456789 abcdef-secret", ""] {
            let e = SidecarToken::new(bad.into()).unwrap_err();
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
        }
    }
}
