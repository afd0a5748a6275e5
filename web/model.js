// drawbridge whiteboard, part 1 of 5: the board model (no DOM, no network).
//
// A board is a set of elements (PROTOCOL.md §4) keyed by id. Two layers:
//   confirmed  what the server's events say, applied strictly in seq order;
//   pending    our own ops the server has not sequenced yet, replayed on top, in the order we made them.
// `shown` = confirmed + pending, kept up to date id by id, is what the page paints and edits.
// Every change is an *effect* {add: [element], set: [{id, patch}], del: [id]}, the same shape the
// server logs, so applying a remote event, our own op and a predicted undo is one function.
// Elements are never mutated: a change makes a new object, so caches can be keyed by object.
'use strict';

(() => {
  const W = (window.Whiteboard = window.Whiteboard || {});

  const FRAMED = new Set(['rect', 'ellipse', 'text', 'sticky', 'node']);
  const POINTED = new Set(['stroke', 'line', 'arrow']);
  const TEXTUAL = new Set(['text', 'sticky', 'node', 'edge']);

  /** Which fields a kind may carry: the server refuses the others (BAD_ELEMENT), so never send them. */
  function allows(kind, field) {
    switch (field) {
      case 'z': case 'color': return true;
      case 'x': case 'y': case 'w': case 'h': case 'rotation': case 'fill': return FRAMED.has(kind);
      case 'points': return POINTED.has(kind);
      case 'width': return kind !== 'text' && kind !== 'sticky';
      case 'text': return TEXTUAL.has(kind);
      case 'from': case 'to': return kind === 'edge';
      default: return false;
    }
  }

  /** The fields a client may send for an element (the server drops or refuses the rest). */
  const FIELDS = ['x', 'y', 'w', 'h', 'rotation', 'points', 'color', 'fill', 'width', 'text', 'from', 'to', 'z'];

  /** What we send for a new element: its id, kind and the fields its kind allows. */
  function wireElement(el) {
    const out = { id: el.id, kind: el.kind };
    for (const f of FIELDS) if (el[f] !== undefined && el[f] !== null && allows(el.kind, f)) out[f] = el[f];
    return out;
  }

  /** A new element without absent (null or undefined) fields: how the server would store it. */
  function compact(el) {
    const out = {};
    for (const [k, v] of Object.entries(el)) if (v !== null && v !== undefined) out[k] = v;
    return out;
  }

  /** A v1 stroke (CANVAS_UPDATE, REDO, INITIAL_STATE.strokes) as an element. */
  function strokeElement(s) {
    if (!s || !Array.isArray(s.points) || !s.points.length) return null;
    const id = s.strokeId ?? s.id;
    if (id === undefined || id === null) return null;
    const el = { ...s, id: String(id), kind: 'stroke' };
    el.strokeId = el.id;
    return el;
  }

  function validElement(el) {
    if (!el || typeof el.id !== 'string' || !el.id || typeof el.kind !== 'string') return false;
    if (POINTED.has(el.kind)) return Array.isArray(el.points) && el.points.length > 0;
    if (FRAMED.has(el.kind)) return [el.x, el.y, el.w, el.h].every(Number.isFinite);
    if (el.kind === 'edge') return typeof el.from === 'string' && typeof el.to === 'string';
    return false; // a kind newer than this page: leave it out rather than paint it wrongly
  }

  /** `el` with `patch` applied: null clears a field; id, kind and userId never change. */
  function patched(el, patch) {
    const out = { ...el };
    for (const [k, v] of Object.entries(patch)) {
      if (k === 'id' || k === 'kind' || k === 'userId') continue;
      if (v === null) delete out[k];
      else out[k] = v;
    }
    // A new `text` starts a new text: the server sends the new `textState` with it when the old
    // text had one; without one, both sides derive it from `text` (§4.3).
    if ('text' in patch && !('textState' in patch)) delete out.textState;
    return out;
  }

  /** Paint order: z, then id (as a Redis sorted set orders equal scores, so ties agree everywhere). */
  function paintOrder(a, b) {
    const d = (a.z ?? 0) - (b.z ?? 0);
    if (d) return d;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }

  /** Ids an effect touches (add, set or delete), for recomputing the shown layer. */
  function touched(effect) {
    const ids = new Set();
    for (const el of effect.add || []) ids.add(el.id);
    for (const u of effect.set || []) ids.add(u.id);
    for (const id of effect.del || []) ids.add(id);
    for (const t of effect.text || []) ids.add(t.id);
    return ids;
  }

  /** The effect a sequenced server event describes (null for events that change no element). */
  function effectOfEvent(type, p) {
    switch (type) {
      case 'CANVAS_UPDATE': { const el = strokeElement(p.canvasData); return el ? { add: [el] } : null; }
      case 'UNDO': return p.strokeId ? { del: [String(p.strokeId)] } : null;
      case 'REDO': { const el = strokeElement(p.stroke); return el ? { add: [el] } : null; }
      case 'ELEMENTS_ADDED': return { add: (p.elements || []).map((e) => (e && e.kind === 'stroke' ? strokeElement(e) : e)).filter(Boolean) };
      case 'ELEMENTS_UPDATED': return { set: (p.updates || []).filter((u) => u && u.id !== undefined && u.patch) };
      case 'ELEMENTS_DELETED': return { del: (p.ids || []).map(String) };
      case 'ROOM_RESTORED':
        // One op (§5) that may bring back, remove and change anything, strokes included.
        return {
          add: (p.added || []).map((e) => (e && e.kind === 'stroke' ? strokeElement(e) : e)).filter(Boolean),
          set: (p.changed || []).filter((c) => c && c.id !== undefined && c.patch),
          del: (p.removed || []).map(String),
        };
      case 'TEXT_EDITED': return p.id !== undefined && Array.isArray(p.ops) ? { text: [{ id: String(p.id), ops: p.ops }] } : null;
      default: return null;
    }
  }

  class Board {
    constructor() {
      /** Server state: id -> element, after every seq up to the connection's `seq`. */
      this.confirmed = new Map();
      /** What we show: confirmed with `pending` replayed on top. */
      this.shown = new Map();
      /** Our ops not yet folded into `confirmed`, oldest first: {opId, effect, ...}. */
      this.pending = [];
      this.maxZ = 0;       // of `confirmed`: the server gives a new element without z max + 1
      this.minZ = 0;
      this.orderIds = null; // shown ids in paint order, rebuilt lazily
      /**
       * Called with the set of ids whose shown element changed (null: everything changed) and the
       * subset that is new on the board (the renderer can paint those on top of what it has).
       */
      this.onChange = () => {};
      /** Called when a sequenced text edit does not apply to our copy of the text (we must re-sync). */
      this.onTextDiverged = () => {};
    }

    textDiverged(id) { this.onTextDiverged(id); }

    /** Replaces the confirmed board (INITIAL_STATE). Pending ops stay on top. */
    reset(elements) {
      this.confirmed.clear();
      let z = 0;
      for (const el of elements) {
        if (!validElement(el)) continue;
        // A v1 server sends strokes without z: their array order is the paint order.
        const e = typeof el.z === 'number' ? el : { ...el, z: ++z };
        this.confirmed.set(e.id, e);
      }
      this.recomputeZRange();
      this.rebuildShown();
    }

    recomputeZRange() {
      let max = -Infinity;
      let min = Infinity;
      for (const el of this.confirmed.values()) {
        if (el.z > max) max = el.z;
        if (el.z < min) min = el.z;
      }
      this.maxZ = Number.isFinite(max) ? max : 0;
      this.minZ = Number.isFinite(min) ? min : 0;
    }

    rebuildShown() {
      this.shown = new Map(this.confirmed);
      for (const op of this.pending) applyEffect(this.shown, op.effect, null, false);
      this.orderIds = null;
      this.onChange(null);
    }

    /** Folds a sequenced effect into the confirmed board, then refreshes what it touched. */
    applyConfirmed(effect, seq) {
      const ids = applyEffect(this.confirmed, effect, seq, true, this);
      this.refresh(ids);
      return ids;
    }

    /** Recomputes shown[id] = confirmed[id] with the pending ops that touch it, for each id. */
    refresh(ids) {
      const added = new Set();
      for (const id of ids) {
        let el = this.confirmed.get(id);
        for (const op of this.pending) el = applyTo(el, id, op.effect);
        const before = this.shown.get(id);
        if (el) this.shown.set(id, el);
        else this.shown.delete(id);
        if (!before && el) added.add(id);
        if (!before || !el || before.z !== el.z) this.orderIds = null;
      }
      if (ids.size) this.onChange(ids, added);
    }

    addPending(op) {
      this.pending.push(op);
      this.refresh(touched(op.effect));
    }

    /** Drops a pending op (applied, refused or taken back) and shows what remains. */
    dropPending(op) {
      const i = this.pending.indexOf(op);
      if (i < 0) return;
      this.pending.splice(i, 1);
      this.refresh(touched(op.effect));
    }

    /** Replaces a pending op's effect (a drag update coalesced into the next one). */
    replacePending(op, effect) {
      const ids = touched(op.effect);
      op.effect = effect;
      for (const id of touched(effect)) ids.add(id);
      this.refresh(ids);
    }

    get(id) { return this.shown.get(id); }

    /** Shown element ids in paint order (cached until an add, delete or z change). */
    order() {
      if (!this.orderIds) {
        const els = [...this.shown.values()];
        els.sort(paintOrder);
        this.orderIds = els.map((e) => e.id);
      }
      return this.orderIds;
    }

    /** Highest and lowest z on the board as shown, for z-order changes and new elements. */
    zRange() {
      let max = -Infinity;
      let min = Infinity;
      for (const el of this.shown.values()) {
        if (el.z > max) max = el.z;
        if (el.z < min) min = el.z;
      }
      return Number.isFinite(max) ? { max, min } : { max: 0, min: 0 };
    }

    /** Edges that touch any of the given node ids (deleting a node takes them along). */
    edgesOf(nodeIds, map = this.shown) {
      const out = [];
      if (!nodeIds.size) return out;
      for (const el of map.values()) {
        if (el.kind === 'edge' && (nodeIds.has(el.from) || nodeIds.has(el.to))) out.push(el.id);
      }
      return out;
    }
  }

  /**
   * Applies an effect to a map of elements; returns the ids it touched. `seq` stamps `v` (confirmed
   * layer only). With `server` true it follows the server's rules exactly: a new element without z
   * gets max + 1, updates of missing ids are skipped, deleting a node deletes its edges.
   */
  function applyEffect(map, effect, seq, server, board) {
    const ids = new Set();
    const dels = effect.del || [];
    if (dels.length) {
      const gone = new Set(dels.filter((id) => map.has(id)));
      const nodes = new Set([...gone].filter((id) => map.get(id).kind === 'node'));
      if (server && nodes.size) for (const id of Board.prototype.edgesOf(nodes, map)) gone.add(id);
      let lostExtreme = false;
      for (const id of gone) {
        const el = map.get(id);
        if (board && (el.z >= board.maxZ || el.z <= board.minZ)) lostExtreme = true;
        map.delete(id);
        ids.add(id);
      }
      if (lostExtreme) board.recomputeZRange();
      for (const id of dels) ids.add(id);
    }
    for (const raw of effect.add || []) {
      if (!validElement(raw)) continue;
      let el = raw;
      if (server) {
        // As the server does: on top of the highest z, as an integer (1 on an empty board).
        const z = typeof raw.z === 'number' ? raw.z : Math.floor(board && board.confirmed.size ? board.maxZ : 0) + 1;
        el = { ...raw, z, ...(seq ? { v: seq } : {}) };
      } else if (map.has(raw.id)) {
        continue; // already confirmed (a REPLAY brought our own op back): the server's copy wins
      }
      map.set(el.id, el);
      if (board) {
        if (el.z > board.maxZ) board.maxZ = el.z;
        if (el.z < board.minZ) board.minZ = el.z;
      }
      ids.add(el.id);
    }
    for (const u of effect.set || []) {
      const id = String(u.id);
      const el = map.get(id);
      if (!el) continue;
      const next = patched(el, u.patch);
      if (server && seq) next.v = seq;
      map.set(id, next);
      if (board && typeof next.z === 'number') {
        if (el.z >= board.maxZ || el.z <= board.minZ) board.recomputeZRange();
        else {
          if (next.z > board.maxZ) board.maxZ = next.z;
          if (next.z < board.minZ) board.minZ = next.z;
        }
      }
      ids.add(id);
    }
    for (const t of effect.text || []) {
      const id = String(t.id);
      const el = map.get(id);
      if (!el || !TEXTUAL.has(el.kind)) continue;
      // The server's order must apply as it did there; a text that does not is out of step.
      const next = W.rga.applyOps(el, t.ops, server);
      if (!next) {
        if (board) board.textDiverged(id);
        continue;
      }
      if (server && seq) next.v = seq;
      map.set(id, next);
      ids.add(id);
    }
    return ids;
  }

  /** One id's element after a pending effect (the shown layer's per-id replay). */
  function applyTo(el, id, effect) {
    if ((effect.del || []).includes(id)) return undefined;
    for (const a of effect.add || []) if (a.id === id && !el && validElement(a)) el = a;
    for (const u of effect.set || []) if (String(u.id) === id && el) el = patched(el, u.patch);
    for (const t of effect.text || []) {
      // Ours, on top of the server's text: an op whose anchor is gone (the text was replaced) is skipped.
      if (String(t.id) === id && el && TEXTUAL.has(el.kind)) el = W.rga.applyOps(el, t.ops, false);
    }
    return el;
  }

  // ---- geometry -------------------------------------------------------------------------------

  /** Centre and frame of a node, or null when the edge's end is not on the board. */
  function nodeFrame(board, id) {
    const n = board.get(id);
    return n && n.kind === 'node' ? n : null;
  }

  /** Where a segment from the centre of frame `f` towards (tx, ty) leaves the frame. */
  function frameExit(f, tx, ty) {
    const cx = f.x + f.w / 2;
    const cy = f.y + f.h / 2;
    const dx = tx - cx;
    const dy = ty - cy;
    if (!dx && !dy) return { x: cx, y: cy };
    const t = Math.min(dx ? (f.w / 2) / Math.abs(dx) : Infinity, dy ? (f.h / 2) / Math.abs(dy) : Infinity);
    return { x: cx + dx * Math.min(1, t), y: cy + dy * Math.min(1, t) };
  }

  /** An edge's two ends, on the borders of its nodes (null if a node is missing). */
  function edgeEnds(board, el, lookup = nodeFrame) {
    const a = lookup(board, el.from);
    const b = lookup(board, el.to);
    if (!a || !b) return null;
    const ac = { x: a.x + a.w / 2, y: a.y + a.h / 2 };
    const bc = { x: b.x + b.w / 2, y: b.y + b.h / 2 };
    return [frameExit(a, bc.x, bc.y), frameExit(b, ac.x, ac.y)];
  }

  const boundsCache = new WeakMap();

  /** Axis-aligned bounds {x0, y0, x1, y1} in board units, including half the line width. */
  function bounds(el, board) {
    if (el.kind === 'edge') {
      const ends = board && edgeEnds(board, el);
      if (!ends) return null;
      const pad = (el.width || 2) / 2 + 12;
      return {
        x0: Math.min(ends[0].x, ends[1].x) - pad, y0: Math.min(ends[0].y, ends[1].y) - pad,
        x1: Math.max(ends[0].x, ends[1].x) + pad, y1: Math.max(ends[0].y, ends[1].y) + pad,
      };
    }
    let b = boundsCache.get(el);
    if (b) return b;
    if (POINTED.has(el.kind)) {
      let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
      for (const p of el.points) {
        if (p.x < x0) x0 = p.x;
        if (p.y < y0) y0 = p.y;
        if (p.x > x1) x1 = p.x;
        if (p.y > y1) y1 = p.y;
      }
      // Arrow heads stick out past the last point by about their length.
      const pad = (el.width || 2) / 2 + (el.kind === 'arrow' ? headSize(el) : 0);
      b = { x0: x0 - pad, y0: y0 - pad, x1: x1 + pad, y1: y1 + pad };
    } else {
      const pad = (el.width || 0) / 2;
      let { x, y, w, h } = el;
      if (el.rotation) {
        // The rotated frame's bounding box: enough for culling and hit pre-checks.
        const r = Math.hypot(w, h) / 2;
        x += w / 2 - r; y += h / 2 - r; w = h = 2 * r;
      }
      b = { x0: x - pad, y0: y - pad, x1: x + w + pad, y1: y + h + pad };
    }
    boundsCache.set(el, b);
    return b;
  }

  function headSize(el) {
    return Math.max(10, (el.width || 2) * 3);
  }

  /** The frame-like box of an element for selection and resizing (no line-width padding). */
  function box(el, board) {
    if (FRAMED.has(el.kind)) return { x0: el.x, y0: el.y, x1: el.x + el.w, y1: el.y + el.h };
    if (el.kind === 'edge') return bounds(el, board);
    let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
    for (const p of el.points) {
      x0 = Math.min(x0, p.x); y0 = Math.min(y0, p.y); x1 = Math.max(x1, p.x); y1 = Math.max(y1, p.y);
    }
    return { x0, y0, x1, y1 };
  }

  function union(a, b) {
    if (!a) return b;
    if (!b) return a;
    return { x0: Math.min(a.x0, b.x0), y0: Math.min(a.y0, b.y0), x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1) };
  }

  function overlaps(a, b) {
    return a.x0 <= b.x1 && a.x1 >= b.x0 && a.y0 <= b.y1 && a.y1 >= b.y0;
  }

  function segDist(p, a, b) {
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const len = dx * dx + dy * dy;
    let t = len ? ((p.x - a.x) * dx + (p.y - a.y) * dy) / len : 0;
    t = Math.max(0, Math.min(1, t));
    return Math.hypot(p.x - (a.x + t * dx), p.y - (a.y + t * dy));
  }

  function polyDist(p, pts) {
    if (pts.length === 1) return Math.hypot(p.x - pts[0].x, p.y - pts[0].y);
    let d = Infinity;
    for (let i = 1; i < pts.length; i++) d = Math.min(d, segDist(p, pts[i - 1], pts[i]));
    return d;
  }

  /** The point in an element's own (unrotated) frame. */
  function unrotate(el, p) {
    if (!el.rotation) return p;
    const cx = el.x + el.w / 2;
    const cy = el.y + el.h / 2;
    const c = Math.cos(-el.rotation);
    const s = Math.sin(-el.rotation);
    return { x: cx + (p.x - cx) * c - (p.y - cy) * s, y: cy + (p.x - cx) * s + (p.y - cy) * c };
  }

  /** Distance from `q` to the border of a rect or ellipse frame (ellipse: approximated radially). */
  function borderDist(el, q) {
    const cx = el.x + el.w / 2;
    const cy = el.y + el.h / 2;
    if (el.kind === 'ellipse') {
      const rx = Math.max(el.w / 2, 1e-6);
      const ry = Math.max(el.h / 2, 1e-6);
      const dx = q.x - cx;
      const dy = q.y - cy;
      const r = Math.hypot(dx / rx, dy / ry);
      return Math.abs(r - 1) * Math.min(rx, ry);
    }
    const dx = Math.abs(q.x - cx) - el.w / 2;
    const dy = Math.abs(q.y - cy) - el.h / 2;
    return dx > 0 || dy > 0 ? Math.hypot(Math.max(dx, 0), Math.max(dy, 0)) : -Math.max(dx, dy);
  }

  /**
   * Whether board point `p` touches `el`, within `tol` board units. With `outline`, an unfilled
   * rectangle or ellipse is touched only on its line (the eraser), not anywhere inside (selection).
   */
  function hits(el, p, tol, board, outline = false) {
    const b = bounds(el, board);
    if (!b || p.x < b.x0 - tol || p.x > b.x1 + tol || p.y < b.y0 - tol || p.y > b.y1 + tol) return false;
    if (POINTED.has(el.kind)) return polyDist(p, el.points) <= (el.width || 2) / 2 + tol;
    if (el.kind === 'edge') {
      const ends = edgeEnds(board, el);
      return !!ends && segDist(p, ends[0], ends[1]) <= (el.width || 2) / 2 + tol;
    }
    const q = unrotate(el, p);
    if (outline && !el.fill && (el.kind === 'rect' || el.kind === 'ellipse')) return borderDist(el, q) <= (el.width || 2) / 2 + tol;
    if (el.kind === 'ellipse') {
      const rx = el.w / 2 + tol;
      const ry = el.h / 2 + tol;
      const dx = q.x - (el.x + el.w / 2);
      const dy = q.y - (el.y + el.h / 2);
      return rx > 0 && ry > 0 && (dx * dx) / (rx * rx) + (dy * dy) / (ry * ry) <= 1;
    }
    return q.x >= el.x - tol && q.x <= el.x + el.w + tol && q.y >= el.y - tol && q.y <= el.y + el.h + tol;
  }

  // ---- transforms (for moving and resizing: each returns the patch to send) -------------------

  const round = (n) => Math.round(n * 100) / 100;

  /**
   * Frames patch only the axes that moved: fields are last-writer-wins, so a nudge down must not
   * write back an x that someone else is dragging at the same moment.
   */
  function movePatch(el, dx, dy, axes = { x: dx !== 0, y: dy !== 0 }) {
    if (FRAMED.has(el.kind)) {
      if (!axes.x && !axes.y) return null;
      const patch = {};
      if (axes.x) patch.x = round(el.x + dx);
      if (axes.y) patch.y = round(el.y + dy);
      return patch;
    }
    if (POINTED.has(el.kind)) return { points: el.points.map((p) => ({ x: round(p.x + dx), y: round(p.y + dy) })) };
    return null; // edges follow their nodes
  }

  /** Maps an element from box `from` onto box `to` (a resize of the selection). */
  function scalePatch(el, from, to) {
    const sx = from.x1 - from.x0 ? (to.x1 - to.x0) / (from.x1 - from.x0) : 1;
    const sy = from.y1 - from.y0 ? (to.y1 - to.y0) / (from.y1 - from.y0) : 1;
    const mx = (x) => round(to.x0 + (x - from.x0) * sx);
    const my = (y) => round(to.y0 + (y - from.y0) * sy);
    if (FRAMED.has(el.kind)) {
      const x0 = mx(el.x); const x1 = mx(el.x + el.w);
      const y0 = my(el.y); const y1 = my(el.y + el.h);
      return { x: Math.min(x0, x1), y: Math.min(y0, y1), w: round(Math.abs(x1 - x0)), h: round(Math.abs(y1 - y0)) };
    }
    if (POINTED.has(el.kind)) return { points: el.points.map((p) => ({ x: mx(p.x), y: my(p.y) })) };
    return null;
  }

  W.model = {
    Board, FRAMED, POINTED, TEXTUAL, allows, wireElement, compact, strokeElement, validElement, patched, paintOrder,
    touched, effectOfEvent, applyEffect, bounds, box, union, overlaps, hits, edgeEnds, frameExit, headSize,
    movePatch, scalePatch, polyDist,
  };
})();
