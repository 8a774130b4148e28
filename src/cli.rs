//! Command line: a lexopt loop into a plain [`Args`], and `--help`. The
//! flags are the option table's (`config::options::OPTIONS`, each option's
//! `flag`) plus `--config`; this module defines no option of its own, so a
//! new option with a flag shows up here, in `--help` and in the docs test
//! at once.
//!
//! It does not check values: `config` does, naming the flag.

use std::ffi::OsString;

use crate::config::options::{self, Key, OPTIONS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    /// Make the running server (found through its pid file) close every
    /// connection with 4200 and exit, so its supervisor starts it again.
    Restart,
    /// Make the running server re-execute its binary, handing over every
    /// connection (issue 14).
    Upgrade,
    /// Hidden: what the server runs on the new binary before an upgrade
    /// (`crate::upgrade::check`).
    UpgradeCheck,
    /// Print the effective configuration and where each value came from.
    Config,
    Help,
    Version,
}

/// Values given on the command line; unset means "not given". Which flags
/// exist, and what they set, is the option table ([`OPTIONS`]) plus
/// [`CONFIG_FLAG`]: nothing here lists them again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flags {
    /// `--config FILE`.
    pub config: Option<String>,
    /// (option, value as given) for each option flag; a switch holds `"true"`.
    values: Vec<(Key, String)>,
}

impl Flags {
    /// The value given for option `key`'s flag (the last one, if repeated).
    pub fn get(&self, key: Key) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set option `key` as if its flag were given with `value`.
    pub fn set(&mut self, key: Key, value: impl Into<String>) {
        self.values.retain(|(k, _)| *k != key);
        self.values.push((key, value.into()));
    }

    /// Flags with just `--config FILE`.
    pub fn with_config(file: impl Into<String>) -> Flags {
        Flags {
            config: Some(file.into()),
            ..Flags::default()
        }
    }

