//! Per-receiver bookkeeping of a room's sequence numbers (`PROTOCOL.md` §1.4): which `seq`s this
//! client has seen, and how (live event, replayed event, ACK of its own op, or covered by a fresh
//! snapshot). Gaps are judged at the end of the run against the whole room, because an ACK of the
//! client's own op may legitimately arrive after later events from others.

/// Seen as a `CANVAS_UPDATE`/`UNDO`/`REDO`, live or in a `REPLAY`.
pub const EVENT: u8 = 1;
/// Seen as the `ACK` of this client's own op.
pub const ACK: u8 = 2;
/// Not seen one by one, but included in an `INITIAL_STATE` received on re-join.
pub const SNAPSHOT: u8 = 4;

/// A `seq` this far beyond what was seen is a server bug, not something to allocate for.
const MAX_JUMP: u64 = 10_000_000;

/// Anomalies one receiver saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqCounters {
    /// A live event whose `seq` had already been delivered.
    pub duplicates: u64,
    /// A live event whose `seq` is lower than one delivered before it.
    pub out_of_order: u64,
    /// An event at or below the `seq` of the joining snapshot (already in the state).
    pub stale: u64,
    /// A replayed event this client had already seen (it asked from its contiguous prefix).
    pub replay_overlap: u64,
    /// `seq`s skipped over by an `INITIAL_STATE` on re-join instead of a `REPLAY`.
    pub snapshot_resync: u64,
    /// The room's epoch changed between joins: history before it is forgotten.
    pub epoch_changes: u64,
    /// A `seq` absurdly far ahead; ignored.
    pub absurd: u64,
}

impl SeqCounters {
    pub fn add(&mut self, o: &SeqCounters) {
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.stale += o.stale;
        self.replay_overlap += o.replay_overlap;
        self.snapshot_resync += o.snapshot_resync;
        self.epoch_changes += o.epoch_changes;
        self.absurd += o.absurd;
    }
}

/// What one receiver saw of one room, handed to the collector at the end.
#[derive(Clone, Debug, Default)]
pub struct SeqReport {
    /// `seq`s up to this one came with the first `INITIAL_STATE`.
    pub base: u64,
    /// Flags of `base+1`, `base+2`, ...
    pub flags: Vec<u8>,
    /// The anomalies it met on the way.
    pub counters: SeqCounters,
}

/// Tracks one receiver in one room.
#[derive(Debug, Default)]
pub struct SeqTracker {
    epoch: Option<String>,
    base: u64,
    flags: Vec<u8>,
    /// Every `seq` up to this one has some flag: what a re-join asks to resume from.
    contiguous: u64,
    /// Highest live event `seq`, to spot reordering.
    max_event: u64,
    pub counters: SeqCounters,
}

/// Outcome of recording an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    New,
    Again,
    Stale,
    Ignored,
}

impl SeqTracker {
    /// `(since, epoch)` for a re-join, once the room was joined at least once.
    pub fn resume_point(&self) -> Option<(u64, &str)> {
        self.epoch.as_deref().map(|e| (self.contiguous, e))
    }

    /// An `INITIAL_STATE` with `seq` and `epoch`: the first join, a re-join the server could not
    /// replay, or a new epoch.
    pub fn initial_state(&mut self, seq: u64, epoch: &str) {
        match self.epoch.as_deref() {
            Some(e) if e == epoch => {
                for s in self.base + 1..=seq {
                    if let Some(f) = self.slot(s)
                        && *f == 0
                    {
                        *f = SNAPSHOT;
                        self.counters.snapshot_resync += 1;
                    }
                }
                self.advance();
            }
            Some(_) => {
                self.counters.epoch_changes += 1;
                self.restart(seq, epoch);
            }
            None => self.restart(seq, epoch),
        }
    }

    /// A `REPLAY`'s header: same epoch as asked (the server only replays then).
    pub fn replay_epoch(&mut self, epoch: &str) {
        if self.epoch.as_deref() != Some(epoch) {
            self.counters.epoch_changes += 1;
            self.restart(self.contiguous, epoch);
        }
    }

