//! Draining: closing many connections gently, spread over a window, so that
//! the clients told to reconnect (4200) do not all come back in one instant.
//!
//! [`Spread`] is the schedule, sans-IO: it takes a snapshot of connection
//! ids and the window, and says which of them are due at `now`. The `n`
//! connections of a window `w` are closed evenly, the `i`-th (from 0) at
//! `start + i * w / n`, so the first goes at once and the last one
//! `w / n` before the window ends; a connection that went away on its own
//! meanwhile keeps its place in the schedule (its stale id closes
//! nothing), so the real closes are never denser than the plan. One call
//! of [`Spread::take`] (one loop turn) hands out at most [`Spread::cap`]
//! ids, the closes of [`CAP_SPAN_MS`] of the schedule: a loop that fell
//! behind (a long turn, a stopped process) catches up in several turns
//! instead of dumping its backlog on the clients at once. A window of 0
//! closes everything in one turn (the old, abrupt behaviour).
//!
//! The loop's side is `Server::begin_drain(window_ms, which, then)`: it
//! snapshots the connections for which `which(&Conn)` holds, and once per
//! turn closes those due (a WebSocket with a 4200 `pusher:error` and close
//! frame through `Hub::kick`, an HTTP connection by closing it); its next
//! deadline is in the loop's poll timeout. When the last one has been
//! closed the loop does what [`AfterDrain`] says: stop (the gentle
//! shutdown of SIGTERM, `revurb restart` and a restart over Redis, during
//! which `/up` answers 503 and upgrades are refused with 503), or nothing
//! more (for a caller that drains only some connections, such as those an
//! upgrade cannot hand over, and goes on serving). A drain begun while
//! another runs replaces it, taking over the connections the old one had
//! not closed yet, and a stop wins over going on.

use crate::pusher::ConnId;

/// The most closes one turn hands out: those of this many milliseconds of
/// the schedule (at least one).
pub const CAP_SPAN_MS: u64 = 50;

/// What the loop does once a drain has closed its last connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDrain {
    /// Stop: close what is left and exit (`Server::begin_shutdown`).
    Stop,
    /// Nothing: the loop goes on serving.
    Continue,
}

/// The schedule of one drain: which connection is closed when.
#[derive(Debug, Clone)]
pub struct Spread {
    start: u64,
    window: u64,
    ids: Vec<ConnId>,
    /// Index of the next id to hand out.
    next: usize,
    cap: usize,
}

impl Spread {
    /// Close `ids`, in this order, evenly over `window` ms from `now`.
    pub fn new(now: u64, window: u64, ids: Vec<ConnId>) -> Spread {
        let n = ids.len() as u64;
        let cap = if window == 0 {
            ids.len().max(1)
        } else {
            // ceil(n * span / window), at least 1
            (n.saturating_mul(CAP_SPAN_MS).div_ceil(window)).max(1) as usize
        };
        Spread {
            start: now,
            window,
            ids,
            next: 0,
            cap,
        }
    }

    /// When the `i`-th close is due.
    fn due_at(&self, i: usize) -> u64 {
        let n = self.ids.len() as u128;
        if n == 0 {
            return self.start;
        }
        // u128: i * window cannot overflow
        self.start + (i as u128 * u128::from(self.window) / n) as u64
    }

    /// The most ids one call of [`Spread::take`] returns.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// When the next close is due; `None` once every id was handed out.
    pub fn poll_timeout(&self) -> Option<u64> {
        (self.next < self.ids.len()).then(|| self.due_at(self.next))
    }

    /// The ids due at `now`, in order, at most [`Spread::cap`] of them.
    pub fn take(&mut self, now: u64) -> &[ConnId] {
        let from = self.next;
        while self.next < self.ids.len()
            && self.next - from < self.cap
            && self.due_at(self.next) <= now
        {
            self.next += 1;
        }
        &self.ids[from..self.next]
    }

    /// Every id was handed out.
    pub fn is_done(&self) -> bool {
        self.next >= self.ids.len()
    }

    /// The ids not handed out yet.
    pub fn remaining(&self) -> &[ConnId] {
        &self.ids[self.next..]
    }

