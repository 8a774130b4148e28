//! The man pages under `man/` are the one reference: they name every
//! command-line flag, environment variable and configuration key the code
//! knows, each with the default the option table gives it, render without
//! warnings, and are all installed. The README stays a
//! short guide that points to them, and the samples and example files it
//! shows work with the binary as built.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use revurb::cli::{GLOBAL_FLAGS, flags};
use revurb::config::{APP_OPTIONS, OPTIONS};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_revurb");

/// The README is what a newcomer reads in ten minutes; the reference lives in
/// the man pages.
const README_MAX_LINES: usize = 300;

fn read(path: &str) -> String {
    let full = format!("{ROOT}/{path}");
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {full}: {e}"))
}

/// Every man page under `man/` (`revurb.1`, `revurb.json.5`, ...), sorted.
fn man_pages() -> Vec<PathBuf> {
    let dir = Path::new(ROOT).join("man");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| section(p).is_some())
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "no man pages under {}", dir.display());
    pages
}

/// The section of a man page file, from its last extension (`revurb.json.5` is 5).
fn section(page: &Path) -> Option<char> {
    let ext = page.extension()?.to_str()?;
    let mut chars = ext.chars();
    let c = chars.next()?;
    (c.is_ascii_digit() && chars.next().is_none()).then_some(c)
}

/// The name a page is cited by in SEE ALSO: `revurb.json.5` is `revurb.json (5)`.
fn citation(page: &Path) -> String {
    let stem = page.file_stem().unwrap().to_str().unwrap();
    format!("{stem} ({})", section(page).unwrap())
}

/// Roff escapes undone, so `\-\-port` reads `--port`.
fn unescape(roff: &str) -> String {
    roff.replace("\\-", "-")
        .replace("\\&", "")
        .replace("\\(em", "-")
        .replace("\\(dq", "\"")
        .replace("\\(aq", "'")
}

