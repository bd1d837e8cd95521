//! `$1`..`$9` capture interpolation, as in Paastis rules.

use regex_lite::Captures;

/// Replaces every `$1`..`$9` in `template` with the matching capture group
/// (an absent group becomes the empty string). `$0` is the whole match. Any
/// other `$` is kept as is. Paastis replaced only the first occurrence of each
/// `$n`; replacing all of them is a strict superset for the templates people
/// write (each group used once) and what they expect when they use it twice.
pub fn interpolate(template: &str, captures: &Captures<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match after.as_bytes().first() {
            Some(d @ b'0'..=b'9') => {
                let index = usize::from(d - b'0');
                if let Some(m) = captures.get(index) {
                    out.push_str(m.as_str());
                }
                rest = &after[1..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Highest `$n` referenced by `template` (0 when none), to check templates
/// against their pattern's group count when the config is loaded.
pub fn highest_group(template: &str) -> usize {
    let bytes = template.as_bytes();
    bytes
        .windows(2)
        .filter(|w| w[0] == b'$' && w[1].is_ascii_digit())
        .map(|w| usize::from(w[1] - b'0'))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_lite::Regex;

    #[test]
    fn replaces_groups() {
        let re = Regex::new(r"app-review-pr(\d+)-(back|front)").unwrap();
        let caps = re.captures("app-review-pr42-back").unwrap();
        assert_eq!(
            interpolate("app-review-pr$1-front", &caps),
            "app-review-pr42-front"
        );
        assert_eq!(interpolate("$2/$1/$1", &caps), "back/42/42");
        assert_eq!(interpolate("$0", &caps), "app-review-pr42-back");
        assert_eq!(
            interpolate("cost $ and $x and $9", &caps),
            "cost $ and $x and "
        );
        assert_eq!(interpolate("trailing $", &caps), "trailing $");
    }

    #[test]
    fn highest_group_counts() {
        assert_eq!(highest_group("plain"), 0);
        assert_eq!(highest_group("$1-$3"), 3);
    }
}
