//! The app rules of `paastis.yml`, with the semantics of the Node.js Paastis:
//! every rule whose `pattern` matches the app name applies, in file order, a
//! later rule overriding the fields an earlier one set; `app_name` and
//! `linked_apps` may use `$1..$9` from the pattern's groups. Beyond Paastis,
//! a rule may pin a `region` and pick a wake `strategy` ([`Strategy`]).

use std::collections::HashSet;

use regex_lite::Regex;
use thiserror::Error;

use crate::app::is_valid_app_name;
use crate::host::{check_region, RuleError};
use crate::template::{highest_group, interpolate};

/// How many apps one wake may touch (the app plus its linked apps, followed
/// recursively). Bounds the work a rule set with a long chain can cause.
pub const MAX_LINKED_APPS: usize = 32;

/// Longest `health_path` accepted.
pub const MAX_HEALTH_PATH: usize = 256;

/// The path the gateway probes on an app's front to tell that it is up,
/// when no rule gives one.
pub const DEFAULT_HEALTH_PATH: &str = "/";

/// Whether `path` can be a `health_path`: starts with `/`, visible ASCII
/// only (it goes into a request line as is), not too long.
pub fn is_valid_health_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= MAX_HEALTH_PATH
        && path.bytes().all(|b| b.is_ascii_graphic())
}

/// A configuration error in an app rule; the field names follow `paastis.yml`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AppRuleError {
    #[error("rules[{index}].pattern: {message}")]
    InvalidPattern { index: usize, message: String },
    #[error("rules[{index}].{field}: uses ${group} but the pattern has only {groups} group(s)")]
    MissingGroup {
        index: usize,
        field: String,
        group: usize,
        groups: usize,
    },
    #[error("rules[{index}].{field}: {value:?} is not a valid Scalingo app name")]
    InvalidAppName {
        index: usize,
        field: String,
        value: String,
    },
    #[error("rules[{index}].strategy: {value:?} is not a strategy (blocking or waiting_page)")]
    InvalidStrategy { index: usize, value: String },
    #[error("rules[{index}].health_path: {value:?} is not a path (it starts with `/`, at most {MAX_HEALTH_PATH} visible ASCII characters)")]
    InvalidHealthPath { index: usize, value: String },
    #[error("rules[{index}].keep_awake[{position}]: {value:?} is not a window ({message}); write e.g. \"Mon-Fri 08:30-19:00 Europe/Paris\"")]
    InvalidKeepAwake {
        index: usize,
        position: usize,
        value: String,
        message: String,
    },
    #[error("rules[{index}].prewarm: {value} minutes is more than {MAX_PREWARM_MINUTES}")]
    InvalidPrewarm { index: usize, value: u64 },
    #[error(transparent)]
    Region(#[from] RuleError),
}

/// Longest `prewarm` accepted, in minutes (a day).
pub const MAX_PREWARM_MINUTES: u64 = 24 * 60;

/// How a request for a sleeping app is answered while the app wakes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Hold the request until the app runs (or the wake fails).
    #[default]
    Blocking,
    /// Browsers get at once a page that shows the wake and reloads itself
    /// when the app runs; other clients are held as with `Blocking`.
    WaitingPage,
}

impl Strategy {
    /// The name used in `paastis.yml` and the environment.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Blocking => "blocking",
            Self::WaitingPage => "waiting_page",
        }
    }

    /// Parses `blocking` or `waiting_page` (exactly).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "blocking" => Some(Self::Blocking),
            "waiting_page" => Some(Self::WaitingPage),
            _ => None,
        }
    }

    /// Parses the `strategy` field of rule `index`.
    pub fn parse_field(index: usize, value: &str) -> Result<Self, AppRuleError> {
        Self::parse(value).ok_or_else(|| AppRuleError::InvalidStrategy {
            index,
            value: value.to_owned(),
        })
    }
}

