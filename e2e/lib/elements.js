// What the board tests compare: elements by their meaning, colours by eye, pages' boards.

const assert = require('node:assert/strict');
const { sleep } = require('./cluster');

/** The fields that make up an element's meaning (v, the version stamp, says when, not what). */
const FIELDS = ['id', 'kind', 'x', 'y', 'w', 'h', 'rotation', 'points', 'color', 'fill', 'width', 'text', 'from', 'to', 'z'];
const canon = (els) => els.map((e) => Object.fromEntries(FIELDS.filter((f) => e[f] !== undefined && e[f] !== null).map((f) => [f, e[f]])));

function rgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

function near(px, hex) {
  const want = rgb(hex);
  return Math.abs(px[0] - want[0]) + Math.abs(px[1] - want[1]) + Math.abs(px[2] - want[2]) < 40;
}

/** Waits until every page is live with nothing pending and all hold the same board; returns it. */
async function converge(users, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let boards;
  for (;;) {
    for (const u of users) await u.waitSettled(what);
    boards = [];
    for (const u of users) boards.push(canon(await u.elements()));
    const first = JSON.stringify(boards[0]);
    if (boards.every((b) => JSON.stringify(b) === first)) return boards[0];
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  assert.fail(`${what}: boards differ\n${users.map((u, i) => `${u.name}: ${JSON.stringify(boards[i])}`).join('\n')}`);
  return null;
}

module.exports = { FIELDS, canon, converge, rgb, near };
