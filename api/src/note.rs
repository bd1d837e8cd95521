//! The wake note: what the sidecar instance that led a wake tells the
//! instances that waited on it, through the registry.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// The outcome of a wake, as the leading instance leaves it in the registry
/// (key `woken:APP`) for the instances that waited on it.
///
/// Text form ([`WakeNote::encode`]): a JSON object, `{"region": name,
/// "error": null}` for a success and `{"region": null, "error": message,
/// "code": code}` for a failure. It is the form older instances write and
/// read (they ignore `code`), so instances of both versions can share a
/// registry during an upgrade. An empty text is no note (the leader clears
/// the previous one so that it cannot answer a new wake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeNote {
    /// The app runs in `region`.
    Woken { region: String },
    /// The wake failed: `code` is what the waiters answer (so the leader's
    /// timeout reaches them as `wake_timeout`), `message` is for humans.
    Failed { code: ErrorCode, message: String },
}

#[derive(Serialize, Deserialize)]
struct Repr {
    region: Option<String>,
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
}

impl WakeNote {
    /// The text stored in the registry.
    pub fn encode(&self) -> String {
        let repr = match self {
            Self::Woken { region } => Repr {
                region: Some(region.clone()),
                error: None,
                code: None,
            },
            Self::Failed { code, message } => Repr {
                region: None,
                error: Some(message.clone()),
                code: Some(code.as_str().to_owned()),
            },
        };
        // A struct of strings always serializes.
        serde_json::to_string(&repr).unwrap_or_default()
    }

    /// Reads a stored note; `None` for an empty one (no note yet).
    ///
    /// Accepts every form written so far: a note without `code` (an older
    /// instance) or with a code this version does not know is a
    /// `wake_failed`; a text that is not JSON is a `wake_failed` with that
    /// text as its message.
    pub fn decode(text: &str) -> Option<Self> {
        if text.is_empty() {
            return None;
        }
        let Ok(repr) = serde_json::from_str::<Repr>(text) else {
            return Some(Self::Failed {
                code: ErrorCode::WakeFailed,
                message: text.to_owned(),
            });
        };
        Some(match (repr.region, repr.error) {
            (Some(region), None) => Self::Woken { region },
            (_, error) => Self::Failed {
                code: repr
                    .code
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(ErrorCode::WakeFailed),
                message: error.unwrap_or_default(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let notes = [
            WakeNote::Woken {
                region: "osc-fr1".into(),
            },
            WakeNote::Failed {
                code: ErrorCode::WakeTimeout,
                message: "app \"x\" did not start in time".into(),
            },
            WakeNote::Failed {
                code: ErrorCode::WakeFailed,
                message: String::new(),
            },
        ];
        for note in notes {
            assert_eq!(WakeNote::decode(&note.encode()), Some(note));
        }
    }

    #[test]
    fn text_form_is_the_one_older_instances_read() {
        assert_eq!(
            WakeNote::Woken {
                region: "osc-fr1".into()
            }
            .encode(),
            r#"{"region":"osc-fr1","error":null}"#
        );
        assert_eq!(
            WakeNote::Failed {
                code: ErrorCode::WakeTimeout,
                message: "slow".into()
            }
            .encode(),
            r#"{"region":null,"error":"slow","code":"wake_timeout"}"#
        );
    }

    #[test]
    fn reads_older_and_odd_notes() {
        assert_eq!(WakeNote::decode(""), None);
        // Written by an older instance: no code.
        assert_eq!(
            WakeNote::decode(r#"{"region":null,"error":"boom"}"#),
            Some(WakeNote::Failed {
                code: ErrorCode::WakeFailed,
                message: "boom".into()
            })
        );
        assert_eq!(
            WakeNote::decode(r#"{"region":"osc-fr1","error":null}"#),
            Some(WakeNote::Woken {
                region: "osc-fr1".into()
            })
        );
        // A code from a newer instance.
        assert_eq!(
            WakeNote::decode(r#"{"region":null,"error":"x","code":"quota_exceeded"}"#),
            Some(WakeNote::Failed {
                code: ErrorCode::WakeFailed,
                message: "x".into()
            })
        );
        // Plain text.
        assert_eq!(
            WakeNote::decode("scale refused"),
            Some(WakeNote::Failed {
                code: ErrorCode::WakeFailed,
                message: "scale refused".into()
            })
        );
    }
}