    /// `self` with option `key` set, for building flags in code and tests.
    pub fn with(mut self, key: Key, value: impl Into<String>) -> Flags {
        self.set(key, value);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub command: Command,
    pub flags: Flags,
}

/// The one flag that is not an option: (flag, value name, help).
pub const CONFIG_FLAG: (&str, &str, &str) = (
    "--config",
    "FILE",
    "JSON configuration file; without it, ./revurb.json when present",
);

/// (flag, value name, help) for every flag of `revurb start`, `restart` and
/// `config`: [`CONFIG_FLAG`], then each option that has a flag.
pub fn flags() -> Vec<(&'static str, &'static str, &'static str)> {
    std::iter::once(CONFIG_FLAG)
        .chain(
            OPTIONS
                .iter()
                .filter_map(|o| o.flag.map(|f| (f.name, f.value, o.help))),
        )
        .collect()
}

/// Top-level options that are not `start` flags.
pub const GLOBAL_FLAGS: &[(&str, &str)] = &[
    ("--help", "print this help"),
    ("--version", "print the version"),
];

pub fn usage() -> String {
    let mut s = String::from(
        "revurb: a Pusher-protocol WebSocket server (a port of Laravel Reverb)\n\n\
         Usage:\n  revurb start [OPTIONS]\n  revurb restart [--pid-file FILE]\n  revurb upgrade [--pid-file FILE]\n  revurb config [OPTIONS]\n  revurb --help\n  revurb --version\n\n\
         Commands:\n  start    run the server in the foreground\n  \
         restart  make the running server close every connection with 4200 and exit 0\n  \
         upgrade  make the running server re-execute its binary, keeping every connection\n  \
         config   print the effective configuration (secrets masked) and where each value came from\n  \
         help     print this help\n  version  print the version\n\n\
         Options for start, restart, upgrade and config:\n",
    );
    let left = |flag: &str, value: &str| {
        if value.is_empty() {
            flag.to_string()
        } else {
            format!("{flag} {value}")
        }
    };
    let rows: Vec<(String, String)> = std::iter::once((
        left(CONFIG_FLAG.0, CONFIG_FLAG.1),
        CONFIG_FLAG.2.to_string(),
    ))
    .chain(OPTIONS.iter().filter_map(|o| {
        let f = o.flag?;
        let help = format!("{} (default {}; env {})", o.help, o.default_text(), o.env);
        Some((left(f.name, f.value), help))
    }))
    .collect();
    let width = rows
        .iter()
        .map(|(l, _)| l.len())
        .chain(GLOBAL_FLAGS.iter().map(|(f, _)| f.len()))
        .max()
        .unwrap_or(0);
    for (l, help) in &rows {
        s.push_str(&format!("  {l:<width$}  {help}\n"));
    }
    s.push_str("\nGlobal options:\n");
    for (flag, help) in GLOBAL_FLAGS {
        s.push_str(&format!("  {flag:<width$}  {help}\n"));
    }
    s.push_str(
        "\nThe apps come from the --config file (apps.apps), else from REVERB_APP_ID,\n\
         REVERB_APP_KEY and REVERB_APP_SECRET in the environment or ./.env, else from\n\
         ./revurb.json (apps.apps). A variable in the real environment beats the same\n\
         one in ./.env. See revurb(1) and revurb.json(5) for every option, variable\n\
         and key.\n",
    );
    s
}

/// Parse the command line (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut command = None;
    let mut flags = Flags::default();
    let value = |p: &mut lexopt::Parser, name: &str| -> Result<String, String> {
        p.value()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|_| format!("the value of {name} is not valid UTF-8"))
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("help") | Short('h') => {
                return Ok(Args {
                    command: Command::Help,
                    flags,
                });
            }
            Long("version") | Short('V') => {
                return Ok(Args {
                    command: Command::Version,
                    flags,
                });
            }
            Value(v) if command.is_none() => {
                command = Some(match v.to_str() {
                    Some("start") => Command::Start,
                    Some("config") => Command::Config,
                    Some("restart") => Command::Restart,
                    Some("upgrade") => Command::Upgrade,
                    Some(crate::upgrade::CHECK_COMMAND) => Command::UpgradeCheck,
                    Some("help") => Command::Help,
                    Some("version") => Command::Version,
                    _ => return Err(format!("unknown command {v:?}; try `revurb --help`")),
                })
            }
            Long("config") => flags.config = Some(value(&mut parser, CONFIG_FLAG.0)?),
            Long(name) => {
                let name = format!("--{name}");
                let Some(opt) = options::by_flag(&name) else {
                    let unexpected = Long(&name[2..]).unexpected();
                    return Err(format!("{unexpected}; try `revurb --help`"));
                };
                let is_switch = opt.flag.is_some_and(|f| f.value.is_empty());
                let v = if is_switch {
                    "true".to_string()
                } else {
                    value(&mut parser, &name)?
                };
                flags.set(opt.key, v);
            }
            other => return Err(format!("{}; try `revurb --help`", other.unexpected())),
        }
    }
    match command {
        Some(command) => Ok(Args { command, flags }),
        None => Err("no command given; try `revurb start` or `revurb --help`".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn start_with_flags() {
        let a = p(&[
            "start",
            "--host",
            "127.0.0.1",
            "--port=0",
            "--path",
            "/ws",
            "--hostname",
            "x.test",
            "--debug",
        ])
        .unwrap();
        assert_eq!(a.command, Command::Start);
        assert_eq!(a.flags.get(Key::Host), Some("127.0.0.1"));
        assert_eq!(a.flags.get(Key::Port), Some("0"));
        assert_eq!(a.flags.get(Key::Path), Some("/ws"));
        assert_eq!(a.flags.get(Key::Hostname), Some("x.test"));
        assert_eq!(a.flags.get(Key::Debug), Some("true"));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(p(&["--help"]).unwrap().command, Command::Help);
        assert_eq!(p(&["help"]).unwrap().command, Command::Help);
        assert_eq!(p(&["--version"]).unwrap().command, Command::Version);
        assert_eq!(p(&["start", "--help"]).unwrap().command, Command::Help);
    }

    #[test]
    fn errors_are_clear() {
        assert!(p(&[]).unwrap_err().contains("no command"));
        assert!(p(&["stop"]).unwrap_err().contains("unknown command"));
        assert!(p(&["start", "--nope"]).unwrap_err().contains("--nope"));
        assert!(p(&["start", "--port"]).is_err());
    }

    #[test]
    fn usage_lists_every_flag() {
        let u = usage();
        for (flag, _, _) in flags() {
            assert!(u.contains(flag), "{flag}");
        }
    }

    #[test]
    fn help_columns_line_up_and_the_app_sources_are_named() {
        let u = usage();
        let columns: Vec<(usize, &str)> = u
            .lines()
            .filter(|l| l.starts_with("  --"))
            .map(|l| {
                let gap = l[2..].find("  ").map_or(0, |i| i + 2);
                let col = gap + l[gap..].len() - l[gap..].trim_start().len();
                (col, l)
            })
            .collect();
        assert_eq!(columns.len(), flags().len() + GLOBAL_FLAGS.len(), "{u}");
        for (col, line) in &columns {
            assert_eq!(*col, columns[0].0, "misaligned: {line:?}\n{u}");
        }
        for word in ["--config", "./.env", "environment", "revurb.json"] {
            assert!(u.contains(word), "the app source {word} is not named:\n{u}");
        }
    }
}
