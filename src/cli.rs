//! Command line: a lexopt loop into a plain [`Args`]. One flag table
//! ([`FLAGS`]) feeds `--help` and the test that checks the man page lists
//! every flag.

use std::ffi::OsString;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    /// Make the running server (found through its pid file) close every
    /// connection with 4200 and exit, so its supervisor starts it again.
    Restart,
    /// Print the effective configuration and where each value came from.
    Config,
    Help,
    Version,
}

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flags {
    pub host: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
    pub hostname: Option<String>,
    pub config: Option<String>,
    pub pid_file: Option<String>,
    pub metrics_host: Option<String>,
    pub metrics_port: Option<String>,
    pub debug: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub command: Command,
    pub flags: Flags,
}

/// (flag, value name, help) for every flag of `revurb start`.
pub const FLAGS: &[(&str, &str, &str)] = &[
    (
        "--host",
        "HOST",
        "address to listen on (default 0.0.0.0; env REVERB_SERVER_HOST)",
    ),
    (
        "--port",
        "PORT",
        "port to listen on, 0 for any free port (default 8080; env REVERB_SERVER_PORT)",
    ),
    (
        "--path",
        "PATH",
        "prefix for every route, e.g. /ws (default none; env REVERB_SERVER_PATH)",
    ),
    (
        "--hostname",
        "HOST",
        "public host name, shown in the start line (env REVERB_HOST)",
    ),
    (
        "--config",
        "FILE",
        "JSON configuration file (default ./revurb.json when present)",
    ),
    (
        "--pid-file",
        "FILE",
        "write the pid here; `revurb restart` reads it (env REVERB_PID_FILE)",
    ),
    (
        "--metrics-host",
        "HOST",
        "metrics listener address (default 127.0.0.1; env REVERB_METRICS_HOST)",
    ),
    (
        "--metrics-port",
        "PORT",
        "metrics listener port, 0 = off (default 9601; env REVERB_METRICS_PORT)",
    ),
    (
        "--debug",
        "",
        "log every message to stderr (env REVERB_DEBUG)",
    ),
];

/// Top-level options that are not `start` flags.
pub const GLOBAL_FLAGS: &[(&str, &str)] = &[
    ("--help", "print this help"),
    ("--version", "print the version"),
];

pub fn usage() -> String {
    let mut s = String::from(
        "revurb: a Pusher-protocol WebSocket server (a port of Laravel Reverb)\n\n\
         Usage:\n  revurb start [OPTIONS]\n  revurb restart [--pid-file FILE]\n  revurb config [OPTIONS]\n  revurb --help\n  revurb --version\n\n\
         Commands:\n  start    run the server in the foreground\n  \
         restart  make the running server close every connection with 4200 and exit 0\n  \
         config   print the effective configuration (secrets masked) and where each value came from\n  \
         help     print this help\n  version  print the version\n\n\
         Options for start, restart and config:\n",
    );
    for (flag, value, help) in FLAGS {
        let left = if value.is_empty() {
            flag.to_string()
        } else {
            format!("{flag} {value}")
        };
        s.push_str(&format!("  {left:<18} {help}\n"));
    }
    s.push_str("\nGlobal options:\n");
    for (flag, help) in GLOBAL_FLAGS {
        s.push_str(&format!("  {flag:<18} {help}\n"));
    }
    s.push_str(
        "\nThe app comes from the environment: REVERB_APP_ID, REVERB_APP_KEY, REVERB_APP_SECRET\n\
         (see `man revurb` for every variable).\n",
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
                    Some("help") => Command::Help,
                    Some("version") => Command::Version,
                    _ => return Err(format!("unknown command {v:?}; try `revurb --help`")),
                })
            }
            Long("host") => flags.host = Some(value(&mut parser, "--host")?),
            Long("port") => flags.port = Some(value(&mut parser, "--port")?),
            Long("path") => flags.path = Some(value(&mut parser, "--path")?),
            Long("hostname") => flags.hostname = Some(value(&mut parser, "--hostname")?),
            Long("config") => flags.config = Some(value(&mut parser, "--config")?),
            Long("pid-file") => flags.pid_file = Some(value(&mut parser, "--pid-file")?),
            Long("metrics-host") => {
                flags.metrics_host = Some(value(&mut parser, "--metrics-host")?)
            }
            Long("metrics-port") => {
                flags.metrics_port = Some(value(&mut parser, "--metrics-port")?)
            }
            Long("debug") => flags.debug = true,
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
        assert_eq!(a.flags.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(a.flags.port.as_deref(), Some("0"));
        assert_eq!(a.flags.path.as_deref(), Some("/ws"));
        assert_eq!(a.flags.hostname.as_deref(), Some("x.test"));
        assert!(a.flags.debug);
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
        for (flag, _, _) in FLAGS {
            assert!(u.contains(flag), "{flag}");
        }
    }
}