    fn restart(&mut self, seq: u64, epoch: &str) {
        self.epoch = Some(epoch.to_owned());
        self.base = seq;
        self.flags.clear();
        self.contiguous = seq;
        self.max_event = seq;
    }

    fn slot(&mut self, seq: u64) -> Option<&mut u8> {
        if seq <= self.base {
            return None;
        }
        let idx = seq - self.base - 1;
        if idx >= self.flags.len() as u64 {
            if idx > self.flags.len() as u64 + MAX_JUMP {
                self.counters.absurd += 1;
                return None;
            }
            self.flags.resize(idx as usize + 1, 0);
        }
        self.flags.get_mut(idx as usize)
    }

    fn advance(&mut self) {
        while let Some(f) = self.flags.get((self.contiguous - self.base) as usize) {
            if *f == 0 {
                break;
            }
            self.contiguous += 1;
        }
    }

    /// A live sequenced event from another member.
    pub fn live_event(&mut self, seq: u64) -> Mark {
        if self.epoch.is_none() {
            return Mark::Ignored;
        }
        if seq > self.base && seq < self.max_event {
            self.counters.out_of_order += 1;
        }
        let mark = self.event(seq);
        if mark == Mark::Again {
            self.counters.duplicates += 1;
        }
        mark
    }

    /// An event inside a `REPLAY`.
    pub fn replayed_event(&mut self, seq: u64) -> Mark {
        let mark = self.event(seq);
        if mark == Mark::Again {
            self.counters.replay_overlap += 1;
        }
        mark
    }

    /// Flags `seq` as seen as an event, live or replayed.
    fn event(&mut self, seq: u64) -> Mark {
        if seq <= self.base {
            self.counters.stale += 1;
            return Mark::Stale;
        }
        self.max_event = self.max_event.max(seq);
        let Some(f) = self.slot(seq) else {
            return Mark::Ignored;
        };
        if *f & EVENT != 0 {
            return Mark::Again;
        }
        *f |= EVENT;
        self.advance();
        Mark::New
    }

    /// The `ACK` of this client's own op.
    pub fn ack(&mut self, seq: u64) {
        if let Some(f) = self.slot(seq) {
            *f |= ACK;
            self.advance();
        }
    }

    /// Hands over what was seen; `None` if the room was never joined.
    pub fn finish(self) -> Option<SeqReport> {
        self.epoch.map(|_| SeqReport {
            base: self.base,
            flags: self.flags,
            counters: self.counters,
        })
    }
}

/// Verdict over one room: every member is held to the room's highest `seq` anyone saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoomVerdict {
    /// Highest `seq` seen in the room.
    pub final_seq: u64,
    /// (member, seq) pairs after the member's join that it never saw in any way.
    pub gaps: u64,
    /// Those of the gaps whose op had been acknowledged to its sender.
    pub lost_acked: u64,
    /// Those of the gaps after the last seq the member saw: still on their way when the run
    /// ended (late), where the others are holes (a later seq arrived, this one never did).
    pub tail: u64,
}

