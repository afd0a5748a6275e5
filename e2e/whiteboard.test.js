'use strict';
// End-to-end: real browsers on the whiteboard page, through nginx, onto two drawbridge instances
// that share one Redis. Each test builds on the board the previous one left, in order.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, it } = require('node:test');

const { REPO, sleep } = require('./lib/cluster');
const { useStack } = require('./lib/stack');
const { boardPixel, diffRatio, inkRatio } = require('./lib/png');

const RED = '#e53935';
const BLUE = '#1e88e5';
const GREEN = '#43a047';
const PURPLE = '#8e24aa';
const ORANGE = '#fb8c00';

/** A straight line keeps the smoothed curve on the line, so we know which pixels it covers. */
const line = (x0, x1, y) => [[x0, y], [(x0 + x1) / 2, y], [x1, y]];

function rgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

function assertColorAt(img, x, y, hex, what) {
  const [r, g, b] = boardPixel(img, x, y);
  const want = rgb(hex);
  const close = Math.abs(r - want[0]) + Math.abs(g - want[1]) + Math.abs(b - want[2]) < 40;
  assert.ok(close, `${what}: pixel at (${x},${y}) is rgb(${r},${g},${b}), expected ${hex}`);
}

function sameSet(a, b) {
  return a.length === b.length && new Set(a).size === a.length && a.every((x) => b.includes(x));
}

/** Waits until every user shows the same, duplicate-free strokes with nothing pending. */
async function converge(users, count, what) {
  const settled = (s) => s.connected && s.pendingIds.length === 0 && s.strokeIds.length === count
    && new Set(s.strokeIds).size === s.strokeIds.length;
  const states = [];
  for (const u of users) states.push(await u.waitState(`${what}: ${count} strokes`, settled));
  for (const s of states.slice(1)) {
    assert.ok(sameSet(s.strokeIds, states[0].strokeIds), `${what}: stroke sets differ\n${JSON.stringify(states.map((x) => x.strokeIds))}`);
  }
  return states[0].strokeIds;
}

/** Same pixels on every board, and some ink on them. */
async function samePixels(users, name) {
  const imgs = [];
  for (const u of users) imgs.push(await u.canvas(`${name}-${u.name}`));
  for (const [i, img] of imgs.entries()) {
    const d = diffRatio(imgs[0], img);
    assert.ok(d < 0.0005, `${name}: ${users[i].name}'s board differs from ${users[0].name}'s in ${(d * 100).toFixed(3)}% of pixels`);
  }
  return imgs[0];
}

