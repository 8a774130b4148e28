//! Where values come from, and which wins. [`Layers`] holds every source
//! once read (flags, the JSON file, the real environment, `.env`) and looks
//! an option up through them by precedence; each value comes back with its
//! [`Source`], which errors and `revurb config` name. [`ConfigError`] is
//! every way loading can fail, each naming where the bad value came from.
//!
//! Precedence for server options, highest first: flags, the `--config`
//! file, the real environment, `.env`, `./revurb.json` (only without
//! `--config`), defaults. The real environment beats `.env` for every
//! variable, server and app alike ([`Layers::env_var`]).
//!
//! This module does not check values against their kind (`options.rs`) or
//! against each other (`mod.rs`, `apps.rs`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::dotenv;
use super::options::{APP_OPTIONS, Key, OPTIONS, Opt, is_null};
use crate::cli::Flags;

/// Where one value came from, precise enough to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default of this option (its JSON key).
    Default(&'static str),
    /// This command-line flag.
    Flag(&'static str),
    /// This key of this JSON file.
    File { path: PathBuf, key: String },
    /// This variable on this line of this `.env` file.
    DotEnv {
        path: PathBuf,
        line: usize,
        var: &'static str,
    },
    /// This variable of the real environment.
    Env(&'static str),
}

impl Source {
    /// The short label `revurb config` prints after each value.
    pub fn label(&self) -> String {
        match self {
            Source::Default(_) => "default".into(),
            Source::Flag(_) => "command line".into(),
            Source::File { path, .. } => format!("file {}", path.display()),
            Source::DotEnv { .. } => ".env".into(),
            Source::Env(_) => "environment".into(),
        }
    }

    /// Is this from the real environment or `.env`?
    pub fn is_env(&self) -> bool {
        matches!(self, Source::Env(_) | Source::DotEnv { .. })
    }
}

/// The value's name and where it is: `REVERB_SERVER_PORT (environment)`,
/// `--port (command line)`, `REVERB_APP_ID (/srv/app/.env line 3)`,
/// `config file /etc/revurb.json: servers.reverb.port`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default(key) => write!(f, "{key} (default)"),
            Source::Flag(flag) => write!(f, "{flag} (command line)"),
            Source::File { path, key } => write!(f, "config file {}: {key}", path.display()),
            Source::DotEnv { path, line, var } => {
                write!(f, "{var} ({} line {line})", path.display())
            }
            Source::Env(var) => write!(f, "{var} (environment)"),
        }
    }
}

/// Why the configuration cannot be used. Every variant names where the
/// offending value came from (or, for [`ConfigError::NoApp`], where an app
/// was looked for). All of them are exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A value that its option does not accept, or that conflicts with
    /// another option (`why` names the other one).
    Invalid { source: Source, why: String },
    /// The config file cannot be read.
    Unreadable { path: PathBuf, why: String },
    /// The config file is not JSON, or not a JSON object.
    File { path: PathBuf, why: String },
    /// A key in the config file that is no option.
    UnknownKey { path: PathBuf, key: String },
    /// Some but not all of the app's id, key and secret are set.
    IncompleteApp {
        set: Vec<Source>,
        missing: Vec<&'static str>,
    },
    /// Two apps share an `app_id` or a `key`.
    Duplicate {
        field: &'static str,
        value: String,
        first: Box<Source>,
        second: Box<Source>,
    },
    /// No source defines an app.
    NoApp,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Invalid { source, why } => write!(f, "{source}: {why}"),
            ConfigError::Unreadable { path, why } => {
                write!(f, "cannot read config file {}: {why}", path.display())
            }
            ConfigError::File { path, why } => write!(f, "config file {}: {why}", path.display()),
            ConfigError::UnknownKey { path, key } => {
                write!(f, "config file {}: unknown key {key}", path.display())
            }
            ConfigError::IncompleteApp { set, missing } => {
                let mut places: Vec<String> = Vec::new();
                for s in set {
                    let place = match s {
                        Source::DotEnv { path, .. } => path.display().to_string(),
                        _ => "the environment".to_string(),
                    };
                    if !places.contains(&place) {
                        places.push(place);
                    }
                }
                write!(
                    f,
                    "incomplete app: {} not set, while the app's other credentials are set in {}",
                    missing.join(", "),
                    places.join(" and ")
                )
            }
            ConfigError::Duplicate {
                field,
                value,
                first,
                second,
            } => write!(
                f,
                "two apps have the {field} {value:?} ({first} and {second}); each needs its own"
            ),
            ConfigError::NoApp => write!(
                f,
                "no app is configured: set REVERB_APP_ID, REVERB_APP_KEY and REVERB_APP_SECRET \
                 (for example REVERB_APP_ID=app-id REVERB_APP_KEY=app-key REVERB_APP_SECRET=app-secret) \
                 in the environment or ./.env, or list apps under apps.apps in {} or a --config file",
                super::DEFAULT_FILE
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A raw value, before it is checked against its option's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Text(String),
    Json(Value),
}

