//! Which apps the gateway manages: `REGISTRY_IGNORED_APPS` (names, as in
//! Paastis) and `PAASTIS_MANAGED_APPS` (a regular expression over names).
//!
//! An app is managed when it is not ignored and matches the expression
//! (every app when there is none, as in Paastis). An unmanaged app is
//! treated exactly like an ignored one: the scheduler never discovers nor
//! pauses it, and a wake routes to it without ever scaling it (a host rule
//! or the first label may still name it: it is then proxied as it is).

use std::collections::BTreeSet;
use std::fmt;

use regex_lite::Regex;

/// `PAASTIS_MANAGED_APPS`: the apps the gateway may scale.
///
/// Invariant: the expression is matched against the WHOLE name (it is
/// compiled as `^(?:EXPR)$`), so `review` manages the app `review` only,
/// never `my-review-tool-prod`: a pattern that manages too much would pause
/// production apps, so the narrow reading is the safe one.
#[derive(Debug, Clone, Default)]
pub struct ManagedApps {
    /// The expression as written, and compiled anchored; `None` = every app.
    pattern: Option<(String, Regex)>,
}

impl ManagedApps {
    /// Every app (no `PAASTIS_MANAGED_APPS`).
    pub const fn all() -> Self {
        Self { pattern: None }
    }

    /// Compiles `expr`, anchored at both ends. The error is the regex
    /// engine's message.
    pub fn matching(expr: &str) -> Result<Self, String> {
        let regex = Regex::new(&format!("^(?:{expr})$")).map_err(|e| e.to_string())?;
        Ok(Self {
            pattern: Some((expr.to_owned(), regex)),
        })
    }

    /// Whether `app` matches (always, without an expression).
    pub fn matches(&self, app: &str) -> bool {
        self.pattern.as_ref().is_none_or(|(_, re)| re.is_match(app))
    }

    /// The expression as written, if any.
    pub fn pattern(&self) -> Option<&str> {
        self.pattern.as_ref().map(|(expr, _)| expr.as_str())
    }
}

/// Why the gateway leaves an app alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmanaged {
    /// Named in `REGISTRY_IGNORED_APPS`.
    Ignored,
    /// Does not match `PAASTIS_MANAGED_APPS`.
    NotMatching,
}

impl fmt::Display for Unmanaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unmanaged::Ignored => "in REGISTRY_IGNORED_APPS",
            Unmanaged::NotMatching => "not matching PAASTIS_MANAGED_APPS",
        })
    }
}

/// Both settings together, borrowed: the one place that says whether an app
/// is managed.
#[derive(Debug, Clone, Copy)]
pub struct AppScope<'a> {
    pub ignored: &'a BTreeSet<String>,
    pub managed: &'a ManagedApps,
}

impl AppScope<'_> {
    /// Why `app` is left alone, or `None` when the gateway manages it.
    /// Being ignored wins over not matching (it is the more explicit).
    pub fn unmanaged(&self, app: &str) -> Option<Unmanaged> {
        if self.ignored.contains(app) {
            Some(Unmanaged::Ignored)
        } else if !self.managed.matches(app) {
            Some(Unmanaged::NotMatching)
        } else {
            None
        }
    }

    pub fn is_managed(&self, app: &str) -> bool {
        self.unmanaged(app).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_expression_every_app_not_ignored_is_managed() {
        let ignored: BTreeSet<String> = ["paastis-gw".to_owned()].into();
        let managed = ManagedApps::all();
        let scope = AppScope {
            ignored: &ignored,
            managed: &managed,
        };
        assert!(scope.is_managed("any-app-at-all"));
        assert_eq!(scope.unmanaged("paastis-gw"), Some(Unmanaged::Ignored));
    }

    #[test]
    fn the_expression_must_match_the_whole_name() {
        let managed = ManagedApps::matching("review-.*|demo-app").unwrap();
        assert!(managed.matches("review-pr12"));
        assert!(managed.matches("demo-app"));
        assert!(!managed.matches("demo-app-prod"), "anchored at the end");
        assert!(!managed.matches("my-review-pr12"), "anchored at the start");
        assert_eq!(managed.pattern(), Some("review-.*|demo-app"));
        let ignored: BTreeSet<String> = ["review-pr1".to_owned()].into();
        let scope = AppScope {
            ignored: &ignored,
            managed: &managed,
        };
        assert_eq!(scope.unmanaged("review-pr1"), Some(Unmanaged::Ignored));
        assert_eq!(scope.unmanaged("prod-api"), Some(Unmanaged::NotMatching));
        assert_eq!(scope.unmanaged("review-pr2"), None);
    }

    #[test]
    fn a_bad_expression_is_refused() {
        assert!(ManagedApps::matching("review-(").is_err());
    }
}