/// Every man page, escapes undone, one after another.
fn man_text() -> String {
    man_pages()
        .iter()
        .map(|p| unescape(&std::fs::read_to_string(p).unwrap()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn man_page_lists_every_flag() {
    let man = man_text();
    for (flag, _, _) in flags() {
        assert!(man.contains(flag), "no man page mentions the flag {flag}");
    }
    for (flag, _) in GLOBAL_FLAGS {
        assert!(man.contains(flag), "no man page mentions {flag}");
    }
}

#[test]
fn man_page_lists_every_env_var_and_config_key() {
    let man = man_text();
    for opt in OPTIONS {
        assert!(man.contains(opt.env), "no man page mentions {}", opt.env);
        assert!(
            man.contains(opt.json),
            "no man page mentions the config key {}",
            opt.json
        );
    }
    for o in APP_OPTIONS {
        assert!(man.contains(o.env), "no man page mentions {}", o.env);
        assert!(
            man.contains(o.json),
            "no man page mentions the app key {}",
            o.json
        );
    }
}

/// One `.TP` entry of a man page, escapes undone: its tag line and its body
/// (up to the next `.TP`, section or paragraph).
struct Entry {
    page: String,
    tag: String,
    body: Vec<String>,
}

impl Entry {
    /// The words of the tag, without the font macro, quotes, commas and font
    /// escapes: `.BI --host " HOST"` names `--host` and `HOST`.
    fn names(&self) -> Vec<String> {
        let tag = ["\\fB", "\\fI", "\\fR", "\\fP"]
            .iter()
            .fold(self.tag.clone(), |t, esc| t.replace(esc, " "));
        tag.split_whitespace()
            .filter(|w| !w.starts_with('.'))
            .map(|w| w.trim_matches(|c| c == '"' || c == ',').to_string())
            .filter(|w| !w.is_empty())
            .collect()
    }

    /// What follows `Default:` in the body, if it has such a line.
    fn default(&self) -> Option<&str> {
        self.body
            .iter()
            .find_map(|l| l.strip_prefix("Default:"))
            .map(str::trim)
    }
}

/// Every `.TP` entry of every man page.
fn tp_entries() -> Vec<Entry> {
    let ends = |l: &str| {
        [".TP", ".SH", ".SS", ".PP", ".LP", ".P"]
            .iter()
            .any(|m| l == *m || l.starts_with(&format!("{m} ")))
    };
    let mut entries = Vec::new();
    for page in man_pages() {
        let text = unescape(&std::fs::read_to_string(&page).unwrap());
        let lines: Vec<&str> = text.lines().collect();
        for (i, _) in lines.iter().enumerate().filter(|(_, l)| **l == ".TP") {
            let Some(tag) = lines.get(i + 1) else {
                continue;
            };
            let body = lines[i + 2..]
                .iter()
                .take_while(|l| !ends(l))
                .map(|l| l.to_string())
                .collect();
            entries.push(Entry {
                page: citation(&page),
                tag: tag.to_string(),
                body,
            });
        }
    }
    entries
}

/// Each option, under each of its names (flag, environment variable, JSON
/// key), has a `.TP` entry whose body says `Default:` and the default as the
/// option table renders it; no entry that names it gives another default.
#[test]
fn man_pages_give_every_option_its_real_default() {
    let entries = tp_entries();
    let mut problems = Vec::new();
    let mut check = |name: &str, want: &str| {
        let tagged: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.names().iter().any(|n| n == name))
            .collect();
        let mut right = false;
        for e in &tagged {
            match e.default() {
                Some(d) if d == want => right = true,
                Some(d) => problems.push(format!(
                    "{}: the entry for {name} says `Default: {d}`; the default is `{want}`",
                    e.page
                )),
                None => {}
            }
        }
        if !right {
            problems.push(format!(
                "no man page has a .TP entry for {name} with `Default: {want}`"
            ));
        }
    };
    for o in OPTIONS {
        let names = [Some(o.env), Some(o.json), o.flag.map(|f| f.name)];
        for name in names.into_iter().flatten() {
            check(name, o.default_text());
        }
    }
    for o in APP_OPTIONS {
        check(o.env, o.default_text());
        check(o.json, o.default_text());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn man_page_lists_commands_signals_and_exit_statuses() {
    let man = unescape(&read("man/revurb.1"));
    for word in [
        "start",
        "restart",
        "config",
        "SIGTERM",
        "SIGINT",
        "SIGHUP",
        "EXIT STATUS",
        "revurb.json",
        ".env",
    ] {
        assert!(man.contains(word), "man/revurb.1 does not mention {word}");
    }
}

/// Each page cites every other page in its SEE ALSO section, so a reader who
/// lands on any of them finds the rest.
#[test]
fn man_pages_cite_each_other_in_see_also() {
    let pages = man_pages();
    for page in &pages {
        let text = unescape(&std::fs::read_to_string(page).unwrap());
        let see_also = text
            .split(".SH SEE ALSO")
            .nth(1)
            .unwrap_or_else(|| panic!("{} has no SEE ALSO section", page.display()));
        let see_also = see_also.replace(".BR ", "").replace(" ,", ",");
        for other in pages.iter().filter(|o| *o != page) {
            let cited = citation(other).replace(' ', "");
            assert!(
                see_also.replace(' ', "").contains(&cited),
                "{}'s SEE ALSO does not cite {cited}",
                page.display()
            );
        }
    }
}

/// `make install` puts every page in the directory of its section.
#[test]
fn make_install_installs_every_man_page() {
    let makefile = read("Makefile");
    let install = makefile
        .split("\ninstall:")
        .nth(1)
        .expect("the Makefile has an install target");
    let install: String = install
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with('\t'))
        .collect::<Vec<_>>()
        .join("\n");
    for page in man_pages() {
        let s = section(&page).unwrap();
        assert!(
            install.contains(&format!("man/*.{s} $(MAN_DIR)/man{s}/")),
            "`make install` does not install {} into man{s}",
            page.display()
        );
    }
}

/// `groff -ww` renders every page without warnings (when groff is installed;
/// under CI it must be).
#[test]
fn man_page_renders_without_warnings() {
    for page in man_pages() {
        // groff passes a stray control character (a form feed from an
        // unescaped `\f` in a generator, say) through without a warning.
        let text = std::fs::read_to_string(&page).unwrap();
        if let Some((n, line)) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.chars().any(|c| c.is_control() && c != '\t'))
        {
            panic!(
                "{}:{}: a control character in {line:?}",
                page.display(),
                n + 1
            );
        }
        let out = match Command::new("groff")
            .args(["-man", "-ww", "-Tutf8", "-z"])
            .arg(&page)
            .output()
        {
            Ok(out) => out,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("groff is needed under CI: {e}")
            }
            Err(e) => {
                eprintln!("SKIP: groff is not installed ({e}); apt-get install groff-base");
                return;
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "groff warnings in {}:\n{stderr}",
            page.display()
        );
    }
}

/// The README is a short guide: the two commands, and pointers to every man
/// page and to the rest of the documentation, each of which exists. No
/// placeholder stands in for a URL.
#[test]
fn readme_is_short_and_points_to_the_reference() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move reference to man/ \
         and design to the module docs"
    );
    for cmd in ["make run", "make test", "cargo doc --open"] {
        assert!(readme.contains(cmd), "README.md does not mention `{cmd}`");
    }
    for page in man_pages() {
        let rel = format!("man/{}", page.file_name().unwrap().to_str().unwrap());
        assert!(readme.contains(&rel), "README.md does not point to {rel}");
    }
    for path in [
        "benches/RESULTS.md",
        "contrib/",
        "tests/interop/README.md",
        "contrib/revurb.example.json",
    ] {
        assert!(readme.contains(path), "README.md does not point to {path}");
        assert!(
            Path::new(ROOT).join(path).exists(),
            "README.md points to {path}, which does not exist"
        );
    }
    for placeholder in ["<repository-url>", "<url>", "TODO"] {
        assert!(
            !readme.contains(placeholder),
            "README.md still holds the placeholder {placeholder}"
        );
    }
}