describe('whiteboard through nginx on two instances', { timeout: 300000 }, () => {
  const stack = useStack({ label: 'whiteboard' });
  let ann;
  let bob;
  let invite;
  let annFirst;
  let bobFirst;

  it('serves the page and its assets from both instances, round robin', async () => {
    const seen = new Set();
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${stack.cluster.url}/`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') || '', /text\/html/);
      assert.match(await res.text(), /<canvas id="board"/);
      // The configured id is a prefix: every process start appends `-<8 hex digits>`.
      seen.add((res.headers.get('x-drawbridge-instance') || '').replace(/-[0-9a-f]{8}$/, ''));
    }
    assert.deepEqual([...seen].sort(), ['a', 'b'], 'x-drawbridge-instance should alternate between a and b');
    // The server must serve this tree's web/ (a binary built from another checkout serves that one's).
    const stale = 'the server serves a different copy of web/: rebuild DRAWBRIDGE_BIN from this tree';
    assert.equal(await (await fetch(`${stack.cluster.url}/`)).text(), fs.readFileSync(path.join(REPO, 'web', 'index.html'), 'utf8'), stale);
    // Every script and stylesheet the page loads, as listed in index.html.
    const html = fs.readFileSync(path.join(REPO, 'web', 'index.html'), 'utf8');
    const files = [...html.matchAll(/"\/assets\/([^"]+)"/g)].map((m) => m[1]);
    assert.ok(files.includes('app.js') && files.includes('style.css'), `index.html loads ${files}`);
    for (const file of files) {
      const type = file.endsWith('.css') ? /text\/css/ : /javascript/;
      const res = await fetch(`${stack.cluster.url}/assets/${file}`);
      assert.equal(res.status, 200, `/assets/${file}`);
      assert.match(res.headers.get('content-type') || '', type, `/assets/${file} content-type`);
      assert.equal(await res.text(), fs.readFileSync(path.join(REPO, 'web', file), 'utf8'), `${file}: ${stale}`);
    }
  });

  it('a guest creates a room and a second guest joins by the invite link, on the other instance', async () => {
    ann = await stack.open('Ann');
    await ann.joinAsGuest(`${stack.cluster.url}/`);
    invite = await ann.createRoom();
    assert.match(invite, /\/\?room=[^&]+$/);
    const { roomId } = await ann.state();
    assert.ok(invite.endsWith(encodeURIComponent(roomId)));

    bob = await stack.open('Bob');
    await bob.joinAsGuest(invite);
    await bob.waitConnected();
    assert.equal((await bob.state()).roomId, roomId);

    // Round robin puts consecutive requests on alternating instances, but the page's own HTTP calls
    // shift the phase: reconnect Bob until his socket is on the instance Ann's is not.
    assert.ok(ann.instance, `Ann's WebSocket handshake had no x-drawbridge-instance header: ${JSON.stringify(ann.sockets)}`);
    for (let i = 0; i < 8 && bob.instance === ann.instance; i++) {
      await bob.page.evaluate(() => window.drawbridge.dropConnection());
      await bob.waitConnected();
    }
    assert.ok(bob.instance && bob.instance !== ann.instance, `sockets on ${ann.instance} and ${bob.instance}`);

    const names = (s) => s.users.map((u) => u.username).sort();
    for (const u of [ann, bob]) {
      const s = await u.waitState('both users present', (st) => st.userCount === 2 && names(st).join() === 'Ann,Bob');
      assert.equal(new Set(s.users.map((x) => x.userId)).size, 2);
      const list = await u.page.locator('#user-list').innerText();
      assert.match(list, /Ann/);
      assert.match(list, /Bob/);
      assert.equal(await u.page.locator('#user-count').innerText(), '2');
    }
  });

  it('strokes drawn on one instance appear on the other, pixel for pixel', async () => {
    const t0 = Date.now();
    await ann.pick(RED, 8);
    const a1 = await ann.draw(line(200, 800, 200));
    await bob.pick(BLUE, 16);
    const b1 = await bob.draw(line(200, 900, 600));

    const ids = await converge([ann, bob], 2, 'first strokes');
    assert.ok(ids.includes(a1) && ids.includes(b1));
    [annFirst, bobFirst] = [a1, b1];

    // One CANVAS_UPDATE per finished stroke, with opId = strokeId and the page's own values.
    for (const [u, id, color, width] of [[ann, a1, RED, 8], [bob, b1, BLUE, 16]]) {
      const frames = u.sentOf('CANVAS_UPDATE', t0);
      assert.equal(frames.length, 1, `${u.name} sent ${frames.length} CANVAS_UPDATE frames for one stroke`);
      const { canvasData, opId } = frames[0].payload;
      assert.equal(opId, id);
      assert.equal(canvasData.strokeId, id);
      assert.equal(canvasData.color, color);
      assert.equal(canvasData.width, width);
      assert.ok(canvasData.points.length >= 3, 'the stroke carries its points');
      for (const p of canvasData.points) assert.ok(p.x >= 0 && p.x <= 1600 && p.y >= 0 && p.y <= 1000, 'points in board coordinates');
    }

    const img = await samePixels([ann, bob], 'first-strokes');
    assert.ok(inkRatio(img) > 0.003, 'the boards should have ink on them');
    assertColorAt(img, 350, 200, RED, "Ann's red stroke");
    assertColorAt(img, 700, 600, BLUE, "Bob's blue stroke");
    assertColorAt(img, 1300, 900, '#ffffff', 'empty corner');
    await ann.screenshot('ann-after-first-strokes');
    await bob.screenshot('bob-after-first-strokes');
  });

  it("shows each other's cursors with names", async () => {
    const { userId: annId } = await ann.state();
    await ann.moveCursor(1000, 420);
    const s = await bob.waitState("Ann's cursor", (st) => st.cursors.some((c) => c.userId === annId && Math.abs(c.x - 1000) < 3 && Math.abs(c.y - 420) < 3));
    assert.equal(s.cursors.find((c) => c.userId === annId).username, 'Ann');
    const label = bob.page.locator('.cursor .label', { hasText: 'Ann' });
    await label.waitFor({ state: 'visible' });
    await bob.screenshot('bob-sees-ann-cursor');

    const { userId: bobId } = await bob.state();
    await bob.moveCursor(300, 800);
    await ann.waitState("Bob's cursor", (st) => st.cursors.some((c) => c.userId === bobId));

    // A burst of mouse moves is throttled to at most 20 CURSOR_MOVE frames a second.
    const t0 = Date.now();
    for (let i = 0; i < 120; i++) await bob.moveCursor(300 + i * 5, 800 - i * 2);
    const elapsed = (Date.now() - t0) / 1000;
    await sleep(100);
    const sent = bob.sentOf('CURSOR_MOVE', t0).length;
    assert.ok(sent >= 3, `cursor moves were sent (${sent})`);
    assert.ok(sent <= Math.ceil(elapsed * 20) + 1, `${sent} CURSOR_MOVE frames in ${elapsed.toFixed(2)} s exceed 20/s`);
    await ann.waitState("Bob's last cursor position", (st) => st.cursors.some((c) => c.userId === bobId && Math.abs(c.x - (300 + 119 * 5)) < 3));
  });

  it('undo and redo, by keyboard and by button, propagate to the other instance', async () => {
    await ann.page.keyboard.press('Control+z');
    let ids = await converge([ann, bob], 1, 'after Ann undoes');
    assert.deepEqual(ids, [bobFirst]);
    let img = await samePixels([ann, bob], 'after-undo');
    assertColorAt(img, 350, 200, '#ffffff', "Ann's undone stroke");
    assertColorAt(img, 700, 600, BLUE, "Bob's stroke");

    await ann.page.keyboard.press('Control+Shift+z');
    await converge([ann, bob], 2, 'after Ann redoes');
    img = await samePixels([ann, bob], 'after-redo');
    assertColorAt(img, 350, 200, RED, "Ann's redone stroke");

    await bob.page.getByRole('button', { name: 'Undo' }).click();
    ids = await converge([ann, bob], 1, 'after Bob undoes');
    img = await samePixels([ann, bob], 'after-bob-undo');
    assertColorAt(img, 700, 600, '#ffffff', "Bob's undone stroke");
    assertColorAt(img, 350, 200, RED, "Ann's stroke stays");
    assert.deepEqual(ids, [annFirst]);

    await bob.page.getByRole('button', { name: 'Redo' }).click();
    await converge([ann, bob], 2, 'after Bob redoes');
    img = await samePixels([ann, bob], 'after-bob-redo');
    assertColorAt(img, 700, 600, BLUE, "Bob's redone stroke");
  });

  it('a page that goes offline queues its strokes and converges exactly once when back', async () => {
    const before = (await ann.state()).strokeIds.length;
    const replays = (await bob.state()).joins.replay;

    await bob.context.setOffline(true);
    await bob.page.evaluate(() => window.drawbridge.dropConnection());
    await bob.waitState('offline', (s) => !s.connected);

    await bob.pick(GREEN, 8);
    await bob.draw(line(100, 700, 800));
    await bob.pick(PURPLE, 4);
    await bob.draw(line(100, 700, 880));
    await ann.pick(ORANGE, 8);
    await ann.draw(line(900, 1500, 400));
    // Someone arrives while Bob is away; a REPLAY does not list people, so Bob must catch up.
    const eve = await stack.open('Eve');
    await eve.joinAsGuest(invite);
    await eve.waitConnected();

    // Still offline: reconnect attempts must fail, and the strokes wait in the queue.
    await sleep(1500);
    let s = await bob.state();
    assert.equal(s.connected, false, 'Bob should still be offline');
    assert.equal(s.pendingIds.length, 2);
    assert.equal(await bob.page.locator('#conn').getAttribute('data-state'), 'offline');
    assert.match(await bob.page.locator('#conn-text').innerText(), /2 changes queued/);
    await bob.screenshot('bob-offline');

    await bob.context.setOffline(false);
    await bob.waitConnected();
    await converge([ann, bob], before + 3, 'after Bob reconnects');
    const img = await samePixels([ann, bob], 'after-reconnect');
    assertColorAt(img, 400, 800, GREEN, "Bob's offline green stroke");
    assertColorAt(img, 400, 880, PURPLE, "Bob's offline purple stroke");
    assertColorAt(img, 1200, 400, ORANGE, "Ann's stroke drawn while Bob was away");
    s = await bob.state();
    assert.equal(s.seq, (await ann.state()).seq, 'both pages saw the same last seq');
    assert.ok(s.joins.replay > replays, `Bob should recover with a REPLAY from {since, epoch}: ${JSON.stringify(s.joins)}`);
    await bob.waitState('Eve in the list', (st) => st.users.some((u) => u.username === 'Eve') && st.userCount === 3);
    await stack.close(eve);
    await bob.waitState('Eve gone', (st) => !st.users.some((u) => u.username === 'Eve') && st.userCount === 2);
  });

  it('a stroke whose ACK is lost with the socket is applied exactly once', async () => {
    const before = (await ann.state()).strokeIds.length;
    const replays = (await bob.state()).joins.replay;
    // Drop Bob's socket right after the page sends the stroke, before any ACK can be read.
    await bob.page.evaluate(() => {
      document.getElementById('board').addEventListener('pointerup', () => window.drawbridge.dropConnection(), { once: true });
    });
    await bob.pick(BLUE, 4);
    const id = await bob.draw(line(900, 1500, 950));
    await bob.waitConnected();
    const ids = await converge([ann, bob], before + 1, 'after the lost ACK');
    assert.equal(ids.filter((x) => x === id).length, 1);
    assert.equal((await bob.state()).joins.replay, replays + 1, 'recovered with one REPLAY');
    await samePixels([ann, bob], 'after-lost-ack');
  });

  it('a late joiner sees the whole board', async () => {
    const carol = await stack.open('Carol');
    await carol.joinAsGuest(invite);
    await carol.waitConnected();
    const count = (await ann.state()).strokeIds.length;
    await converge([ann, bob, carol], count, 'late joiner');
    await samePixels([ann, bob, carol], 'late-joiner');
    await carol.waitState('three users', (s) => s.userCount === 3);
    await carol.screenshot('carol-late-joiner');
    await stack.close(carol);
    await ann.waitState('Carol left', (s) => s.userCount === 2);
  });

  it('draws with touch and with a pen', async () => {
    const tess = await stack.open('Tess', { hasTouch: true });
    await tess.joinAsGuest(invite);
    await tess.waitConnected();
    const count = (await ann.state()).strokeIds.length;
    await converge([ann, tess], count, 'Tess joined');

    await tess.pick(GREEN, 8);
    await tess.drawTouch(line(100, 700, 25));
    await tess.pick(RED, 8);
    await tess.drawPen(line(900, 1500, 25));
    await converge([ann, bob, tess], count + 2, 'touch and pen strokes');
    const img = await samePixels([ann, bob, tess], 'touch-and-pen');
    assertColorAt(img, 400, 25, GREEN, 'touch stroke');
    assertColorAt(img, 1200, 25, RED, 'pen stroke');
    await stack.close(tess);
  });

  it('a page that misses a sequenced event notices the gap and replays it', async () => {
    const gus = await stack.open('Gus');
    // Gus's socket runs through a relay that can swallow one CANVAS_UPDATE from the server.
    let dropNext = false;
    let dropped = 0;
    await gus.page.routeWebSocket(/\/ws\b/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => {
        if (dropNext && typeof m === 'string' && m.includes('"type":"CANVAS_UPDATE"')) {
          dropNext = false;
          dropped++;
          return;
        }
        ws.send(m);
      });
    });
    await gus.joinAsGuest(invite);
    await gus.waitConnected();
    const count = (await ann.state()).strokeIds.length;
    await converge([ann, gus], count, 'Gus joined');
    const replays = (await gus.state()).joins.replay;

    dropNext = true;
    await ann.pick(PURPLE, 4);
    await ann.draw(line(100, 500, 975));
    await ann.draw(line(550, 850, 975));
    await converge([ann, bob, gus], count + 2, 'after the gap');
    assert.equal(dropped, 1, 'the relay swallowed one event');
    assert.ok((await gus.state()).joins.replay > replays, 'Gus re-joined with since/epoch and got a REPLAY');
    const img = await samePixels([ann, bob, gus], 'after-gap');
    assertColorAt(img, 300, 975, PURPLE, 'the swallowed stroke');
    await stack.close(gus);
  });

  it('a board with a thousand strokes loads and stays responsive', async (t) => {
    const before = (await ann.state()).strokeIds.length;
    const n = 1000;
    // Feed strokes over more sockets of Ann's: what a busy room looks like to a late joiner. The
    // server accepts 100 ops a second per connection, so each feeder keeps below that and resends
    // whatever it is told to slow down on.
    const acked = await ann.page.evaluate(async ({ n, feeders }) => {
      const { token } = JSON.parse(sessionStorage.getItem('drawbridge.session'));
      const { roomId } = window.drawbridge.state();
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      const stroke = (i) => {
        const x = 40 + (i % 50) * 30;
        const y = 40 + Math.floor(i / 50) * 45;
        const points = Array.from({ length: 20 }, (_, k) => ({ x: x + k, y: y + (k % 5) * 4 }));
        return { strokeId: `bulk-${i}`, roomId, userId: '', points, color: '#607d8b', width: 2 };
      };
      async function feed(first, count) {
        const ws = new WebSocket(`ws://${location.host}/ws`, [`bearer.${token}`]);
        await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
        const send = (i) => ws.send(JSON.stringify({ type: 'CANVAS_UPDATE', payload: { roomId, opId: `bulk-${i}`, canvasData: stroke(i) } }));
        const acks = new Set();
        let joined;
        const ready = new Promise((r) => { joined = r; });
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          if (m.type === 'INITIAL_STATE' || m.type === 'REPLAY') joined();
          else if (m.type === 'ACK') acks.add(m.payload.opId);
          else if (m.type === 'ERROR' && m.payload.code === 'RATE_LIMITED') {
            setTimeout(() => send(Number(m.payload.ref.slice(5))), 1000);
          }
        };
        ws.send(JSON.stringify({ type: 'JOIN_ROOM', payload: { roomId } }));
        await ready;
        for (let i = first; i < first + count; i++) {
          send(i);
          await sleep(13);
        }
        const deadline = Date.now() + 30000;
        while (acks.size < count && Date.now() < deadline) await sleep(50);
        ws.close();
        return acks.size;
      }
      const per = n / feeders;
      const counts = await Promise.all(Array.from({ length: feeders }, (_, f) => feed(f * per, per)));
      return counts.reduce((a, b) => a + b, 0);
    }, { n, feeders: 4 });
    assert.equal(acked, n, 'every bulk stroke was acknowledged');
    await converge([ann, bob], before + n, 'bulk strokes');

    const dave = await stack.open('Dave');
    const t0 = Date.now();
    await dave.joinAsGuest(invite);
    await dave.waitState('the whole board', (s) => s.connected && s.strokeIds.length === before + n, 30000);
    const loadMs = Date.now() - t0;
    // Time from an Undo click to pixels ready. Ann's newest stroke is a bulk one (fed with her token
    // from other sockets: the server undoes it although this page did not draw it); Bob's is older
    // than every bulk stroke.
    const undoMs = (u) => u.page.evaluate(async () => {
      const t = performance.now();
      document.getElementById('undo').click();
      await new Promise((r) => requestAnimationFrame(() => r()));
      document.getElementById('board').getContext('2d').getImageData(0, 0, 1, 1);
      return performance.now() - t;
    });
    const recentMs = await undoMs(ann);
    await converge([ann, bob, dave], before + n - 1, 'Ann undoes a recent stroke');
    const recentRepaint = (await ann.state()).render.lastCacheMs;
    const oldMs = await undoMs(bob);
    await converge([ann, bob, dave], before + n - 2, 'Bob undoes an old stroke');
    await samePixels([ann, bob, dave], 'big-board');
    await dave.screenshot('dave-big-board');
    t.diagnostic(`${n}-stroke board: late joiner loaded in ${loadMs} ms; undo to pixels: ${recentMs.toFixed(0)} ms `
      + `for a recent stroke, ${oldMs.toFixed(0)} ms for an old one; repaint work ${recentRepaint.toFixed(0)} / `
      + `${(await bob.state()).render.lastCacheMs.toFixed(0)} ms`);
    assert.ok(loadMs < 15000, `loading a ${n}-stroke board took ${loadMs} ms`);
    assert.ok(recentMs < 1000 && oldMs < 2000, `undo took ${recentMs} / ${oldMs} ms`);
  });

  it('left no errors in any page', () => {
    for (const u of stack.everyone) assert.deepEqual(u.errors, [], `${u.name}'s page logged errors`);
  });
});
