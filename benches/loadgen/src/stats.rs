//! Pure helpers: percentiles, `/proc` parsing and a growable bitset.

use serde_json::{Value, json};

/// The nearest-rank percentile `p` (0..=100) of an ascending slice, or `None` if it is empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    // (The epsilon keeps 99.9% of 1000 at rank 999 despite binary fractions.)
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency summary in milliseconds of samples given in nanoseconds (sorts `samples`).
pub fn latency_summary(samples: &mut [u64]) -> Value {
    samples.sort_unstable();
    let ms = |p: f64| percentile(samples, p).map(|ns| round3(ns as f64 / 1e6));
    let mean = if samples.is_empty() {
        None
    } else {
        let sum: u128 = samples.iter().map(|&v| u128::from(v)).sum();
        Some(round3(sum as f64 / samples.len() as f64 / 1e6))
    };
    json!({
        "count": samples.len(),
        "p50": ms(50.0),
        "p90": ms(90.0),
        "p99": ms(99.0),
        "p999": ms(99.9),
        "max": ms(100.0),
        "mean": mean,
    })
}

/// Round to three decimals (for readable JSON).
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `VmRSS` in bytes from the text of `/proc/PID/status`.
pub fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    let mult = match parts.next().unwrap_or("kB") {
        "kB" | "KB" | "kb" => 1024,
        "mB" | "MB" => 1024 * 1024,
        "B" => 1,
        _ => return None,
    };
    Some(n * mult)
}

/// `utime + stime` in clock ticks from the text of `/proc/PID/stat`.
///
/// The command name (field 2) is in parentheses and may itself hold spaces or
/// parentheses, so the fields are counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0, so utime (field 14) is index 11, stime index 12.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The server's resident set size in bytes.
pub fn read_rss(pid: u32) -> Option<u64> {
    parse_vmrss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The server's CPU time (user + system) in seconds.
pub fn read_cpu_secs(pid: u32) -> Option<f64> {
    let ticks = parse_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    Some(ticks as f64 / clk_tck() as f64)
}

/// Clock ticks per second for `/proc/PID/stat` (100 when it cannot be asked).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

/// A bitset that grows on demand (one bit per sequence number).
#[derive(Default, Debug, Clone)]
pub struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// Set bit `i`; returns whether it was already set.
    pub fn set(&mut self, i: u64) -> bool {
        let w = (i / 64) as usize;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let m = 1u64 << (i % 64);
        let was = self.words[w] & m != 0;
        self.words[w] |= m;
        was
    }

    pub fn get(&self, i: u64) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Bits set here and also set in `other`.
    pub fn count_and(&self, other: &Bitset) -> u64 {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| u64::from((a & b).count_ones()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 90.0), Some(90));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.9), Some(100));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.9), Some(7));
        let w = [10, 20, 30, 40];
        assert_eq!(percentile(&w, 50.0), Some(20));
        assert_eq!(percentile(&w, 51.0), Some(30));
        assert_eq!(percentile(&w, 150.0), Some(40));
    }

    #[test]
    fn latency_summary_in_ms() {
        let mut v: Vec<u64> = (1..=1000).rev().map(|i| i * 1_000_000).collect();
        let s = latency_summary(&mut v);
        assert_eq!(s["count"], 1000);
        assert_eq!(s["p50"], 500.0);
        assert_eq!(s["p99"], 990.0);
        assert_eq!(s["p999"], 999.0);
        assert_eq!(s["max"], 1000.0);
        assert_eq!(s["mean"], 500.5);
        let e = latency_summary(&mut []);
        assert!(e["p50"].is_null());
        assert_eq!(e["count"], 0);
    }

    #[test]
    fn vmrss() {
        let status = "Name:\trevurb\nVmPeak:\t  9000 kB\nVmRSS:\t    2412 kB\nThreads:\t1\n";
        assert_eq!(parse_vmrss(status), Some(2412 * 1024));
        assert_eq!(parse_vmrss("Name: x\n"), None);
        assert_eq!(parse_vmrss("VmRSS: abc kB\n"), None);
    }

    #[test]
    fn stat_ticks() {
        let stat = "4242 (rev urb) S 1 4242 4242 0 -1 4194560 500 0 0 0 123 45 0 0 20 0 1 0 \
                    100 10000000 600 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(168));
        // A name holding ") " must not shift the fields.
        let tricky = "7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat_ticks(tricky), Some(11));
        assert_eq!(parse_stat_ticks("7 (x) R 1 2"), None);
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn proc_of_self_is_readable() {
        let pid = std::process::id();
        assert!(read_rss(pid).unwrap() > 0);
        assert!(read_cpu_secs(pid).is_some());
        assert!(clk_tck() > 0);
    }

    #[test]
    fn bitset() {
        let mut b = Bitset::default();
        assert!(!b.set(3));
        assert!(b.set(3));
        assert!(!b.set(200));
        assert!(b.get(200) && b.get(3) && !b.get(4) && !b.get(10_000));
        assert_eq!(b.count(), 2);
        let mut o = Bitset::default();
        o.set(3);
        o.set(5);
        assert_eq!(b.count_and(&o), 1);
        assert_eq!(o.count_and(&b), 1);
    }
}
