//! Scalingo's app-name rule.

/// Shortest app name Scalingo accepts.
pub const APP_NAME_MIN: usize = 6;
/// Longest app name Scalingo accepts.
pub const APP_NAME_MAX: usize = 48;

/// True when `name` is a valid Scalingo app name: 6 to 48 characters of
/// lower-case ASCII letters, digits and single hyphens, with no hyphen at
/// either end (`^[a-z0-9]+(-[a-z0-9]+)*$` plus the length check).
///
/// A name that passes is safe to put in a URL path as is, and a name taken
/// from a Host header must pass before it goes anywhere.
pub fn is_valid_app_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.len() < APP_NAME_MIN || bytes.len() > APP_NAME_MAX {
        return false;
    }
    let mut previous_hyphen = true; // a leading hyphen is refused like a double one
    for &b in bytes {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => previous_hyphen = false,
            b'-' if !previous_hyphen => previous_hyphen = true,
            _ => return false,
        }
    }
    !previous_hyphen
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_scalingo_names() {
        for name in [
            "my-app",
            "app-1x",
            "front-pr123",
            "abcdef",
            "a1b2c3-d4",
            &"a".repeat(48),
        ] {
            assert!(is_valid_app_name(name), "{name}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for name in [
            "",
            "short",
            "-myapp",
            "myapp-",
            "my--app",
            "My-App",
            "my_app",
            "my.app",
            "my app",
            "app%2f..",
            "ápp-one",
            &"a".repeat(49),
        ] {
            assert!(!is_valid_app_name(name), "{name}");
        }
    }

    proptest! {
        #[test]
        fn valid_names_match_the_documented_regex(
            // Name-like strings as often as arbitrary text, so that valid
            // names (and near misses) are generated on purpose.
            name in prop_oneof![
                "\\PC{0,60}",
                "[a-z0-9-]{0,60}",
                "[a-z0-9]{1,12}(-[a-z0-9]{1,12}){0,4}",
            ],
        ) {
            let re = regex_lite::Regex::new("^[a-z0-9]+(-[a-z0-9]+)*$").unwrap();
            let expected = re.is_match(&name) && (6..=48).contains(&name.len());
            prop_assert_eq!(is_valid_app_name(&name), expected);
        }
    }
}