/// Raised when a rule turns a valid requested name into an invalid one
/// (through a capture) at resolution time.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("rules[{index}].{field} gives {value:?} for app {app:?}, which is not a valid Scalingo app name")]
pub struct ResolveError {
    pub index: usize,
    pub field: &'static str,
    pub value: String,
    pub app: String,
}

/// One `rules:` item.
#[derive(Debug, Clone)]
pub struct AppRule {
    pattern: Regex,
    app_name: Option<String>,
    linked_apps: Option<Vec<String>>,
    /// Minutes, as in Paastis.
    app_max_idle_time: Option<u64>,
    region: Option<String>,
    strategy: Option<Strategy>,
    health_path: Option<String>,
    /// Keep-awake window texts, checked by whoever builds the rule (this
    /// crate knows no calendar: the filter never needs one).
    keep_awake: Option<Vec<String>>,
    /// Minutes.
    prewarm: Option<u64>,
}

impl AppRule {
    /// Compiles and checks one rule. As in Paastis (`RegExp.test`), the
    /// pattern is not anchored: write `^...$` to match whole names.
    pub fn new(
        index: usize,
        pattern: &str,
        app_name: Option<&str>,
        linked_apps: Option<Vec<String>>,
        app_max_idle_time: Option<u64>,
        region: Option<&str>,
    ) -> Result<Self, AppRuleError> {
        let compiled = Regex::new(pattern).map_err(|e| AppRuleError::InvalidPattern {
            index,
            message: e.to_string(),
        })?;
        let groups = compiled.captures_len() - 1;
        let check = |field: String, template: &str| -> Result<(), AppRuleError> {
            let group = highest_group(template);
            if group > groups {
                return Err(AppRuleError::MissingGroup {
                    index,
                    field,
                    group,
                    groups,
                });
            }
            // A template without `$` is a literal name: check it now.
            if !template.contains('$') && !is_valid_app_name(template) {
                return Err(AppRuleError::InvalidAppName {
                    index,
                    field,
                    value: template.to_owned(),
                });
            }
            Ok(())
        };
        if let Some(name) = app_name {
            check("app_name".to_owned(), name)?;
        }
        for (i, linked) in linked_apps.iter().flatten().enumerate() {
            check(format!("linked_apps[{i}]"), linked)?;
        }
        if let Some(region) = region {
            check_region(&format!("rules[{index}].region"), region)?;
        }
        Ok(Self {
            pattern: compiled,
            app_name: app_name.map(str::to_owned),
            linked_apps,
            app_max_idle_time,
            region: region.map(str::to_owned),
            strategy: None,
            health_path: None,
            keep_awake: None,
            prewarm: None,
        })
    }

    /// Sets the rule's `strategy` (none: the rule leaves it as it was).
    pub fn with_strategy(mut self, strategy: Option<Strategy>) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the rule's `health_path` (none: the rule leaves it as it was);
    /// `index` names the rule in the error.
    pub fn with_health_path(
        mut self,
        index: usize,
        path: Option<&str>,
    ) -> Result<Self, AppRuleError> {
        if let Some(path) = path {
            if !is_valid_health_path(path) {
                return Err(AppRuleError::InvalidHealthPath {
                    index,
                    value: path.to_owned(),
                });
            }
        }
        self.health_path = path.map(str::to_owned);
        Ok(self)
    }

    /// Sets the rule's `keep_awake` windows, as written (the caller has
    /// checked each text), and its `prewarm` minutes (at most
    /// [`MAX_PREWARM_MINUTES`]); none: the rule leaves them as they were.
    pub fn with_keep_awake(
        mut self,
        index: usize,
        windows: Option<Vec<String>>,
        prewarm: Option<u64>,
    ) -> Result<Self, AppRuleError> {
        if let Some(value) = prewarm.filter(|m| *m > MAX_PREWARM_MINUTES) {
            return Err(AppRuleError::InvalidPrewarm { index, value });
        }
        self.keep_awake = windows;
        self.prewarm = prewarm;
        Ok(self)
    }
}

