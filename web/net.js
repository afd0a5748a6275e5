// drawbridge whiteboard, part 3 of 5: the connection and keeping the board in sync.
//
//   socket   one WebSocket to /ws, authenticated with the subprotocol `bearer.<jwt>` (a token in the
//            URL would end up in proxy logs). JOIN_ROOM on every (re)connect, with {since, epoch}
//            once we have seen the room, so the server can answer with a REPLAY of what we missed.
//   seq      sequenced events are applied strictly in seq order: `ahead` holds what arrived early
//            (our ACKs race other people's events). A hole that stays open re-joins with `since`.
//   outbox   our ops are the board's `pending` list: shown at once, sent in order at a pace under the
//            server's rate limit, resent with the same opId after a reconnect (the server answers a
//            repeat with its original ACK), and folded into the confirmed board at their ACK's seq.
//   undo     UNDO/REDO carry no target: the server undoes our latest op and tells others what that
//            did, but tells us only "ACK". We show a predicted effect at once, then learn the real
//            one from a REPLAY (a re-join with `since` just before it) and apply that instead.
'use strict';

(() => {
  const W = (window.Whiteboard = window.Whiteboard || {});
  const M = W.model;

  const PROTOCOL = '1.1';
  /** How long a hole in the seq sequence may stay open before we ask the server to replay it. */
  const GAP_WAIT_MS = 1000;
  const BACKOFF_FIRST_MS = 1000;
  const BACKOFF_MAX_MS = 10000;
  /** App-level ping so a silently dead connection is noticed (the browser hides protocol pings). */
  const PING_EVERY_MS = 20000;
  const DEAD_AFTER_MS = 45000;
  /** A handshake that has not finished by then (a black-holed network) is given up and retried. */
  const CONNECT_TIMEOUT_MS = 10000;
  /** Sequenced ops per second we allow ourselves; the server's default limit is 30/s per connection. */
  const OPS_PER_SEC = 20;
  const OPS_BURST = 8;
  /** The server refuses frames over 64 KiB; we split ops well below that. */
  const MAX_FRAME = 60 * 1024;

  function newId() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  /** "1.10" > "1.9": versions compare part by part, as numbers. */
  function versionBelow(a, b) {
    const pa = String(a).split('.').map(Number);
    const pb = String(b).split('.').map(Number);
    for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
      const x = pa[i] || 0;
      const y = pb[i] || 0;
      if (x !== y) return x < y;
    }
    return false;
  }

  const encoder = new TextEncoder();
  const frameBytes = (obj) => encoder.encode(JSON.stringify(obj)).length;

  class Sync {
    /**
     * hooks: session() -> {token}, freshToken(force) -> Promise, me() -> userId,
     * status(state, text), joined(), users(list | null), message(type, payload) for presence,
     * cursors, live strokes and the rest (and SOCKET_LOST when the socket drops), toast(text),
     * roomGone(text), reload(text), changed() after anything that may enable or disable undo/redo.
     */
    constructor(board, hooks) {
      this.board = board;
      this.hooks = hooks;
      this.roomId = null;
      this.ws = null;
      this.socketGen = 0;
      /** INITIAL_STATE or REPLAY received for the latest JOIN_ROOM (false while a re-join is answered). */
      this.joined = false;
      /** In the room on an open socket: stays true while the same socket re-joins to repair a gap. */
      this.live = false;
      this.attempts = 0;
      this.reconnectTimer = 0;
      this.lastMessageAt = 0;
      this.pingTimer = 0;
      this.closeCodes = [];
      this.seq = 0;
      this.epoch = null;
      /** seq -> {frame?: {type, payload}, op?}: sequenced things that arrived before their turn. */
      this.ahead = new Map();
      this.gapTimer = 0;
      this.rejoinTimer = 0;
      /** The server's protocol as its last INITIAL_STATE/REPLAY said (null: a v1 server). */
      this.serverProtocol = null;
      /** Whether a join was answered on this room yet (until then we cannot tell v1 from v1.1). */
      this.serverKnown = false;
      this.joins = { initialState: 0, replay: 0 };
      this.tokens = OPS_BURST;
      this.tokensAt = performance.now();
      this.flushTimer = 0;
      /** Our own gestures for undo/redo: each {ops: [op]}; see History in app.js. */
      this.onOpSettled = () => {};
      this.textTimer = 0;
      /** How often a text had to be re-synced (for tests). */
      this.textResyncs = 0;
      board.onTextDiverged = () => this.resyncText();
    }

    // ---- lifecycle ----------------------------------------------------------------------------

    open(roomId) {
      this.roomId = roomId;
      this.reset();
      this.connect();
    }

    close() {
      if (this.ws && this.ws.readyState === WebSocket.OPEN && this.roomId) this.send('LEAVE_ROOM', { roomId: this.roomId });
      this.closeSocket();
      clearTimeout(this.reconnectTimer);
      this.roomId = null;
      this.reset();
    }

    reset() {
      this.seq = 0;
      this.epoch = null;
      this.ahead.clear();
      this.board.pending.length = 0;
      this.board.reset([]);
      this.serverProtocol = null;
      this.serverKnown = false;
    }

    /** A v1 server (it sent no protocol) knows strokes only. */
    get v1Server() {
      return this.serverKnown && !this.serverProtocol;
    }

    send(type, payload) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
      this.ws.send(JSON.stringify({ type, payload }));
      return true;
    }

    async connect() {
      clearTimeout(this.reconnectTimer);
      if (!this.roomId) return;
      if (this.ws) this.closeSocket(); // never leave a half-open socket behind (it would hold our presence)
      this.hooks.status('connecting', this.attempts ? 'Reconnecting…' : 'Connecting…');
      const gen = ++this.socketGen;
      try {
        // After repeated failures the token may be the problem (expired, or the server's secret changed).
        await this.hooks.freshToken(this.attempts >= 4 && this.attempts % 4 === 0);
      } catch {
        if (gen === this.socketGen) this.scheduleReconnect();
        return;
      }
      if (gen !== this.socketGen || !this.roomId) return;
      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const sock = new WebSocket(`${scheme}//${location.host}/ws`, [`bearer.${this.hooks.session().token}`]);
      this.ws = sock;
      this.joined = false;
      const handshake = setTimeout(() => {
        if (gen === this.socketGen && sock.readyState === WebSocket.CONNECTING) this.socketLost(4001);
      }, CONNECT_TIMEOUT_MS);
      sock.onopen = () => {
        clearTimeout(handshake);
        if (gen !== this.socketGen) return;
        this.lastMessageAt = Date.now();
        this.sendJoin(false);
        clearInterval(this.pingTimer);
        this.pingTimer = setInterval(() => {
          if (Date.now() - this.lastMessageAt > DEAD_AFTER_MS) this.dropConnection();
          else this.send('PING', {});
        }, PING_EVERY_MS);
      };
      sock.onmessage = (e) => {
        if (gen !== this.socketGen) return;
        this.lastMessageAt = Date.now();
        let msg;
        try { msg = JSON.parse(e.data); } catch { return; }
        if (msg && typeof msg.type === 'string') this.onMessage(msg);
      };
      sock.onclose = (e) => {
        if (gen === this.socketGen) this.socketLost(e.code);
      };
    }

    closeSocket() {
      this.socketGen++;
      clearInterval(this.pingTimer);
      clearTimeout(this.gapTimer);
      this.joined = false;
      this.live = false;
      if (this.ws) {
        this.ws.onopen = this.ws.onmessage = this.ws.onclose = null;
        try { this.ws.close(); } catch { /* already closed */ }
        this.ws = null;
      }
    }

    socketLost(code) {
      this.closeCodes.push(code);
      if (this.closeCodes.length > 20) this.closeCodes.shift();
      this.closeSocket();
      this.hooks.message('SOCKET_LOST', {});
      if (!this.roomId) return;
      this.scheduleReconnect(code);
      this.hooks.changed();
    }

    /** Drops the socket as if the network did; used for dead connections and by tests. */
    dropConnection() {
      if (this.ws) this.socketLost(4000);
    }

    scheduleReconnect(code) {
      clearTimeout(this.reconnectTimer);
      // 1001: the instance is draining, and any other will do. 1008 with a stale token: it expired
      // mid-session, and a renewed one fixes it. Both come back at once; anything else backs off.
      // Anything else is "full jitter": a uniform draw up to the exponential ceiling. When an
      // instance dies all its pages lose their socket in the same instant; spreading their first
      // retries over a whole second (and later ones wider) keeps them from arriving together at
      // the survivors, which admit only so many upgrades per second (503, seen here as a failure).
      const quick = code === 1001 || (code === 1008 && this.hooks.tokenStale());
      const delay = quick
        ? Math.round(50 * (0.7 + Math.random() * 0.6))
        : Math.round(Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempts));
      this.attempts++;
      this.hooks.status('offline', `Offline · retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    }

    online() {
      if (this.roomId && !this.joined) {
        this.attempts = 0;
        this.connect();
      }
    }

    sendJoin(full) {
      this.joined = false;
      clearTimeout(this.gapTimer);
      const payload = { roomId: this.roomId, protocol: PROTOCOL };
      if (!full && this.epoch !== null) {
        payload.since = this.seq;
        payload.epoch = this.epoch;
      }
      this.send('JOIN_ROOM', payload);
    }

    joinDone() {
      this.joined = true;
      this.live = true;
      this.attempts = 0;
      this.hooks.status('online', 'Live');
      this.flush();
      this.hooks.joined();
      this.hooks.changed();
    }

    // ---- outbox ---------------------------------------------------------------------------------

    /**
     * Queues one sequenced op. `effect` is what it does to the board as we show it now; `intent` is
     * what it does at its seq by the server's rules (null for undo/redo: only the server knows).
     * A `held` op is shown but not sent until the flag is cleared and flush runs.
     */
    submit(type, payload, { effect, intent = effect, inverse = null, kind = 'op', held = false }) {
      // A viewer's op would only be refused (FORBIDDEN): it never leaves the page.
      if (this.readOnly) {
        this.hooks.toast('You can view this board but not change it.');
        return null;
      }
      if (this.v1Server && (type.startsWith('ELEMENTS_') || type === 'TEXT_EDIT')) {
        this.hooks.toast('This server only knows freehand strokes; shapes need a newer server.');
        return null;
      }
      const op = { opId: newId(), type, payload, effect, intent, inverse, kind, held, sentOn: 0, everSent: false, ackSeq: 0 };
      if (type === 'CANVAS_UPDATE') op.opId = payload.canvasData.strokeId;
      if (frameBytes({ type, payload: { ...payload, roomId: this.roomId, opId: op.opId } }) > MAX_FRAME) {
        this.hooks.toast('That change is too large to send in one go.');
        return null;
      }
      this.board.addPending(op);
      this.flush();
      this.hooks.changed();
      return op;
    }

    /** Replaces an op that has not left yet (a drag's next position); false if it already went. */
    amend(op, payload, effect, intent = effect) {
      if (!op || op.everSent || !this.board.pending.includes(op)) return false;
      op.payload = payload;
      op.intent = intent;
      this.board.replacePending(op, effect);
      return true;
    }

    /** Takes back an op that never left this page. */
    withdraw(op) {
      if (op.everSent) return false;
      this.board.dropPending(op);
      this.hooks.changed();
      return true;
    }

    refill() {
      const now = performance.now();
      this.tokens = Math.min(OPS_BURST, this.tokens + ((now - this.tokensAt) / 1000) * OPS_PER_SEC);
      this.tokensAt = now;
    }

    /** Sends every op not yet sent on this socket, in order, as fast as the pace allows. */
    flush() {
      clearTimeout(this.flushTimer);
      this.flushTimer = 0;
      if (!this.joined) return;
      for (const op of this.board.pending) {
        if (op.held) break; // a gesture still being made (an eraser stroke): it and what follows wait
        if (op.sentOn === this.socketGen || op.ackSeq) continue;
        this.refill();
        if (this.tokens < 1) {
          this.flushTimer = setTimeout(() => this.flush(), Math.ceil(((1 - this.tokens) / OPS_PER_SEC) * 1000) + 5);
          return;
        }
        if (!this.send(op.type, { ...op.payload, roomId: this.roomId, opId: op.opId })) return;
        this.tokens -= 1;
        op.sentOn = this.socketGen;
        op.everSent = true;
      }
      this.hooks.changed();
    }

    /** Ops still waiting for the server (for the status line and tests). */
    unsentCount() {
      return this.board.pending.filter((op) => !op.ackSeq).length;
    }

    /** Transient frames (cursor, live stroke): only while joined, never queued. */
    sendTransient(type, payload) {
      if (!this.live || (type === 'STROKE_PROGRESS' && this.v1Server)) return false;
      return this.send(type, { ...payload, roomId: this.roomId });
    }

    // ---- seq bookkeeping ------------------------------------------------------------------------

    /** Files a sequenced item under its seq; false if that seq was already applied. */
    file(s, item) {
      if (typeof s !== 'number' || !Number.isFinite(s) || s <= this.seq) return false;
      const had = this.ahead.get(s) || {};
      // A frame is the truth about a seq; an op we filed there earlier is just ours to retire with it.
      this.ahead.set(s, { frame: item.frame || had.frame, op: item.op || had.op });
      return true;
    }

    /** Applies everything that is next in seq order; arms the gap timer for what is left. */
    drain() {
      for (;;) {
        const next = this.seq + 1;
        const item = this.ahead.get(next);
        if (!item) break;
        if (item.frame) {
          const effect = M.effectOfEvent(item.frame.type, item.frame.payload);
          if (effect) this.board.applyConfirmed(effect, next);
        } else if (item.op.intent) {
          this.board.applyConfirmed(item.op.intent, next);
        } else {
          // Our undo/redo, whose effect only the server knows: a REPLAY from just before it says.
          this.resolveByReplay();
          break;
        }
        if (item.op) {
          this.board.dropPending(item.op);
          this.onOpSettled(item.op);
        }
        this.ahead.delete(next);
        this.seq = next;
      }
      clearTimeout(this.gapTimer);
      if (this.ahead.size) {
        this.gapTimer = setTimeout(() => {
          if (this.ahead.size && this.joined) this.sendJoin(false);
        }, GAP_WAIT_MS);
      }
      this.hooks.changed();
    }

    /**
     * Re-joins with `since` so the server replays the events of our own undo/redo. If more of them
     * are on their way (a whole drag being undone), waits for their ACKs: one REPLAY covers them all.
     */
    resolveByReplay() {
      const inFlight = this.board.pending.some((op) => op.kind !== 'op' && !op.ackSeq);
      if (this.joined && !inFlight) this.sendJoin(false);
    }

    /**
     * Our copy of an element's text is out of step with the server's (a sequenced edit did not
     * apply, or the server refused ours because it no longer has a character we named, e.g. a
     * tombstone it compacted away): a full state brings the server's text. Coalesced.
     */
    resyncText() {
      this.textResyncs++;
      clearTimeout(this.textTimer);
      this.textTimer = setTimeout(() => { if (this.joined) this.sendJoin(true); }, 100);
    }

    // ---- incoming -------------------------------------------------------------------------------

    onMessage({ type, payload: p = {} }) {
      if (p.roomId && p.roomId !== this.roomId) return;
      switch (type) {
        case 'INITIAL_STATE': return this.onInitialState(p);
        case 'REPLAY': return this.onReplay(p);
        case 'CANVAS_UPDATE': case 'UNDO': case 'REDO':
        case 'ELEMENTS_ADDED': case 'ELEMENTS_UPDATED': case 'ELEMENTS_DELETED':
        case 'ROOM_RESTORED': case 'TEXT_EDITED':
          if (this.joined && this.file(p.seq, { frame: { type, payload: p } })) this.drain();
          return;
        case 'ACK': return this.onAck(p);
        case 'ERROR': return this.onError(p);
        case 'ROOM_EXPIRED': return this.hooks.roomGone('This room has expired.');
        default: return this.hooks.message(type, p);
      }
    }

    /** A server whose minimum protocol is above ours has changed under us: only a reload helps. */
    tooOld(p) {
      if (p.minProtocol && versionBelow(PROTOCOL, p.minProtocol)) {
        this.hooks.reload('This page is out of date; reloading…');
        return true;
      }
      this.serverProtocol = p.protocol || null;
      this.serverKnown = true;
      return false;
    }

    onInitialState(p) {
      if (this.tooOld(p)) return;
      this.joins.initialState++;
      const S = typeof p.seq === 'number' ? p.seq : 0;
      const strokes = (p.strokes || []).map(M.strokeElement).filter(Boolean);
      const elements = (p.elements || []).map((e) => (e && e.kind === 'stroke' ? M.strokeElement(e) : e));
      const ids = new Set([...strokes, ...elements].filter(Boolean).map((e) => e.id));
      // Ours already in this state: sequenced at or before S, or (after a lost ACK) added under ids it shows.
      // Ops acknowledged after S stay filed in `ahead` and are applied on top when their turn comes.
      for (const op of [...this.board.pending]) {
        const adds = op.type === 'CANVAS_UPDATE' || op.type === 'ELEMENTS_ADD' ? op.effect.add || [] : [];
        if ((op.ackSeq && op.ackSeq <= S) || (adds.length && adds.every((e) => ids.has(e.id)))) {
          this.board.pending.splice(this.board.pending.indexOf(op), 1);
          this.onOpSettled(op);
        }
      }
      for (const s of [...this.ahead.keys()]) if (s <= S) this.ahead.delete(s);
      this.board.reset([...strokes, ...elements].filter(Boolean).sort((a, b) => (a.z ?? 0) - (b.z ?? 0)));
      this.seq = S;
      this.epoch = p.epoch ?? null;
      this.hooks.users(p.users || []);
      this.joinDone();
      this.drain();
    }

    onReplay(p) {
      if (this.tooOld(p)) return;
      this.joins.replay++;
      this.epoch = p.epoch ?? this.epoch;
      this.hooks.users(Array.isArray(p.users) ? p.users : null);
      for (const ev of p.events || []) {
        if (ev && ev.payload) this.file(ev.payload.seq, { frame: { type: ev.type, payload: ev.payload } });
      }
      this.joinDone();
      this.drain();
      // A replay that leaves a hole cannot be patched by asking again: take the full state.
      if (typeof p.seq === 'number' && this.seq < p.seq) this.sendJoin(true);
    }

    opById(opId) {
      return opId ? this.board.pending.find((op) => op.opId === opId) : null;
    }

    onAck(p) {
      const op = this.opById(p.opId);
      if (!op) {
        // Not an op of ours we still track: its effect reaches us when a gap makes us re-join.
        return;
      }
      if (typeof p.seq !== 'number' || p.seq <= this.seq) {
        // Already in the board we hold (a REPLAY or a full state carried it): just retire it.
        this.board.dropPending(op);
        this.onOpSettled(op);
        this.hooks.changed();
        return;
      }
      // A v1 server names the stroke its undo or redo touched: that is the whole effect.
      if (!op.intent && !this.serverProtocol && p.strokeId) {
        if (op.type === 'UNDO') op.intent = { del: [String(p.strokeId)] };
        const re = op.type === 'REDO' && (op.effect.add || []).find((e) => e.id === String(p.strokeId));
        if (re) op.intent = { add: [{ ...re, z: undefined }] };
      }
      op.ackSeq = p.seq;
      this.file(p.seq, { op });
      this.drain();
    }

    /** An op the server refused for good: show the board without it. */
    refuse(op, text) {
      this.board.dropPending(op);
      this.onOpSettled(op, true);
      if (text) this.hooks.toast(text);
      this.hooks.changed();
    }

    onError(p) {
      const op = this.opById(p.ref);
      switch (p.code) {
        case 'UPGRADE_REQUIRED':
          this.hooks.reload('This page is out of date; reloading…');
          return;
        case 'RATE_LIMITED':
          // A refused JOIN_ROOM (it names no op): we are not in the room until we ask again.
          if (!op && !this.joined) {
            clearTimeout(this.rejoinTimer);
            this.rejoinTimer = setTimeout(() => { if (!this.joined) this.sendJoin(false); }, 2000 + Math.random() * 2000);
            return;
          }
          // falls through
        case 'UNAVAILABLE':
          // Not applied, for a reason that passes: send it again, same opId, a little later.
          for (const o of op ? [op] : this.board.pending) if (!o.ackSeq) o.sentOn = 0;
          clearTimeout(this.flushTimer);
          this.flushTimer = setTimeout(() => this.flush(), 1000);
          if (p.code === 'UNAVAILABLE') this.hooks.toast('The server is briefly unavailable; retrying.');
          return;
        case 'NOT_IN_ROOM':
          this.sendJoin(false);
          return;
        case 'ROOM_NOT_FOUND':
          this.hooks.roomGone('This room does not exist or has expired.');
          return;
        case 'NOTHING_TO_UNDO':
        case 'NOTHING_TO_REDO':
          if (op) this.refuse(op, p.code === 'NOTHING_TO_UNDO' ? 'Nothing left to undo.' : 'Nothing left to redo.');
          return;
        case 'ELEMENT_NOT_FOUND':
          // Someone deleted what we were changing: their delete stands.
          if (op) this.refuse(op, '');
          return;
        case 'FORBIDDEN':
          if (op) this.refuse(op, 'You can view this board but not change it.');
          else this.hooks.toast('You can view this board but not change it.');
          return;
        case 'BAD_ELEMENT':
          if (op && op.type === 'TEXT_EDIT') {
            // Refused as a whole. When it named a character the server no longer has (it dropped old
            // tombstones), our text is out of step: take the server's rather than carry on diverged.
            // Deleting what someone else deleted first changes nothing, and is refused as such: no harm.
            this.refuse(op, '');
            if (!/change nothing/i.test(p.message || '')) this.resyncText();
            return;
          }
          if (op) {
            this.refuse(op, 'The server refused a change.');
            return;
          }
          break;
        case 'BAD_STROKE':
        case 'QUOTA_EXCEEDED':
        case 'TOO_LARGE':
          if (op) {
            this.refuse(op, p.code === 'QUOTA_EXCEEDED' ? 'This board is full.' : 'The server refused a change.');
            return;
          }
          break;
        default:
      }
      if (p.message) this.hooks.toast(p.message);
    }
  }

  W.net = { Sync, newId, versionBelow, frameBytes, PROTOCOL, MAX_FRAME };
})();