/// A scratch directory for one test, empty, so no `.env` or `revurb.json` of
/// the checkout is read.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("revurb-docs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Laravel `.env` the README's quick start shows, as a file's text.
fn readme_laravel_env(readme: &str) -> String {
    let block = readme
        .split("```ini\n")
        .find(|b| b.contains("REVERB_APP_ID="))
        .and_then(|b| b.split("```").next())
        .expect("README.md shows the Laravel .env");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Start `revurb start ARGS` in `dir` with no environment, and return its
/// first line of standard output (empty if it printed none within 20 s) and
/// its exit status once killed.
fn start_line(dir: &Path, args: &[&str]) -> (String, std::process::ExitStatus) {
    let mut child = Command::new(BIN)
        .arg("start")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    let _ = child.kill();
    let status = child.wait().unwrap();
    (line.trim_end().to_owned(), status)
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The start line the README's quick start shows is what `revurb start`
/// prints for its `.env` (with free ports in place of 8080 and 9601).
#[test]
fn readme_start_line_sample_matches_the_binary() {
    let readme = read("README.md");
    let sample = readme
        .split("$ cd /var/www/app && revurb start\n")
        .nth(1)
        .and_then(|b| b.lines().next())
        .expect("README.md shows the start line of `revurb start`")
        .trim();
    let dir = scratch_dir("start-line");
    std::fs::write(dir.join(".env"), readme_laravel_env(&readme)).unwrap();
    let metrics = free_port().to_string();
    let (line, status) = start_line(&dir, &["--port", "0", "--metrics-port", &metrics]);
    let _ = std::fs::remove_dir_all(&dir);
    let port = line
        .strip_prefix("revurb: listening on 0.0.0.0:")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected start line {line:?} (status {status:?})"));
    let expected = sample
        .replace("0.0.0.0:8080", &format!("0.0.0.0:{port}"))
        .replace("127.0.0.1:9601", &format!("127.0.0.1:{metrics}"));
    assert_eq!(
        line, expected,
        "the README's start line sample is not what revurb prints"
    );
}

/// The `revurb config` sample in the README is what the binary prints for the
/// Laravel `.env` the quick start shows: every line of the sample appears in
/// the output (a line ending in `...` as the start of an output line).
#[test]
fn readme_config_sample_matches_the_binary() {
    let readme = read("README.md");
    let env = readme_laravel_env(&readme);
    let sample = readme
        .split("$ revurb config\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README.md shows a `$ revurb config` sample");

    let dir = scratch_dir("config-sample");
    std::fs::write(dir.join(".env"), env).unwrap();
    let out = Command::new(BIN)
        .arg("config")
        .current_dir(&dir)
        .env_clear()
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "revurb config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in sample.lines().filter(|l| l.trim() != "...") {
        let found = match line.strip_suffix("...") {
            Some(prefix) => stdout.lines().any(|o| o.starts_with(prefix)),
            None => stdout.lines().any(|o| o == line),
        };
        assert!(
            found,
            "README's `revurb config` sample line {line:?} is not in the output:\n{stdout}"
        );
    }
}

/// `contrib/revurb.example.json` is valid as shipped: `revurb config` accepts
/// it, and `revurb start` on it listens (on free ports, so the test does not
/// depend on 8080 and 9601 being free).
#[test]
fn contrib_example_config_starts_as_shipped() {
    let example = format!("{ROOT}/contrib/revurb.example.json");
    let dir = scratch_dir("example");

    let out = Command::new(BIN)
        .args(["config", "--config", &example])
        .current_dir(&dir)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "revurb config --config contrib/revurb.example.json exited {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );

    let (line, status) = start_line(
        &dir,
        &["--config", &example, "--port", "0", "--metrics-port", "0"],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        line.starts_with("revurb: listening on 127.0.0.1:"),
        "revurb start --config contrib/revurb.example.json did not listen \
         (stdout {line:?}, status {status:?})"
    );
}

/// Every contrib service file starts the binary where `make install` puts it
/// by default and with the pid file the README and revurb(1) name, so
/// `revurb restart --pid-file /run/revurb/revurb.pid` reaches it.
#[test]
fn contrib_service_files_use_the_pid_file_and_the_installed_binary() {
    for file in [
        "contrib/supervisor/revurb.conf",
        "contrib/runit/revurb/run",
        "contrib/systemd/revurb.service",
    ] {
        let text = read(file);
        let start = text
            .lines()
            .find(|l| !l.starts_with(['#', ';']) && l.contains("revurb start"))
            .unwrap_or_else(|| panic!("{file} does not run `revurb start`"));
        assert!(
            start.contains("/usr/local/bin/revurb start")
                && start.contains("--pid-file /run/revurb/revurb.pid"),
            "{file} runs {start:?}, not /usr/local/bin/revurb start --pid-file /run/revurb/revurb.pid"
        );
    }
    let systemd = read("contrib/systemd/revurb.service");
    for var in ["REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET"] {
        assert!(
            systemd.contains(var),
            "contrib/systemd/revurb.service's example environment lacks {var}"
        );
    }
}

/// `contrib/Dockerfile` (which CI does not build: it needs a Docker daemon)
/// stays in step with the code: it exposes the default port, puts the CA
/// bundle where the TLS client looks for one, builds the musl targets that
/// `make static` builds, and runs `revurb start`.
#[test]
fn contrib_dockerfile_matches_the_code_and_the_makefile() {
    let docker = read("contrib/Dockerfile");
    let port = OPTIONS
        .iter()
        .find(|o| o.env == "REVERB_SERVER_PORT")
        .and_then(|o| o.default)
        .unwrap();
    assert!(
        docker.lines().any(|l| l == format!("EXPOSE {port}")),
        "contrib/Dockerfile does not EXPOSE the default port {port}"
    );
    let ca = "/etc/ssl/certs/ca-certificates.crt";
    assert!(read("src/tls.rs").contains(&format!("\"{ca}\"")));
    assert!(
        docker.contains(&format!("COPY --from=build {ca} {ca}")),
        "contrib/Dockerfile does not copy the CA bundle to {ca}"
    );
    let makefile = read("Makefile");
    for var in ["MUSL_TARGET", "ARM_TARGET"] {
        let target = makefile
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{var} := ")))
            .unwrap_or_else(|| panic!("the Makefile sets no {var}"));
        assert!(
            docker.contains(target),
            "contrib/Dockerfile does not build {target}"
        );
    }
    assert!(docker.contains(r#"ENTRYPOINT ["/revurb"]"#) && docker.contains(r#"CMD ["start"]"#));
    assert!(docker.lines().any(|l| l == "FROM scratch"));
}

/// An operator who sees a close code or a `pusher:error` finds it, with its
/// message, in the man pages.
#[test]
fn man_pages_list_every_pusher_error_code() {
    let man = man_text();
    for e in revurb::pusher::PusherError::ALL {
        assert!(
            man.contains(&e.code().to_string()),
            "the man pages do not mention the error code {}",
            e.code()
        );
        assert!(
            man.contains(e.message()),
            "the man pages do not mention the error message {:?} ({})",
            e.message(),
            e.code()
        );
    }
}

/// Every Rust source file under `src/`, concatenated, with string-literal line
/// continuations (`\` at the end of a line) joined, so a log message split
/// over two source lines reads as one.
fn source_text() -> String {
    fn walk(dir: &Path, out: &mut String) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
                out.push('\n');
            }
        }
    }
    let mut text = String::new();
    walk(&Path::new(ROOT).join("src"), &mut text);
    let mut joined = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("\\\n") {
        joined.push_str(&rest[..i]);
        rest = rest[i + 2..].trim_start();
    }
    joined.push_str(rest);
    joined
}

