//! `paastis.yml`: the rules file as written by users of the Node.js
//! Paastis, parsed and checked into [`AppRules`].
//!
//! Bounded before the YAML parser sees it: at most [`MAX_RULES_FILE_BYTES`]
//! and [`MAX_NESTING`] levels of flow brackets (a file of 100k nested
//! brackets took the parser minutes), each refused at once with an error
//! naming the file.

use std::io::Read;
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

/// Largest rules file read (1 MiB: thousands of rules).
pub const MAX_RULES_FILE_BYTES: u64 = 1 << 20;
/// Deepest nesting of `[` and `{` accepted; a rules file needs 2 or 3.
pub const MAX_NESTING: usize = 32;

/// Reads the rules file at `path`, refusing one larger than
/// [`MAX_RULES_FILE_BYTES`] without reading it all.
pub fn read_rules_file(path: &Path) -> Result<String, std::io::Error> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_RULES_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_RULES_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_RULES_FILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// The deepest nesting of flow collections (`[`, `{`) in `text`, outside
/// quoted scalars and comments. An over-estimate at worst (a bracket in a
/// plain scalar, such as a regex's `[0-9]`, counts), never an
/// under-estimate; stops counting past `limit`.
fn flow_depth(text: &str, limit: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    let mut previous = '\n';
    while let Some(c) = chars.next() {
        match c {
            '#' if previous.is_whitespace() => {
                // A comment, to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                previous = '\n';
                continue;
            }
            '\'' | '"' if !previous.is_alphanumeric() => {
                // A quoted scalar: '' escapes in single quotes, \ in double.
                while let Some(q) = chars.next() {
                    if q == '\\' && c == '"' {
                        chars.next();
                    } else if q == c {
                        if c == '\'' && chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    return deepest;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    deepest
}

/// Parses and checks the text of a rules file. `file` only names it in
/// errors.
pub fn parse_rules(
    file: &Path,
    text: &str,
    default_max_idle: u64,
) -> Result<AppRules, ConfigError> {
    let parse_error = |message: String| ConfigError::ParseRules {
        file: file.to_owned(),
        message,
    };
    if text.len() as u64 > MAX_RULES_FILE_BYTES {
        return Err(parse_error(format!(
            "larger than {MAX_RULES_FILE_BYTES} bytes"
        )));
    }
    if flow_depth(text, MAX_NESTING) > MAX_NESTING {
        return Err(parse_error(format!(
            "nested deeper than {MAX_NESTING} levels of [ and {{"
        )));
    }
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
    fn deep_or_huge_files_are_refused_at_once_naming_the_file() {
        let file = Path::new("conf/paastis.yml");
        for text in [
            format!("rules: {}{}", "[".repeat(100_000), "]".repeat(100_000)),
            format!("rules: {}", "{a: ".repeat(100_000)),
            format!(
                "rules:\n  - pattern: x\n    linked_apps: {}",
                "[".repeat(33)
            ),
        ] {
            let e = parse_rules(file, &text, 15).unwrap_err().to_string();
            assert_eq!(
                e,
                "conf/paastis.yml: nested deeper than 32 levels of [ and {"
            );
        }
        let huge = format!("# {}\n", "x".repeat(2 << 20));
        let e = parse_rules(file, &huge, 15).unwrap_err().to_string();
        assert_eq!(e, "conf/paastis.yml: larger than 1048576 bytes");
    }

    #[test]
    fn brackets_in_quotes_comments_and_regexes_are_fine() {
        let deep = "[".repeat(40);
        let text = format!(
            "# {deep}\nrules:\n  - pattern: '{deep}x'\n    linked_apps: [\"a{deep}\"] # {deep}\n  - pattern: app-[0-9]+-[a-z]\n"
        );
        assert_eq!(flow_depth(&text, MAX_NESTING), 1);
        assert_eq!(flow_depth("a: 'it''s [' [x]", 32), 1);
        assert_eq!(flow_depth(r#"a: "q\"[" [x]"#, 32), 1);
    }

    #[test]
    fn a_file_larger_than_the_bound_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paastis.yml");
        std::fs::write(&path, vec![b'#'; (MAX_RULES_FILE_BYTES + 1) as usize]).unwrap();
        let e = read_rules_file(&path).unwrap_err();
        assert_eq!(e.to_string(), "larger than 1048576 bytes");
        std::fs::write(&path, "rules: []\n").unwrap();
        assert_eq!(read_rules_file(&path).unwrap(), "rules: []\n");
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
