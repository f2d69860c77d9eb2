//! `server check-config`: the effective options, each with where its value
//! came from (a flag, the environment, the `--config` file, the default),
//! secrets redacted. The caller then builds the settings as a start would,
//! so that anything a start would refuse is refused here.

use std::fmt;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

use crate::config_file::ConfigFile;

/// Where an option's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The command line.
    Flag,
    /// This environment variable.
    Env(String),
    /// The config file, at this line.
    File(usize),
    /// The option's default.
    Default,
    /// Not given, and no default.
    Unset,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => f.write_str("flag"),
            Self::Env(name) => write!(f, "env {name}"),
            Self::File(line) => write!(f, "file, line {line}"),
            Self::Default => f.write_str("default"),
            Self::Unset => f.write_str("unset"),
        }
    }
}

/// One option's effective value.
#[derive(Debug)]
pub struct Row {
    /// The option's flag name.
    pub key: String,
    /// Its value as given, secrets redacted; empty when unset.
    pub value: String,
    /// Where it came from.
    pub source: Source,
}

/// Every option of the server, as it would start.
#[derive(Debug)]
pub struct Report {
    /// The config file, if any.
    pub file: Option<String>,
    /// The options in the order of `--help`.
    pub rows: Vec<Row>,
}

/// What a secret's value is shown as.
pub const REDACTED: &str = "<redacted>";

/// Options that are not settings of the server.
const NOT_SHOWN: [&str; 3] = ["config", "help", "version"];

impl Report {
    /// The options of `command` as `matches` has them, the file's lines
    /// from `file`.
    pub fn new(command: &Command, matches: &ArgMatches, file: Option<&ConfigFile>) -> Self {
        let rows = command
            .get_arguments()
            .filter(|arg| arg.get_long().is_some_and(|l| !NOT_SHOWN.contains(&l)))
            .map(|arg| row(arg, matches, file))
            .collect();
        Self {
            file: file.map(|f| f.path().display().to_string()),
            rows,
        }
    }
}

fn row(arg: &Arg, matches: &ArgMatches, file: Option<&ConfigFile>) -> Row {
    let id = arg.get_id().as_str();
    let raw: Vec<String> = matches
        .get_raw(id)
        .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let line = file.and_then(|f| f.line_of(id));
    let source = match (matches.value_source(id), line) {
        // A file's `false` for a switch is its default, given in the file.
        (_, Some(line)) => Source::File(line),
        (None, None) => Source::Unset,
        (Some(ValueSource::DefaultValue), None) => Source::Default,
        (Some(ValueSource::EnvVariable), None) => Source::Env(
            arg.get_env()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        (Some(_), None) => Source::Flag,
    };
    let value = if raw.is_empty() {
        String::new()
    } else if arg.is_hide_env_values_set() {
        // The options whose environment values `--help` hides are the
        // secrets.
        REDACTED.to_owned()
    } else {
        raw.iter()
            .map(|v| without_password(v))
            .collect::<Vec<_>>()
            .join(",")
    };
    Row {
        key: arg.get_long().unwrap_or_default().to_owned(),
        value,
        source,
    }
}

/// A URL's password (`redis://user:secret@host/`) redacted; other values as
/// they are.
fn without_password(value: &str) -> String {
    let Ok(url) = url::Url::parse(value) else {
        return value.to_owned();
    };
    match url.password() {
        Some(password) => {
            url.as_str()
                .replacen(&format!(":{password}@"), &format!(":{REDACTED}@"), 1)
        }
        None => value.to_owned(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(path) => writeln!(f, "# config file: {path}")?,
            None => writeln!(f, "# no config file")?,
        }
        let key_width = self.rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
        let value_width = self
            .rows
            .iter()
            .map(|r| r.value.len())
            .max()
            .unwrap_or(0)
            .min(40);
        for row in &self.rows {
            writeln!(
                f,
                "{:key_width$} = {:value_width$}  # {}",
                row.key, row.value, row.source
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_password_is_redacted_and_other_values_kept() {
        assert_eq!(
            without_password("redis://user:hunter2@cache:6379/0"),
            format!("redis://user:{REDACTED}@cache:6379/0")
        );
        assert_eq!(
            without_password("redis://cache:6379/"),
            "redis://cache:6379/"
        );
        assert_eq!(without_password("127.0.0.1:3000"), "127.0.0.1:3000");
    }
}