/// The arguments of a roff request line: quoted strings or bare words.
fn roff_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
        } else if c == '"' {
            chars.next();
            args.push(chars.by_ref().take_while(|&c| c != '"').collect());
        } else {
            args.push(chars.by_ref().take_while(|&c| c != ' ').collect());
        }
    }
    args
}

/// The log lines the man pages list under DIAGNOSTICS are the ones the code
/// writes: every literal (bold) part of each entry's tag appears in `src/`.
#[test]
fn man_page_log_messages_are_the_ones_the_code_writes() {
    let source = source_text();
    let mut checked = 0;
    for page in man_pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let Some(diagnostics) = text.split(".SH DIAGNOSTICS\n").nth(1) else {
            continue;
        };
        let diagnostics = diagnostics.split("\n.SH ").next().unwrap();
        let lines: Vec<&str> = diagnostics.lines().collect();
        for pair in lines.windows(2) {
            if pair[0] != ".TP" && pair[0] != ".TQ" {
                continue;
            }
            let tag = pair[1];
            let literal: Vec<String> = if let Some(rest) = tag.strip_prefix(".BI ") {
                roff_args(rest).into_iter().step_by(2).collect()
            } else if let Some(rest) = tag.strip_prefix(".B ") {
                vec![roff_args(rest).join(" ")]
            } else {
                continue;
            };
            for (i, part) in literal.iter().enumerate() {
                let mut part = unescape(part);
                if i == 0 {
                    for level in ["ERROR ", "WARN ", "INFO ", "DEBUG "] {
                        if let Some(rest) = part.strip_prefix(level) {
                            part = rest.to_owned();
                        }
                    }
                }
                for piece in part.split("...") {
                    let piece = piece.trim();
                    if piece.len() < 4 {
                        continue;
                    }
                    assert!(
                        source.contains(piece),
                        "{} lists the log line {tag:?}, but no source file under src/ writes {piece:?}",
                        page.display()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} log message parts found in the man pages"
    );
}

/// The Rust sources of a module path (`pusher`, `event_loop::redis_link`):
/// its file and every file under its directory.
fn module_sources(path: &[&str]) -> Option<String> {
    let mut base = Path::new(ROOT).join("src");
    for seg in path {
        base.push(seg);
    }
    let mut text = String::new();
    let file = base.with_extension("rs");
    if let Ok(t) = std::fs::read_to_string(&file) {
        text.push_str(&t);
    }
    if base.is_dir() {
        let mut stack = vec![base];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "rs") {
                    text.push_str(&std::fs::read_to_string(&p).unwrap());
                }
            }
        }
    }
    (!text.is_empty()).then_some(text)
}

