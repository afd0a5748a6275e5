//! The local fan-out: which of this instance's sockets (and who is on each) are in which room,
//! and delivery of one room event to them.
//!
//! Engines call [`Hub::deliver`] with an event whose frame is already serialized; the hub clones
//! the shared bytes into each member's bounded queue and never waits. A member whose queue is
//! full is cut loose (its session closes with 1013) unless the event is lossy (cursor moves),
//! which is simply dropped for that member. Cost is per member of the room, not per connection
//! on the instance.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use crate::domain::access::Control;
use crate::domain::{ConnKey, Identity, RoomId};

/// What a session's writer receives, stamped with the [`Member::generation`] it was queued for.
#[derive(Debug)]
pub struct Outbound {
    pub generation: u64,
    pub item: Item,
}

#[derive(Debug)]
pub enum Item {
    /// A frame for the client. `seq` is set on sequenced events so a session that has just
    /// sent a snapshot can drop what the snapshot already covers. `legacy` is what a v1
    /// client gets instead, when that differs.
    Frame {
        seq: Option<u64>,
        bytes: Bytes,
        legacy: Option<Legacy>,
    },
    /// This connection's own op has gone out at `seq`: its `ACK` goes now, in order.
    Own { seq: u64 },
    /// This instance missed events the log can no longer supply: the session must re-join.
    /// `rebased`: the room went back in time (Redis lost confirmed writes), so ACKs still owed
    /// may be for ops it no longer holds.
    Resync { rebased: bool },
    /// Someone's access to the room changed: the session re-reads its role (or leaves).
    Control(Arc<Control>),
}

/// What v1 clients get in place of an event's frame (possibly nothing), shared by members.
pub type Legacy = Arc<[Bytes]>;

/// One room event as an engine hands it over.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Set on sequenced events (strokes, undo, redo).
    pub seq: Option<u64>,
    /// Sequenced: the connection whose op this is (it gets [`Outbound::Own`]).
    /// Transient: the connection that must not receive it (the sender, or the joiner).
    pub origin: Option<ConnKey>,
    /// May be dropped for a slow member instead of closing it.
    pub lossy: bool,
    pub frame: Bytes,
    /// See [`Item::Frame`].
    pub legacy: Option<Legacy>,
}

/// What happened to a delivery, so the engine can repair ordering.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Handed to every member (or the room has none here).
    Done,
    /// Already delivered: a replayed or duplicated event.
    Stale,
    /// Events after `after` and before this one are missing; nothing was delivered.
    Gap { after: u64 },
    /// A different event under the seq last delivered: the room's seq went back (Redis lost
    /// writes: a failover to a lagging replica, a lost AOF tail). Nothing was delivered.
    Diverged,
}

/// A room's delivered position: the seq, the epoch it belongs to (when a join told it) and
/// the fingerprint of the event delivered at that seq (when one was): what the feed compares
/// with the room's log to notice that Redis went back in time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub seq: u64,
    pub epoch: Option<String>,
    pub mark: Option<u64>,
}

/// Identifies a sequenced event by what its members receive, so a repeat (the same record
/// read from the log after it came live) is told apart from a new event under a reused seq.
pub fn fingerprint(event: &Delivery) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    event.seq.hash(&mut hasher);
    event.origin.as_ref().map(ConnKey::as_str).hash(&mut hasher);
    event.frame.hash(&mut hasher);
    hasher.finish()
}

/// A room's local members: each connection with who is on it.
pub type Presence = Vec<(ConnKey, Arc<Identity>)>;

/// A socket's place in a room.
pub struct Member {
    pub key: ConnKey,
    /// Who is on the socket, shared with its session: the presence this instance must be able
    /// to put back in the engine if it was swept while this instance looked dead.
    pub who: Arc<Identity>,
    /// Which of the session's memberships this is: items queued for a room the session has
    /// since left carry an old generation and are dropped.
    pub generation: u64,
    pub tx: mpsc::Sender<Outbound>,
    /// Cancelled when the member could not keep up; its session closes with 1013.
    pub overflow: CancellationToken,
}

#[derive(Default)]
struct LocalRoom {
    members: Vec<Member>,
    /// Highest seq handed to members, to detect gaps and drop repeats.
    last_seq: Option<u64>,
    /// The epoch of `last_seq`, from the join that set it (`None`: not known yet).
    epoch: Option<String>,
    /// [`fingerprint`] of the event delivered at `last_seq` (`None`: it came from a snapshot).
    mark: Option<u64>,
}