/// The JSON file that was read, and whether `--config` named it.
pub struct JsonFile {
    pub path: PathBuf,
    pub root: Value,
    pub explicit: bool,
}

/// A `.env` file that was read.
pub struct DotEnvFile {
    pub path: PathBuf,
    pub parsed: dotenv::Parsed,
}

/// Every source, read once.
pub struct Layers<'a> {
    pub flags: &'a Flags,
    pub file: Option<JsonFile>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub dotenv: Option<DotEnvFile>,
}

impl Layers<'_> {
    /// One variable: the real environment if it sets it, else `.env`.
    /// `null`, `(null)` and the empty string count as not set.
    pub fn env_var(&self, var: &'static str) -> Option<(String, Source)> {
        if let Some(v) = (self.env)(var).map(|v| v.trim().to_string())
            && !is_null(&v)
        {
            return Some((v, Source::Env(var)));
        }
        let d = self.dotenv.as_ref()?;
        let e = d.parsed.vars.get(var)?;
        let v = e.value.trim();
        (!is_null(v)).then(|| {
            (
                v.to_string(),
                Source::DotEnv {
                    path: d.path.clone(),
                    line: e.line,
                    var,
                },
            )
        })
    }

    /// One key of the JSON file, when it is read and sets it (not `null`).
    fn file_value(&self, key: &str) -> Option<(Raw, Source)> {
        let f = self.file.as_ref()?;
        let v = json_path(&f.root, key).filter(|v| !v.is_null())?;
        Some((
            Raw::Json(v.clone()),
            Source::File {
                path: f.path.clone(),
                key: key.to_string(),
            },
        ))
    }

    /// A server option through the layers, highest first; `None` when
    /// nothing sets it and it has no default.
    pub fn server(&self, opt: &'static Opt<Key>) -> Option<(Raw, Source)> {
        if let Some(flag) = opt.flag
            && let Some(v) = self.flags.get(opt.key)
        {
            return Some((Raw::Text(v.to_string()), Source::Flag(flag.name)));
        }
        let explicit = self.file.as_ref().is_some_and(|f| f.explicit);
        if explicit && let Some(v) = self.file_value(opt.json) {
            return Some(v);
        }
        if let Some((v, source)) = self.env_var(opt.env) {
            return Some((Raw::Text(v), source));
        }
        if !explicit && let Some(v) = self.file_value(opt.json) {
            return Some(v);
        }
        opt.default
            .map(|d| (Raw::Text(d.to_string()), Source::Default(opt.json)))
    }
}

pub fn json_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |v, k| v.get(k))
}

/// Read and check a JSON config file: every key must be known.
pub fn read_file(path: &Path, explicit: bool) -> Result<JsonFile, ConfigError> {
    let fail = |why: String| ConfigError::File {
        path: path.to_path_buf(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let root: Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("not valid JSON: {e}")))?;
    if !root.is_object() {
        return Err(fail("the top level must be a JSON object".into()));
    }
    check_keys(&root, "", path)?;
    Ok(JsonFile {
        path: path.to_path_buf(),
        root,
        explicit,
    })
}

/// Walk the file and refuse keys that are not options. App objects are
/// checked by `apps.rs`.
fn check_keys(v: &Value, prefix: &str, file: &Path) -> Result<(), ConfigError> {
    let Value::Object(map) = v else { return Ok(()) };
    for (k, child) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if path == "apps.apps" || path == "apps.provider" || path == "default" {
            continue;
        }
        let is_leaf = OPTIONS.iter().any(|o| o.json == path);
        let is_branch = OPTIONS
            .iter()
            .any(|o| o.json.starts_with(&format!("{path}.")))
            || path == "apps";
        match (is_leaf, is_branch) {
            (true, _) => {}
            (false, true) if child.is_object() => check_keys(child, &path, file)?,
            (false, true) => {
                return Err(ConfigError::Invalid {
                    source: Source::File {
                        path: file.to_path_buf(),
                        key: path,
                    },
                    why: "must be an object".into(),
                });
            }
            (false, false) => {
                return Err(ConfigError::UnknownKey {
                    path: file.to_path_buf(),
                    key: path,
                });
            }
        }
    }
    Ok(())
}

/// Is `k` a key (or the first part of a dotted key) of an app object?
pub fn is_app_key(k: &str) -> bool {
    APP_OPTIONS
        .iter()
        .filter(|o| o.in_file())
        .any(|o| o.json == k || o.json.starts_with(&format!("{k}.")))
}
