//! `paastis.yml`: the rules file as written by users of the Node.js
//! Paastis, parsed and checked into [`AppRules`].

use std::path::Path;

use paastis_rules::{AppRule, AppRules, Strategy};
use serde::Deserialize;

use super::error::ConfigError;

/// `paastis.yml` as written by users of the Node.js Paastis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    pattern: String,
    app_name: Option<String>,
    linked_apps: Option<Vec<String>>,
    /// Minutes.
    app_max_idle_time: Option<u64>,
    region: Option<String>,
    /// `blocking` or `waiting_page`.
    strategy: Option<String>,
    /// The path probed on the app's front to tell that it is up (`/`).
    health_path: Option<String>,
}

/// Parses and checks the text of a rules file. `file` only names it in
/// errors.
pub fn parse_rules(
    file: &Path,
    text: &str,
    default_max_idle: u64,
) -> Result<AppRules, ConfigError> {
    let parsed: RulesFile = if text.trim().is_empty() {
        RulesFile { rules: Vec::new() }
    } else {
        serde_yaml::from_str(text).map_err(|e| ConfigError::ParseRules {
            file: file.to_owned(),
            message: e.to_string(),
        })?
    };
    let rules = parsed
        .rules
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let strategy = raw
                .strategy
                .as_deref()
                .map(|s| Strategy::parse_field(index, s))
                .transpose();
            strategy
                .and_then(|strategy| {
                    AppRule::new(
                        index,
                        &raw.pattern,
                        raw.app_name.as_deref(),
                        raw.linked_apps,
                        raw.app_max_idle_time,
                        raw.region.as_deref(),
                    )
                    .map(|rule| rule.with_strategy(strategy))
                    .and_then(|rule| rule.with_health_path(index, raw.health_path.as_deref()))
                })
                .map_err(|source| ConfigError::Rule {
                    file: file.to_owned(),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppRules::new(rules, default_max_idle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_errors_name_file_rule_and_field() {
        let file = Path::new("conf/paastis.yml");
        let e = parse_rules(file, "rules:\n  - pattern: 'a('\n", 15)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("conf/paastis.yml: rules[0].pattern:"), "{e}");
        let e = parse_rules(
            file,
            "rules:\n  - pattern: x\n  - pattern: '(.*)-front'\n    linked_apps: ['$1-api', 'Nope']\n",
            15,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "conf/paastis.yml: rules[1].linked_apps[1]: \"Nope\" is not a valid Scalingo app name"
        );
        let e = parse_rules(file, "rules:\n  - pattern: x\n    linked_app: [a]\n", 15)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("conf/paastis.yml: rules[0]: unknown field `linked_app`"),
            "{e}"
        );
        let e = parse_rules(
            file,
            "rules:\n  - pattern: x\n    app_max_idle_time: -3\n",
            15,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("conf/paastis.yml: rules[0].app_max_idle_time:"),
            "{e}"
        );
        let e = parse_rules(
            file,
            "rules:\n  - pattern: x\n  - pattern: y\n    strategy: page\n",
            15,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "conf/paastis.yml: rules[1].strategy: \"page\" is not a strategy (blocking or waiting_page)"
        );
    }

    #[test]
    fn reads_paastis_readme_rules() {
        let text = r#"
rules:
  - pattern: 'app-review-pr(\d+)-(back|front)'
    linked_apps:
      - "app-review-pr$1-front"
  - pattern: "hello-fastify"
    linked_apps:
      - "hellofastifydeux"
  - pattern: "hello-fastify-2"
    app_name: "hellofastifydeux"
  - pattern: ".*fastify.*"
    app_max_idle_time: 0
"#;
        let rules = parse_rules(Path::new("paastis.yml"), text, 15).unwrap();
        assert_eq!(rules.len(), 4);
        let r = rules.resolve("app-review-pr7-back").unwrap();
        assert_eq!(r.linked_apps, vec!["app-review-pr7-front"]);
        assert!(parse_rules(Path::new("p.yml"), "", 15).unwrap().is_empty());
    }
}