impl LocalRoom {
    fn position(&self) -> Option<Position> {
        self.last_seq.map(|seq| Position {
            seq,
            epoch: self.epoch.clone(),
            mark: self.mark,
        })
    }
}

/// Which Redis script a timing is of.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScriptLabel {
    pub script: &'static str,
}

/// Short latencies, from 10 µs to about 0.3 s.
fn fast_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 15))
}

/// Counters the metrics endpoint reports (members cut loose are counted by their sessions).
/// The feed counters and script timings are kept by engines that have them (the Redis one).
pub struct HubStats {
    /// Time to hand one event to every local member of its room: this instance's fan-out.
    pub deliver_seconds: Histogram,
    /// Time of each Redis room-script call, round trip included, by script.
    pub script_seconds: Family<ScriptLabel, Histogram, fn() -> Histogram>,
    pub delivered: Counter,
    pub dropped_lossy: Counter,
    /// Times the room event feed was (re)established after being lost.
    pub feed_resubscribed: Counter,
    /// Events missed by the feed and delivered from the room's log instead.
    pub filled_from_log: Counter,
    /// Rooms whose sessions were told to re-join because the log could not fill a hole.
    pub resyncs: Counter,
    /// Rooms this instance found gone back in time (Redis lost confirmed writes) and rebased.
    pub rebases: Counter,
    /// Room channels the feed holds (`pubsub_mode` room or sharded; 0 with one pattern).
    pub subscribed_rooms: Gauge,
    /// Messages and bytes (channel and payload) the feed received, every room's included:
    /// what subscribing per room saves an instance.
    pub feed_messages: Counter,
    pub feed_bytes: Counter,
    /// Times the feed's queue was full and messages were dropped (then refilled from logs).
    pub feed_overflows: Counter,
}

impl Default for HubStats {
    fn default() -> Self {
        Self {
            deliver_seconds: fast_histogram(),
            script_seconds: Family::new_with_constructor(fast_histogram as fn() -> Histogram),
            delivered: Counter::default(),
            dropped_lossy: Counter::default(),
            feed_resubscribed: Counter::default(),
            filled_from_log: Counter::default(),
            resyncs: Counter::default(),
            rebases: Counter::default(),
            subscribed_rooms: Gauge::default(),
            feed_messages: Counter::default(),
            feed_bytes: Counter::default(),
            feed_overflows: Counter::default(),
        }
    }
}

