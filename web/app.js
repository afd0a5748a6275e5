// drawbridge whiteboard, part 5 of 5: the page. Plain modern JavaScript, no framework, no build step.
//
// How it fits together (each file adds one part to window.Whiteboard, in the order index.html loads them):
//   model.js   the board: elements by id, confirmed (the server's, in seq order) + pending (ours) = shown
//   render.js  the camera (pan, zoom) and painting, with a scene cache so big boards pan smoothly
//   net.js     the WebSocket: joins, seq order, REPLAY recovery, the outbox of our ops, undo resolution
//   tools.js   pointer and keyboard gestures: tools, selection, drags, text editing, undo history
//   app.js     this file: lobby (guest name or sign-in, invite links, a new board from a file), the
//              room's toolbar, presence and cursors, other people's live strokes, export, history
//              (preview, named versions, restore: PROTOCOL.md §5), shortcuts, and the test hook.
'use strict';

(() => {
  const { Board } = Whiteboard.model;
  const { Renderer } = Whiteboard.render;
  const { Sync } = Whiteboard.net;
  const { Tools } = Whiteboard.tools;

  /** The server keeps at most 20 cursor moves a second per connection: never send more. */
  const CURSOR_EVERY_MS = 50;
  /** A live stroke whose author went quiet this long without finishing it is dropped. */
  const LIVE_STROKE_TTL_MS = 15000;

  const COLORS = [
    ['#1d2430', 'Black'], ['#e53935', 'Red'], ['#fb8c00', 'Orange'], ['#fdd835', 'Yellow'],
    ['#43a047', 'Green'], ['#1e88e5', 'Blue'], ['#8e24aa', 'Purple'], ['#ffffff', 'White'],
  ];
  const FILLS = [
    ['none', 'No fill'], ['#ffffff', 'White fill'], ['#fff59d', 'Yellow fill'], ['#ffcdd2', 'Pink fill'],
    ['#c8e6c9', 'Green fill'], ['#bbdefb', 'Blue fill'], ['#e1bee7', 'Purple fill'],
  ];
  const WIDTHS = [2, 4, 8, 16, 32];
  const TOOL_KEYS = { v: 'select', h: 'hand', p: 'pen', r: 'rect', o: 'ellipse', l: 'line', a: 'arrow', t: 'text', s: 'sticky', n: 'node', e: 'eraser' };

  const $ = (id) => document.getElementById(id);

  // ---- state --------------------------------------------------------------------------------

  let session = null;          // {token, refreshToken?, user: {userId, name, email}, kind}
  let roomId = null;
  const users = new Map();     // userId -> {userId, username, color}
  let userCount = 0;
  /** After a REPLAY (it lists no users) our list may have missed joins and leaves. */
  let presenceStale = false;
  const cursors = new Map();   // userId -> {x, y, username, color, el}

  // ---- small helpers ------------------------------------------------------------------------

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

  async function api(method, path, body, { auth = true, bearer = null } = {}) {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    else if (auth && session) headers.authorization = `Bearer ${session.token}`;
    const res = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = {};
    try { data = await res.json(); } catch { /* empty or non-JSON body */ }
    if (!res.ok) throw httpError(res, data);
    return data;
  }

  /** An error for a failed API call: the server's message (§2: `{code, message}`) and status. */
  function httpError(res, data = {}) {
    const err = new Error(data.message || `Request failed (${res.status})`);
    err.status = res.status;
    err.code = data.code;
    err.data = data;
    return err;
  }

  async function jsonOf(res) {
    try { return await res.json(); } catch { return {}; }
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
      // A guest has no refresh token: a new guest token means a new identity (older elements stay,
      // but can no longer be undone from here).
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
    $('profile-card').hidden = true;
    const account = !!session && session.kind === 'account';
    $('my-rooms-section').hidden = !account;
    $('open-profile').hidden = !account;
    if (session) $('hello-name').textContent = session.user.name;
    if (account) loadMyRooms();
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

  // ---- sign-up with the e-mailed code -------------------------------------------------------

  let verificationToken = null;

  $('signup-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    busy(e.target, true);
    try {
      const email = $('signup-email').value.trim();
      const data = await api('POST', '/api/v1/auth/signup', {
        name: $('signup-name').value.trim(), email, password: $('signup-password').value,
      }, { auth: false });
      verificationToken = data.verificationToken;
      $('otp-email').textContent = email;
      $('signup-form').hidden = true;
      $('otp-form').hidden = false;
      $('otp-code').focus();
      $('lobby-error').textContent = '';
    } catch (err) {
      $('lobby-error').textContent = err.status === 409 ? 'That e-mail address already has an account: sign in.' : err.message;
    } finally {
      busy(e.target, false);
    }
  });

  $('otp-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    busy(e.target, true);
    try {
      const data = await api('POST', '/api/v1/auth/verify-otp', { otp: $('otp-code').value.trim() }, { auth: false, bearer: verificationToken });
      saveSession(data, 'account');
      verificationToken = null;
      $('signup-form').hidden = false;
      $('otp-form').hidden = true;
      await afterSignIn();
    } catch (err) {
      $('lobby-error').textContent = err.message;
    } finally {
      busy(e.target, false);
    }
  });

  // ---- my boards and the activity heatmap -------------------------------------------------

  async function loadMyRooms() {
    let rooms = [];
    try {
      await ensureFreshToken();
      rooms = (await api('GET', '/api/v1/me/rooms')).rooms || [];
    } catch { /* the lobby works without the list */ }
    const list = $('my-rooms');
    list.replaceChildren();
    for (const r of rooms) {
      const li = document.createElement('li');
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'link who';
      open.textContent = r.name || `Untitled board ${r.roomId.slice(0, 8)}`;
      open.addEventListener('click', () => enterRoom(r.roomId));
      const role = document.createElement('span');
      role.className = 'role';
      role.textContent = r.role;
      li.append(open, role);
      list.append(li);
    }
    $('my-rooms-empty').hidden = rooms.length > 0;
  }

  let profileYear = new Date().getUTCFullYear();

  async function showProfile(year) {
    profileYear = year;
    $('room-card').hidden = true;
    $('profile-card').hidden = false;
    $('profile-year').textContent = String(year);
    $('year-next').disabled = year >= new Date().getUTCFullYear();
    let a;
    try {
      await ensureFreshToken();
      a = await api('GET', `/api/v1/me/activity?year=${year}`);
    } catch (err) {
      $('activity-summary').textContent = err.message;
      return;
    }
    $('activity-summary').textContent =
      `${a.total} change${a.total === 1 ? '' : 's'} in ${year} · current streak ${a.currentStreak} day${a.currentStreak === 1 ? '' : 's'} · longest ${a.longestStreak}`;
    renderHeatmap(year, a.days || {});
  }

  /** GitHub's grid: one column per week (Sunday on top), one cell per UTC day, darker for more. */
  function renderHeatmap(year, days) {
    const grid = $('heatmap');
    grid.replaceChildren();
    const max = Math.max(1, ...Object.values(days));
    const first = new Date(Date.UTC(year, 0, 1));
    for (let i = 0; i < first.getUTCDay(); i++) {
      const pad = document.createElement('div');
      pad.className = 'day pad';
      grid.append(pad);
    }
    for (let d = new Date(first); d.getUTCFullYear() === year; d.setUTCDate(d.getUTCDate() + 1)) {
      const date = d.toISOString().slice(0, 10);
      const n = days[date] || 0;
      const cell = document.createElement('div');
      const level = n === 0 ? 0 : Math.min(4, 1 + Math.floor((3 * n) / max));
      cell.className = `day${level ? ` l${level}` : ''}`;
      cell.dataset.date = date;
      cell.dataset.count = String(n);
      cell.title = `${n} change${n === 1 ? '' : 's'} on ${date}`;
      grid.append(cell);
    }
  }

  $('open-profile').addEventListener('click', () => showProfile(new Date().getUTCFullYear()));
  $('year-prev').addEventListener('click', () => showProfile(profileYear - 1));
  $('year-next').addEventListener('click', () => showProfile(profileYear + 1));
  $('close-profile').addEventListener('click', () => showLobby());

  $('create-room').addEventListener('click', async () => {
    try {
      await ensureFreshToken();
      const data = await api('POST', '/api/v1/rooms');
      await enterRoom(data.data.roomId);
    } catch (err) {
      $('lobby-error').textContent = err.message;
    }
  });

  /** The Content-Type an import is sent as (§5), from the file's name or type; null if neither fits. */
  function importType(file) {
    if (/\.svg$/i.test(file.name) || file.type === 'image/svg+xml') return 'image/svg+xml';
    if (/\.json$/i.test(file.name) || file.type === 'application/json') return 'application/json';
    return null;
  }

  function importedText({ imported = 0, skipped = 0 }) {
    const n = (k, one) => `${k} ${one}${k === 1 ? '' : 's'}`;
    return `Imported ${n(imported, 'element')}${skipped ? `; ${n(skipped, 'part')} of the file could not be kept` : ''}.`;
  }

  /** Creates a room holding the file's drawing (import exists only at creation), then opens it. */
  async function importBoard(file) {
    $('lobby-error').textContent = '';
    $('lobby-status').textContent = '';
    const type = importType(file);
    if (!type) {
      $('lobby-error').textContent = 'Choose an .svg drawing or a .json board export.';
      return;
    }
    const button = $('import-button');
    button.disabled = true;
    $('lobby-status').textContent = `Importing ${file.name}…`;
    try {
      await ensureFreshToken();
      const res = await fetch('/api/v1/rooms', {
        method: 'POST',
        headers: { 'content-type': type, authorization: `Bearer ${session.token}` },
        body: file,
      });
      const data = await jsonOf(res);
      if (res.status === 413) {
        throw new Error(`${file.name} is too large to import${data.message ? `: ${data.message}` : '.'}`);
      }
      if (res.status === 400) {
        throw new Error(`${file.name} could not be imported: ${data.message || 'the server could not read it.'}`);
      }
      if (!res.ok) throw httpError(res, data);
      const result = data.data || {};
      const text = importedText(result);
      $('lobby-status').textContent = text;
      await enterRoom(result.roomId);
      toast(text);
    } catch (err) {
      $('lobby-status').textContent = '';
      $('lobby-error').textContent = err.message;
    } finally {
      button.disabled = false;
      $('import-file').value = '';
    }
  }

  $('import-button').addEventListener('click', () => $('import-file').click());
  $('import-file').addEventListener('change', (e) => {
    const file = e.target.files && e.target.files[0];
    if (file) importBoard(file);
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

  // ---- the board and its parts --------------------------------------------------------------

  const canvas = $('board');
  const board = new Board();
  const renderer = new Renderer(canvas, board);
  let connState = 'connecting';
  let connText = 'Connecting…';

  const sync = new Sync(board, {
    session: () => session,
    freshToken: ensureFreshToken,
    tokenStale: () => !!session && !tokenFresh(session.token),
    me,
    status: (state, text) => { connState = state; connText = text; renderConn(); },
    joined: fitPhoneOnce,
    users: onUsers,
    message: onMessage,
    toast,
    roomGone: (text) => leaveRoom(text),
    reload: (text) => { toast(text); setTimeout(() => location.reload(), 300); },
    changed: () => scheduleUi(),
  });

  const tools = new Tools({
    canvas,
    editor: $('text-editor'),
    carets: $('text-carets'),
    renderer,
    board,
    sync,
    hooks: {
      me,
      changed: () => scheduleUi(),
      toast,
      cursor: queueCursor,
      user: (id) => users.get(id),
      toolChanged: () => scheduleUi(),
    },
  });

  // Board changes: repaint (the renderer listens), drop finished live strokes, keep the selection honest.
  const repaintOnChange = board.onChange;
  board.onChange = (ids, added) => {
    repaintOnChange(ids, added);
    if (renderer.live.size) {
      for (const id of ids || [...renderer.live.keys()]) if (renderer.live.has(id) && board.confirmed.has(id)) renderer.live.delete(id);
    }
    tools.pruneSelection();
    tools.boardChanged(ids);
    scheduleUi();
  };

  /** A phone shows the v1 board area tiny: it opens a room fitted to what is on the board instead. */
  let fitted = false;
  function fitPhoneOnce() {
    if (fitted) return;
    fitted = true;
    if (renderer.cssW < 700 && board.shown.size) renderer.fitContent();
  }

  renderer.onCamera = () => {
    for (const c of cursors.values()) placeCursor(c);
    tools.placeEditor();
    scheduleUi();
  };

  // ---- room lifecycle -----------------------------------------------------------------------

  async function enterRoom(id) {
    let info;
    try {
      await ensureFreshToken();
      info = (await api('GET', `/api/v1/rooms/${encodeURIComponent(id)}`)).data || {};
    } catch (err) {
      showLobby(err.status === 404 ? 'That room does not exist or has expired.' : err.message);
      return;
    }
    resetPresence();
    closeHistory();
    fitted = false;
    roomId = id;
    history.replaceState(null, '', `/?room=${encodeURIComponent(id)}`);
    $('invite-link').value = `${location.origin}/?room=${encodeURIComponent(id)}`;
    $('lobby').hidden = true;
    $('room').hidden = false;
    roomInfo = info;
    $('room-name').value = info.name || '';
    applyRole(info.role || 'editor');
    layout();
    renderer.home();
    tools.select([]);
    tools.history.undoStack = [];
    tools.history.redoStack = [];
    renderUsers();
    sync.open(id);
    scheduleUi();
  }

  function resetPresence() {
    users.clear();
    userCount = 0;
    for (const c of cursors.values()) c.el.remove();
    cursors.clear();
    tools.collab.dropAllCarets();
    renderer.live.clear();
  }

  // ---- roles: read-only for viewers, sharing for owners (PROTOCOL.md §6) -------------------

  let roomInfo = null;
  let myRole = null;

  /** A viewer's page hides what would change the board and only pans; it switches live. */
  function applyRole(role) {
    const was = myRole;
    myRole = role;
    const readOnly = role === 'viewer';
    document.body.classList.toggle('readonly', readOnly);
    $('readonly-badge').hidden = !readOnly;
    for (const el of document.querySelectorAll('.edit-only')) el.hidden = readOnly;
    sync.readOnly = readOnly;
    tools.readOnly = readOnly;
    if (readOnly) {
      tools.cancelAction();
      tools.closeEditor();
      tools.select([]);
      tools.setTool('hand');
    } else if (was === 'viewer') {
      tools.setTool('pen');
    }
    $('share-button').hidden = role !== 'owner';
    $('room-name').readOnly = role !== 'owner';
    scheduleUi();
  }

  $('room-name').addEventListener('change', async () => {
    if (myRole !== 'owner' || !roomId) return;
    try {
      const data = await api('PATCH', `/api/v1/rooms/${encodeURIComponent(roomId)}`, { name: $('room-name').value });
      roomInfo = data.data;
    } catch (err) {
      toast(err.message);
    }
  });
  $('room-name').addEventListener('keydown', (e) => { if (e.key === 'Enter') e.target.blur(); });

  function linkChoice(info) {
    if (!info || info.access === 'members') return 'off';
    return info.linkRole === 'viewer' ? 'viewer' : 'editor';
  }

  async function loadMembers() {
    const path = `/api/v1/rooms/${encodeURIComponent(roomId)}/members`;
    const data = await api('GET', path);
    const list = $('share-members');
    list.replaceChildren();
    for (const m of data.members || []) {
      const li = document.createElement('li');
      li.dataset.userId = m.userId;
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = m.name || m.userId;
      li.append(who);
      if (m.role === 'owner') {
        const role = document.createElement('span');
        role.textContent = 'Owner';
        li.append(role);
      } else {
        const role = document.createElement('select');
        role.setAttribute('aria-label', `Role of ${m.name || m.userId}`);
        for (const [v, t] of [['editor', 'Editor'], ['viewer', 'Viewer']]) role.append(new Option(t, v, false, v === m.role));
        role.addEventListener('change', () => shareCall('PUT', `${path}/${encodeURIComponent(m.userId)}`, { role: role.value }));
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.textContent = 'Remove';
        remove.addEventListener('click', () => shareCall('DELETE', `${path}/${encodeURIComponent(m.userId)}`));
        li.append(role, remove);
      }
      list.append(li);
    }
  }

  async function shareCall(method, path, body) {
    $('share-error').textContent = '';
    try {
      await api(method, path, body);
      await loadMembers();
    } catch (err) {
      $('share-error').textContent = err.code === 'USER_NOT_FOUND' ? 'No account has that e-mail address.' : err.message;
    }
  }

  $('share-button').addEventListener('click', async () => {
    $('share-link').value = linkChoice(roomInfo);
    $('share-error').textContent = '';
    $('share').showModal();
    try { await loadMembers(); } catch (err) { $('share-error').textContent = err.message; }
  });

  $('share-link').addEventListener('change', async () => {
    const v = $('share-link').value;
    const body = v === 'off' ? { access: 'members' } : { access: 'link', linkRole: v };
    try {
      roomInfo = (await api('PATCH', `/api/v1/rooms/${encodeURIComponent(roomId)}`, body)).data;
    } catch (err) {
      $('share-error').textContent = err.message;
    }
  });

  $('share-add').addEventListener('submit', async (e) => {
    e.preventDefault();
    await shareCall('POST', `/api/v1/rooms/${encodeURIComponent(roomId)}/members`, {
      email: $('share-email').value.trim(), role: $('share-role').value,
    });
    if (!$('share-error').textContent) $('share-email').value = '';
  });

  function leaveRoom(message = '') {
    closeHistory();
    if ($('share').open) $('share').close();
    tools.cancelAction();
    tools.closeEditor();
    sync.close();
    roomId = null;
    resetPresence();
    history.replaceState(null, '', '/');
    showLobby(message);
  }

  $('leave-room').addEventListener('click', () => leaveRoom());
  window.addEventListener('online', () => sync.online());

  /** The indicator also says how many of our changes wait for the server while we are not live. */
  function renderConn() {
    $('conn').dataset.state = connState;
    const n = sync.unsentCount();
    const queued = n && connState !== 'online' ? ` · ${n} change${n === 1 ? '' : 's'} queued` : '';
    $('conn-text').textContent = connText + queued;
  }

  // ---- presence, cursors, live strokes ------------------------------------------------------

  function onUsers(list) {
    if (list) {
      presenceStale = false;
      users.clear();
      for (const u of list) users.set(u.userId, u);
    } else {
      presenceStale = true;
    }
    renderUsers();
  }

  function onMessage(type, p) {
    switch (type) {
      case 'CURSOR_MOVE': return onCursor(p);
      case 'CURSOR_LEAVE':
        removeCursor(p.userId);
        tools.collab.dropCaret(p.userId);
        return dropLiveStrokes(p.userId);
      case 'TEXT_CURSOR': return tools.collab.remoteCaret(p);
      case 'USER_JOINED':
        users.set(p.userId, { userId: p.userId, username: p.username, color: p.color });
        return renderUsers();
      case 'USER_LEFT':
        if (p.userId !== me()) users.delete(p.userId);
        removeCursor(p.userId);
        tools.collab.dropCaret(p.userId);
        dropLiveStrokes(p.userId);
        if (typeof p.count === 'number') userCount = p.count;
        return renderUsers();
      case 'USER_COUNT_UPDATED':
        userCount = p.count;
        if (presenceStale && sync.joined) {
          presenceStale = false;
          // People came or went while we were away: only a full state lists them.
          if (p.count !== users.size) return sync.sendJoin(true);
        }
        return renderUsers();
      case 'STROKE_PROGRESS': return onStrokeProgress(p);
      case 'ROLE_CHANGED':
        if (p.userId !== me() || p.roomId !== roomId) return undefined;
        applyRole(p.role);
        return toast(p.role === 'viewer' ? 'You can now only view this board.' : 'You can now edit this board.');
      case 'ACCESS_REVOKED':
        return leaveRoom('You no longer have access to that board.');
      case 'SOCKET_LOST':
        for (const c of cursors.values()) c.el.remove();
        cursors.clear();
        tools.collab.dropAllCarets();
        renderer.live.clear();
        return renderer.invalidate();
      default: // PONG and anything newer than this page
    }
  }

  /** Someone's stroke in progress: each message brings the points drawn since their last one. */
  function onStrokeProgress(p) {
    if (!p.userId || p.userId === me() || typeof p.id !== 'string' || !Array.isArray(p.points)) return;
    if (board.confirmed.has(p.id)) return; // the finished stroke is already here
    let s = renderer.live.get(p.id);
    if (!s) {
      s = { userId: p.userId, points: [], color: p.color, width: p.width };
      renderer.live.set(p.id, s);
    }
    for (const pt of p.points) if (pt && Number.isFinite(pt.x) && Number.isFinite(pt.y)) s.points.push({ x: pt.x, y: pt.y });
    s.color = p.color || s.color;
    s.width = p.width || s.width;
    s.at = Date.now();
    renderer.invalidate();
  }

  function dropLiveStrokes(userId) {
    let dropped = false;
    for (const [id, s] of renderer.live) {
      if (s.userId === userId) { renderer.live.delete(id); dropped = true; }
    }
    if (dropped) renderer.invalidate();
  }

  // A stroke whose author stopped sending without finishing (a crash mid-stroke) must not stay forever.
  setInterval(() => {
    const old = Date.now() - LIVE_STROKE_TTL_MS;
    for (const [id, s] of renderer.live) if (s.at < old) { renderer.live.delete(id); renderer.invalidate(); }
  }, 5000);

  let cursorTimer = 0;
  let cursorNext = null;

  function queueCursor(pt) {
    cursorNext = pt;
    if (!cursorTimer) sendCursor();
  }

  function sendCursor() {
    if (cursorNext && sync.live) {
      sync.sendTransient('CURSOR_MOVE', { x: cursorNext.x, y: cursorNext.y });
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
    const p = renderer.toScreen(c.x, c.y);
    c.el.style.transform = `translate(${p.x}px, ${p.y}px)`;
    c.el.hidden = p.x < -20 || p.y < -20 || p.x > renderer.cssW || p.y > renderer.cssH;
  }

  function removeCursor(userId) {
    const c = cursors.get(userId);
    if (c) {
      c.el.remove();
      cursors.delete(userId);
    }
  }

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
    const count = String(userCount || users.size);
    $('user-count').textContent = count;
    $('people-count').textContent = count;
  }

  // ---- toolbar ------------------------------------------------------------------------------

  /** Radio buttons styled as swatches: keyboard and screen readers work as usual. */
  function swatches(container, name, items, inner) {
    for (const [value, label] of items) {
      const el = document.createElement('label');
      el.className = 'swatch';
      el.title = label;
      el.innerHTML = `<input type="radio" name="${name}" value="${value}" aria-label="${label}"><span></span>`;
      const face = el.querySelector('span');
      if (inner) face.innerHTML = inner(value);
      else face.style.background = value;
      container.append(el);
    }
  }

  function buildToolbar() {
    swatches($('colors'), 'color', COLORS);
    swatches($('fills'), 'fill', FILLS, (v) => (v === 'none' ? '<i class="no-fill"></i>' : `<i class="fill" style="background:${v}"></i>`));
    swatches($('widths'), 'width', WIDTHS.map((w) => [w, `Width ${w}`]), (w) => {
      const nib = { 2: 3, 4: 5, 8: 8, 16: 12, 32: 18 }[w] || 18;
      return `<i class="nib" style="width:${nib}px;height:${nib}px"></i>`;
    });
    $('colors').addEventListener('change', (e) => { tools.setStyle('color', e.target.value); scheduleUi(); });
    $('fills').addEventListener('change', (e) => { tools.setStyle('fill', e.target.value === 'none' ? null : e.target.value); scheduleUi(); });
    $('widths').addEventListener('change', (e) => { tools.setStyle('width', Number(e.target.value)); scheduleUi(); });
    $('custom-color').addEventListener('input', (e) => { tools.setStyle('color', e.target.value); scheduleUi(); });

    $('tools').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-tool]');
      if (b) tools.setTool(b.dataset.tool);
    });
    $('undo').addEventListener('click', () => tools.history.undo());
    $('redo').addEventListener('click', () => tools.history.redo());
    $('duplicate').addEventListener('click', () => tools.duplicate());
    $('to-front').addEventListener('click', () => tools.reorder(true));
    $('to-back').addEventListener('click', () => tools.reorder(false));
    $('delete').addEventListener('click', () => tools.deleteSelection());
    $('zoom-in').addEventListener('click', () => zoomStep(1.25));
    $('zoom-out').addEventListener('click', () => zoomStep(0.8));
    $('zoom-reset').addEventListener('click', () => renderer.home());
    $('zoom-fit').addEventListener('click', () => renderer.fitContent());
    $('export-png').addEventListener('click', exportPng);
    $('export-svg').addEventListener('click', () => exportFile('svg'));
    $('export-json').addEventListener('click', () => exportFile('json'));
    $('history-toggle').addEventListener('click', () => (historyOpen() ? closeHistory() : openHistory()));
    $('copy-invite').addEventListener('click', copyInvite);
    $('help-button').addEventListener('click', toggleHelp);
    $('people-toggle').addEventListener('click', () => togglePanel('people-toggle', document.querySelector('.people')));
    $('style-toggle').addEventListener('click', () => togglePanel('style-toggle', $('style-group')));
  }

  /** On a phone, the people list and the style controls open over the board from the bar. */
  function togglePanel(buttonId, panel) {
    const open = !panel.classList.contains('open');
    panel.classList.toggle('open', open);
    $(buttonId).setAttribute('aria-expanded', String(open));
  }

  function zoomStep(factor) {
    renderer.zoomAt(renderer.cssW / 2, renderer.cssH / 2, factor);
  }

  function toggleHelp() {
    const d = $('help');
    if (d.open) d.close();
    else d.showModal();
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

  /** Downloads the whole board (not just the view) as a PNG: the one shown, so a preview exports the past. */
  async function exportPng() {
    const blob = await renderer.exportPng();
    if (!blob) return toast('The board could not be exported.');
    download(blob, `drawbridge-${roomId || 'board'}.png`);
    return undefined;
  }

  /** Radio groups show the current style; buttons are enabled when they would do something. */
  let uiPending = false;
  function scheduleUi() {
    if (uiPending) return;
    uiPending = true;
    requestAnimationFrame(renderUi);
  }

  function renderUi() {
    uiPending = false;
    for (const b of $('tools').querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.tool === tools.tool));
    const { color, fill, width } = tools.style;
    for (const r of $('colors').querySelectorAll('input')) r.checked = r.value === color;
    for (const r of $('fills').querySelectorAll('input')) r.checked = r.value === (fill || 'none');
    for (const r of $('widths').querySelectorAll('input')) r.checked = Number(r.value) === width;
    $('style-preview').style.background = color;
    $('undo').disabled = !tools.history.canUndo();
    $('redo').disabled = !tools.history.canRedo();
    const any = tools.selection.size > 0;
    for (const id of ['duplicate', 'to-front', 'to-back', 'delete']) $(id).disabled = !any;
    $('zoom-reset').textContent = `${Math.round(renderer.cam.s * 100)}%`;
    canvas.setAttribute('aria-label', `Shared whiteboard with ${board.shown.size} elements.`);
    renderConn();
    renderHistory();
  }

  /** Picking an element shows its colours in the toolbar, so a change starts from what it has. */
  function adoptSelectionStyle() {
    const els = tools.selected();
    if (els.length !== 1) return;
    const el = els[0];
    if (el.color) tools.style.color = el.color;
    if ('fill' in el || Whiteboard.model.FRAMED.has(el.kind)) tools.style.fill = el.fill || null;
    if (el.width) tools.style.width = el.width;
  }

  // ---- history, versions, export (PROTOCOL.md §5) --------------------------------------------

  /** Wait this long after the slider stops before asking for that version: a drag asks once. */
  const PREVIEW_DEBOUNCE_MS = 200;
  /** After our restore the live ROOM_RESTORED should come; if it has not by then, re-join. */
  const RESTORE_CATCHUP_MS = 2000;

  /**
   * The past version painted instead of the live board: its seq (null: showing live), its board,
   * and the request in flight. The live board keeps following the room underneath, untouched.
   */
  const preview = { seq: null, board: null, loading: false, timer: 0, abort: null };
  /** The room's named versions, newest first, as the server lists them. */
  let versions = [];
  /** The oldest seq the server still keeps history for (older ones answer 410 HISTORY_TRIMMED). */
  let oldestSeq = 0;

  const roomPath = (rest) => `/api/v1/rooms/${encodeURIComponent(roomId)}/${rest}`;
  const historyOpen = () => !$('history').hidden;
  const authHeader = () => ({ authorization: `Bearer ${session.token}` });

  function openHistory() {
    if (!roomId) return;
    $('history').hidden = false;
    $('history-toggle').setAttribute('aria-expanded', 'true');
    $('history-note').textContent = '';
    const slider = $('history-slider');
    slider.min = String(Math.min(oldestSeq, sync.seq || 0));
    slider.max = String(sync.seq || 0);
    slider.value = slider.max;
    renderHistory();
    loadVersions();
    slider.focus();
  }

  function closeHistory() {
    endPreview();
    $('history').hidden = true;
    $('history-toggle').setAttribute('aria-expanded', 'false');
    versions = [];
    oldestSeq = 0;
  }

  async function loadVersions() {
    const room = roomId;
    try {
      await ensureFreshToken();
      const data = await api('GET', roomPath('versions'));
      if (room !== roomId) return;
      versions = Array.isArray(data.versions) ? data.versions : [];
    } catch (err) {
      versions = [];
      $('history-note').textContent = `Named versions could not be loaded: ${err.message}`;
    }
    renderVersions();
  }

  /** createdAt as the server writes it (ISO text, or seconds or milliseconds since 1970). */
  function formatTime(t) {
    const d = new Date(typeof t === 'number' && t < 1e12 ? t * 1000 : t);
    return Number.isNaN(d.getTime()) ? '' : d.toLocaleString();
  }

  /** The named versions as a list of buttons (each shows its version) and as marks on the slider. */
  function renderVersions() {
    const list = $('version-list');
    const marks = $('history-marks');
    list.replaceChildren();
    marks.replaceChildren();
    if (!versions.length) {
      const li = document.createElement('li');
      li.className = 'hint';
      li.textContent = 'No named versions yet.';
      list.append(li);
    }
    for (const v of versions) {
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.seq = String(v.seq);
      const name = document.createElement('span');
      name.textContent = v.name;
      const when = document.createElement('span');
      when.className = 'when';
      const time = v.createdAt ? formatTime(v.createdAt) : '';
      when.textContent = `seq ${v.seq}${time ? ` · ${time}` : ''}`;
      b.append(name, when);
      b.addEventListener('click', () => showSeq(Number(v.seq)));
      const li = document.createElement('li');
      li.append(b);
      list.append(li);
      const mark = document.createElement('option');
      mark.value = String(v.seq);
      mark.label = v.name;
      marks.append(mark);
    }
    renderHistory();
  }

  /** Moves the slider to `seq` and shows that version. */
  function showSeq(seq) {
    const slider = $('history-slider');
    if (seq > Number(slider.max)) slider.max = String(seq);
    slider.value = String(seq);
    schedulePreview(0);
  }

  function schedulePreview(delay = PREVIEW_DEBOUNCE_MS) {
    clearTimeout(preview.timer);
    preview.timer = setTimeout(() => {
      preview.timer = 0;
      const at = Number($('history-slider').value);
      // The newest seq is the live board itself.
      if (at >= sync.seq) endPreview();
      else startPreview(at);
    }, delay);
    renderHistory();
  }

  async function startPreview(at) {
    if (preview.abort) preview.abort.abort();
    const abort = new AbortController();
    preview.abort = abort;
    preview.loading = true;
    renderHistory();
    try {
      await ensureFreshToken();
      const res = await fetch(roomPath(`state?at=${at}`), { headers: authHeader(), signal: abort.signal });
      const data = await jsonOf(res);
      if (abort.signal.aborted) return;
      if (res.status === 410) {
        oldestSeq = Number(data.oldestSeq) || oldestSeq;
        $('history-slider').min = String(oldestSeq);
        $('history-note').textContent = `Versions before seq ${oldestSeq} are no longer kept.`;
        if (at < oldestSeq) showSeq(oldestSeq);
        return;
      }
      if (!res.ok) throw httpError(res, data);
      showVersion(at, data);
      $('history-note').textContent = '';
    } catch (err) {
      if (abort.signal.aborted) return;
      $('history-note').textContent = `That version could not be shown: ${err.message}`;
    } finally {
      if (preview.abort === abort) {
        preview.abort = null;
        preview.loading = false;
        renderHistory();
      }
    }
  }

  /** Paints a past board (a `state?at=` answer) read-only in place of the live one. */
  function showVersion(at, data) {
    const M = Whiteboard.model;
    const strokes = (data.strokes || []).map(M.strokeElement).filter(Boolean);
    const elements = (data.elements || []).map((e) => (e && e.kind === 'stroke' ? M.strokeElement(e) : e)).filter(Boolean);
    const past = new Board();
    past.reset([...strokes, ...elements].sort((a, b) => (a.z ?? 0) - (b.z ?? 0)));
    if (preview.seq === null) {
      // Nothing is edited while looking at the past: finish whatever was under way.
      tools.cancelAction();
      tools.closeEditor();
      tools.select([]);
    }
    preview.seq = typeof data.seq === 'number' ? data.seq : at;
    preview.board = past;
    renderer.board = past;
    renderer.contentChanged(null);
    setReadOnly(true);
    renderHistory();
  }

  /** Back to the live board (the slider goes back to now). */
  function endPreview() {
    clearTimeout(preview.timer);
    preview.timer = 0;
    if (preview.abort) preview.abort.abort();
    preview.abort = null;
    preview.loading = false;
    const slider = $('history-slider');
    slider.max = String(sync.seq || 0);
    slider.value = slider.max;
    if (preview.seq !== null) {
      preview.seq = null;
      preview.board = null;
      renderer.board = board;
      renderer.contentChanged(null);
      setReadOnly(false);
    }
    renderHistory();
  }

  function setReadOnly(on) {
    $('preview-shield').hidden = !on;
    $('preview-banner').hidden = !on;
    // The tools act on the live board: out of reach (and of the keyboard) while the past is shown.
    document.querySelector('.toolbar').inert = on;
  }

  function renderHistory() {
    if (!roomId || !historyOpen()) return;
    const slider = $('history-slider');
    const live = sync.seq || 0;
    const value = Number(slider.value);
    const following = preview.seq === null && !preview.timer && !preview.loading && value >= Number(slider.max);
    slider.max = String(Math.max(live, value));
    if (following) slider.value = slider.max;
    const shown = Number(slider.value);
    const named = versions.find((v) => v.seq === (preview.seq ?? shown));
    const oldest = oldestSeq && shown === oldestSeq ? ' (the oldest kept)' : '';
    $('history-at').textContent = shown >= live ? `now (seq ${live})` : `seq ${shown}${named ? `, “${named.name}”` : ''}${oldest}`;
    slider.setAttribute('aria-valuetext', $('history-at').textContent);
    $('history-restore').disabled = preview.seq === null || preview.loading;
    for (const b of $('version-list').querySelectorAll('button')) {
      b.setAttribute('aria-current', String(preview.seq !== null && Number(b.dataset.seq) === preview.seq));
    }
    if (preview.seq !== null) {
      $('preview-text').textContent = `The board at seq ${preview.seq}${named ? ` (“${named.name}”)` : ''}, read-only.`;
    }
  }

  $('history-slider').addEventListener('input', () => schedulePreview());
  $('history-close').addEventListener('click', () => { closeHistory(); $('history-toggle').focus(); });
  $('preview-live').addEventListener('click', () => endPreview());
  $('history-svg').addEventListener('click', () => exportFile('svg'));
  $('history-json').addEventListener('click', () => exportFile('json'));

  $('version-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('version-name').value.trim();
    if (!name) return;
    busy(e.target, true);
    try {
      await ensureFreshToken();
      const v = await api('POST', roomPath('versions'), { name });
      versions = [v, ...versions.filter((x) => x.versionId !== v.versionId)];
      $('version-name').value = '';
      $('history-note').textContent = `Saved “${v.name}” (seq ${v.seq}).`;
      renderVersions();
    } catch (err) {
      $('history-note').textContent = `The version could not be saved: ${err.message}`;
    } finally {
      busy(e.target, false);
    }
  });

  $('history-restore').addEventListener('click', () => {
    if (preview.seq === null) return;
    const at = preview.seq;
    const named = versions.find((v) => v.seq === at);
    $('restore-text').textContent = `Everyone in the room will see the board go back to how it was at seq ${at}`
      + `${named ? ` (“${named.name}”)` : ''}. Nothing is lost: the history keeps every change, and you can undo the restore.`;
    const dialog = $('restore-dialog');
    dialog.returnValue = '';
    dialog.onclose = () => { if (dialog.returnValue === 'restore') restore(at); };
    dialog.showModal();
  });

  async function restore(at) {
    $('history-restore').disabled = true;
    try {
      await ensureFreshToken();
      const data = await api('POST', roomPath('restore'), { at });
      endPreview();
      $('history-note').textContent = `Restored to seq ${at}.`;
      toast(`The board was restored to seq ${at}.`);
      const seq = Number(data.seq);
      // ROOM_RESTORED brings the change to every page, this one too; should it be missed, a full state will do.
      setTimeout(() => {
        if (roomId && sync.joined && seq && sync.seq < seq) sync.sendJoin(true);
      }, RESTORE_CATCHUP_MS);
    } catch (err) {
      $('history-note').textContent = `The board could not be restored: ${err.message}`;
    } finally {
      renderHistory();
    }
  }

  /** Saves a blob as a file through a temporary link. */
  function download(blob, name) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  /** Downloads the board (the previewed version while one is shown) from the export routes. */
  async function exportFile(format) {
    if (!roomId) return;
    const at = preview.seq;
    try {
      await ensureFreshToken();
      const res = await fetch(roomPath(`export.${format}${at === null ? '' : `?at=${at}`}`), { headers: authHeader() });
      if (!res.ok) throw httpError(res, await jsonOf(res));
      download(await res.blob(), `drawbridge-${roomId}${at === null ? '' : `-seq-${at}`}.${format}`);
    } catch (err) {
      toast(`The ${format.toUpperCase()} export failed: ${err.message}`);
    }
  }

  // ---- keyboard -----------------------------------------------------------------------------

  function typing(t) {
    return (t instanceof HTMLInputElement && t.type !== 'radio' && t.type !== 'color') || t instanceof HTMLTextAreaElement;
  }

  document.addEventListener('keydown', (e) => {
    if (!roomId || typing(e.target) || $('help').open || $('restore-dialog').open) return;
    if (preview.seq !== null) {
      // A past version is read-only: leaving it is the only shortcut.
      if (e.key === 'Escape') { endPreview(); e.preventDefault(); }
      return;
    }
    const key = e.key.toLowerCase();
    const mod = e.ctrlKey || e.metaKey;
    // A viewer keeps the keys that only look: zoom, fit, help, copy, export.
    if (myRole === 'viewer') {
      const looks = ['?', '+', '=', '-', '_', ' ', 'Escape'].includes(e.key)
        || (e.shiftKey && !mod && /^Digit[01]$/.test(e.code))
        || (mod && (key === '0' || key === 'c' || (key === 'e' && e.shiftKey)));
      if (!looks) return;
    }
    let handled = true;
    if (mod) {
      if (key === 'z' && !e.shiftKey) tools.history.undo();
      else if ((key === 'z' && e.shiftKey) || key === 'y') tools.history.redo();
      else if (key === 'c') tools.copy();
      else if (key === 'x') tools.cut();
      else if (key === 'v') tools.paste();
      else if (key === 'd') tools.duplicate();
      else if (key === 'a') tools.selectAll();
      else if (key === 'e' && e.shiftKey) exportPng();
      else if (key === '0') renderer.home();
      else handled = false;
    } else if (e.key === ' ') {
      if (!tools.spaceDown) canvas.classList.add('space');
      tools.spaceDown = true;
    } else if (e.key === 'Delete' || e.key === 'Backspace') tools.deleteSelection();
    else if (e.key === 'Escape') tools.escape();
    else if (e.key === 'Enter' && tools.selection.size === 1 && tools.editSelected()) { /* editing it */ }
    else if (e.key === '?') toggleHelp();
    else if (e.key === ']') tools.reorder(true);
    else if (e.key === '[') tools.reorder(false);
    else if (e.key === '+' || e.key === '=') zoomStep(1.25);
    else if (e.key === '-' || e.key === '_') zoomStep(0.8);
    else if (e.shiftKey && (e.code === 'Digit1' || e.key === '!')) renderer.fitContent();
    else if (e.shiftKey && (e.code === 'Digit0' || e.key === ')')) renderer.home();
    else if (e.key.startsWith('Arrow') && tools.selection.size) {
      const step = e.shiftKey ? 10 : 1;
      const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[e.key];
      tools.nudge(d[0], d[1]);
    } else if (!e.altKey && TOOL_KEYS[key]) tools.setTool(TOOL_KEYS[key]);
    else handled = false;
    if (handled) e.preventDefault();
    scheduleUi();
  });

  document.addEventListener('keyup', (e) => {
    if (e.key === ' ') {
      tools.spaceDown = false;
      canvas.classList.remove('space');
    }
  });

  // The toolbar follows the selection's style after a click on the board.
  canvas.addEventListener('pointerup', () => { if (tools.tool === 'select') { adoptSelectionStyle(); scheduleUi(); } });

  // ---- layout -------------------------------------------------------------------------------

  function layout() {
    const wrap = $('board-wrap');
    if (wrap.clientWidth && wrap.clientHeight) renderer.resize(wrap.clientWidth, wrap.clientHeight);
  }

  new ResizeObserver(layout).observe($('board-wrap'));

  // ---- test hook ----------------------------------------------------------------------------

  /** Read-only view of the page's state for tests and debugging. */
  window.drawbridge = {
    state() {
      const strokes = board.order().filter((id) => (board.confirmed.get(id) || {}).kind === 'stroke');
      return {
        connected: sync.joined,
        roomId,
        /** The caller's role here (`owner`, `editor`, `viewer`) and whether the page is read-only. */
        role: myRole,
        readOnly: !!sync.readOnly,
        roomName: roomInfo ? roomInfo.name : null,
        seq: sync.seq,
        epoch: sync.epoch,
        protocol: sync.serverProtocol,
        userId: me(),
        /** Confirmed strokes (the server's), in paint order. */
        strokeIds: strokes.filter((id) => board.confirmed.has(id)),
        /** Our ops the server has not sequenced yet (a stroke's opId is its strokeId). */
        pendingIds: board.pending.map((op) => op.opId),
        elementCount: board.shown.size,
        selection: [...tools.selection],
        tool: tools.tool,
        users: [...users.values()].map((u) => ({ ...u })),
        userCount,
        cursors: [...cursors.entries()].map(([userId, c]) => ({ userId, username: c.username, x: c.x, y: c.y })),
        /** Other people's carets in texts (TEXT_CURSOR), with their place in the text as shown here. */
        textCursors: tools.collab.carets(),
        /** The text open in the editor here, if any, and whether it is shared (typed char by char). */
        editing: tools.editing ? { id: tools.editing.id, collab: !!tools.editing.collab, value: $('text-editor').value } : null,
        textResyncs: sync.textResyncs,
        liveStrokes: [...renderer.live.entries()].map(([id, s]) => ({ id, userId: s.userId, points: s.points.length })),
        joins: { ...sync.joins },
        closeCodes: [...sync.closeCodes],
        /** The history panel: open, the seq previewed (null: live), the slider's range, named versions. */
        history: {
          open: historyOpen(),
          previewSeq: preview.seq,
          previewElements: preview.board ? preview.board.shown.size : null,
          loading: preview.loading,
          min: Number($('history-slider').min),
          max: Number($('history-slider').max),
          versions: versions.map((v) => ({ ...v })),
        },
        view: { ...renderer.cam, dpr: renderer.dpr, width: renderer.cssW, height: renderer.cssH },
        render: { ...renderer.stats, frameMs: [...renderer.stats.frameMs] },
      };
    },
    /** The board as confirmed by the server (`shown: true`: with our pending ops), in paint order. */
    elements({ shown = false, preview: past = false } = {}) {
      const map = past ? (preview.board ? preview.board.shown : new Map()) : shown ? board.shown : board.confirmed;
      return [...map.values()].sort(Whiteboard.model.paintOrder);
    },
    /** Client (page) coordinates of a board point, and back. */
    toClient(x, y) {
      const r = canvas.getBoundingClientRect();
      const p = renderer.toScreen(x, y);
      return { x: r.left + p.x, y: r.top + p.y };
    },
    toBoard(clientX, clientY) {
      const r = canvas.getBoundingClientRect();
      return renderer.toBoard(clientX - r.left, clientY - r.top);
    },
    dropConnection: () => sync.dropConnection(),
  };

  // ---- start --------------------------------------------------------------------------------

  buildToolbar();
  tools.setTool('pen');
  $('guest-name').value = localStorage.getItem('drawbridge.name') || '';
  session = loadSession();
  const invited = roomFromUrl(location.href);
  if (session && invited) enterRoom(invited);
  else showLobby();
})();
