'use strict';
// End-to-end: history, versions and export (PROTOCOL.md §5) in real browsers, through nginx, onto
// two drawbridge instances sharing one Redis. Ann draws a known board and exports it as SVG, which
// Chromium then renders on its own (the pixels of the red rectangle and the blue stroke must be
// where the board has them); she names a version, draws on, looks back at the named version with
// the history slider (read-only, the live board untouched), and restores it, which Bob, connected
// to the other instance, sees live as one ROOM_RESTORED event. Last, a new board starts from an
// SVG file chosen in the lobby. Each test builds on the previous one, in order.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { describe, it } = require('node:test');

const { ARTIFACTS, sleep } = require('./lib/cluster');
const { useStack } = require('./lib/stack');
const { boardPixel, decodePng, pixel } = require('./lib/png');
const { canon, converge, near } = require('./lib/elements');

const RED = '#e53935';
const BLUE = '#1e88e5';
const GREEN = '#43a047';

/**
 * `at(dx, dy)` gives the pixel `dx, dy` image pixels away from the point checked. Lines are
 * anti-aliased at their edges, so a colour counts within 2 pixels; white must hold exactly there.
 */
function assertNear(at, hex, what) {
  const r = hex === '#ffffff' ? 0 : 2;
  for (let dy = -r; dy <= r; dy++) {
    for (let dx = -r; dx <= r; dx++) if (near(at(dx, dy), hex)) return;
  }
  assert.fail(`${what}: pixel is rgb(${at(0, 0).slice(0, 3)}), expected ${hex}`);
}

/** A board point of a canvas image (User.canvas) has colour `hex`. */
function assertBoardColor(img, x, y, hex, what) {
  const k = img.view.s * img.view.dpr;
  assertNear((dx, dy) => boardPixel(img, x + dx / k, y + dy / k), hex, `${what} at board (${x},${y})`);
}