/// The crate docs follow one connection naming the function at each step
/// (`event_loop::Server::accept`, `pusher::Hub::open`, ...): every such path
/// names a module that exists and an item defined in it, so a rename cannot
/// leave the map behind.
#[test]
fn crate_docs_name_functions_that_exist() {
    let lib = read("src/lib.rs");
    let docs: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut checked = 0;
    for (i, span) in docs.split('`').enumerate() {
        let span = span.trim_end_matches("()");
        let is_path = i % 2 == 1
            && span.contains("::")
            && span
                .split("::")
                .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !is_path {
            continue;
        }
        let segs: Vec<&str> = span.split("::").collect();
        let modules: Vec<&str> = segs
            .iter()
            .take_while(|s| s.starts_with(|c: char| c.is_ascii_lowercase()))
            .copied()
            .collect();
        let (modules, items) = if modules.len() == segs.len() {
            // `a::b::f`: the last lowercase segment is a function, unless it
            // is a module of its own (`redis::client`).
            if module_sources(&modules).is_some() {
                (modules, Vec::new())
            } else {
                (
                    modules[..modules.len() - 1].to_vec(),
                    vec![*segs.last().unwrap()],
                )
            }
        } else {
            (modules.clone(), segs[modules.len()..].to_vec())
        };
        let source = module_sources(&modules).unwrap_or_else(|| {
            panic!(
                "src/lib.rs names `{span}`, but there is no module {}",
                modules.join("::")
            )
        });
        for item in items {
            let defined = if item.starts_with(|c: char| c.is_ascii_uppercase()) {
                ["struct", "enum", "trait", "type"]
                    .iter()
                    .any(|kw| source.contains(&format!("{kw} {item}")))
                    || source.contains(&format!("    {item}("))
                    || source.contains(&format!("    {item} {{"))
                    || source.contains(&format!("    {item},"))
            } else {
                source.contains(&format!("fn {item}(")) || source.contains(&format!("fn {item}<"))
            };
            assert!(
                defined,
                "src/lib.rs names `{span}`, but {item} is not defined in {}",
                modules.join("::")
            );
        }
        checked += 1;
    }
    assert!(
        checked > 20,
        "only {checked} paths checked in the crate docs"
    );
}

