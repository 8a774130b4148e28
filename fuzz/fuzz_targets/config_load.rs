//! Configuration from every source at once: a `.env` file and a
//! `revurb.json` (raw text, or JSON built from the option table's dotted
//! keys with fuzzed values), environment variables (the table's names) and
//! command-line flags (the table's flags, through `cli::parse`).
//!
//! Checked: loading returns a configuration or an error, never panics, and a
//! loaded configuration can be described (`revurb config`).
#![no_main]

use std::cell::RefCell;
use std::ffi::OsString;
use std::path::PathBuf;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use revurb::config::{self, APP_OPTIONS, Config, Inputs, OPTIONS};
use serde_json::{Map, Value};

#[derive(Debug, Arbitrary)]
struct Input {
    dotenv: Option<DotEnv>,
    json: Option<Json>,
    /// (index into the option and app option tables, value).
    env: Vec<(u8, String)>,
    /// (index into the option table, value): those with a flag become flags.
    flags: Vec<(u8, String)>,
    /// A whole fuzzed command line after `revurb`, tried too.
    raw_args: Vec<String>,
}

#[derive(Debug, Arbitrary)]
enum DotEnv {
    Raw(String),
    /// `NAME=value` lines, each value in one of the quoting styles.
    Lines(Vec<(u8, Quote, String)>),
}

#[derive(Debug, Arbitrary)]
enum Quote {
    Bare,
    Single,
    Double,
    Export,
}

#[derive(Debug, Arbitrary)]
enum Json {
    Raw(String),
    /// Server options by dotted key, and the apps list.
    Built {
        options: Vec<(u8, Scalar)>,
        apps: Option<Vec<Vec<(u8, Scalar)>>>,
    },
}

#[derive(Debug, Arbitrary)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<String>),
}

impl Scalar {
    fn json(&self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Int(n) => Value::from(*n),
            Scalar::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Scalar::Str(s) => Value::String(s.clone()),
            Scalar::List(l) => Value::from(l.clone()),
        }
    }
}

/// Set `value` at a dotted path such as `servers.reverb.options.tls.key`.
fn set_path(root: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut node = root;
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            node.insert(p.to_string(), value);
            return;
        }
        let next = node
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        node = next.as_object_mut().unwrap();
    }
}

fn env_name(i: u8) -> &'static str {
    let i = usize::from(i) % (OPTIONS.len() + APP_OPTIONS.len());
    match OPTIONS.get(i) {
        Some(o) => o.env,
        None => APP_OPTIONS[i - OPTIONS.len()].env,
    }
}

thread_local! {
    /// One directory per process, its `.env` and `revurb.json` rewritten per input.
    static DIR: PathBuf = {
        let dir = std::env::temp_dir().join(format!("revurb-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
}

fn write_or_remove(path: PathBuf, text: Option<String>) {
    match text {
        Some(t) => std::fs::write(&path, t).unwrap(),
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
}

fuzz_target!(|input: Input| {
    let dir = DIR.with(|d| d.clone());
    let dotenv = input.dotenv.map(|d| match d {
        DotEnv::Raw(s) => s,
        DotEnv::Lines(lines) => lines
            .iter()
            .map(|(i, q, v)| {
                let name = env_name(*i);
                match q {
                    Quote::Bare => format!("{name}={v}\n"),
                    Quote::Single => format!("{name}='{v}'\n"),
                    Quote::Double => format!("{name}=\"{v}\"\n"),
                    Quote::Export => format!("export {name}={v}\n"),
                }
            })
            .collect(),
    });
    let json = input.json.map(|j| match j {
        Json::Raw(s) => s,
        Json::Built { options, apps } => {
            let mut root = Map::new();
            for (i, v) in &options {
                let opt = &OPTIONS[usize::from(*i) % OPTIONS.len()];
                set_path(&mut root, opt.json, v.json());
            }
            if let Some(apps) = apps {
                let list = apps
                    .iter()
                    .map(|fields| {
                        let mut app = Map::new();
                        for (i, v) in fields {
                            let opt = &APP_OPTIONS[usize::from(*i) % APP_OPTIONS.len()];
                            set_path(&mut app, opt.json, v.json());
                        }
                        Value::Object(app)
                    })
                    .collect::<Vec<_>>();
                set_path(&mut root, "apps.apps", Value::Array(list));
            }
            Value::Object(root).to_string()
        }
    });
    write_or_remove(dir.join(".env"), dotenv);
    write_or_remove(dir.join(config::DEFAULT_FILE), json);

    let env: Vec<(&str, String)> = input
        .env
        .iter()
        .map(|(i, v)| (env_name(*i), v.clone()))
        .collect();
    let lookup = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    };
    let warnings = RefCell::new(0usize);
    let warn = |_: &str| *warnings.borrow_mut() += 1;

    let mut args: Vec<OsString> = vec!["start".into()];
    for (i, v) in &input.flags {
        if let Some(flag) = OPTIONS[usize::from(*i) % OPTIONS.len()].flag {
            args.push(format!("--{}", flag.name).into());
            if !flag.value.is_empty() {
                args.push(v.into());
            }
        }
    }
    let raw: Vec<OsString> = input.raw_args.iter().map(OsString::from).collect();
    for args in [args, raw] {
        let Ok(parsed) = revurb::cli::parse(args) else {
            continue;
        };
        let inputs = Inputs {
            env: &lookup,
            flags: &parsed.flags,
            dir: &dir,
            warn: &warn,
        };
        if let Ok(cfg) = Config::load(&inputs) {
            let _ = cfg.describe();
            let _ = cfg.bind_addr();
        }
    }
});