/// What the rules say about one requested app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedApp {
    /// The app to manage (after `app_name`).
    pub name: String,
    /// Its linked apps, direct only, deduplicated, never itself.
    pub linked_apps: Vec<String>,
    /// Minutes of idleness before the app is paused.
    pub max_idle_minutes: u64,
    /// The region the rule pins, if any.
    pub region: Option<String>,
    /// How a request for it is answered while it wakes.
    pub strategy: Strategy,
    /// The path probed on its front to tell that it is up
    /// ([`DEFAULT_HEALTH_PATH`] unless a rule says otherwise).
    pub health_path: String,
    /// Keep-awake windows, as written (the last rule that gives some wins).
    pub keep_awake: Vec<String>,
    /// Minutes before a keep-awake window opens when a sleeping app is woken.
    pub prewarm_minutes: u64,
}

/// The ordered rule list plus the default idle time and strategy.
#[derive(Debug, Clone)]
pub struct AppRules {
    rules: Vec<AppRule>,
    default_max_idle_minutes: u64,
    default_strategy: Strategy,
}

impl AppRules {
    pub fn new(rules: Vec<AppRule>, default_max_idle_minutes: u64) -> Self {
        Self {
            rules,
            default_max_idle_minutes,
            default_strategy: Strategy::Blocking,
        }
    }

    /// Sets the strategy of apps no rule gives one.
    pub fn with_default_strategy(mut self, strategy: Strategy) -> Self {
        self.default_strategy = strategy;
        self
    }

    pub fn default_strategy(&self) -> Strategy {
        self.default_strategy
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies every matching rule to `requested` (a valid app name).
    pub fn resolve(&self, requested: &str) -> Result<ResolvedApp, ResolveError> {
        let mut resolved = ResolvedApp {
            name: requested.to_owned(),
            linked_apps: Vec::new(),
            max_idle_minutes: self.default_max_idle_minutes,
            region: None,
            strategy: self.default_strategy,
            health_path: DEFAULT_HEALTH_PATH.to_owned(),
            keep_awake: Vec::new(),
            prewarm_minutes: 0,
        };
        for (index, rule) in self.rules.iter().enumerate() {
            let Some(captures) = rule.pattern.captures(requested) else {
                continue;
            };
            let valid = |field: &'static str, value: String| {
                if is_valid_app_name(&value) {
                    Ok(value)
                } else {
                    Err(ResolveError {
                        index,
                        field,
                        value,
                        app: requested.to_owned(),
                    })
                }
            };
            if let Some(template) = &rule.app_name {
                resolved.name = valid("app_name", interpolate(template, &captures))?;
            }
            if let Some(minutes) = rule.app_max_idle_time {
                resolved.max_idle_minutes = minutes;
            }
            if let Some(linked) = &rule.linked_apps {
                resolved.linked_apps = linked
                    .iter()
                    .map(|t| valid("linked_apps", interpolate(t, &captures)))
                    .collect::<Result<_, _>>()?;
            }
            if let Some(region) = &rule.region {
                resolved.region = Some(region.clone());
            }
            if let Some(strategy) = rule.strategy {
                resolved.strategy = strategy;
            }
            if let Some(path) = &rule.health_path {
                resolved.health_path = path.clone();
            }
            if let Some(windows) = &rule.keep_awake {
                resolved.keep_awake = windows.clone();
            }
            if let Some(minutes) = rule.prewarm {
                resolved.prewarm_minutes = minutes;
            }
        }
        let mut seen = HashSet::new();
        let own = resolved.name.clone();
        resolved
            .linked_apps
            .retain(|a| *a != own && *a != requested && seen.insert(a.clone()));
        Ok(resolved)
    }