/// revurb-webhooks(7) states the limits the code has: the dispatcher's queue
/// and retry schedule and the client's connections, deadlines and sizes.
#[test]
fn webhook_limits_in_the_man_page_are_the_codes() {
    use revurb::event_loop::webhook::{DNS_CACHE, LOOKUPS_WAITING, Limits};
    use revurb::webhook::dispatch::{
        GIVE_UP_AFTER_MS, QUEUE_MAX_BYTES, QUEUE_MAX_EVENTS, RETRY_FIRST_MS, RETRY_MAX_WAIT_MS,
    };
    use revurb::webhook::http::{BODY_MAX, HEAD_MAX};
    use revurb::webhook::{BATCH_MAX_EVENTS, BATCH_WINDOW_MS};

    let page = unescape(&read("man/revurb-webhooks.7")).replace('\n', " ");
    let json5 = unescape(&read("man/revurb.json.5")).replace('\n', " ");
    let l = Limits::default();
    let secs = |ms: u64| ms / 1000;
    let facts = [
        format!(
            "{QUEUE_MAX_EVENTS} events or {} MiB per webhook",
            QUEUE_MAX_BYTES >> 20
        ),
        format!("at most {} to one receiver", l.per_origin),
        format!(
            "{} in all; an idle one is closed after {} s",
            l.total,
            secs(l.idle_timeout_ms)
        ),
        format!("At most {} requests wait", l.queue_per_origin),
        format!("{} MiB of requests", l.bytes_in_flight >> 20),
        format!("{} s to connect", secs(l.connect_timeout_ms)),
        format!(
            "{} s from the end of the request",
            secs(l.response_timeout_ms)
        ),
        format!("{} s for a name lookup", secs(l.dns_timeout_ms)),
        format!(
            "at most {} KiB and a body of at most {} KiB",
            HEAD_MAX >> 10,
            BODY_MAX >> 10
        ),
        format!("at most {LOOKUPS_WAITING} lookups wait"),
        format!(
            "up to {DNS_CACHE} names are kept for {} s",
            secs(l.dns_ttl_ms)
        ),
        format!("after {} s, then 2 s", secs(RETRY_FIRST_MS)),
        format!(
            "each wait at most a minute, until {} minutes",
            GIVE_UP_AFTER_MS / 60_000
        ),
    ];
    assert_eq!(
        RETRY_MAX_WAIT_MS, 60_000,
        "the page says \"at most a minute\""
    );
    for fact in facts {
        assert!(
            page.contains(&fact),
            "man/revurb-webhooks.7 does not say {fact:?}"
        );
    }
    let batch = format!("up to {BATCH_MAX_EVENTS} events, for at most {BATCH_WINDOW_MS} ms");
    assert!(
        json5.contains(&batch),
        "man/revurb.json.5 does not say {batch:?}"
    );
}

/// revurb(1) TLS states the handshake cap the loop has.
#[test]
fn tls_handshake_cap_in_the_man_page_is_the_codes() {
    let page = unescape(&read("man/revurb.1")).replace('\n', " ");
    let fact = format!("at most {} run at once", revurb::event_loop::MAX_HANDSHAKES);
    assert!(page.contains(&fact), "man/revurb.1 does not say {fact:?}");
}