/// Judges one room from its members' reports.
pub fn judge_room(members: &[SeqReport]) -> RoomVerdict {
    let final_seq = members
        .iter()
        .map(|m| {
            m.base
                + m.flags
                    .iter()
                    .rposition(|&f| f != 0)
                    .map_or(0, |i| i as u64 + 1)
        })
        .max()
        .unwrap_or(0);
    let Some(low) = members.iter().map(|m| m.base).min() else {
        return RoomVerdict::default();
    };
    let span = (final_seq - low) as usize;
    let mut acked = vec![false; span];
    for m in members {
        for (i, &f) in m.flags.iter().enumerate() {
            if f & ACK != 0 {
                let abs = (m.base - low) as usize + i;
                if let Some(a) = acked.get_mut(abs) {
                    *a = true;
                }
            }
        }
    }
    let mut verdict = RoomVerdict {
        final_seq,
        ..RoomVerdict::default()
    };
    for m in members {
        let last_seen = m.base
            + m.flags
                .iter()
                .rposition(|&f| f != 0)
                .map_or(0, |i| i as u64 + 1);
        for s in m.base + 1..=final_seq {
            let seen = m
                .flags
                .get((s - m.base - 1) as usize)
                .is_some_and(|&f| f != 0);
            if !seen {
                verdict.gaps += 1;
                verdict.tail += u64::from(s > last_seen);
                if acked.get((s - low - 1) as usize).copied().unwrap_or(false) {
                    verdict.lost_acked += 1;
                }
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_acks_fill_the_holes_between_others_events() {
        let mut t = SeqTracker::default();
        t.initial_state(10, "e");
        assert_eq!(t.live_event(11), Mark::New);
        assert_eq!(t.live_event(13), Mark::New);
        assert_eq!(t.resume_point(), Some((11, "e")));
        t.ack(12);
        assert_eq!(t.resume_point(), Some((13, "e")));
        assert_eq!(t.live_event(13), Mark::Again);
        assert_eq!(t.live_event(9), Mark::Stale);
        assert_eq!(t.live_event(10 + MAX_JUMP + 100), Mark::Ignored);
        assert_eq!(
            t.counters,
            SeqCounters {
                duplicates: 1,
                stale: 1,
                absurd: 1,
                ..SeqCounters::default()
            }
        );
    }

    #[test]
    fn a_late_live_event_is_out_of_order_but_a_replayed_one_is_not() {
        let mut t = SeqTracker::default();
        assert_eq!(t.live_event(1), Mark::Ignored, "before any join");
        t.initial_state(0, "e");
        t.live_event(1);
        t.live_event(3);
        assert_eq!(t.live_event(2), Mark::New);
        assert_eq!(t.live_event(1), Mark::Again);
        assert_eq!(t.resume_point(), Some((3, "e")));
        t.replay_epoch("e");
        assert_eq!(t.replayed_event(5), Mark::New);
        assert_eq!(t.replayed_event(4), Mark::New);
        assert_eq!(t.replayed_event(4), Mark::Again);
        assert_eq!(t.replayed_event(0), Mark::Stale);
        assert_eq!(
            t.counters,
            SeqCounters {
                duplicates: 1,
                out_of_order: 2,
                replay_overlap: 1,
                stale: 1,
                ..SeqCounters::default()
            }
        );
        assert_eq!(t.resume_point(), Some((5, "e")));
    }

    #[test]
    fn rejoin_by_replay_or_snapshot_closes_the_gap() {
        let mut t = SeqTracker::default();
        t.initial_state(0, "e");
        t.live_event(1);
        t.live_event(3);
        t.replay_epoch("e");
        assert_eq!(t.replayed_event(2), Mark::New);
        assert_eq!(t.replayed_event(3), Mark::Again);
        assert_eq!(t.counters.replay_overlap, 1);
        t.initial_state(6, "e");
        assert_eq!(t.counters.snapshot_resync, 3);
        assert_eq!(t.resume_point(), Some((6, "e")));
        t.initial_state(2, "other");
        assert_eq!(t.counters.epoch_changes, 1);
        assert_eq!(t.resume_point(), Some((2, "other")));
    }

    #[test]
    fn the_room_verdict_counts_holes_and_lost_acknowledged_ops() {
        // Member a joined at 0 and sent 2 (acked); member b joined at 1 and missed 2 and 4.
        let mut a = SeqTracker::default();
        a.initial_state(0, "e");
        a.live_event(1);
        a.ack(2);
        a.live_event(3);
        a.live_event(4);
        let mut b = SeqTracker::default();
        b.initial_state(1, "e");
        b.live_event(3);
        let reports: Vec<_> = [a, b].into_iter().filter_map(SeqTracker::finish).collect();
        let v = judge_room(&reports);
        assert_eq!(v.final_seq, 4);
        assert_eq!(v.gaps, 2);
        assert_eq!(v.lost_acked, 1);
        assert_eq!(v.tail, 1, "b saw 3, so 2 is a hole and 4 a tail");
        assert_eq!(judge_room(&[]), RoomVerdict::default());
    }
}
