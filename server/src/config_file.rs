//! `--config FILE`: options from a TOML file, layered under the flags and
//! the environment.
//!
//! Each key is an option's flag name (`max-connections = 5000`), at the top
//! or in any section (`[limits]`). Every key is checked against the option
//! it names, with that option's own parser, before anything starts: an
//! unknown key or a value of the wrong type is refused naming the file, the
//! line and the key. The file's values then reach clap as flags placed
//! before the command line's, and only for options neither the command line
//! nor the environment gives: so the order is flag, environment, file,
//! default, and clap's own checks (options that need or exclude each other)
//! apply to the file's options as to flags. A secret and its `-file`
//! variant count as one option there: `SSE_PUBLISH_TOKEN` in the
//! environment overrides `publish-token-file` in the file.
//!
//! Written over `toml`'s spanned document and clap's `Command` rather than
//! with a layering crate: the options stay defined once, in
//! [`crate::Config`], and keep their parsers, checks and environment
//! variables; the file only adds what a flag is missing.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::builder::Resettable;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A file's options, each checked against the option it names.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    entries: Vec<Entry>,
}

/// One key of the file.
#[derive(Debug)]
struct Entry {
    /// The option's id (`max_connections`).
    id: String,
    /// The option that replaces this one (a secret and its `-file`).
    sibling: Option<String>,
    /// The line of its key.
    line: usize,
    /// The option as flags: `--max-connections=5000`.
    flags: Vec<OsString>,
}

/// Why a file's options cannot be used: the file, and where in it.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {problem}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// The line, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong, naming the key.
    pub problem: String,
}

/// Keys a file cannot hold: they are not options of the server.
const NOT_KEYS: [&str; 3] = ["config", "help", "version"];

impl ConfigFile {
    /// Reads `path` and checks each key against the options of `command`.
    ///
    /// # Errors
    /// [`FileError`] when the file cannot be read or is not TOML, or a key
    /// names no option, is given twice, or has a value its option refuses.
    pub fn read(path: &Path, command: &Command) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            path: path.to_owned(),
            line: None,
            problem: format!("cannot read the config file: {e}"),
        })?;
        let table = DeTable::parse(&text).map_err(|e| FileError {
            path: path.to_owned(),
            line: e.span().map(|span| line_of(&text, span.start)),
            problem: format!("not TOML: {}", e.message()),
        })?;
        let probe = command.clone().mut_args(|arg| arg.env(Resettable::Reset));
        let mut reader = Reader {
            path,
            text: &text,
            command,
            probe: &probe,
            seen: BTreeMap::new(),
            entries: Vec::new(),
        };
        for (key, value) in table.get_ref() {
            match value.get_ref() {
                DeValue::Table(section) => {
                    for (key, value) in section {
                        reader.entry(key, value, true)?;
                    }
                }
                _ => reader.entry(key, value, false)?,
            }
        }
        Ok(Self {
            path: path.to_owned(),
            entries: reader.entries,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's options as flags, leaving out (and forgetting) those that
    /// `given` (the command line parsed without the file) has from a flag
    /// or the environment.
    pub fn flags_unless_given(&mut self, given: &ArgMatches) -> Vec<OsString> {
        let explicit = |id: &str| {
            matches!(
                given.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        self.entries.retain(|entry| {
            !explicit(&entry.id) && !entry.sibling.as_deref().is_some_and(explicit)
        });
        self.entries
            .iter()
            .flat_map(|entry| entry.flags.iter().cloned())
            .collect()
    }

    /// The line of the option with `id`, when the file gives it (and
    /// neither a flag nor the environment does).
    pub fn line_of(&self, id: &str) -> Option<usize> {
        self.entries.iter().find(|e| e.id == id).map(|e| e.line)
    }
}

/// The file being checked.
struct Reader<'a> {
    path: &'a Path,
    text: &'a str,
    command: &'a Command,
    /// `command` without environment variables, to check one value.
    probe: &'a Command,
    /// Each key's line, for a key given twice.
    seen: BTreeMap<String, usize>,
    entries: Vec<Entry>,
}

impl Reader<'_> {
    fn entry(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        in_section: bool,
    ) -> Result<(), FileError> {
        let name = key.get_ref().as_ref();
        let line = line_of(self.text, key.span().start);
        let fail = |problem: String| FileError {
            path: self.path.to_owned(),
            line: Some(line),
            problem,
        };
        let arg = self
            .command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(name) && !NOT_KEYS.contains(&name));
        let Some(arg) = arg else {
            let what = if value.get_ref().is_table() && in_section {
                "sections hold options, not other sections"
            } else if name == "config" {
                "a config file cannot name another"
            } else {
                "no option has this name"
            };
            return Err(fail(format!("unknown key `{name}`: {what}")));
        };
        if let Some(first) = self.seen.insert(name.to_owned(), line) {
            return Err(fail(format!(
                "`{name}` is given twice (first on line {first})"
            )));
        }
        let flags = flags(self.probe, arg, value.get_ref())
            .map_err(|problem| fail(format!("`{name}`: {problem}")))?;
        self.entries.push(Entry {
            id: arg.get_id().to_string(),
            sibling: sibling(self.command, name),
            line,
            flags,
        });
        Ok(())
    }
}