/** Polls `read()` until `pred` holds on what it returns; the error shows the last value. */
async function until(what, read, pred, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await read();
    if (pred(last)) return last;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last).slice(0, 1500)}`);
}

/** Moves the history slider as a person would (an input event per step), to `seq`. */
function slideTo(user, seq) {
  return user.page.evaluate((s) => {
    const slider = document.getElementById('history-slider');
    slider.value = String(s);
    slider.dispatchEvent(new Event('input', { bubbles: true }));
  }, seq);
}

const kinds = (els) => els.map((e) => e.kind).sort();

describe('history, versions, export and import, on two instances', { timeout: 300000 }, () => {
  const stack = useStack({ label: 'history' });
  let ann;
  let bob;
  /** The board when its version was named: a red rectangle and a blue stroke. */
  let named;
  let namedSeq;
  /** Frames Bob's page received, by type, to tell a live ROOM_RESTORED from a re-join. */
  const bobGot = [];

  it('two people join the same room, on different instances', async () => {
    ann = await stack.open('Ann');
    await ann.joinAsGuest(`${stack.cluster.url}/`);
    const invite = await ann.createRoom();
    bob = await stack.open('Bob');
    bob.cdp.on('Network.webSocketFrameReceived', (e) => {
      try {
        const msg = JSON.parse(e.response.payloadData);
        bobGot.push({ type: msg.type, payload: msg.payload });
      } catch { /* not JSON */ }
    });
    await bob.joinAsGuest(invite);
    await bob.waitConnected();
    for (let i = 0; i < 8 && bob.instance === ann.instance; i++) {
      await bob.page.evaluate(() => window.drawbridge.dropConnection());
      await bob.waitConnected();
    }
    assert.ok(ann.instance && bob.instance && bob.instance !== ann.instance, `sockets on ${ann.instance} and ${bob.instance}`);
  });

  it('the SVG export of a known board renders, in Chromium alone, with its pixels where the board has them', async () => {
    await ann.pick(RED, 8);
    await ann.tool('rect');
    await ann.drag([200, 150], [500, 350]);
    // The new rectangle is selected, and a colour picked now would recolour it.
    await ann.page.keyboard.press('Escape');
    await ann.pick(BLUE, 8);
    await ann.tool('pen');
    await ann.draw([[600, 200], [700, 300], [800, 200]]);
    const board = await converge([ann, bob], 'a rectangle and a stroke');
    assert.deepEqual(kinds(board), ['rect', 'stroke']);

    const [download] = await Promise.all([
      ann.page.waitForEvent('download'),
      ann.page.getByRole('button', { name: 'Export SVG' }).click(),
    ]);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, 'history-export.svg');
    await download.saveAs(file);
    assert.match(download.suggestedFilename(), /\.svg$/);
    const svg = fs.readFileSync(file, 'utf8');
    assert.match(svg, /^<\?xml /, 'an XML document');
    assert.match(svg, /<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(svg, /<svg [^>]*version="1\.1"/);
    for (const e of board) assert.ok(svg.includes(`data-id="${e.id}"`), `the export holds ${e.kind} ${e.id}`);
    const box = /viewBox="([-\d.e]+) ([-\d.e]+) ([-\d.e]+) ([-\d.e]+)"/.exec(svg);
    assert.ok(box, 'the export has a viewBox');
    const [vx, vy, vw, vh] = box.slice(1).map(Number);
    assert.ok(vx <= 196 && vy <= 146 && vx + vw >= 804 && vy + vh >= 354, `the viewBox ${box[0]} covers the content`);

    // The document alone, as any viewer would open it: one user unit per CSS pixel, from the viewBox corner.
    const context = await stack.browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
    try {
      const viewer = await context.newPage();
      await viewer.goto(pathToFileURL(file).href);
      const png = await viewer.screenshot();
      fs.writeFileSync(path.join(ARTIFACTS, 'history-export-svg.png'), png);
      const img = decodePng(png);
      const at = (x, y) => (dx, dy) => pixel(img, x - vx + dx, y - vy + dy);
      assertNear(at(200, 250), RED, "the rectangle's left side");
      assertNear(at(350, 150), RED, "the rectangle's top side");
      assertNear(at(350, 250), '#ffffff', 'inside the unfilled rectangle');
      assertNear(at(600, 200), BLUE, "the stroke's first point");
      assertNear(at(800, 200), BLUE, "the stroke's last point");
      assertNear(at(700, 200), '#ffffff', 'above the stroke, between its ends');
    } finally {
      await context.close();
    }
  });

  it('a version is named from the history panel', async () => {
    await ann.page.getByRole('button', { name: 'History', exact: true }).click();
    await ann.waitState('the history panel open', (s) => s.history.open);
    await ann.screenshot('history-panel');
    namedSeq = (await ann.state()).seq;
    named = canon(await ann.elements());
    await ann.page.getByLabel('Name for the current version').fill('two shapes');
    await ann.page.getByRole('button', { name: 'Save' }).click();
    const st = await ann.waitState('the named version listed', (s) => s.history.versions.some((v) => v.name === 'two shapes'));
    const v = st.history.versions.find((x) => x.name === 'two shapes');
    assert.equal(v.seq, namedSeq, 'a name is given to the current seq');
    assert.ok(v.versionId, 'the server gives the version an id');
    await until('the version in the list', () => ann.page.locator('#version-list').textContent(), (t) => t.includes('two shapes'));
  });

  it('the slider previews an earlier seq read-only, and leaving it shows the live board again', async () => {
    await ann.page.keyboard.press('Escape');
    await ann.pick(GREEN, 8);
    await ann.tool('ellipse');
    await ann.drag([900, 150], [1100, 350]);
    await ann.page.keyboard.press('Escape');
    const live = await converge([ann, bob], 'the ellipse added');
    assert.deepEqual(kinds(live), ['ellipse', 'rect', 'stroke']);
    const liveSeq = (await ann.state()).seq;

    await slideTo(ann, namedSeq);
    let st = await ann.waitState('the named seq previewed', (s) => s.history.previewSeq === namedSeq && !s.history.loading);
    assert.equal(st.history.previewElements, 2);
    assert.deepEqual(canon(await ann.page.evaluate(() => window.drawbridge.elements({ preview: true }))), named);
    assert.equal(st.seq, liveSeq, 'previewing changes nothing live');
    assert.equal((await ann.elements()).length, 3, 'the live board is untouched underneath');
    assert.match(await ann.page.locator('#preview-banner').textContent(), new RegExp(`seq ${namedSeq}`));
    await ann.screenshot('history-preview');
    let img = await ann.canvas('history-preview');
    assertBoardColor(img, 200, 250, RED, "the rectangle's left side, in the past");
    assertBoardColor(img, 900, 250, '#ffffff', 'where the ellipse is now');

    // Read-only: a drag on the board draws nothing.
    const before = (await ann.state()).elementCount;
    await ann.drag([300, 600], [500, 700]);
    await sleep(300);
    st = await ann.state();
    assert.equal(st.pendingIds.length, 0, 'nothing was sent from a preview');
    assert.equal(st.elementCount, before);

    await ann.page.getByRole('button', { name: 'Back to live' }).click();
    st = await ann.waitState('back to live', (s) => s.history.previewSeq === null);
    assert.equal(st.history.max, st.seq, 'the slider reaches the live seq');
    img = await ann.canvas('history-live');
    assertBoardColor(img, 900, 250, GREEN, "the ellipse's leftmost point, live");

    // A named version is one click away.
    await ann.page.locator('#version-list button', { hasText: 'two shapes' }).click();
    await ann.waitState('the named version previewed', (s) => s.history.previewSeq === namedSeq && !s.history.loading);
  });

  it('restoring the previewed version is confirmed first, then seen live on the other instance', async () => {
    const bobJoins = (await bob.state()).joins;
    const seen = bobGot.length;
    await ann.page.getByRole('button', { name: 'Restore to here…' }).click();
    const dialog = ann.page.locator('#restore-dialog');
    await until('the confirm dialog', () => dialog.evaluate((d) => d.open), Boolean);
    assert.match(await dialog.textContent(), new RegExp(`seq ${namedSeq}`));
    await ann.page.locator('#restore-confirm').click();

    await bob.waitState('the restore on Bob', (s) => s.elementCount === 2, 15000);
    const board = await converge([ann, bob], 'after the restore');
    // The same elements as when the version was named (ids, geometry, colours), in the same order.
    const strip = (els) => els.map(({ z, ...rest }) => rest);
    assert.deepEqual(strip(board), strip(named));
    const restored = bobGot.slice(seen).find((f) => f.type === 'ROOM_RESTORED');
    assert.ok(restored, `Bob got ROOM_RESTORED; he got ${bobGot.slice(seen).map((f) => f.type).join(', ')}`);
    assert.equal(restored.payload.at, namedSeq);
    assert.equal(restored.payload.removed.length, 1, 'one element (the ellipse) removed');
    assert.deepEqual((await bob.state()).joins, bobJoins, 'Bob applied it live, without re-joining');
    const st = await ann.waitState('the preview ended', (s) => s.history.previewSeq === null);
    assert.ok(st.seq > namedSeq, 'a restore is a new op: history is not rewritten');
  });

  it('a new board starts from an SVG file chosen in the lobby; a broken file says why', async () => {
    const oldRoom = (await ann.state()).roomId;
    await ann.page.getByRole('button', { name: 'Leave room' }).click();
    await until('the lobby', () => ann.page.locator('#room-card').isVisible(), Boolean);

    await ann.page.locator('#import-file').setInputFiles({ name: 'broken.svg', mimeType: 'image/svg+xml', buffer: Buffer.from('<svg><rect') });
    const error = await until('the import error', () => ann.page.locator('#lobby-error').textContent(), (t) => t.length > 0);
    await ann.screenshot('history-import-error');
    assert.match(error, /broken\.svg could not be imported/);

    const drawing = `<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 800 600">
  <g transform="translate(50 50)">
    <rect x="50" y="50" width="200" height="120" fill="#ff0000" stroke="#ff0000" stroke-width="4"/>
  </g>
  <path d="M400 100 C450 50 550 150 600 100" stroke="#0000ff" stroke-width="6" fill="none"/>
  <image href="photo.png" x="0" y="0" width="10" height="10"/>
