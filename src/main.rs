//! `revurb`: parse the command line, build the configuration, run the server.
//! Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error.

use std::process::ExitCode;

use revurb::cli::{self, Command};
use revurb::config::Config;
use revurb::{event_loop, log};

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("revurb: {e}");
            return ExitCode::from(2);
        }
    };
    match args.command {
        Command::Help => {
            print!("{}", cli::usage());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("revurb {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Restart => restart(&args.flags),
        Command::Config => match Config::from_process(&args.flags) {
            Ok(cfg) => {
                print!("{}", cfg.describe());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("revurb: {e}");
                ExitCode::from(2)
            }
        },
        Command::Start => {
            let cfg = match Config::from_process(&args.flags) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("revurb: {e}");
                    return ExitCode::from(2);
                }
            };
            if cfg.debug {
                log::set_level(log::Level::Debug);
            }
            match event_loop::raise_nofile_limit() {
                Ok((old, new, hard)) => {
                    revurb::log_info!("open files limit: soft {old} -> {new} (hard {hard})")
                }
                Err(e) => revurb::log_warn!("cannot raise the open files limit: {e}"),
            }
            let server = match event_loop::bind(cfg.clone(), args.flags.clone()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("revurb: {e}");
                    return ExitCode::from(1);
                }
            };
            match server.local_addr() {
                Ok(addr) => event_loop::announce(addr, server.metrics_addr(), &cfg),
                Err(e) => {
                    eprintln!("revurb: {e}");
                    return ExitCode::from(1);
                }
            }
            match server.run() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("revurb: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `revurb restart`: find the server through its pid file, send SIGTERM (it
/// closes every connection with 4200 and exits 0), and wait for it to stop.
fn restart(flags: &cli::Flags) -> ExitCode {
    // With scaling on, the signal goes to every node through Redis; an
    // explicit --pid-file restarts just that server.
    if flags.pid_file.is_none() {
        match Config::from_process(flags) {
            Ok(cfg) => {
                if let Some(sc) = &cfg.scaling {
                    return restart_cluster(sc);
                }
            }
            Err(e) => {
                eprintln!("revurb: cannot read the configuration to find the server(s): {e}");
                return ExitCode::from(2);
            }
        }
    }
    let pid_file = match (&flags.pid_file, Config::from_process(flags)) {
        (Some(p), _) => std::path::PathBuf::from(p),
        (None, Ok(cfg)) => match cfg.pid_file {
            Some(p) => p,
            None => {
                eprintln!(
                    "revurb: restart needs the server's pid file: start the server with --pid-file FILE \
                     (or REVERB_PID_FILE, or servers.reverb.pid_file) and give the same to restart"
                );
                return ExitCode::from(2);
            }
        },
        (None, Err(e)) => {
            eprintln!("revurb: cannot find the pid file: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(&pid_file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "revurb: cannot read pid file {}: {e} (is the server running?)",
                pid_file.display()
            );
            return ExitCode::from(1);
        }
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        eprintln!(
            "revurb: pid file {} does not hold a pid: {:?}",
            pid_file.display(),
            text.trim()
        );
        return ExitCode::from(1);
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if pid <= 1 || !comm.trim().starts_with("revurb") {
        eprintln!(
            "revurb: no revurb process with pid {pid} (stale pid file {}?)",
            pid_file.display()
        );
        return ExitCode::from(1);
    }
    if let Err(e) = event_loop::signal_process(pid, libc::SIGTERM) {
        eprintln!("revurb: cannot signal pid {pid}: {e}");
        return ExitCode::from(1);
    }
    println!("Broadcasting revurb restart signal (pid {pid}).");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let running = || {
        // a zombie (exited, not yet reaped by its parent) counts as stopped
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    };
    while running() {
        if std::time::Instant::now() > deadline {
            eprintln!("revurb: pid {pid} is still running after 15 s");
            return ExitCode::from(1);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    println!("The server closed its connections and stopped; its supervisor will start it again.");
    ExitCode::SUCCESS
}

/// `revurb restart` with scaling: publish a restart message on the scaling
/// channel; every node that receives it closes its connections with 4200
/// and exits 0 for its supervisor to start it again.
fn restart_cluster(sc: &revurb::config::Scaling) -> ExitCode {
    use revurb::redis::envelope::{Body, Envelope};
    let node = format!("restart-{}", std::process::id());
    let payload = Envelope::new(&node, 1, Body::Restart).encode();
    let timeout = std::time::Duration::from_secs(5);
    match revurb::redis::publish_once(&sc.redis, &sc.channel, &payload, timeout) {
        Ok(0) => {
            eprintln!(
                "revurb: no node is subscribed to Redis channel {:?} at {}; nothing restarted",
                sc.channel, sc.redis
            );
            ExitCode::from(1)
        }
        Ok(n) => {
            println!(
                "Broadcasting revurb restart signal to {n} node(s) over Redis channel {:?}.",
                sc.channel
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("revurb: cannot send the restart signal: {e}");
            ExitCode::from(1)
        }
    }
}
