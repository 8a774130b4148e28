//! Build script: tells the integration tests whether `redis-server` is on `PATH`.
//!
//! The cluster tests (`tests/integration/cluster*.rs`) need a real `redis-server`. When it is
//! not on `PATH` and `CI` is not `true`, this sets `cfg(no_redis)`; those tests carry
//! `#[cfg_attr(no_redis, ignore = "...")]`, so `cargo test` reports them as ignored, with the
//! reason, instead of passing them without running anything. Under `CI=true` the cfg is never
//! set: the tests run, and fail saying what to install if `redis-server` is missing.
//!
//! It runs again when `PATH` or `CI` change, or when a directory on `PATH` does (installing
//! `redis-server` adds a file to one).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_redis)");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CI");
    let dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default();
    for dir in dirs.iter().filter(|dir| dir.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let found = dirs.iter().any(|dir| dir.join("redis-server").is_file());
    let ci = env::var("CI").is_ok_and(|v| v == "true");
    if !found && !ci {
        println!("cargo::rustc-cfg=no_redis");
    }
}
