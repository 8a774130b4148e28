//! `revurb`: parse the command line, build the configuration, run the server.
//! Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error.

#![deny(unsafe_code)]

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
        Command::Restart => revurb::restart::run(&args.flags),
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
            match revurb::sys::raise_nofile_limit() {
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
