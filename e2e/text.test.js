'use strict';
// End-to-end: typing together in one sticky note (PROTOCOL.md §4.3), in real browsers, through
// nginx, onto two drawbridge instances sharing one Redis. Two people open the same note and type
// different words at the same moment, at the same place; both words must survive whole (each
// person's characters in the order they typed them), both pages must end with the same text, and
// a late joiner must get that text from the server. The pages show each other's caret while they
// type, and undo takes back only one's own typing. The tests build on each other, in order.

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');

const { sleep } = require('./lib/cluster');
const { useStack } = require('./lib/stack');

/** The note: the sticky tool clicked here makes a 200 x 200 note centred on it. */
const NOTE = { x: 500, y: 400 };

/** Waits until every page is live with nothing pending, then returns each page's copy of element `id`. */
async function settledCopies(users, id, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let copies;
  for (;;) {
    for (const u of users) await u.waitSettled(what);
    copies = [];
    for (const u of users) copies.push((await u.elements()).find((e) => e.id === id));
    const texts = copies.map((c) => c && c.text);
    if (texts.every((t) => t === texts[0]) && copies.every((c) => c)) return copies;
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  assert.fail(`${what}: texts differ\n${users.map((u, i) => `${u.name}: ${JSON.stringify(copies[i] && copies[i].text)}`).join('\n')}`);
  return null;
}

/** The characters of `word` appear in `text` in order and next to each other. */
function intact(text, word) {
  return text.includes(word);
}

describe('typing together in one sticky note, on two instances', { timeout: 240000 }, () => {
  const stack = useStack({ label: 'text' });
  let ann;
  let bob;
  let noteId;

  it('two people join on different instances and one writes a note, character by character', async () => {
    ann = await stack.open('Ann');
    await ann.joinAsGuest(`${stack.cluster.url}/`);
    const invite = await ann.createRoom();
    bob = await stack.open('Bob');
    await bob.joinAsGuest(invite);
    await bob.waitConnected();
    for (let i = 0; i < 8 && bob.instance === ann.instance; i++) {
      await bob.page.evaluate(() => window.drawbridge.dropConnection());
      await bob.waitConnected();
    }
    assert.ok(ann.instance && bob.instance && bob.instance !== ann.instance, `sockets on ${ann.instance} and ${bob.instance}`);

    // A new note goes out whole (ELEMENTS_ADD); what is typed into it goes out as TEXT_EDIT.
    const t0 = Date.now();
    await ann.tool('sticky');
    await ann.click(NOTE.x, NOTE.y);
    await ann.page.keyboard.type('Note: ', { delay: 30 });
    await ann.page.keyboard.press('Escape');
    const [note] = await settledCopies([ann, bob], (await ann.elements(true)).find((e) => e.kind === 'sticky').id, 'the note');
    noteId = note.id;
    assert.equal(note.text, 'Note: ');
    assert.ok(Array.isArray(note.textState), 'the note now carries its text state');
    assert.equal(ann.sentOf('ELEMENTS_ADD', t0).length, 1, 'the note was added once');
    const edits = ann.sentOf('TEXT_EDIT', t0);
    assert.ok(edits.length >= 1, 'the typing went out as TEXT_EDIT');
    assert.ok(edits.every((f) => f.payload.id === noteId && f.payload.ops.length >= 1), 'each TEXT_EDIT names the note and carries ops');
    const updates = ann.sentOf('ELEMENTS_UPDATE', t0).filter((f) => f.payload.updates.some((u) => 'text' in u.patch));
    assert.equal(updates.length, 0, 'no ELEMENTS_UPDATE replaced the whole text');
    // Ids follow the Lamport rule: each run starts above everything the page had seen.
    const me = (await ann.state()).userId;
    for (const f of edits) {
      for (const op of f.payload.ops) {
        if (!op.first) continue;
        assert.ok(op.first.startsWith(`${me}:`), `a run is Ann's own: ${op.first}`);
        if (op.after) assert.ok(Number(op.first.split(':').pop()) > Number(op.after.split(':').pop()), 'first.n > after.n');
      }
    }
  });

  it('both type different words at the same place at once, and both words survive whole', async () => {
    for (const u of [ann, bob]) {
      await u.tool('select');
      const p = await u.toPage(NOTE.x, NOTE.y);
      await u.page.mouse.dblclick(p.x, p.y);
      await u.waitState('the note open in the editor', (s) => s.editing && s.editing.id === noteId);
    }
    // Both carets are at the end of "Note: ": the same place. Keystrokes interleave, both pages
    // send while the other's edits are still in flight.
    const t0 = Date.now();
    await Promise.all([
      ann.page.keyboard.type('hello ', { delay: 45 }),
      (async () => { await sleep(20); await bob.page.keyboard.type('world ', { delay: 45 }); })(),
    ]);

    const [a, b] = await settledCopies([ann, bob], noteId, 'after typing at once');
    const text = a.text;
    assert.equal(b.text, text);
    assert.ok(text.startsWith('Note: '), `the old text stays in front: ${JSON.stringify(text)}`);
    assert.ok(intact(text, 'hello '), `Ann's word is whole: ${JSON.stringify(text)}`);
    assert.ok(intact(text, 'world '), `Bob's word is whole: ${JSON.stringify(text)}`);
    assert.equal(text.length, 'Note: hello world '.length, `nothing else: ${JSON.stringify(text)}`);
    assert.deepEqual(a.textState, b.textState, 'both pages hold the same characters, ids and tombstones');
    // The editors show it too (the open editor took in the other's typing).
    for (const u of [ann, bob]) {
      await u.waitState(`${u.name}'s editor shows the merged text`, (s) => s.editing && s.editing.value === text);
    }
    // Both still have the note open: each sees the other's caret in it.
    const annId = (await ann.state()).userId;
    const bobId = (await bob.state()).userId;
    const caret = bob.page.locator(`#text-carets .text-caret[data-user-id="${annId}"]`);
    await caret.waitFor({ state: 'visible', timeout: 5000 });
    assert.match(await caret.innerText(), /Ann/, 'the caret is labelled with its owner');
    const st = await ann.waitState('Bob\'s caret on Ann\'s page', (s) => s.textCursors.some((c) => c.userId === bobId && c.shown));
    const bc = st.textCursors.find((c) => c.userId === bobId);
    assert.equal(bc.id, noteId);
    await ann.page.locator(`#text-carets .text-caret[data-user-id="${bobId}"]`).waitFor({ state: 'visible', timeout: 5000 });

    // Really at once: both pages sent edits while the other's were in flight.
    const sentA = ann.sentOf('TEXT_EDIT', t0).map((f) => f.at);
    const sentB = bob.sentOf('TEXT_EDIT', t0).map((f) => f.at);
    assert.ok(sentA.length >= 2 && sentB.length >= 2, `both sent several edits (${sentA.length}, ${sentB.length})`);
    assert.ok(Math.min(...sentA) < Math.max(...sentB) && Math.min(...sentB) < Math.max(...sentA), 'their edits went out over the same span of time');
    for (const u of [ann, bob]) {
      const whole = u.sentOf('ELEMENTS_UPDATE', t0).filter((f) => f.payload.updates.some((x) => 'text' in x.patch));
      assert.equal(whole.length, 0, `${u.name} never replaced the whole text`);
      assert.equal((await u.state()).textResyncs, 0, `${u.name}'s text never went out of step`);
    }
    for (const u of [ann, bob]) await u.page.keyboard.press('Escape');
  });

  it('a late joiner gets the same text from the server', async () => {
    const [a] = await settledCopies([ann, bob], noteId, 'before the late joiner');
    const cat = await stack.open('Cat');
    await cat.joinAsGuest(`${stack.cluster.url}/?room=${encodeURIComponent((await ann.state()).roomId)}`);
    await cat.waitConnected();
    const [c] = await settledCopies([cat], noteId, 'Cat\'s board');
    assert.equal(c.text, a.text);
    assert.equal((await cat.state()).joins.initialState, 1, 'Cat had one INITIAL_STATE');
    // The state the server holds reads the same visible text.
    const visible = c.textState.filter((x) => !x[2]).map((x) => x[1]).join('');
    assert.equal(visible, a.text);
    await stack.close(cat);
  });

  it('typing into text someone else is changing keeps one\'s caret where one types', async () => {
    // Ann types at the very start while Bob appends at the end: Ann's characters land in front of
    // "Note", in her order, though Bob's edits reach her editor in between.
    for (const u of [ann, bob]) {
      const p = await u.toPage(NOTE.x, NOTE.y);
      await u.page.mouse.dblclick(p.x, p.y);
      await u.waitState('editing', (s) => s.editing && s.editing.id === noteId);
    }
    await ann.page.keyboard.press('Control+Home');
    await Promise.all([
      ann.page.keyboard.type('>> ', { delay: 60 }),
      bob.page.keyboard.type('!!', { delay: 50 }),
    ]);
    const [a] = await settledCopies([ann, bob], noteId, 'after typing at both ends');
    assert.ok(a.text.startsWith('>> Note: '), `Ann's text at the start: ${JSON.stringify(a.text)}`);
    assert.ok(a.text.endsWith('!!'), `Bob's at the end: ${JSON.stringify(a.text)}`);
    // Ann stops editing; Bob's caret stays visible to her, now painted on the board, at the end.
    await ann.page.keyboard.press('Escape');
    const bobId = (await bob.state()).userId;
    const len = Array.from(a.text).length;
    await ann.waitState('Bob\'s caret at the end of the note', (s) => s.textCursors.some((c) => c.userId === bobId && c.index === len && !c.shown));
    await bob.page.keyboard.press('Escape');
  });

  it('undo takes back only one\'s own typing, and redo brings it back', async () => {
    const [before] = await settledCopies([ann, bob], noteId, 'before undo');
    // Bob's last typing was "!!" (one undo step): undo it, then undo "world ".
    await bob.page.keyboard.press('Control+z');
    let [a] = await settledCopies([ann, bob], noteId, 'after Bob\'s first undo');
    assert.equal(a.text, before.text.replace(/!!$/, ''), `only "!!" went: ${JSON.stringify(a.text)}`);
    await bob.page.keyboard.press('Control+z');
    [a] = await settledCopies([ann, bob], noteId, 'after Bob\'s second undo');
    assert.ok(!a.text.includes('world'), `Bob's word is gone: ${JSON.stringify(a.text)}`);
    assert.ok(a.text.includes('hello '), `Ann's word stays: ${JSON.stringify(a.text)}`);
    assert.equal(a.text, '>> Note: hello ');
    await bob.page.keyboard.press('Control+Shift+z');
    [a] = await settledCopies([ann, bob], noteId, 'after Bob\'s redo');
    assert.ok(a.text.includes('world ') && a.text.includes('hello '), `Bob's word is back: ${JSON.stringify(a.text)}`);
    for (const u of [ann, bob]) assert.deepEqual(u.errors, [], `${u.name}'s page logged no errors`);
  });
});
