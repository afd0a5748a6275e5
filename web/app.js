// drawbridge whiteboard client. Plain modern JavaScript, no framework, no build step.
//
// How it fits together:
//   lobby     guest name or sign-in, then create a room or open an invite link (/?room=<id>).
//   socket    one WebSocket to /ws?token=...; JOIN_ROOM on every (re)connect, with {since, epoch}
//             once we have seen the room, so the server can answer with a REPLAY of what we missed.
//   strokes   `committed` holds the server's visible strokes in seq order and is painted onto an
//             offscreen canvas stroke by stroke; it is repainted in full only after an undo or a resync.
//             `pending` holds our own finished strokes until their ACK: they are drawn on top, and
//             (re)sent with opId = strokeId after every join, so a stroke drawn offline lands exactly once.
//   seq       `seq` is the highest seq below which we have seen everything; `ahead` holds seqs seen out
//             of order (our ACKs race with other people's events). A hole that stays open re-joins.
'use strict';

(() => {
  // ---- constants ----------------------------------------------------------------------------

  /** The board has one coordinate space for everyone, whatever their window size. */
  const BOARD_W = 1600;
  const BOARD_H = 1000;
  /** Backing-store resolution: crisp on high-DPI screens without quadrupling memory beyond 2x. */
  const RES = Math.min(2, Math.max(1, Math.round(window.devicePixelRatio || 1)));
  /** Frames are capped at 64 KiB by the server; ~22 bytes a point keeps a stroke well under it. */
  const MAX_POINTS = 1500;
  /** The server keeps at most 20 cursor moves a second per connection: never send more. */
  const CURSOR_EVERY_MS = 50;
  /** How long a hole in the seq sequence may stay open before we ask the server to replay it. */
  const GAP_WAIT_MS = 1000;
  const BACKOFF_FIRST_MS = 300;
  const BACKOFF_MAX_MS = 10000;
  /** App-level ping so a silently dead connection is noticed (the browser hides protocol pings). */
  const PING_EVERY_MS = 20000;
  const DEAD_AFTER_MS = 45000;
  /** A handshake that has not finished by then (a black-holed network) is given up and retried. */
  const CONNECT_TIMEOUT_MS = 10000;

  const COLORS = [
    ['#1d2430', 'Black'], ['#e53935', 'Red'], ['#fb8c00', 'Orange'], ['#fdd835', 'Yellow'],
    ['#43a047', 'Green'], ['#1e88e5', 'Blue'], ['#8e24aa', 'Purple'], ['#ffffff', 'White (eraser)'],
  ];
  const WIDTHS = [2, 4, 8, 16, 32];

  const $ = (id) => document.getElementById(id);

  // ---- state --------------------------------------------------------------------------------

  let session = null;          // {token, refreshToken?, user: {userId, name, email}, kind}
  let roomId = null;

  let ws = null;
  let socketGen = 0;           // bumps on every new socket; stale socket callbacks compare and bail
  let joined = false;          // INITIAL_STATE/REPLAY received on the current socket
  let attempts = 0;            // consecutive failed connects, for backoff
  let reconnectTimer = 0;
  let lastMessageAt = 0;
  let pingTimer = 0;

  let seq = 0;                 // everything <= seq has been seen
  const ahead = new Set();     // seqs > seq already seen
  let epoch = null;
  let gapTimer = 0;

  /** Visible strokes in seq order: {stroke, seq}. Strokes from INITIAL_STATE get seq 0 (keep their order). */
  let committed = [];
  const byId = new Map();      // strokeId -> entry of `committed`
  /** Our strokes not yet ACKed, in drawing order: opId -> {stroke, sentOn: socketGen or 0}. */
  const pending = new Map();
  /** Undo/redo sent but not ACKed; if the socket drops with any, we resync in full. */
  let inflight = [];
  /** ACKs to ignore: strokes undone before their ACK came back. */
  const undoneBeforeAck = new Set();
  /** Our undone strokes, newest last: {stroke, local} (local = never reached the server). */
  let redoStack = [];

  const users = new Map();     // userId -> {userId, username, color}
  let userCount = 0;
  /** After a REPLAY (it lists no users) our list may have missed joins and leaves. */
  let presenceStale = false;
  /** How each join was answered, for the test hook: recovery should mostly be REPLAYs. */
  const joinsAnswered = { initialState: 0, replay: 0 };
  /** Close codes of the last few sockets, newest last (4000+ are the page's own). */
  const closeCodes = [];
  const cursors = new Map();   // userId -> {x, y, username, color, el}

  let color = COLORS[0][0];
  let width = WIDTHS[1];
  let current = null;          // stroke being drawn
  let activePointer = null;

  // ---- small helpers ------------------------------------------------------------------------

  function newId() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  function jwtClaims(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
    } catch {
      return {};
    }
  }

  /** True while the token has more than a quarter of its life (at most a minute) left. */
  function tokenFresh(token) {
    const { exp, iat } = jwtClaims(token);
    if (typeof exp !== 'number') return true;
    const margin = typeof iat === 'number' ? Math.min(60, (exp - iat) / 4) : 60;
    return exp - margin > Date.now() / 1000;
  }

  let toastTimer = 0;
  function toast(text) {
    const el = $('toast');
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 3500);
  }

  async function api(method, path, body, { auth = true } = {}) {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (auth && session) headers.authorization = `Bearer ${session.token}`;
    const res = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = {};
    try { data = await res.json(); } catch { /* empty or non-JSON body */ }
    if (!res.ok) {
      const err = new Error(data.message || `Request failed (${res.status})`);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  // ---- session ------------------------------------------------------------------------------

  function saveSession(data, kind) {
    session = {
      token: data.accessToken,
      refreshToken: data.refreshToken || null,
      user: data.user,
      kind,
    };
    sessionStorage.setItem('drawbridge.session', JSON.stringify(session));
  }

  function loadSession() {
    try {
      const s = JSON.parse(sessionStorage.getItem('drawbridge.session'));
      if (s && s.token && s.user && (tokenFresh(s.token) || s.refreshToken)) return s;
    } catch { /* ignore */ }
    return null;
  }

  function clearSession() {
    session = null;
    sessionStorage.removeItem('drawbridge.session');
  }

  /** Access tokens are short-lived: renew before (re)connecting. A guest gets a new identity. */
  async function ensureFreshToken(force = false) {
    if (!session || (!force && tokenFresh(session.token))) return;
    if (session.refreshToken) {
      const data = await api('POST', '/api/v1/auth/refresh', { refreshToken: session.refreshToken }, { auth: false });
      saveSession(data, 'account');
    } else {
      // A guest has no refresh token: a new guest token means a new identity (older strokes stay, but
      // can no longer be undone from here).
      const data = await api('POST', '/api/v1/auth/guest', { name: session.user.name }, { auth: false });
      saveSession(data, 'guest');
      toast('Your guest session was renewed.');
    }
  }

  const me = () => (session ? session.user.userId : null);

  // ---- lobby --------------------------------------------------------------------------------

  function roomFromUrl(text) {
    try {
      const u = new URL(text, location.href);
      const q = u.searchParams.get('room');
      if (q) return q;
      const h = new URLSearchParams(u.hash.slice(1)).get('room');
      if (h) return h;
    } catch { /* not a URL */ }
    return null;
  }

  function showLobby(error = '') {
    $('room').hidden = true;
    $('lobby').hidden = false;
    const invited = roomFromUrl(location.href);
    $('invite-note').hidden = !invited || !!session;
    $('auth-card').hidden = !!session;
    $('room-card').hidden = !session;
    if (session) $('hello-name').textContent = session.user.name;
    $('lobby-error').textContent = error;
    const focus = session ? $('create-room') : $('guest-name');
    focus.focus();
  }

  async function afterSignIn() {
    const invited = roomFromUrl(location.href);
    if (invited) await enterRoom(invited);
    else showLobby();
  }

  function busy(form, on) {
    for (const el of form.querySelectorAll('button, input')) el.disabled = on;
  }

  $('guest-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('guest-name').value.trim();
    if (!name) return;
    busy(e.target, true);
    try {
      localStorage.setItem('drawbridge.name', name);
      saveSession(await api('POST', '/api/v1/auth/guest', { name }, { auth: false }), 'guest');
      await afterSignIn();
    } catch (err) {
      $('lobby-error').textContent = err.message;
    } finally {
      busy(e.target, false);
    }
  });

  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    busy(e.target, true);
    try {
      const data = await api('POST', '/api/v1/auth/signin', {
        email: $('signin-email').value.trim(), password: $('signin-password').value,
      }, { auth: false });
      saveSession(data, 'account');
      await afterSignIn();
    } catch (err) {
      $('lobby-error').textContent = err.status === 401 ? 'Wrong e-mail or password.' : err.message;
    } finally {
      busy(e.target, false);
    }
  });

  $('create-room').addEventListener('click', async () => {
    try {
      await ensureFreshToken();
      const data = await api('POST', '/api/v1/rooms');
      await enterRoom(data.data.roomId);
    } catch (err) {
      $('lobby-error').textContent = err.message;
    }
  });

  $('join-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = $('join-input').value.trim();
    const id = roomFromUrl(text) || text;
    if (id) await enterRoom(id);
  });

  $('sign-out').addEventListener('click', () => {
    if (session && session.refreshToken) {
      // Revoke the refresh token; the page forgets the session whether or not this arrives.
      api('POST', '/api/v1/auth/logout', { refreshToken: session.refreshToken }, { auth: false }).catch(() => {});
    }
    clearSession();
    showLobby();
  });

  // ---- room lifecycle -----------------------------------------------------------------------

  async function enterRoom(id) {
    try {
      await ensureFreshToken();
      await api('GET', `/api/v1/rooms/${encodeURIComponent(id)}`);
    } catch (err) {
      showLobby(err.status === 404 ? 'That room does not exist or has expired.' : err.message);
      return;
    }
    resetRoomState();
    roomId = id;
    history.replaceState(null, '', `/?room=${encodeURIComponent(id)}`);
    $('invite-link').value = `${location.origin}/?room=${encodeURIComponent(id)}`;
    $('lobby').hidden = true;
    $('room').hidden = false;
    layout();
    renderUsers();
    updateButtons();
    connect();
  }

  function resetRoomState() {
    committed = [];
    byId.clear();
    checkpointCount = 0;
    pending.clear();
    inflight = [];
    undoneBeforeAck.clear();
    redoStack = [];
    users.clear();
    userCount = 0;
    for (const c of cursors.values()) c.el.remove();
    cursors.clear();
    seq = 0;
    ahead.clear();
    epoch = null;
    needFull = true;
    scheduleFrame();
  }

  function leaveRoom(message = '') {
    if (ws && ws.readyState === WebSocket.OPEN && roomId) send('LEAVE_ROOM', { roomId });
    closeSocket();
    clearTimeout(reconnectTimer);
    roomId = null;
    resetRoomState();
    history.replaceState(null, '', '/');
    showLobby(message);
  }

  $('leave-room').addEventListener('click', () => leaveRoom());

  // ---- socket -------------------------------------------------------------------------------

  let connState = 'connecting';
  let connText = 'Connecting…';

  function setConn(state, text) {
    connState = state;
    connText = text;
    renderConn();
  }

  /** The indicator also says how many of our strokes wait for the server while we are not live. */
  function renderConn() {
    $('conn').dataset.state = connState;
    const n = pending.size;
    const queued = n && connState !== 'online' ? ` · ${n} stroke${n === 1 ? '' : 's'} queued` : '';
    $('conn-text').textContent = connText + queued;
  }

  function send(type, payload) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify({ type, payload }));
    return true;
  }

  async function connect() {
    clearTimeout(reconnectTimer);
    if (!roomId) return;
    if (ws) closeSocket(); // never leave a half-open socket behind (it would hold our presence)
    setConn('connecting', attempts ? 'Reconnecting…' : 'Connecting…');
    const gen = ++socketGen;
    try {
      // After repeated failures the token may be the problem (expired, or the server's secret changed).
      await ensureFreshToken(attempts >= 4 && attempts % 4 === 0);
    } catch (err) {
      if (gen === socketGen) scheduleReconnect();
      return;
    }
    if (gen !== socketGen || !roomId) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const sock = new WebSocket(`${scheme}//${location.host}/ws?token=${encodeURIComponent(session.token)}`);
    ws = sock;
    joined = false;
    const handshake = setTimeout(() => {
      if (gen === socketGen && sock.readyState === WebSocket.CONNECTING) socketLost(4001);
    }, CONNECT_TIMEOUT_MS);
    sock.onopen = () => {
      clearTimeout(handshake);
      if (gen !== socketGen) return;
      lastMessageAt = Date.now();
      // An undo/redo whose ACK we never saw may or may not have happened: only a full state is safe then.
      sendJoin(inflight.length > 0);
      inflight = [];
      clearInterval(pingTimer);
      pingTimer = setInterval(() => {
        if (Date.now() - lastMessageAt > DEAD_AFTER_MS) dropConnection();
        else send('PING', {});
      }, PING_EVERY_MS);
    };
    sock.onmessage = (e) => {
      if (gen !== socketGen) return;
      lastMessageAt = Date.now();
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (msg && typeof msg.type === 'string') onMessage(msg);
    };
    sock.onclose = (e) => {
      if (gen !== socketGen) return;
      socketLost(e.code);
    };
  }

  function closeSocket() {
    socketGen++;
    clearInterval(pingTimer);
    clearTimeout(gapTimer);
    joined = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try { ws.close(); } catch { /* already closed */ }
      ws = null;
    }
  }

  function socketLost(code) {
    closeCodes.push(code);
    if (closeCodes.length > 20) closeCodes.shift();
    closeSocket();
    for (const c of cursors.values()) c.el.remove();
    cursors.clear();
    if (!roomId) return;
    scheduleReconnect(code);
    updateButtons();
  }

  /** Drop the socket as if the network did; used for dead connections and by tests. */
  function dropConnection() {
    if (ws) socketLost(4000);
  }

  function scheduleReconnect(code) {
    clearTimeout(reconnectTimer);
    // 1001: the instance is draining, and any other will do. 1008 with a stale token: it expired
    // mid-session, and a renewed one fixes it. Both come back at once; anything else backs off.
    const quick = code === 1001 || (code === 1008 && session && !tokenFresh(session.token));
    const base = quick ? 50 : Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempts);
    const delay = Math.round(base * (0.7 + Math.random() * 0.6));
    attempts++;
    setConn('offline', `Offline · retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
    reconnectTimer = setTimeout(connect, delay);
  }

  window.addEventListener('online', () => {
    if (roomId && !joined) {
      attempts = 0;
      connect();
    }
  });

  function sendJoin(full) {
    joined = false;
    clearTimeout(gapTimer);
    const payload = { roomId };
    if (!full && epoch !== null) {
      payload.since = seq;
      payload.epoch = epoch;
    }
    send('JOIN_ROOM', payload);
  }

  function joinDone() {
    joined = true;
    attempts = 0;
    setConn('online', 'Live');
    flushPending();
    updateButtons();
  }

  function flushPending() {
    if (!joined) return;
    for (const entry of pending.values()) {
      if (entry.sentOn === socketGen) continue;
      if (send('CANVAS_UPDATE', { roomId, canvasData: entry.stroke, opId: entry.stroke.strokeId })) {
        entry.sentOn = socketGen;
      }
    }
  }

  // ---- seq bookkeeping ----------------------------------------------------------------------

  /** Records a seq; false if it was seen before (a duplicate to ignore). */
  function noteSeq(s) {
    if (typeof s !== 'number' || !Number.isFinite(s)) return true;
    if (s <= seq || ahead.has(s)) return false;
    ahead.add(s);
    while (ahead.has(seq + 1)) {
      ahead.delete(seq + 1);
      seq++;
    }
    clearTimeout(gapTimer);
    if (ahead.size) {
      gapTimer = setTimeout(() => {
        if (ahead.size && joined) sendJoin(false);
      }, GAP_WAIT_MS);
    }
    return true;
  }

  // ---- incoming messages --------------------------------------------------------------------

  function onMessage({ type, payload: p = {} }) {
    if (p.roomId && p.roomId !== roomId) return;
    switch (type) {
      case 'INITIAL_STATE': return onInitialState(p);
      case 'REPLAY': return onReplay(p);
      case 'CANVAS_UPDATE':
      case 'UNDO':
      case 'REDO':
        if (joined) applySequenced(type, p);
        return;
      case 'ACK': return onAck(p);
      case 'CURSOR_MOVE': return onCursor(p);
      case 'CURSOR_LEAVE': return removeCursor(p.userId);
      case 'USER_JOINED':
        users.set(p.userId, { userId: p.userId, username: p.username, color: p.color });
        return renderUsers();
      case 'USER_LEFT':
        if (p.userId !== me()) users.delete(p.userId);
        removeCursor(p.userId);
        if (typeof p.count === 'number') userCount = p.count;
        return renderUsers();
      case 'USER_COUNT_UPDATED':
        userCount = p.count;
        if (presenceStale && joined) {
          presenceStale = false;
          // People came or went while we were away: only a full state lists them.
          if (p.count !== users.size) return sendJoin(true);
        }
        return renderUsers();
      case 'ROOM_EXPIRED':
        return leaveRoom('This room has expired.');
      case 'ERROR': return onError(p);
      default: // PONG and anything newer than this client
    }
  }

  function onInitialState(p) {
    joinsAnswered.initialState++;
    presenceStale = false;
    committed = [];
    byId.clear();
    checkpointCount = 0;
    needFull = true;
    for (const s of p.strokes || []) insertStroke(s, 0);
    seq = typeof p.seq === 'number' ? p.seq : 0;
    ahead.clear();
    epoch = p.epoch ?? null;
    for (const id of [...pending.keys()]) if (byId.has(id)) pending.delete(id);
    users.clear();
    for (const u of p.users || []) users.set(u.userId, u);
    scheduleFrame();
    renderUsers();
    joinDone();
  }

  function onReplay(p) {
    joinsAnswered.replay++;
    epoch = p.epoch ?? epoch;
    if (Array.isArray(p.users)) {
      users.clear();
      for (const u of p.users) users.set(u.userId, u);
      renderUsers();
    } else {
      presenceStale = true;
    }
    for (const ev of p.events || []) {
      if (ev && ev.payload) applySequenced(ev.type, ev.payload);
    }
    joinDone();
    // A replay that leaves a hole cannot be patched by asking again: take the full state.
    if (typeof p.seq === 'number' && seq < p.seq) sendJoin(true);
  }

  function applySequenced(type, p) {
    if (!noteSeq(p.seq)) return;
    if (type === 'CANVAS_UPDATE' && p.canvasData) {
      // Our own op may come back in a REPLAY when its ACK was lost with the old socket.
      pending.delete(p.canvasData.strokeId);
      insertStroke(p.canvasData, p.seq);
    } else if (type === 'UNDO') {
      removeStroke(p.strokeId);
    } else if (type === 'REDO' && p.stroke) {
      insertStroke(p.stroke, p.seq);
    }
    scheduleFrame();
    updateButtons();
  }

  function onAck(p) {
    noteSeq(p.seq);
    if (undoneBeforeAck.delete(p.opId)) return;
    const entry = pending.get(p.opId);
    if (entry) {
      pending.delete(p.opId);
      if (!byId.has(entry.stroke.strokeId)) insertStroke(entry.stroke, p.seq);
      renderConn();
    } else {
      const op = takeInflight(p.opId, p.strokeId);
      if (op && op.type === 'REDO' && byId.has(op.strokeId) && typeof p.seq === 'number') {
        // The optimistic copy sat at the end; put it where its seq says (others may have come between).
        const { stroke } = byId.get(op.strokeId);
        removeStroke(op.strokeId);
        insertStroke(stroke, p.seq);
      }
    }
    scheduleFrame();
    updateButtons();
  }

  /** The undo/redo an ACK or ERROR is about: by opId, else (older servers) by stroke, else the oldest. */
  function takeInflight(opId, strokeId) {
    let i = inflight.findIndex((op) => op.opId === opId);
    if (i < 0 && strokeId) i = inflight.findIndex((op) => op.strokeId === strokeId);
    if (i < 0 && !opId && !strokeId) i = 0;
    return i >= 0 ? inflight.splice(i, 1)[0] : null;
  }

  /**
   * The server did not apply an undo/redo we already showed: give the user the step back
   * (an undone stroke leaves the redo list, a redo returns to it) and take the server's full state.
   */
  function controlOpFailed(op) {
    if (op.type === 'UNDO') redoStack = redoStack.filter((r) => r.stroke.strokeId !== op.strokeId);
    else redoStack.push({ stroke: op.stroke, local: false });
    sendJoin(true);
  }

  /** An op the server did not apply, for a reason that passes (rate limit, Redis away). */
  function notApplied(p, why) {
    const entry = p.ref && pending.get(p.ref);
    if (entry) {
      // Resend the same stroke with the same opId a little later.
      entry.sentOn = 0;
      setTimeout(flushPending, 1000);
      return;
    }
    const op = p.ref ? takeInflight(p.ref, null) : null;
    if (op) {
      toast(why);
      controlOpFailed(op);
    } else if (!p.ref) {
      // No reference: we cannot tell which op failed, so resend every stroke and resync.
      for (const e of pending.values()) e.sentOn = 0;
      setTimeout(flushPending, 1000);
    }
  }

  function onError(p) {
    switch (p.code) {
      case 'NOTHING_TO_UNDO':
      case 'NOTHING_TO_REDO':
      case 'FORBIDDEN': {
        // Our optimistic view of undo/redo was wrong: take the server's full state.
        const op = takeInflight(p.ref, null);
        toast(p.message || 'Nothing to undo or redo.');
        if (op) controlOpFailed(op);
        else sendJoin(true);
        return;
      }
      case 'BAD_STROKE':
        if (p.ref && pending.delete(p.ref)) scheduleFrame();
        toast('A stroke was rejected by the server.');
        return;
      case 'RATE_LIMITED':
        notApplied(p, 'Slow down a little: the server is pacing your changes.');
        return;
      case 'UNAVAILABLE':
        notApplied(p, 'The server is briefly unavailable; try again.');
        return;
      case 'NOT_IN_ROOM':
        sendJoin(false);
        return;
      case 'ROOM_NOT_FOUND':
        leaveRoom('This room does not exist or has expired.');
        return;
      default:
        if (p.message) toast(p.message);
    }
  }

  // ---- strokes ------------------------------------------------------------------------------

  let needFull = true;   // repaint the committed layer from scratch
  let toAppend = [];     // committed strokes to paint on top of the layer
  let framePending = false;
  /** Milliseconds the last full repaint of the committed layer took (shown to tests). */
  let lastFullRepaintMs = 0;
  /**
   * The checkpoint canvas holds committed[0..checkpointCount) as painted. A repaint starts from it,
   * so undoing one of the newest strokes redraws only the strokes after the checkpoint.
   */
  let checkpointCount = 0;
  /** Strokes kept out of the checkpoint: the ones an undo is likely to remove. */
  const CHECKPOINT_LAG = 200;

  function validStroke(s) {
    return s && typeof s.strokeId === 'string' && Array.isArray(s.points) && s.points.length > 0;
  }

  function insertStroke(stroke, s) {
    if (!validStroke(stroke) || byId.has(stroke.strokeId)) return;
    const entry = { stroke, seq: typeof s === 'number' ? s : Infinity };
    const last = committed[committed.length - 1];
    if (!last || last.seq <= entry.seq) {
      committed.push(entry);
      if (!needFull) toAppend.push(stroke);
    } else {
      let i = committed.length - 1;
      while (i > 0 && committed[i - 1].seq > entry.seq) i--;
      committed.splice(i, 0, entry);
      if (i < checkpointCount) checkpointCount = 0;
      needFull = true;
    }
    byId.set(stroke.strokeId, entry);
    scheduleFrame();
  }

  function removeStroke(strokeId) {
    const entry = byId.get(strokeId);
    if (!entry) return null;
    byId.delete(strokeId);
    const i = committed.indexOf(entry);
    committed.splice(i, 1);
    if (i < checkpointCount) checkpointCount = 0;
    needFull = true;
    scheduleFrame();
    return entry.stroke;
  }

  function finishStroke() {
    if (!current) return;
    const stroke = current;
    current = null;
    activePointer = null;
    if (!stroke.points.length) return;
    pending.set(stroke.strokeId, { stroke, sentOn: 0 });
    redoStack = [];
    flushPending();
    renderConn();
    scheduleFrame();
    updateButtons();
  }

  /** Our latest stroke still on the board: pending ones are newer than committed ones. */
  function lastOwnStroke() {
    const p = [...pending.values()];
    if (p.length) return { stroke: p[p.length - 1].stroke, entry: p[p.length - 1] };
    for (let i = committed.length - 1; i >= 0; i--) {
      if (committed[i].stroke.userId === me()) return { stroke: committed[i].stroke, entry: null };
    }
    return null;
  }

  function undo() {
    const last = lastOwnStroke();
    if (!last) return;
    const { stroke, entry } = last;
    if (entry && !entry.sentOn) {
      // Never left this page: take it back locally.
      pending.delete(stroke.strokeId);
      redoStack.push({ stroke, local: true });
    } else if (joined) {
      if (entry) {
        pending.delete(stroke.strokeId);
        undoneBeforeAck.add(stroke.strokeId);
      } else {
        removeStroke(stroke.strokeId);
      }
      const opId = newId();
      inflight.push({ type: 'UNDO', opId, strokeId: stroke.strokeId, stroke });
      send('UNDO', { roomId, strokeId: stroke.strokeId, opId });
      redoStack.push({ stroke, local: false });
    } else {
      toast('Undo needs a connection; try again when you are back online.');
      return;
    }
    scheduleFrame();
    updateButtons();
  }

  function redo() {
    const item = redoStack[redoStack.length - 1];
    if (!item) return;
    if (item.local) {
      redoStack.pop();
      pending.set(item.stroke.strokeId, { stroke: item.stroke, sentOn: 0 });
      flushPending();
    } else if (joined) {
      redoStack.pop();
      const opId = newId();
      inflight.push({ type: 'REDO', opId, strokeId: item.stroke.strokeId, stroke: item.stroke });
      send('REDO', { roomId, stroke: item.stroke, opId });
      insertStroke(item.stroke, Infinity);
    } else {
      toast('Redo needs a connection; try again when you are back online.');
      return;
    }
    scheduleFrame();
    updateButtons();
  }

  function updateButtons() {
    $('undo').disabled = !lastOwnStroke();
    $('redo').disabled = redoStack.length === 0;
  }

  // ---- drawing ------------------------------------------------------------------------------

  const board = $('board');
  board.width = BOARD_W * RES;
  board.height = BOARD_H * RES;
  const view = board.getContext('2d');
  const layer = document.createElement('canvas');
  layer.width = board.width;
  layer.height = board.height;
  const layerCtx = layer.getContext('2d');
  const checkpoint = document.createElement('canvas');
  checkpoint.width = board.width;
  checkpoint.height = board.height;
  const checkpointCtx = checkpoint.getContext('2d');

  function drawStroke(ctx, s) {
    const pts = s.points;
    ctx.strokeStyle = ctx.fillStyle = s.color;
    ctx.lineWidth = s.width;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.beginPath();
    if (pts.length === 1) {
      ctx.arc(pts[0].x, pts[0].y, s.width / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    ctx.moveTo(pts[0].x, pts[0].y);
    // Quadratic curves through the midpoints: smooth, and the same on every screen.
    for (let i = 1; i < pts.length - 1; i++) {
      const mx = (pts[i].x + pts[i + 1].x) / 2;
      const my = (pts[i].y + pts[i + 1].y) / 2;
      ctx.quadraticCurveTo(pts[i].x, pts[i].y, mx, my);
    }
    const end = pts[pts.length - 1];
    ctx.lineTo(end.x, end.y);
    ctx.stroke();
  }

  function scheduleFrame() {
    if (framePending) return;
    framePending = true;
    requestAnimationFrame(frame);
  }

  function frame() {
    framePending = false;
    layerCtx.setTransform(RES, 0, 0, RES, 0, 0);
    if (needFull) {
      const t0 = performance.now();
      repaintCommitted();
      lastFullRepaintMs = performance.now() - t0;
      needFull = false;
      toAppend = [];
    } else {
      for (const s of toAppend) drawStroke(layerCtx, s);
      toAppend = [];
    }
    view.setTransform(1, 0, 0, 1, 0, 0);
    view.drawImage(layer, 0, 0);
    view.setTransform(RES, 0, 0, RES, 0, 0);
    for (const e of pending.values()) drawStroke(view, e.stroke);
    if (current) drawStroke(view, current);
    scheduleCheckpoint();
    board.setAttribute('aria-label', `Shared whiteboard with ${committed.length + pending.size} strokes. Draw with a mouse, pen or finger.`);
  }

  /** Paints `layer` from the checkpoint plus the strokes after it, moving the checkpoint forward. */
  function repaintCommitted() {
    layerCtx.setTransform(1, 0, 0, 1, 0, 0);
    if (checkpointCount > 0) {
      layerCtx.drawImage(checkpoint, 0, 0);
    } else {
      layerCtx.fillStyle = '#ffffff';
      layerCtx.fillRect(0, 0, layer.width, layer.height);
    }
    layerCtx.setTransform(RES, 0, 0, RES, 0, 0);
    let i = checkpointCount;
    const keep = committed.length - CHECKPOINT_LAG;
    if (keep > checkpointCount) {
      for (; i < keep; i++) drawStroke(layerCtx, committed[i].stroke);
      checkpointCtx.setTransform(1, 0, 0, 1, 0, 0);
      checkpointCtx.drawImage(layer, 0, 0);
      checkpointCount = keep;
    }
    for (; i < committed.length; i++) drawStroke(layerCtx, committed[i].stroke);
  }

  let checkpointPending = false;

  /** Strokes that arrive one by one never pass through a repaint: bring the checkpoint along when idle. */
  function scheduleCheckpoint() {
    if (checkpointPending || committed.length - checkpointCount < 2 * CHECKPOINT_LAG) return;
    checkpointPending = true;
    (window.requestIdleCallback || ((fn) => setTimeout(fn, 200)))(advanceCheckpoint);
  }

  function advanceCheckpoint() {
    checkpointPending = false;
    const keep = committed.length - CHECKPOINT_LAG;
    if (keep <= checkpointCount) return;
    if (checkpointCount === 0) {
      checkpointCtx.setTransform(1, 0, 0, 1, 0, 0);
      checkpointCtx.fillStyle = '#ffffff';
      checkpointCtx.fillRect(0, 0, checkpoint.width, checkpoint.height);
    }
    checkpointCtx.setTransform(RES, 0, 0, RES, 0, 0);
    const end = Math.min(keep, checkpointCount + 500); // a bounded slice of work per idle period
    for (let i = checkpointCount; i < end; i++) drawStroke(checkpointCtx, committed[i].stroke);
    checkpointCount = end;
    scheduleCheckpoint();
  }

  function toBoard(e) {
    const r = board.getBoundingClientRect();
    const x = ((e.clientX - r.left - board.clientLeft) / board.clientWidth) * BOARD_W;
    const y = ((e.clientY - r.top - board.clientTop) / board.clientHeight) * BOARD_H;
    return {
      x: Math.round(Math.min(BOARD_W, Math.max(0, x)) * 10) / 10,
      y: Math.round(Math.min(BOARD_H, Math.max(0, y)) * 10) / 10,
    };
  }

  function addPoint(pt) {
    const pts = current.points;
    const prev = pts[pts.length - 1];
    if (prev && Math.abs(prev.x - pt.x) < 0.5 && Math.abs(prev.y - pt.y) < 0.5) return;
    pts.push(pt);
    if (pts.length >= MAX_POINTS) {
      // Long strokes are split to respect the frame size; the next one starts where this ends.
      const { color: c, width: w } = current;
      finishStroke();
      startStroke(pt, c, w);
    }
  }

  function startStroke(pt, c = color, w = width) {
    current = { strokeId: newId(), roomId, userId: me(), points: [pt], color: c, width: w };
  }

  board.addEventListener('pointerdown', (e) => {
    if (current || (e.pointerType === 'mouse' && e.button !== 0)) return;
    e.preventDefault();
    board.setPointerCapture(e.pointerId);
    activePointer = e.pointerId;
    startStroke(toBoard(e));
    scheduleFrame();
  });

  board.addEventListener('pointermove', (e) => {
    const pt = toBoard(e);
    queueCursor(pt);
    if (!current || e.pointerId !== activePointer) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) addPoint(toBoard(ev));
    scheduleFrame();
  });

  for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) {
    board.addEventListener(type, (e) => {
      if (current && e.pointerId === activePointer) {
        if (type === 'pointerup') addPoint(toBoard(e));
        finishStroke();
      }
    });
  }

  // ---- cursors ------------------------------------------------------------------------------

  let cursorTimer = 0;
  let cursorNext = null;

  function queueCursor(pt) {
    cursorNext = pt;
    if (!cursorTimer) sendCursor();
  }

  function sendCursor() {
    if (cursorNext && joined) {
      send('CURSOR_MOVE', { roomId, x: cursorNext.x, y: cursorNext.y });
      cursorNext = null;
      cursorTimer = setTimeout(() => {
        cursorTimer = 0;
        if (cursorNext) sendCursor();
      }, CURSOR_EVERY_MS);
    }
  }

  function onCursor(p) {
    if (!p.userId || p.userId === me()) return;
    if (!users.has(p.userId) && p.username) {
      // Someone we missed while reconnecting: their cursor tells us who they are.
      users.set(p.userId, { userId: p.userId, username: p.username, color: p.color });
      renderUsers();
    }
    let c = cursors.get(p.userId);
    if (!c) {
      const el = document.createElement('div');
      el.className = 'cursor';
      el.dataset.userId = p.userId;
      el.innerHTML = '<svg width="16" height="20" viewBox="0 0 16 20"><path d="M1 1 L1 17 L5.5 13 L9 19.5 L11.5 18.3 L8.2 12 L14 12 Z" stroke="#fff" stroke-width="1.2"/></svg><span class="label"></span>';
      $('cursors').append(el);
      c = { el };
      cursors.set(p.userId, c);
    }
    const known = users.get(p.userId);
    c.x = p.x;
    c.y = p.y;
    c.username = p.username || (known && known.username) || 'someone';
    c.color = p.color || (known && known.color) || '#555';
    c.el.querySelector('path').setAttribute('fill', c.color);
    const label = c.el.querySelector('.label');
    label.textContent = c.username;
    label.style.background = c.color;
    placeCursor(c);
  }

  function placeCursor(c) {
    const left = board.offsetLeft + board.clientLeft + (c.x / BOARD_W) * board.clientWidth;
    const top = board.offsetTop + board.clientTop + (c.y / BOARD_H) * board.clientHeight;
    c.el.style.transform = `translate(${left}px, ${top}px)`;
  }

  function removeCursor(userId) {
    const c = cursors.get(userId);
    if (c) {
      c.el.remove();
      cursors.delete(userId);
    }
  }

  // ---- people -------------------------------------------------------------------------------

  function renderUsers() {
    if (session && !users.has(me()) && roomId) {
      users.set(me(), { userId: me(), username: session.user.name, color: '#888888' });
    }
    const list = $('user-list');
    list.replaceChildren();
    const sorted = [...users.values()].sort((a, b) => (a.userId === me() ? -1 : b.userId === me() ? 1 : 0));
    for (const u of sorted) {
      const li = document.createElement('li');
      const chip = document.createElement('span');
      chip.className = 'chip';
      chip.style.background = u.color || '#888';
      const name = document.createElement('span');
      name.textContent = u.username || 'someone';
      li.append(chip, name);
      if (u.userId === me()) {
        const tag = document.createElement('span');
        tag.className = 'me';
        tag.textContent = '(you)';
        li.append(tag);
      }
      list.append(li);
    }
    $('user-count').textContent = String(userCount || users.size);
  }

  // ---- toolbar ------------------------------------------------------------------------------

  function buildToolbar() {
    const colors = $('colors');
    for (const [value, name] of COLORS) {
      const label = document.createElement('label');
      label.className = 'swatch';
      label.title = name;
      label.innerHTML = `<input type="radio" name="color" value="${value}" aria-label="${name}"><span style="background:${value}"></span>`;
      colors.append(label);
    }
    const widths = $('widths');
    for (const [i, w] of WIDTHS.entries()) {
      const label = document.createElement('label');
      label.className = 'swatch';
      label.title = `Width ${w}`;
      const nib = [3, 5, 8, 12, 18][i] || 18;
      label.innerHTML = `<input type="radio" name="width" value="${w}" aria-label="Width ${w}"><span><i class="nib" style="width:${nib}px;height:${nib}px"></i></span>`;
      widths.append(label);
    }
    colors.querySelector(`input[value="${color}"]`).checked = true;
    widths.querySelector(`input[value="${width}"]`).checked = true;
    colors.addEventListener('change', (e) => { color = e.target.value; });
    widths.addEventListener('change', (e) => { width = Number(e.target.value); });
    $('custom-color').addEventListener('input', (e) => {
      color = e.target.value;
      for (const r of colors.querySelectorAll('input')) r.checked = false;
    });
    $('undo').addEventListener('click', undo);
    $('redo').addEventListener('click', redo);
    $('copy-invite').addEventListener('click', copyInvite);
  }

  async function copyInvite() {
    const input = $('invite-link');
    try {
      await navigator.clipboard.writeText(input.value);
    } catch {
      input.select();
      document.execCommand('copy');
    }
    toast('Invite link copied. Anyone with it can join.');
  }

  document.addEventListener('keydown', (e) => {
    if (!roomId || !(e.ctrlKey || e.metaKey)) return;
    const t = e.target;
    if (t instanceof HTMLInputElement && t.type !== 'radio' && t.type !== 'color') return;
    const key = e.key.toLowerCase();
    if (key === 'z' && !e.shiftKey) undo();
    else if ((key === 'z' && e.shiftKey) || key === 'y') redo();
    else return;
    e.preventDefault();
  });

  // ---- layout -------------------------------------------------------------------------------

  function layout() {
    const wrap = $('board-wrap');
    const scale = Math.min(wrap.clientWidth / BOARD_W, wrap.clientHeight / BOARD_H);
    if (!(scale > 0)) return;
    board.style.width = `${Math.floor(BOARD_W * scale) - 2}px`;
    board.style.height = `${Math.floor(BOARD_H * scale) - 2}px`;
    for (const c of cursors.values()) placeCursor(c);
  }

  new ResizeObserver(layout).observe($('board-wrap'));

  // ---- test hook ----------------------------------------------------------------------------

  /** Read-only view of the page's state for tests and debugging. */
  window.drawbridge = {
    state() {
      return {
        connected: joined,
        roomId,
        seq,
        epoch,
        userId: me(),
        strokeIds: committed.map((e) => e.stroke.strokeId),
        pendingIds: [...pending.keys()],
        users: [...users.values()].map((u) => ({ ...u })),
        userCount,
        cursors: [...cursors.entries()].map(([userId, c]) => ({ userId, username: c.username, x: c.x, y: c.y })),
        joins: { ...joinsAnswered },
        closeCodes: [...closeCodes],
        lastFullRepaintMs,
      };
    },
    dropConnection,
  };

  // ---- start --------------------------------------------------------------------------------

  buildToolbar();
  $('guest-name').value = localStorage.getItem('drawbridge.name') || '';
  session = loadSession();
  const invited = roomFromUrl(location.href);
  if (session && invited) enterRoom(invited);
  else showLobby();
})();
