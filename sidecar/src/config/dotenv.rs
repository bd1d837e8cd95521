//! The `.env` file of the working directory, read as the Node.js Paastis
//! read it (Node's `dotenv`): a variable of the process environment wins
//! over the file's. The file is parsed into a map; the process environment
//! is never modified.
//!
//! Why not a Rust dotenv crate: the contract here is Node's format, and the
//! Rust ones differ where Paastis files rely on it (they refuse unquoted
//! values with spaces such as `HOOKS_BEFORE_START=echo waking`, and expand
//! `$NAME` inside values, which would change a token holding a `$`).
//!
//! Format (one variable a line): `[export ]NAME=VALUE`; blank lines and
//! `#` comments skipped; an unquoted value ends at `#` and is trimmed; a
//! value in `'...'`, `"..."` or `` `...` `` is taken as written (`\n` in
//! double quotes is a newline). Unlike Node's, a line that is not a
//! variable is an error rather than skipped: a setting silently lost is
//! what this migration must not do.

use std::collections::HashMap;
use std::path::Path;

use super::error::ConfigError;

/// The variables of `file`, or `None` when there is no such file.
///
/// An error names the file and the line number, never the line itself (it
/// may hold a token).
pub fn read_env_file(file: &Path) -> Result<Option<HashMap<String, String>>, ConfigError> {
    let error = |message: String| ConfigError::EnvFile {
        file: file.to_owned(),
        message,
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(format!("cannot read: {e}"))),
    };
    let mut vars = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some((name, value))) => {
                vars.insert(name.to_owned(), value);
            }
            Ok(None) => {}
            Err(why) => return Err(error(format!("line {}: {why}", index + 1))),
        }
    }
    Ok(Some(vars))
}

/// One line: `None` for a blank or comment line.
fn parse_line(line: &str) -> Result<Option<(&str, String)>, &'static str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (name, value) = line.split_once('=').ok_or("not NAME=VALUE")?;
    let name = name.trim();
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid_name {
        return Err("not NAME=VALUE (a name is letters, digits and _)");
    }
    let value = value.trim_start();
    let quote = value
        .chars()
        .next()
        .filter(|c| matches!(c, '\'' | '"' | '`'));
    let value = match quote {
        Some(q) => {
            let inner = &value[1..];
            let end = inner.find(q).ok_or("a quoted value is not closed")?;
            let rest = inner[end + 1..].trim();
            if !(rest.is_empty() || rest.starts_with('#')) {
                return Err("text after a quoted value");
            }
            let inner = &inner[..end];
            if q == '"' {
                inner.replace("\\n", "\n").replace("\\r", "\r")
            } else {
                inner.to_owned()
            }
        }
        None => value
            .split('#')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
    };
    Ok(Some((name, value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paastis_style_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".env");
        assert_eq!(read_env_file(&file).unwrap(), None, "absent: nothing");
        std::fs::write(
            &file,
            "# comment\n\nPROVIDER_NAME=scalingo # the provider\nexport HOOKS_BEFORE_START=echo waking up\nSTART_AND_STOP_CHECKING_INTERVAL_CRON=\"*/5 * * * *\"\nTOKEN='tk-us-a$b#c'\nEMPTY=\n",
        )
        .unwrap();
        let vars = read_env_file(&file).unwrap().unwrap();
        assert_eq!(vars["PROVIDER_NAME"], "scalingo");
        assert_eq!(vars["HOOKS_BEFORE_START"], "echo waking up");
        assert_eq!(vars["START_AND_STOP_CHECKING_INTERVAL_CRON"], "*/5 * * * *");
        assert_eq!(vars["TOKEN"], "tk-us-a$b#c", "no expansion in quotes");
        assert_eq!(vars["EMPTY"], "");
        assert_eq!(vars.len(), 5);
    }

    #[test]
    fn a_line_that_is_not_a_variable_is_an_error_without_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".env");
        for (text, why) in [
            ("A=1\nTOKEN tk-us-secret\n", "line 2: not NAME=VALUE"),
            ("A='tk-us-secret\n", "line 1: a quoted value is not closed"),
            ("MY VAR=tk-us-secret\n", "line 1: not NAME=VALUE (a name"),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = read_env_file(&file).unwrap_err().to_string();
            assert!(e.contains(&format!(".env: {why}")), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
