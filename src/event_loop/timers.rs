//! The loop's deadlines: a min-heap of (when, `ConnId`) with lazy deletion.
//!
//! A connection has at most one loop deadline at a time (its phase's, see
//! `Phase::deadline`); re-arming it pushes a new entry and leaves the old
//! one to be skipped as stale when it comes up. Left alone that grows
//! without bound: a keep-alive client pipelining `GET /up` re-arms once
//! per answer, and before issue 11 the heap held every one of those
//! entries until it expired (hundreds of MB from one client, never given
//! back). So the heap is compacted, keeping only the entries that are still
//! some connection's current deadline, as soon as it holds more than twice
//! the number of connections (plus some slack); that keeps its size bounded
//! by the connections, and each compaction is paid for by the pushes or the
//! departures that made it necessary (amortised O(1)). Its memory is given
//! back when it is far below its capacity.
//!
//! It knows nothing of connections: the caller says how many there are and
//! which entries are current.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::pusher::ConnId;

/// Entries tolerated beyond twice the bound before compacting, so a few
/// connections do not compact on every re-arm.
const SLACK: usize = 64;

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(u64, ConnId)>>,
}

impl Timers {
    /// Wake up at `at` for `id`. `conns` is how many connections exist and
    /// `current` tells whether an entry is still its connection's deadline.
    pub fn arm(
        &mut self,
        id: ConnId,
        at: u64,
        conns: usize,
        current: impl Fn(u64, ConnId) -> bool,
    ) {
        self.heap.push(Reverse((at, id)));
        self.tidy(conns, current);
    }

    /// The earliest deadline, stale or not.
    pub fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Take the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, ConnId)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Entries held, stale ones included (the `revurb_timers` gauge).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drop stale entries once they outnumber what `conns` connections can
    /// hold, and give memory back once far below capacity. Called after
    /// every push and every departure; O(1) unless there is work to do.
    pub fn tidy(&mut self, conns: usize, current: impl Fn(u64, ConnId) -> bool) {
        if self.heap.len() > 2 * conns + SLACK {
            self.heap.retain(|Reverse((at, id))| current(*at, *id));
        }
        let len = self.heap.len();
        if self.heap.capacity() > 4 * len.max(SLACK) {
            self.heap.shrink_to(2 * len.max(SLACK));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections 0..n, each with its current deadline in `deadlines`.
    fn current(deadlines: &[u64]) -> impl Fn(u64, ConnId) -> bool + '_ {
        |at, id| deadlines.get(id.slot()) == Some(&at)
    }

    #[test]
    fn a_million_re_arms_on_a_few_connections_stay_bounded() {
        let mut t = Timers::default();
        let mut deadlines = vec![0u64; 4];
        let mut most = 0;
        for i in 0..1_000_000u64 {
            let slot = (i % 4) as usize;
            deadlines[slot] = i + 10_000;
            let id = ConnId::new(slot as u32, 0);
            t.arm(id, i + 10_000, deadlines.len(), current(&deadlines));
            most = most.max(t.heap.capacity());
        }
        assert!(t.len() <= 2 * 4 + SLACK + 1, "{} entries", t.len());
        assert!(most <= 4 * (2 * 4 + SLACK + 1), "capacity reached {most}");
        // the current deadlines are all still there, in order
        let mut due = Vec::new();
        while let Some((at, id)) = t.pop_due(u64::MAX) {
            if deadlines[id.slot()] == at {
                due.push((at, id.slot()));
            }
        }
        let want: Vec<(u64, usize)> = (0..4).map(|s| (999_996 + s as u64 + 10_000, s)).collect();
        assert_eq!(due, want);
    }

    #[test]
    fn memory_is_given_back_when_the_connections_go() {
        let mut t = Timers::default();
        let n = 100_000;
        let mut deadlines: Vec<u64> = (0..n).map(|i| i as u64).collect();
        for (slot, at) in deadlines.iter().enumerate() {
            t.heap.push(Reverse((*at, ConnId::new(slot as u32, 0))));
        }
        assert!(t.heap.capacity() >= n);
        // every connection goes: their entries are stale
        deadlines.clear();
        t.tidy(0, current(&deadlines));
        assert_eq!(t.len(), 0);
        assert!(t.heap.capacity() <= 2 * SLACK, "{}", t.heap.capacity());
    }

    #[test]
    fn entries_come_out_earliest_first_and_only_when_due() {
        let mut t = Timers::default();
        let deadlines = [30, 10, 20];
        for (slot, at) in deadlines.iter().enumerate() {
            t.arm(ConnId::new(slot as u32, 0), *at, 3, current(&deadlines));
        }
        assert_eq!(t.next(), Some(10));
        assert_eq!(t.pop_due(9), None);
        assert_eq!(t.pop_due(25).map(|(at, _)| at), Some(10));
        assert_eq!(t.pop_due(25).map(|(at, _)| at), Some(20));
        assert_eq!(t.pop_due(25), None);
        assert_eq!(t.next(), Some(30));
    }
}
