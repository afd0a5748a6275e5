// drawbridge whiteboard, part 3½ of 5: typing together in one text (PROTOCOL.md §4.3).
//
// While a `text`, `sticky`, `node` or `edge` label that is on the board is open in the editor
// (a textarea over the element), every keystroke, paste, cut or IME commit is turned into RGA ops
// against the characters the editor shows: the change is found by comparing the editor's value
// with what it showed before (`base`), and the characters are named by id, never by position.
// The ops are applied at once as a pending TEXT_EDIT (the board shows confirmed + pending), which
// is amended for ~60 ms and then sent: one TEXT_EDIT a batch, several ops in it.
// Other people's edits reach the board in seq order; the editor then takes the board's text and
// puts the caret back after the same character it was after, so typing goes on where it was.
// The caret goes out as TEXT_CURSOR (throttled); other people's carets and selections are drawn
// over the editor in their colour, and dropped when they leave or go quiet for 10 s.
'use strict';

(() => {
  const W = (window.Whiteboard = window.Whiteboard || {});
  const { frameBytes, MAX_FRAME } = W.net;

  /** Keystrokes are gathered this long into one TEXT_EDIT (the server allows 30 ops/s). */
  const BATCH_MS = 60;
  /** Typing with pauses shorter than this is one undo step. */
  const BURST_MS = 1000;
  /** Our caret goes out at most this often (TEXT_CURSOR is capped like cursors). */
  const CARET_EVERY_MS = 100;
  /** A remote caret not updated for this long is dropped. */
  const CARET_TTL_MS = 10000;
  /** Room left in a frame for the envelope (type, roomId, opId). */
  const FRAME_BUDGET = MAX_FRAME - 4096;

  /** Code-point index of UTF-16 offset `u` in `s`, and back. */
  const cpIndex = (s, u) => Array.from(s.slice(0, u)).length;
  const u16Index = (chars, i) => chars.slice(0, i).join('').length;

  /** Ids a list of text ops inserts, in order. */
  function insertedIds(ops) {
    const out = [];
    for (const op of ops) {
      if (Array.isArray(op.delete)) continue;
      const f = W.rga.parseId(op.first);
      if (!f) continue;
      const len = Array.from(op.text).length;
      for (let k = 0; k < len; k++) out.push(`${f.user}:${f.n + k}`);
    }
    return out;
  }

  /** What undoing these ops looks like before the server says: our inserted characters gone. */
  function predictedUndo(id, ops) {
    const ids = insertedIds(ops);
    return ids.length ? { text: [{ id, ops: [{ delete: ids }] }] } : {};
  }

  class CollabText {
    /**
     * hooks: me(), user(userId) -> {username, color} | undefined, pushGesture(ops) (one undo step),
     * caretsChanged() (the board paints carets in texts we are not editing).
     */
    constructor({ textarea, overlay, board, sync, hooks }) {
      this.ta = textarea;
      this.overlay = overlay;
      this.board = board;
      this.sync = sync;
      this.hooks = hooks;
      this.id = null;
      /** What the editor shows: its characters and their ids. */
      this.base = { chars: [], ids: [] };
      this.composing = false;
      /** The TEXT_EDIT still being gathered (held, not sent). */
      this.op = null;
      this.batchTimer = 0;
      /** Our TEXT_EDITs since the last pause: one undo step. */
      this.burst = [];
      this.burstTimer = 0;
      this.caretSent = '';
      this.caretAt = 0;
      this.caretTimer = 0;
      /** userId -> {id, after, anchor, at}: other people's carets, by the element they type in. */
      this.remote = new Map();
      textarea.addEventListener('compositionstart', () => { this.composing = true; });
      textarea.addEventListener('compositionend', () => {
        this.composing = false;
        if (this.id) this.onInput();
      });
      document.addEventListener('selectionchange', () => {
        if (this.id && document.activeElement === textarea) this.sendCaret();
      });
      setInterval(() => this.expireCarets(), 1000);
    }

    get active() { return this.id !== null; }

    /** Opens the editor's text on element `id` (on the board), caret at the end. */
    open(id) {
      this.close();
      this.id = id;
      this.composing = false;
      this.caretSent = '';
      const el = this.board.get(id);
      const r = W.rga.ofElement(el);
      this.ta.value = r.text();
      this.base = { chars: Array.from(this.ta.value), ids: r.visibleIds() };
      this.ta.setSelectionRange(this.ta.value.length, this.ta.value.length);
      this.overlay.hidden = false;
      this.render();
    }

    /** Sends what is gathered, ends the undo step, hides remote carets. */
    close() {
      if (!this.id) return;
      this.release();
      this.endBurst();
      this.id = null;
      this.overlay.hidden = true;
      this.overlay.replaceChildren();
    }

    // -- local edits --

    /** The editor's value changed: the difference from `base` becomes ops. */
    onInput() {
      if (this.composing || !this.id) return;
      const el = this.board.get(this.id);
      if (!el) return;
      const ta = this.ta;
      const next = Array.from(ta.value);
      const old = this.base.chars;
      // Common prefix, but not past the caret: typing "a" into "a|a" inserts after the first "a".
      const caret = cpIndex(ta.value, ta.selectionEnd);
      let p = 0;
      const maxP = Math.min(old.length, next.length);
      while (p < maxP && old[p] === next[p]) p++;
      p = Math.min(p, Math.max(0, caret - Math.max(0, next.length - old.length)));
      let s = 0;
      const maxS = Math.min(old.length - p, next.length - p);
      while (s < maxS && old[old.length - 1 - s] === next[next.length - 1 - s]) s++;
      const gone = this.base.ids.slice(p, old.length - s);
      const added = next.slice(p, next.length - s).join('');
      if (!gone.length && !added) return;
      const r = W.rga.ofElement(el).clone();
      const ops = [];
      if (gone.length) ops.push(...r.remove(gone));
      if (added) ops.push(...r.insert(p > 0 ? this.base.ids[p - 1] : null, added, this.hooks.me()));
      // The editor shows the new text; its ids are the old ones around ours.
      this.base = {
        chars: next,
        ids: [...this.base.ids.slice(0, p), ...insertedIds(ops), ...this.base.ids.slice(old.length - s)],
      };
      this.queue(ops);
      this.refresh();
      this.sendCaret();
    }

    /** Adds ops to the TEXT_EDIT being gathered, starting a new one when it would not fit a frame. */
    queue(ops) {
      clearTimeout(this.burstTimer);
      this.burstTimer = setTimeout(() => this.endBurst(), BURST_MS);
      for (const o of ops) {
        const op = this.op;
        if (op && op.held && !op.everSent && this.board.pending.includes(op)) {
          const all = op.payload.ops.concat([o]);
          const payload = { id: this.id, ops: all };
          if (frameBytes(payload) < FRAME_BUDGET && this.sync.amend(op, payload, { text: [{ id: this.id, ops: all }] })) {
            op.inverse = predictedUndo(this.id, all);
            continue;
          }
        }
        this.release();
        const made = this.sync.submit('TEXT_EDIT', { id: this.id, ops: [o] }, {
          effect: { text: [{ id: this.id, ops: [o] }] }, inverse: predictedUndo(this.id, [o]), held: true,
        });
        if (!made) continue;
        this.op = made;
        this.burst.push(made);
        this.batchTimer = setTimeout(() => this.release(), BATCH_MS);
      }
    }

    /** Lets the gathered TEXT_EDIT go. */
    release() {
      clearTimeout(this.batchTimer);
      const op = this.op;
      this.op = null;
      if (op && op.held) {
        op.held = false;
        this.sync.flush();
      }
    }

    /** Closes the current undo step. */
    endBurst() {
      clearTimeout(this.burstTimer);
      const ops = this.burst;
      this.burst = [];
      if (ops.length) this.hooks.pushGesture(ops);
    }

    /** Before an undo or redo from the editor: everything typed is sent and one step. */
    settle() {
      this.release();
      this.endBurst();
    }

    // -- the board changed --

    /**
     * Takes the board's text into the editor when it differs (someone else's edit, an undo, a
     * re-sync), keeping the caret and selection after the same characters. Mid-composition the
     * editor is left alone until the IME commits.
     */
    refresh() {
      if (!this.id) return;
      const el = this.board.get(this.id);
      if (!el) return;
      const r = W.rga.ofElement(el);
      const text = r.text();
      const ta = this.ta;
      if (text !== ta.value) {
        if (this.composing) return;
        const sel = this.selection();
        const chars = Array.from(text);
        ta.value = text;
        const place = (id, i) => {
          const k = id === undefined ? null : r.caretAfter(id);
          return k === null ? Math.min(i, chars.length) : k;
        };
        let a = place(sel.startId, sel.start);
        let b = place(sel.endId, sel.end);
        if (b < a) b = a;
        ta.setSelectionRange(u16Index(chars, a), u16Index(chars, b), sel.dir);
      }
      this.base = { chars: Array.from(text), ids: r.visibleIds() };
      this.render();
    }

    /** The editor's selection, in code points and as the ids of the characters before its ends. */
    selection() {
      const ta = this.ta;
      const v = ta.value;
      const start = cpIndex(v, ta.selectionStart);
      const end = cpIndex(v, ta.selectionEnd);
      const idAt = (i) => (i <= 0 ? null : this.base.ids[Math.min(i, this.base.ids.length) - 1] ?? null);
      return { start, end, startId: idAt(start), endId: idAt(end), dir: ta.selectionDirection || 'none' };
    }

    // -- carets --

    /** Tells others where our caret (and selection) is, at most every CARET_EVERY_MS. */
    sendCaret() {
      if (!this.id || this.composing) return;
      const sel = this.selection();
      const back = sel.dir === 'backward';
      const after = back ? sel.startId : sel.endId;
      const anchor = back ? sel.endId : sel.startId;
      const payload = { id: this.id, after };
      if (sel.start !== sel.end) payload.anchor = anchor;
      const key = JSON.stringify(payload);
      if (key === this.caretSent) return;
      const wait = this.caretAt + CARET_EVERY_MS - performance.now();
      if (wait > 0) {
        if (!this.caretTimer) this.caretTimer = setTimeout(() => { this.caretTimer = 0; this.sendCaret(); }, wait);
        return;
      }
      if (this.sync.sendTransient('TEXT_CURSOR', payload)) {
        this.caretSent = key;
        this.caretAt = performance.now();
      }
    }

    /** Someone's TEXT_CURSOR. */
    remoteCaret(p) {
      if (!p.userId || p.userId === this.hooks.me() || typeof p.id !== 'string') return;
      this.remote.set(p.userId, { id: p.id, after: p.after ?? null, anchor: p.anchor, at: Date.now() });
      if (p.id === this.id) this.render();
    }

    dropCaret(userId) {
      if (this.remote.delete(userId)) this.render();
    }

    dropAllCarets() {
      this.remote.clear();
      this.render();
    }

    expireCarets() {
      const old = Date.now() - CARET_TTL_MS;
      let gone = false;
      for (const [u, c] of this.remote) {
        if (c.at < old) { this.remote.delete(u); gone = true; }
      }
      if (gone) this.render();
    }

    /** Remote carets to paint on the board: in texts other than the one open here. */
    boardCarets() {
      const out = [];
      for (const c of this.carets()) {
        if (c.id === this.id || c.index === null) continue;
        const u = this.hooks.user(c.userId) || {};
        out.push({ id: c.id, index: c.index, color: u.color || '#555555' });
      }
      return out;
    }

    /** Remote carets, with where they are in the text as this page shows it (for the test hook). */
    carets() {
      return [...this.remote].map(([userId, c]) => {
        const el = this.board.get(c.id);
        const r = el && W.model.TEXTUAL.has(el.kind) ? W.rga.ofElement(el) : null;
        const index = r ? r.caretAfter(c.after) : null;
        const anchorIndex = r && c.anchor !== undefined ? r.caretAfter(c.anchor) : null;
        return { userId, id: c.id, after: c.after, anchor: c.anchor, index, anchorIndex, shown: c.id === this.id && index !== null };
      });
    }

    /**
     * Draws the remote carets over the editor: a copy of its text, transparent, laid out as the
     * textarea lays it out, with a coloured bar at each caret and a tint over each selection.
     */
    render() {
      this.hooks.caretsChanged();
      const ov = this.overlay;
      if (!this.id) return;
      const text = this.base.chars;
      const marks = [];
      for (const c of this.carets()) {
        if (!c.shown) continue;
        const u = this.hooks.user(c.userId) || {};
        const color = u.color || '#555555';
        const at = Math.min(c.index, text.length);
        const sel = c.anchorIndex !== null && c.anchorIndex !== c.index ? [Math.min(at, c.anchorIndex), Math.max(at, c.anchorIndex)] : null;
        marks.push({ userId: c.userId, name: u.username || 'someone', color, at, sel });
      }
      const frag = document.createDocumentFragment();
      let run = '';
      let runSel = null;
      const flush = () => {
        if (!run) return;
        if (runSel) {
          const span = document.createElement('span');
          span.className = 'text-sel';
          span.style.background = runSel.color;
          span.style.opacity = '0.3';
          span.textContent = run;
          frag.append(span);
        } else {
          frag.append(document.createTextNode(run));
        }
        run = '';
      };
      for (let i = 0; i <= text.length; i++) {
        const here = marks.filter((m) => m.at === i);
        if (here.length) {
          flush();
          for (const m of here) {
            const caret = document.createElement('span');
            caret.className = 'text-caret';
            caret.dataset.userId = m.userId;
            caret.style.borderColor = m.color;
            const label = document.createElement('span');
            label.className = 'label';
            label.textContent = m.name;
            label.style.background = m.color;
            caret.append(label);
            frag.append(caret);
          }
        }
        if (i === text.length) break;
        const sel = marks.find((m) => m.sel && m.sel[0] <= i && i < m.sel[1]) || null;
        if (sel !== runSel) { flush(); runSel = sel; }
        run += text[i];
      }
      flush();
      // A final newline makes a line in a textarea but not in a div: give it something to hold.
      frag.append(document.createTextNode('\u200b'));
      ov.replaceChildren(frag);
    }

    /** Lays the overlay exactly over the editor. */
    place() {
      const ta = this.ta;
      const ov = this.overlay;
      for (const k of ['left', 'top', 'width', 'height', 'minHeight', 'fontSize', 'lineHeight', 'padding', 'textAlign']) ov.style[k] = ta.style[k];
    }
  }

  W.text = { CollabText, insertedIds, predictedUndo };
})();