/// The 1-based line of the byte at `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The option a secret and its `-file` variant share: `publish-token` for
/// `publish-token-file`, and back.
fn sibling(command: &Command, name: &str) -> Option<String> {
    let other = match name.strip_suffix("-file") {
        Some(inline) => inline.to_owned(),
        None => format!("{name}-file"),
    };
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(other.as_str()))
        .map(|arg| arg.get_id().to_string())
}

/// `value` as the flags that give it to `arg`, each value checked by the
/// option's own parser.
fn flags(probe: &Command, arg: &Arg, value: &DeValue<'_>) -> Result<Vec<OsString>, String> {
    let long = arg.get_long().unwrap_or_default();
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match value {
            DeValue::Boolean(true) => Ok(vec![format!("--{long}").into()]),
            DeValue::Boolean(false) => Ok(Vec::new()),
            other => Err(format!("expects true or false, not {}", a(other))),
        };
    }
    let list = matches!(arg.get_action(), ArgAction::Append);
    let values: Vec<String> = match value {
        DeValue::Array(items) if list => items
            .iter()
            .map(|item| scalar(arg, item.get_ref()))
            .collect::<Result<_, _>>()?,
        DeValue::Array(_) => return Err("takes one value, not a list".to_owned()),
        other => vec![scalar(arg, other)?],
    };
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let parts: Vec<&str> = match arg.get_value_delimiter() {
            Some(delimiter) => value.split(delimiter).collect(),
            None => vec![value.as_str()],
        };
        for part in parts {
            check(probe, arg, part)?;
        }
        out.push(OsString::from(format!("--{long}={value}")));
    }
    Ok(out)
}

/// One value as the text a flag would carry: an integer for an option that
/// counts, a string for any other.
fn scalar(arg: &Arg, value: &DeValue<'_>) -> Result<String, String> {
    let parsed = arg.get_value_parser().type_id();
    let counts = integer_types().iter().any(|t| parsed == *t);
    match value {
        DeValue::Integer(n) if counts => i128::from_str_radix(n.as_str(), n.radix())
            .map(|n| n.to_string())
            .map_err(|e| format!("{n}: {e}")),
        DeValue::String(s) if !counts => Ok(s.to_string()),
        other => Err(format!(
            "expects {}, not {}",
            if counts { "an integer" } else { "a string" },
            a(other)
        )),
    }
}

/// "a string", "an integer": the TOML type of `value`.
fn a(value: &DeValue<'_>) -> String {
    let name = value.type_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// The types of the options that take a number.
fn integer_types() -> [TypeId; 6] {
    [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i64>(),
    ]
}

/// `value` through the option's parser, as the flag would go: `probe` is
/// the command without environment variables, parsing this one flag (what
/// the flag needs or excludes is checked once the file is merged).
fn check(probe: &Command, arg: &Arg, value: &str) -> Result<(), String> {
    let flag = format!("--{}={value}", arg.get_long().unwrap_or_default());
    let bin = probe.get_name().to_owned();
    match probe.clone().try_get_matches_from([bin, flag]) {
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::ValueValidation | ErrorKind::InvalidValue
            ) =>
        {
            let reason = std::error::Error::source(&error)
                .map(ToString::to_string)
                .or_else(|| possible_values(arg))
                .unwrap_or_else(|| error.kind().to_string());
            Err(format!("invalid value {value:?}: {reason}"))
        }
        _ => Ok(()),
    }
}

/// "one of a, b" for an option with a fixed set of values.
fn possible_values(arg: &Arg) -> Option<String> {
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|v| v.get_name().to_owned())
        .collect();
    (!values.is_empty()).then(|| format!("one of {}", values.join(", ")))
}

/// The command line with the `--config` file's options added: the
/// matches of the options' command (the top level, or `check-config`),
/// and the file when one was given.
#[derive(Debug)]
pub struct Layered {
    /// The arguments with the file's options before the command line's.
    pub args: Vec<OsString>,
    /// The file, when `--config` (or `SSE_CONFIG`) named one.
    pub file: Option<ConfigFile>,
}

/// Adds the `--config` file's options to `args`. `command` is the whole
/// command line; `subcommand` the name of the subcommand whose options a
/// file may give besides the top level's (`check-config`).
///
/// # Errors
/// [`FileError`] when the file cannot be used.
pub fn layer(
    command: &Command,
    args: Vec<OsString>,
    subcommand: &str,
) -> Result<Layered, FileError> {
    // A first look, lenient, only for `--config` and what the command line
    // and the environment give: the strict parse comes after, with the file.
    let Ok(first) = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&args)
    else {
        return Ok(Layered { args, file: None });
    };
    let (options, given, at) = match first.subcommand() {
        Some((name, given)) if name == subcommand => {
            let Some(options) = command.find_subcommand(name) else {
                return Ok(Layered { args, file: None });
            };
            let at = args
                .iter()
                .position(|a| a == name)
                .map_or(args.len(), |i| i + 1);
            (options, given, at)
        }
        Some(_) => return Ok(Layered { args, file: None }),
        None => (command, &first, 1.min(args.len())),
    };
    let Some(path) = given.try_get_one::<PathBuf>("config").ok().flatten() else {
        return Ok(Layered { args, file: None });
    };
    let mut file = ConfigFile::read(path, options)?;
    let mut args = args;
    let flags = file.flags_unless_given(given);
    args.splice(at..at, flags);
    Ok(Layered {
        args,
        file: Some(file),
    })
}