    /// Every app a wake of `requested` must start: the resolved app first,
    /// then its linked apps followed recursively (each linked app's own rules
    /// apply), each once, at most [`MAX_LINKED_APPS`] in all. A cycle
    /// (`a -> b -> a`) ends where it meets an app already taken.
    pub fn wake_set(&self, requested: &str) -> Result<Vec<ResolvedApp>, ResolveError> {
        let root = self.resolve(requested)?;
        let mut seen: HashSet<String> = HashSet::from([root.name.clone(), requested.to_owned()]);
        let mut queue: Vec<String> = root.linked_apps.clone();
        let mut out = vec![root];
        let mut next = 0;
        while next < queue.len() && out.len() < MAX_LINKED_APPS {
            let name = queue[next].clone();
            next += 1;
            if !seen.insert(name.clone()) {
                continue;
            }
            let app = self.resolve(&name)?;
            if app.name != name && !seen.insert(app.name.clone()) {
                continue;
            }
            queue.extend(app.linked_apps.iter().cloned());
            out.push(app);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, app_name: Option<&str>, linked: &[&str], idle: Option<u64>) -> AppRule {
        let linked = (!linked.is_empty()).then(|| linked.iter().map(|s| s.to_string()).collect());
        AppRule::new(0, pattern, app_name, linked, idle, None).unwrap()
    }

    /// The example of Paastis's own README.
    fn paastis_readme() -> AppRules {
        AppRules::new(
            vec![
                rule(
                    r"app-review-pr(\d+)-(back|front)",
                    None,
                    &["app-review-pr$1-front"],
                    None,
                ),
                rule("hello-fastify", None, &["hellofastifydeux"], None),
                rule("hello-fastify-2", Some("hellofastifydeux"), &[], None),
                rule(".*fastify.*", None, &[], Some(0)),
            ],
            15,
        )
    }

    #[test]
    fn every_matching_rule_applies_in_order() {
        let rules = paastis_readme();
        let back = rules.resolve("app-review-pr12-back").unwrap();
        assert_eq!(back.name, "app-review-pr12-back");
        assert_eq!(back.linked_apps, vec!["app-review-pr12-front"]);
        assert_eq!(back.max_idle_minutes, 15);

        // "hello-fastify-2" matches rules 1, 2 and 3: renamed, linked, idle 0.
        let hf2 = rules.resolve("hello-fastify-2").unwrap();
        assert_eq!(hf2.name, "hellofastifydeux");
        assert_eq!(
            hf2.linked_apps,
            Vec::<String>::new(),
            "an app is never linked to itself"
        );
        assert_eq!(hf2.max_idle_minutes, 0);
    }

    #[test]
    fn front_is_not_linked_to_itself() {
        let front = paastis_readme().resolve("app-review-pr12-front").unwrap();
        assert!(front.linked_apps.is_empty());
    }

    #[test]
    fn wake_set_follows_links_and_stops_on_cycles() {
        let rules = AppRules::new(
            vec![
                rule("^alpha-app$", None, &["bravo-app"], None),
                rule("^bravo-app$", None, &["charlie-app", "alpha-app"], Some(5)),
                rule("^charlie-app$", None, &["alpha-app", "bravo-app"], None),
            ],
            15,
        );
        let set = rules.wake_set("alpha-app").unwrap();
        let names: Vec<_> = set.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["alpha-app", "bravo-app", "charlie-app"]);
        assert_eq!(set[1].max_idle_minutes, 5);
    }

    #[test]
    fn wake_set_is_bounded() {
        // n1-app -> n11-app -> n111-app ...: 43 valid names before the length limit.
        let rules = AppRules::new(vec![rule(r"^n(\d+)-app$", None, &["n$11-app"], None)], 15);
        let set = rules.wake_set("n1-app").unwrap();
        assert_eq!(set.len(), MAX_LINKED_APPS);
    }

