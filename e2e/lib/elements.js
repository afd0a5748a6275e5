// What the board tests compare: elements by their meaning, colours by eye.

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

module.exports = { FIELDS, canon, rgb, near };
