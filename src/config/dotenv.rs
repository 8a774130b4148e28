//! The `.env` file, parsed as Laravel (phpdotenv) does for simple cases:
//! `KEY=value`, `export KEY=value`, `#` comments, single quotes (literal),
//! double quotes (with `\n`, `\"` escapes and `${VAR}` from earlier lines).
//! Each value remembers its line, so errors can point at it; a line that is
//! not a comment, blank or `KEY=value` is reported as [`Parsed::malformed`]
//! and skipped.
//!
//! This module only parses text. Reading the file, warning about malformed
//! lines and ranking `.env` against the other sources is `sources.rs`'s job.

use std::collections::HashMap;

/// One value and the (1-based) line it was set on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: String,
    pub line: usize,
}

/// A parsed `.env`: the variables, and the lines that could not be read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub vars: HashMap<String, Entry>,
    /// (line number, why) for each line that was skipped.
    pub malformed: Vec<(usize, &'static str)>,
}

/// Parse the text of a `.env` file.
pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let line = line.trim();
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            out.malformed.push((number, "not a KEY=value line"));
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            out.malformed.push((number, "no variable name before ="));
            continue;
        }
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            out.malformed.push((
                number,
                "the variable name holds characters other than letters, digits, _ and .",
            ));
            continue;
        }
        let value = parse_value(value.trim(), &out.vars);
        out.vars.insert(
            key.to_string(),
            Entry {
                value,
                line: number,
            },
        );
    }
    out
}

fn parse_value(value: &str, vars: &HashMap<String, Entry>) -> String {
    if let Some(rest) = value.strip_prefix('\'') {
        rest.split_once('\'').map_or(rest, |(v, _)| v).to_string()
    } else if let Some(rest) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => break,
                },
                _ => out.push(c),
            }
        }
        interpolate(&out, vars)
    } else {
        let bare = value.split(" #").next().unwrap_or("").trim();
        interpolate(bare, vars)
    }
}

/// `${VAR}` from lines above; an unknown name becomes empty.
fn interpolate(s: &str, vars: &HashMap<String, Entry>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                let name = &rest[start + 2..start + 2 + end];
                out.push_str(vars.get(name).map_or("", |e| e.value.as_str()));
                rest = &rest[start + 2 + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}
