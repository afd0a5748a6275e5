'use strict';
// One browser "user": its own context (own sessionStorage), a page on the whiteboard, and a record
// of which drawbridge instance served each of its WebSocket handshakes.

const fs = require('node:fs');
const path = require('node:path');
const { ARTIFACTS, sleep } = require('./cluster');
const { decodePng } = require('./png');

/** The area a fresh page shows whole (the v1 board: web/render.js HOME). Tests draw inside it. */
const BOARD_W = 1600;
const BOARD_H = 1000;

function header(headers, name) {
  for (const [k, v] of Object.entries(headers || {})) {
    if (k.toLowerCase() === name) return v;
  }
  return undefined;
}

class User {
  static async open(browser, name, contextOptions = {}) {
    const user = new User();
    user.name = name;
    user.context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...contextOptions });
    user.page = await user.context.newPage();
    user.errors = [];
    user.page.on('pageerror', (err) => user.errors.push(`pageerror: ${err.message}`));
    user.page.on('console', (msg) => {
      if (msg.type() === 'error' && !/WebSocket|ERR_INTERNET_DISCONNECTED|Failed to load resource/.test(msg.text())) {
        user.errors.push(`console: ${msg.text()}`);
      }
    });
    // The 101 response headers are only visible over CDP; they say which instance took the socket.
    user.sockets = [];
    user.cdp = await user.context.newCDPSession(user.page);
    await user.cdp.send('Network.enable');
    // And how each handshake asked: the URL and the subprotocol that carries the token.
    user.handshakes = [];
    user.cdp.on('Network.webSocketCreated', (e) => user.handshakes.push({ requestId: e.requestId, url: e.url }));
    user.cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => {
      const h = user.handshakes.find((x) => x.requestId === e.requestId);
      if (h) h.protocol = header(e.request.headers, 'sec-websocket-protocol');
    });
    user.cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
      user.sockets.push({ status: e.response.status, instance: header(e.response.headers, 'x-drawbridge-instance') });
    });
    // Every frame the page sends, so tests can check what goes over the wire (and how often).
    user.sent = [];
    user.cdp.on('Network.webSocketFrameSent', (e) => {
      try {
        const msg = JSON.parse(e.response.payloadData);
        user.sent.push({ at: Date.now(), type: msg.type, payload: msg.payload });
      } catch { /* not JSON: the tests would notice elsewhere */ }
    });
    return user;
  }

  sentOf(type, since = 0) {
    return this.sent.filter((f) => f.type === type && f.at >= since);
  }

  /** Instance that served the most recent successful WebSocket handshake. */
  get instance() {
    const ok = this.sockets.filter((s) => s.status === 101);
    return ok.length ? ok[ok.length - 1].instance : undefined;
  }

  async joinAsGuest(url) {
    await this.page.goto(url);
    await this.page.getByLabel('Your name').fill(this.name);
    await this.page.getByRole('button', { name: 'Continue as guest' }).click();
  }

  async createRoom() {
    await this.page.getByRole('button', { name: 'Create a new room' }).click();
    await this.waitConnected();
    return this.page.locator('#invite-link').inputValue();
  }

  state() {
    return this.page.evaluate(() => window.drawbridge.state());
  }

  /** Polls the page's state until `pred(state)` holds; the error shows the last state seen. */
  async waitState(what, pred, timeoutMs = 15000) {
    const deadline = Date.now() + timeoutMs;
    let st;
    while (Date.now() < deadline) {
      st = await this.state();
      if (pred(st)) return st;
      await sleep(50);
    }
    throw new Error(`${this.name}: timed out waiting for ${what}; last state: ${JSON.stringify(st, null, 1).slice(0, 2000)}`);
  }

  waitConnected() {
    return this.waitState('connected', (s) => s.connected);
  }

  /** Page coordinates of a board point, through the page's own camera (pan and zoom). */
  toPage(x, y) {
    return this.page.evaluate(([bx, by]) => window.drawbridge.toClient(bx, by), [x, y]);
  }

  /** The board's elements: as the server confirmed them, or (`shown`) with this page's pending ops. */
  elements(shown = false) {
    return this.page.evaluate((s) => window.drawbridge.elements({ shown: s }), shown);
  }

  /** Picks a tool by its toolbar button. */
  async tool(name) {
    await this.page.locator(`#tools button[data-tool="${name}"]`).click();
  }

  /** A mouse drag between board points (with `modifiers` held, e.g. ['Shift']). */
  async drag([x0, y0], [x1, y1], { steps = 8, modifiers = [] } = {}) {
    const { mouse, keyboard } = this.page;
    for (const m of modifiers) await keyboard.down(m);
    const a = await this.toPage(x0, y0);
    const b = await this.toPage(x1, y1);
    await mouse.move(a.x, a.y);
    await mouse.down();
    await mouse.move(b.x, b.y, { steps });
    await mouse.up();
    for (const m of modifiers) await keyboard.up(m);
  }

  /** A click at a board point. */
  async click(x, y, options = {}) {
    const p = await this.toPage(x, y);
    await this.page.mouse.click(p.x, p.y, options);
  }

  /** Waits for this page to hold nothing unsent and to be live. */
  waitSettled(what = 'settled') {
    return this.waitState(what, (s) => s.connected && s.pendingIds.length === 0);
  }

  async pick(color, width) {
    if (color) await this.page.locator(`#colors input[value="${color}"]`).check();
    if (width) await this.page.locator(`#widths input[value="${width}"]`).check();
  }

  /** Draws a polyline through board points with the mouse; returns the new stroke's id. */
  async draw(points) {
    const before = new Set((await this.state()).pendingIds.concat((await this.state()).strokeIds));
    const { mouse } = this.page;
    const first = await this.toPage(points[0][0], points[0][1]);
    await mouse.move(first.x, first.y);
    await mouse.down();
    for (const [x, y] of points.slice(1)) {
      const p = await this.toPage(x, y);
      await mouse.move(p.x, p.y, { steps: 6 });
    }
    await mouse.up();
    const st = await this.state();
    const added = st.pendingIds.concat(st.strokeIds).filter((id) => !before.has(id));
    if (added.length !== 1) throw new Error(`${this.name}: expected one new stroke, got ${added.length}`);
    return added[0];
  }

  /** Draws through board points with one finger (CDP touch events, so pointerType is "touch"). */
  async drawTouch(points) {
    const pts = [];
    for (const [x, y] of points) pts.push(await this.toPage(x, y));
    await this.cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [pts[0]] });
    for (let i = 1; i < pts.length; i++) {
      for (let k = 1; k <= 6; k++) {
        const x = pts[i - 1].x + ((pts[i].x - pts[i - 1].x) * k) / 6;
        const y = pts[i - 1].y + ((pts[i].y - pts[i - 1].y) * k) / 6;
        await this.cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [{ x, y }] });
      }
    }
    await this.cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  }

  /** Draws through board points with a pen (CDP mouse events with pointerType "pen"). */
  async drawPen(points) {
    const send = async (type, [bx, by], extra = {}) => {
      const { x, y } = await this.toPage(bx, by);
      await this.cdp.send('Input.dispatchMouseEvent', { type, x, y, pointerType: 'pen', ...extra });
    };
    await send('mousePressed', points[0], { button: 'left', buttons: 1, clickCount: 1, force: 0.5 });
    for (let i = 1; i < points.length; i++) {
      for (let k = 1; k <= 6; k++) {
        const p = [0, 1].map((j) => points[i - 1][j] + ((points[i][j] - points[i - 1][j]) * k) / 6);
        await send('mouseMoved', p, { button: 'left', buttons: 1, force: 0.5 });
      }
    }
    await send('mouseReleased', points[points.length - 1], { button: 'left', buttons: 0, clickCount: 1 });
  }

  async moveCursor(x, y) {
    const p = await this.toPage(x, y);
    await this.page.mouse.move(p.x, p.y, { steps: 3 });
  }

  /**
   * The board's pixels, exported by the canvas itself (no cursors or UI on top), with the view
   * they show (`img.view`: camera and device pixel ratio) so board points can be found in them.
   */
  async canvas(saveAs) {
    const { url, view } = await this.page.evaluate(async () => {
      // State changes first, pixels on the next animation frame: let that frame run.
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      return { url: document.getElementById('board').toDataURL('image/png'), view: window.drawbridge.state().view };
    });
    const png = Buffer.from(url.slice(url.indexOf(',') + 1), 'base64');
    if (saveAs) this.save(`${saveAs}-canvas.png`, png);
    const img = decodePng(png);
    img.view = view;
    return img;
  }

  async screenshot(name) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await this.page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
  }

  save(file, buf) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.writeFileSync(path.join(ARTIFACTS, file), buf);
  }

  async close() {
    await this.context.close().catch(() => {});
  }
}

module.exports = { User, BOARD_W, BOARD_H };