    /// How many connections the drain started with.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The drain started with no connection.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// When the drain began (loop clock, ms).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The window, in ms.
    pub fn window(&self) -> u64 {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<ConnId> {
        (0..n).map(|i| ConnId::new(i as u32, 1)).collect()
    }

    /// Drive a spread on a simulated clock whose turns come every `step`
    /// ms (starting at `t0`); returns (turn time, closes) for every turn
    /// that closed something.
    fn run(spread: &mut Spread, t0: u64, step: u64) -> Vec<(u64, usize)> {
        let mut turns = Vec::new();
        let mut now = t0;
        let mut seen = spread.len() - spread.remaining().len();
        while !spread.is_done() {
            let taken = spread.take(now);
            for id in taken {
                assert_eq!(id.slot(), seen, "ids are handed out once, in order");
                seen += 1;
            }
            if !taken.is_empty() {
                turns.push((now, taken.len()));
            }
            now += step;
            assert!(now < t0 + 10_000_000, "the drain never ends");
        }
        assert_eq!(spread.take(now), &[] as &[ConnId]);
        turns
    }

    #[test]
    fn n_connections_are_closed_evenly_over_the_window() {
        // 1000 connections over 10 s, a turn every millisecond
        let mut s = Spread::new(5_000, 10_000, ids(1000));
        assert_eq!(s.cap(), 5);
        assert_eq!(s.poll_timeout(), Some(5_000));
        let turns = run(&mut s, 5_000, 1);
        let total: usize = turns.iter().map(|t| t.1).sum();
        assert_eq!(total, 1000, "every connection is closed");
        // the first at once, the last one 10 ms before the window ends
        assert_eq!(turns.first(), Some(&(5_000, 1)));
        assert_eq!(turns.last().map(|t| t.0), Some(5_000 + 9_990));
        // one every 10 ms, never two at once
        assert!(turns.iter().all(|&(_, n)| n == 1));
        for (i, &(at, _)) in turns.iter().enumerate() {
            assert_eq!(at, 5_000 + 10 * i as u64);
        }
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn any_second_of_the_window_closes_its_share() {
        // 19 000 over 5 s with turns every 3 ms: about 3 800 per second
        let mut s = Spread::new(0, 5_000, ids(19_000));
        let turns = run(&mut s, 0, 3);
        for second in 0..5u64 {
            let n: usize = turns
                .iter()
                .filter(|t| t.0 / 1000 == second)
                .map(|t| t.1)
                .sum();
            assert!((3_790..=3_810).contains(&n), "second {second}: {n}");
        }
        // the last is due at 4 999 ms, taken by the first turn after it
        assert!(turns.iter().all(|&(at, _)| at < 5_000 + 3));
        assert!(turns.iter().all(|&(_, n)| n <= s.cap()));
    }

    #[test]
    fn a_late_turn_takes_at_most_the_cap_and_catches_up_over_several_turns() {
        // 50 over 2 s: one every 40 ms, at most 2 per turn
        let mut s = Spread::new(0, 2_000, ids(50));
        assert_eq!(s.cap(), 2);
        // the loop was stuck for a second: 26 are due
        assert_eq!(s.take(1_000).len(), 2);
        assert_eq!(s.poll_timeout(), Some(80), "the rest is overdue");
        let mut turns = 1;
        while s.poll_timeout().is_some_and(|t| t <= 1_000) {
            assert!(s.take(1_000).len() <= 2);
            turns += 1;
        }
        assert_eq!(turns, 13, "26 due, 2 per turn");
        assert_eq!(s.remaining().len(), 24);
        assert_eq!(s.poll_timeout(), Some(1_040));
        let rest = run(&mut s, 1_001, 1);
        assert!(rest.iter().all(|&(_, n)| n == 1));
        assert_eq!(rest.iter().map(|t| t.1).sum::<usize>(), 24);
        assert!(s.is_done());
    }

    #[test]
    fn no_instant_closes_more_than_the_cap_whatever_the_turns() {
        for (n, window, step) in [
            (1, 5_000, 1),
            (7, 1_000, 333),
            (100, 100, 1),
            (10_000, 2_000, 17),
            (100_000, 1_000, 5),
            (3, 60_000, 1_000),
        ] {
            let mut s = Spread::new(0, window, ids(n));
            let cap = s.cap();
            assert_eq!(cap as u64, (n as u64 * CAP_SPAN_MS).div_ceil(window).max(1));
            let turns = run(&mut s, 0, step);
            assert_eq!(turns.iter().map(|t| t.1).sum::<usize>(), n, "{n}/{window}");
            assert!(
                turns.iter().all(|&(_, k)| k <= cap),
                "{n}/{window}: {turns:?}"
            );
            // all closed by the end of the window, give or take the cap's catch-up
            let last = turns.last().map_or(0, |t| t.0);
            let behind = (n / cap) as u64 * step; // at worst one cap per turn
            assert!(
                last < window + step || last <= behind,
                "{n}/{window}: last at {last}"
            );
        }
    }

    #[test]
    fn a_zero_window_closes_everything_in_one_turn() {
        let mut s = Spread::new(7, 0, ids(300));
        assert_eq!(s.poll_timeout(), Some(7));
        assert_eq!(s.take(7).len(), 300);
        assert!(s.is_done());
    }

    #[test]
    fn nothing_to_drain_is_done_at_once() {
        let mut s = Spread::new(0, 5_000, Vec::new());
        assert!(s.is_done() && s.is_empty());
        assert_eq!(s.poll_timeout(), None);
        assert!(s.take(0).is_empty());
    }

    #[test]
    fn nothing_is_handed_out_before_it_is_due() {
        let mut s = Spread::new(1_000, 1_000, ids(4));
        assert_eq!(s.take(999).len(), 0);
        assert_eq!(s.take(1_000).len(), 1);
        assert_eq!(s.take(1_249).len(), 0);
        assert_eq!(s.poll_timeout(), Some(1_250));
        assert_eq!(s.take(1_250).len(), 1);
        assert_eq!(s.remaining(), &ids(4)[2..]);
    }

    #[test]
    fn huge_windows_and_counts_do_not_overflow() {
        let mut s = Spread::new(u64::MAX / 4, u64::MAX / 4, ids(3));
        assert_eq!(s.take(u64::MAX / 4).len(), 1);
        assert_eq!(s.poll_timeout(), Some(u64::MAX / 4 + u64::MAX / 12));
    }
}