</svg>`;
    await ann.page.locator('#import-file').setInputFiles({ name: 'drawing.svg', mimeType: 'image/svg+xml', buffer: Buffer.from(drawing) });
    const st = await ann.waitState('in the imported room', (s) => s.connected && s.roomId && s.roomId !== oldRoom);
    await ann.waitState('the imported elements', (s) => s.elementCount === 2);
    const toast = await until('the import summary', () => ann.page.locator('#toast').textContent(), (t) => /Imported/.test(t));
    assert.match(toast, /Imported 2 elements; 1 part of the file could not be kept/);
    const els = await ann.elements();
    assert.deepEqual(kinds(els), ['rect', 'stroke']);
    const rect = els.find((e) => e.kind === 'rect');
    assert.deepEqual([rect.x, rect.y, rect.w, rect.h, rect.fill], [100, 100, 200, 120, '#ff0000'], 'the group transform applied');
    const img = await ann.canvas('history-imported');
    assertBoardColor(img, 200, 160, '#ff0000', 'inside the imported rectangle');
    assertBoardColor(img, 400, 100, '#0000ff', "the imported curve's start");
    assert.ok(st.roomId, 'the room exists');
  });

  it('on a phone the history panel opens over the board, whole', async () => {
    await ann.page.setViewportSize({ width: 390, height: 800 });
    await ann.page.getByRole('button', { name: 'History', exact: true }).click();
    await ann.waitState('the history panel open', (s) => s.history.open);
    const panel = await ann.page.locator('#history').boundingBox();
    assert.ok(panel && panel.x >= 0 && panel.x + panel.width <= 390, `the panel fits the screen: ${JSON.stringify(panel)}`);
    assert.ok(await ann.page.getByLabel(/Show the board at/).isVisible(), 'the slider is there');
    assert.ok(await ann.page.getByRole('button', { name: 'Download SVG' }).isVisible(), 'SVG export, from the panel on a phone');
    await ann.screenshot('history-panel-phone');
    await ann.page.getByRole('button', { name: 'Close history' }).click();
    await ann.waitState('the history panel closed', (s) => !s.history.open);
  });

  it('no page logged an error', () => {
    for (const u of stack.everyone) assert.deepEqual(u.errors, [], `${u.name}'s page errors`);
  });
});