    #[test]
    fn bad_interpolation_is_an_error_not_a_panic() {
        let rules = AppRules::new(vec![rule(r"^(.*)-front$", Some("$1"), &[], None)], 15);
        let err = rules.resolve("ab-front").unwrap_err();
        assert_eq!(err.field, "app_name");
        assert_eq!(err.value, "ab");
    }

    #[test]
    fn config_errors_name_rule_and_field() {
        let e = AppRule::new(2, "(", None, None, None, None).unwrap_err();
        assert!(e.to_string().starts_with("rules[2].pattern:"), "{e}");
        let e = AppRule::new(1, "(a)", Some("$2-x"), None, None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rules[1].app_name: uses $2 but the pattern has only 1 group(s)"
        );
        let e = AppRule::new(
            4,
            "a",
            None,
            Some(vec!["ok-app-1".into(), "BAD".into()]),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "rules[4].linked_apps[1]: \"BAD\" is not a valid Scalingo app name"
        );
        let e = AppRule::new(0, "a", None, None, None, Some("Nowhere")).unwrap_err();
        assert!(e.to_string().starts_with("rules[0].region:"), "{e}");
        let e = Strategy::parse_field(3, "Waiting-Page").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rules[3].strategy: \"Waiting-Page\" is not a strategy (blocking or waiting_page)"
        );
    }

    #[test]
    fn strategy_follows_the_rules_then_the_default() {
        let waiting = |pattern: &str| {
            AppRule::new(0, pattern, None, None, None, None)
                .unwrap()
                .with_strategy(Some(Strategy::WaitingPage))
        };
        let blocking = AppRule::new(1, "-api$", None, None, None, None)
            .unwrap()
            .with_strategy(Some(Strategy::Blocking));
        let silent = AppRule::new(2, "shop", None, None, Some(5), None).unwrap();
        let rules = AppRules::new(vec![waiting("^shop-"), blocking, silent], 15);
        assert_eq!(rules.default_strategy(), Strategy::Blocking);
        assert_eq!(
            rules.resolve("shop-front").unwrap().strategy,
            Strategy::WaitingPage,
            "a rule without strategy leaves it as it was"
        );
        assert_eq!(
            rules.resolve("shop-api").unwrap().strategy,
            Strategy::Blocking,
            "a later rule wins"
        );
        assert_eq!(
            rules.resolve("blog-app").unwrap().strategy,
            Strategy::Blocking
        );
        let rules = rules.with_default_strategy(Strategy::WaitingPage);
        assert_eq!(
            rules.resolve("blog-app").unwrap().strategy,
            Strategy::WaitingPage
        );
        assert_eq!(
            rules.resolve("shop-api").unwrap().strategy,
            Strategy::Blocking
        );
        for s in [Strategy::Blocking, Strategy::WaitingPage] {
            assert_eq!(Strategy::parse(s.as_str()), Some(s));
        }
        assert_eq!(Strategy::parse("waiting-page"), None);
    }

    #[test]
    fn health_paths_are_checked_and_later_rules_win() {
        let rules = AppRules::new(
            vec![
                rule("^shop-", None, &[], None)
                    .with_health_path(0, Some("/healthz"))
                    .unwrap(),
                rule("^shop-api$", None, &[], None)
                    .with_health_path(1, Some("/api/ping?quick=1"))
                    .unwrap(),
            ],
            15,
        );
        assert_eq!(rules.resolve("shop-front").unwrap().health_path, "/healthz");
        assert_eq!(
            rules.resolve("shop-api").unwrap().health_path,
            "/api/ping?quick=1"
        );
        assert_eq!(
            rules.resolve("other-app").unwrap().health_path,
            DEFAULT_HEALTH_PATH
        );
        for bad in ["healthz", "/a b", "", "/\u{e9}"] {
            assert_eq!(
                rule("x", None, &[], None)
                    .with_health_path(3, Some(bad))
                    .unwrap_err(),
                AppRuleError::InvalidHealthPath {
                    index: 3,
                    value: bad.to_owned()
                }
            );
        }
    }
}
