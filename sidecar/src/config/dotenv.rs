//! The `.env` file of the working directory, read as the Node.js Paastis
//! read it (dotenv): a variable of the process environment wins over the
//! file's. The file is parsed into a map; the process environment is never
//! modified.

use std::collections::HashMap;
use std::path::Path;

use super::error::ConfigError;

/// The variables of `file`, or `None` when there is no such file.
///
/// A line that cannot be parsed is an error naming the file and the line
/// number, never the line itself (it may hold a token).
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
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((name, value)) => {
                vars.insert(name, value);
            }
            Err(dotenvy::Error::LineParse(bad, _)) => {
                let line = text
                    .lines()
                    .position(|l| !l.trim().is_empty() && (l.contains(&bad) || bad.contains(l)))
                    .map_or(String::new(), |n| format!(" at line {}", n + 1));
                return Err(error(format!(
                    "cannot be parsed{line} (KEY=VALUE expected)"
                )));
            }
            Err(e) => return Err(error(e.to_string())),
        }
    }
    Ok(Some(vars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paastis_style_files_and_reports_bad_lines_without_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".env");
        assert_eq!(read_env_file(&file).unwrap(), None, "absent: nothing");
        std::fs::write(
            &file,
            "# comment\nPROVIDER_NAME=scalingo\nSTART_AND_STOP_CHECKING_INTERVAL_CRON=\"*/5 * * * *\"\nREGISTRY_IGNORED_APPS=a-app-1,b-app-2\n",
        )
        .unwrap();
        let vars = read_env_file(&file).unwrap().unwrap();
        assert_eq!(vars["PROVIDER_NAME"], "scalingo");
        assert_eq!(vars["START_AND_STOP_CHECKING_INTERVAL_CRON"], "*/5 * * * *");
        assert_eq!(vars["REGISTRY_IGNORED_APPS"], "a-app-1,b-app-2");

        std::fs::write(&file, "A=1\nTOKEN tk-us-secret\n").unwrap();
        let e = read_env_file(&file).unwrap_err().to_string();
        assert!(
            e.ends_with(".env: cannot be parsed at line 2 (KEY=VALUE expected)"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
    }
}