#[derive(Default)]
pub struct Hub {
    // A plain mutex: it is never held across an await, and delivery under it is a few
    // non-blocking channel sends.
    rooms: Mutex<HashMap<RoomId, LocalRoom>>,
    pub stats: HubStats,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&self, room: &RoomId, member: Member) {
        let mut rooms = self.rooms.lock();
        let local = rooms.entry(room.clone()).or_default();
        local.members.retain(|m| m.key != member.key);
        local.members.push(member);
    }

    pub fn remove(&self, room: &RoomId, key: &ConnKey) {
        let mut rooms = self.rooms.lock();
        if let Some(local) = rooms.get_mut(room) {
            local.members.retain(|m| &m.key != key);
            if local.members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Records the seq (and epoch) a joiner's snapshot was taken at, when the hub has no
    /// position for the room yet; later events are then checked for gaps from there.
    pub fn note_seq(&self, room: &RoomId, seq: u64, epoch: &str) {
        if let Some(local) = self.rooms.lock().get_mut(room) {
            if local.last_seq.is_none() {
                local.last_seq = Some(seq);
                local.mark = None;
            }
            local.epoch.get_or_insert_with(|| epoch.to_owned());
        }
    }

    /// Every local room with its delivered position, for refilling after a pub/sub outage.
    pub fn positions(&self) -> Vec<(RoomId, Option<Position>)> {
        self.rooms
            .lock()
            .iter()
            .map(|(id, r)| (id.clone(), r.position()))
            .collect()
    }

    /// The delivered position of one local room, if it has one.
    pub fn position(&self, room: &RoomId) -> Option<Position> {
        self.rooms.lock().get(room).and_then(LocalRoom::position)
    }

    /// Every local room with the connection and identity of each member, for re-announcing
    /// presence.
    pub fn presence(&self) -> Vec<(RoomId, Presence)> {
        self.rooms
            .lock()
            .iter()
            .map(|(id, r)| {
                let members = r.members.iter().map(|m| (m.key.clone(), m.who.clone()));
                (id.clone(), members.collect())
            })
            .collect()
    }

    pub fn is_member(&self, room: &RoomId, key: &ConnKey) -> bool {
        self.rooms
            .lock()
            .get(room)
            .is_some_and(|r| r.members.iter().any(|m| &m.key == key))
    }

    pub fn rooms(&self) -> Vec<RoomId> {
        self.rooms.lock().keys().cloned().collect()
    }

    pub fn is_local(&self, room: &RoomId) -> bool {
        self.rooms.lock().contains_key(room)
    }

    /// Tells every member to re-join and forgets the position, so the next event is accepted.
    pub fn resync(&self, room: &RoomId) {
        self.resync_members(room, false);
    }

    /// As [`Hub::resync`], for a room that went back in time under a new epoch.
    pub fn rebased(&self, room: &RoomId) {
        self.resync_members(room, true);
    }

    fn resync_members(&self, room: &RoomId, rebased: bool) {
        let mut rooms = self.rooms.lock();
        if let Some(local) = rooms.get_mut(room) {
            self.stats.resyncs.inc();
            local.last_seq = None;
            local.epoch = None;
            local.mark = None;
            local.members.retain(|m| {
                match m.tx.try_send(Outbound {
                    generation: m.generation,
                    item: Item::Resync { rebased },
                }) {
                    Ok(()) => true,
                    Err(_) => {
                        m.overflow.cancel();
                        false
                    }
                }
            });
        }
    }

    /// Hands an access change to the members it concerns. Never lossy: a member whose queue is
    /// full is cut loose (it reconnects and is checked afresh), so nobody keeps rights they lost.
    pub fn control(&self, room: &RoomId, control: &Arc<Control>) {
        let mut rooms = self.rooms.lock();
        if let Some(local) = rooms.get_mut(room) {
            local.members.retain(|m| {
                if !control.concerns(&m.who.user_id) {
                    return true;
                }
                match m.tx.try_send(Outbound {
                    generation: m.generation,
                    item: Item::Control(control.clone()),
                }) {
                    Ok(()) => true,
                    Err(_) => {
                        m.overflow.cancel();
                        false
                    }
                }
            });
        }
    }

    pub fn deliver(&self, room: &RoomId, event: &Delivery) -> Delivered {
        let started = std::time::Instant::now();
        let delivered = self.deliver_now(room, event);
        if delivered == Delivered::Done {
            self.stats
                .deliver_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        delivered
    }

    fn deliver_now(&self, room: &RoomId, event: &Delivery) -> Delivered {
        let mut rooms = self.rooms.lock();
        let Some(local) = rooms.get_mut(room) else {
            return Delivered::Done;
        };
        if let Some(seq) = event.seq {
            match local.last_seq {
                Some(last) if seq == last => {
                    // A repeat is the same record; anything else reuses the seq.
                    return match local.mark {
                        Some(mark) if mark != fingerprint(event) => Delivered::Diverged,
                        _ => Delivered::Stale,
                    };
                }
                Some(last) if seq < last => return Delivered::Stale,
                Some(last) if seq > last + 1 => return Delivered::Gap { after: last },
                _ => {
                    local.last_seq = Some(seq);
                    local.mark = Some(fingerprint(event));
                }
            }
        }
        let stats = &self.stats;
        local.members.retain(|m| {
            let mine = event.origin.as_ref() == Some(&m.key);
            let item = match (event.seq, mine) {
                (Some(seq), true) => Item::Own { seq },
                (None, true) => return true,
                (seq, false) => Item::Frame {
                    seq,
                    bytes: event.frame.clone(),
                    legacy: event.legacy.clone(),
                },
            };
            match m.tx.try_send(Outbound {
                generation: m.generation,
                item,
            }) {
                Ok(()) => {
                    stats.delivered.inc();
                    true
                }
                Err(TrySendError::Full(_)) if event.lossy => {
                    stats.dropped_lossy.inc();
                    true
                }
                Err(TrySendError::Full(_)) => {
                    m.overflow.cancel();
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        if local.members.is_empty() {
            rooms.remove(room);
        }
        Delivered::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn member(
        hub: &Hub,
        room: &RoomId,
        n: u64,
        cap: usize,
    ) -> (mpsc::Receiver<Outbound>, CancellationToken) {
        let (tx, rx) = mpsc::channel(cap);
        let overflow = CancellationToken::new();
        hub.add(
            room,
            Member {
                key: ConnKey::new("i", n),
                who: Arc::new(Identity::new(UserId::new(format!("u{n}")), "U".into())),
                generation: 0,
                tx,
                overflow: overflow.clone(),
            },
        );
        (rx, overflow)
    }

    fn seq_event(seq: u64, origin: u64) -> Delivery {
        Delivery {
            seq: Some(seq),
            origin: Some(ConnKey::new("i", origin)),
            lossy: false,
            frame: Bytes::from_static(b"{}"),
            legacy: None,
        }
    }

    #[test]
    fn origin_gets_own_marker_others_get_the_frame() {
        let hub = Hub::new();
        let room = RoomId::new("r");
        let (mut a, _) = member(&hub, &room, 1, 8);
        let (mut b, _) = member(&hub, &room, 2, 8);
        assert_eq!(hub.deliver(&room, &seq_event(1, 1)), Delivered::Done);
        assert!(matches!(
            a.try_recv().map(|o| o.item),
            Ok(Item::Own { seq: 1 })
        ));
        assert!(matches!(
            b.try_recv().map(|o| o.item),
            Ok(Item::Frame { seq: Some(1), .. })
        ));
    }

    #[test]
    fn repeats_are_stale_and_holes_are_reported_without_delivery() {
        let hub = Hub::new();
        let room = RoomId::new("r");
        let (mut a, _) = member(&hub, &room, 1, 8);
        hub.note_seq(&room, 4, "e");
        assert_eq!(hub.deliver(&room, &seq_event(4, 9)), Delivered::Stale);
        assert_eq!(
            hub.deliver(&room, &seq_event(6, 9)),
            Delivered::Gap { after: 4 }
        );
        assert!(a.try_recv().is_err());
        assert_eq!(hub.deliver(&room, &seq_event(5, 9)), Delivered::Done);
        assert_eq!(hub.deliver(&room, &seq_event(6, 9)), Delivered::Done);
        // The same event again is a repeat; another one under its seq is a regression.
        assert_eq!(hub.deliver(&room, &seq_event(6, 9)), Delivered::Stale);
        assert_eq!(hub.deliver(&room, &seq_event(6, 8)), Delivered::Diverged);
        let position = hub.position(&room).expect("a position");
        assert_eq!((position.seq, position.epoch.as_deref()), (6, Some("e")));
        assert_eq!(position.mark, Some(fingerprint(&seq_event(6, 9))));
    }

    #[test]
    fn presence_lists_local_members_with_who_they_are() {
        let hub = Hub::new();
        let room = RoomId::new("r");
        let (_a, _) = member(&hub, &room, 1, 8);
        let (_b, _) = member(&hub, &room, 2, 8);
        let [(listed, mut members)] = hub.presence().try_into().expect("one room");
        assert_eq!(listed, room);
        members.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
        let users: Vec<_> = members
            .iter()
            .map(|(_, who)| who.user_id.as_str())
            .collect();
        assert_eq!(users, ["u1", "u2"]);
        hub.remove(&room, &ConnKey::new("i", 1));
        assert!(!hub.is_member(&room, &ConnKey::new("i", 1)));
        assert!(hub.is_member(&room, &ConnKey::new("i", 2)));
    }

    #[test]
    fn a_full_queue_drops_lossy_events_and_cuts_loose_on_others() {
        let hub = Hub::new();
        let room = RoomId::new("r");
        let (_slow, overflow) = member(&hub, &room, 1, 1);
        let (mut fast, _) = member(&hub, &room, 2, 8);
        let cursor = Delivery {
            seq: None,
            origin: None,
            lossy: true,
            frame: Bytes::from_static(b"c"),
            legacy: None,
        };
        hub.deliver(&room, &cursor);
        hub.deliver(&room, &cursor);
        assert!(
            !overflow.is_cancelled(),
            "lossy events never cut a member loose"
        );
        hub.deliver(&room, &seq_event(1, 9));
        assert!(overflow.is_cancelled());
        for _ in 0..3 {
            assert!(fast.try_recv().is_ok(), "the fast member is not slowed");
        }
    }
}
