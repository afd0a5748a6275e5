// drawbridge whiteboard, part 0 of 5: collaborative text (PROTOCOL.md §4.3) as an RGA sequence CRDT.
//
// No DOM, no network. The text of a `text`, `sticky`, `node` or `edge` element is a list of
// characters in document order, each with an id "<userId>:<n>" and a deleted flag (`textState`).
// A character is one Unicode scalar value: strings are split with Array.from, never by UTF-16 unit.
// An insert names the character it goes after (null: the start); among inserts after the same
// character the greater id goes first (higher n, then the greater userId). Read flat, an insert
// starts right after its anchor and skips every character whose id is greater than its first id:
// that lands in the right place because of the Lamport rule (a run's n is greater than every n
// seen in the element, so greater than its anchor's). The server checks ops and orders them;
// this page integrates them in seq order, and its own on top, and all replicas converge.
'use strict';

(() => {
  const W = (window.Whiteboard = window.Whiteboard || {});

  /** A character id's parts; the user id may itself hold ':' (the last one separates). */
  function parseId(id) {
    if (typeof id !== 'string') return null;
    const k = id.lastIndexOf(':');
    if (k <= 0) return null;
    const n = Number(id.slice(k + 1));
    if (!Number.isSafeInteger(n) || n < 0) return null;
    return { user: id.slice(0, k), n };
  }

  /** Id order: n first, then the user id (ASCII, so JS string order is byte order). */
  function cmp(a, b) {
    if (a.n !== b.n) return a.n - b.n;
    return a.user < b.user ? -1 : a.user > b.user ? 1 : 0;
  }

  class Rga {
    constructor() {
      /** {id, user, n, ch, del} in document order, tombstones included. */
      this.chars = [];
      this.byId = new Map();
      this.maxN = 0;
      this.visible = 0;
    }

    /** From a `textState` ([[charId, char, deleted], ...]); null if it is malformed. */
    static fromState(state) {
      const r = new Rga();
      if (!Array.isArray(state)) return null;
      for (const e of state) {
        if (!Array.isArray(e) || typeof e[1] !== 'string') return null;
        const p = parseId(e[0]);
        if (!p || r.byId.has(e[0])) return null;
        const c = { id: e[0], user: p.user, n: p.n, ch: e[1], del: !!e[2] };
        r.chars.push(c);
        r.byId.set(c.id, c);
        if (p.n > r.maxN) r.maxN = p.n;
        if (!c.del) r.visible++;
      }
      return r;
    }

    /** An element's text with no `textState`: ids "<creator>:1", "<creator>:2", … none deleted. */
    static fromText(text, userId) {
      return Rga.fromState(Array.from(String(text || ''), (ch, i) => [`${userId}:${i + 1}`, ch, false]));
    }

    clone() {
      const r = new Rga();
      r.chars = this.chars.map((c) => ({ ...c }));
      for (const c of r.chars) r.byId.set(c.id, c);
      r.maxN = this.maxN;
      r.visible = this.visible;
      return r;
    }

    text() {
      let s = '';
      for (const c of this.chars) if (!c.del) s += c.ch;
      return s;
    }

    state() {
      return this.chars.map((c) => [c.id, c.ch, c.del]);
    }

    /** Visible characters' ids, in order (index i = the i-th visible character). */
    visibleIds() {
      const out = [];
      for (const c of this.chars) if (!c.del) out.push(c.id);
      return out;
    }

    /** The n a new run starts at: greater than every n seen in this element. */
    nextN() {
      return this.maxN + 1;
    }

    /**
     * Applies an op the server checked (or one of ours). Returns true if applied or already there
     * (a run whose ids all exist, a delete of unknown or deleted ids), false if it cannot apply
     * (its anchor is unknown, part of its run exists, it is malformed).
     */
    integrate(op) {
      if (!op || typeof op !== 'object') return false;
      if (Array.isArray(op.delete)) {
        for (const id of op.delete) {
          const c = this.byId.get(id);
          if (c && !c.del) {
            c.del = true;
            this.visible--;
          }
        }
        return true;
      }
      const first = parseId(op.first);
      if (!first || typeof op.text !== 'string') return false;
      const run = Array.from(op.text);
      if (!run.length) return false;
      const ids = run.map((_, k) => `${first.user}:${first.n + k}`);
      const present = ids.filter((id) => this.byId.has(id)).length;
      if (present === ids.length) return true; // delivered twice
      if (present) return false;
      let at = 0;
      if (op.after !== null && op.after !== undefined) {
        const a = this.byId.get(op.after);
        if (!a) return false;
        at = this.chars.indexOf(a) + 1;
      }
      while (at < this.chars.length && cmp(this.chars[at], first) > 0) at++;
      const made = run.map((ch, k) => ({ id: ids[k], user: first.user, n: first.n + k, ch, del: false }));
      this.chars.splice(at, 0, ...made);
      for (const c of made) this.byId.set(c.id, c);
      this.maxN = Math.max(this.maxN, first.n + run.length - 1);
      this.visible += run.length;
      return true;
    }

    /**
     * Our own insert of `str` after character `after` (null: the start), as ops that follow the
     * Lamport rule; long runs are split so that each op stays well under the frame limit. Applied here.
     */
    insert(after, str, userId, maxRun = 4000) {
      const chars = Array.from(str);
      const ops = [];
      let anchor = after;
      for (let i = 0; i < chars.length; i += maxRun) {
        const part = chars.slice(i, i + maxRun);
        const n = this.nextN();
        const op = { after: anchor, first: `${userId}:${n}`, text: part.join('') };
        this.integrate(op);
        ops.push(op);
        anchor = `${userId}:${n + part.length - 1}`;
      }
      return ops;
    }

    /** Our own delete of these ids, as ops of at most `maxIds` ids each. Applied here. */
    remove(ids, maxIds = 600) {
      const ops = [];
      for (let i = 0; i < ids.length; i += maxIds) {
        const op = { delete: ids.slice(i, i + maxIds) };
        this.integrate(op);
        ops.push(op);
      }
      return ops;
    }

    /** The caret index in the visible text just after character `id` (null: the start; unknown: null). */
    caretAfter(id) {
      if (id === null || id === undefined) return 0;
      const c = this.byId.get(id);
      if (!c) return null;
      let k = 0;
      for (const x of this.chars) {
        if (!x.del) k++;
        if (x === c) return x.del ? k : k;
      }
      return null;
    }
  }

  /** The RGA of an element (its `textState`, or derived from `text`), cached per element object. */
  const cache = new WeakMap();
  function ofElement(el) {
    let r = cache.get(el);
    if (!r) {
      r = (Array.isArray(el.textState) && Rga.fromState(el.textState)) || Rga.fromText(el.text, el.userId ?? '');
      cache.set(el, r);
    }
    return r;
  }

  /**
   * The element after text ops, as a new object carrying `textState` and the visible `text`.
   * `strict`: every op must apply (the server's order) or null is returned; otherwise an op that
   * cannot apply (ours, on a base that changed under it) is skipped.
   */
  function applyOps(el, ops, strict) {
    const r = ofElement(el).clone();
    for (const op of ops || []) {
      if (!r.integrate(op) && strict) return null;
    }
    const next = { ...el, text: r.text(), textState: r.state() };
    cache.set(next, r);
    return next;
  }

  W.rga = { Rga, parseId, cmp, ofElement, applyOps };
})();
