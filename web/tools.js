// drawbridge whiteboard, part 4 of 5: what the pointer and the keyboard do to the board.
//
// One pointer gesture is one *action* (pan, pinch, pen, shape, move, resize, marquee, eraser,
// connect): pointerdown starts it, moves update it, pointerup ends it. Everything a gesture changes
// goes out as ops through `sync` and is recorded as one *gesture* in `history`, so Ctrl+Z takes back
// a whole drag even when it was sent as several throttled updates.
// While dragging, the renderer shows a `draft` (a patch per element) at full frame rate; the
// network sees at most ~20 updates a second, each replacing the previous one if it has not left yet.
'use strict';

(() => {
  const W = (window.Whiteboard = window.Whiteboard || {});
  const M = W.model;
  const R = W.render;
  const { newId, frameBytes, MAX_FRAME } = W.net;

  /** A drag sends at most this often (the server allows 30 ops/s per connection). */
  const DRAG_SEND_MS = 50;
  /** Live strokes: the new points go out this often while the pen is down. */
  const PROGRESS_MS = 60;
  /** Frames are capped at 64 KiB by the server; ~22 bytes a point keeps a stroke well under it. */
  const MAX_POINTS = 1500;
  /** Ops carry at most 500 elements, updates or ids. */
  const MAX_BATCH = 500;
  /** A press that moves less than this (CSS px) is a click, not a drag. */
  const CLICK_SLOP = 4;
  const COORD_LIMIT = 1e7;

  const round1 = (n) => Math.round(Math.max(-COORD_LIMIT, Math.min(COORD_LIMIT, n)) * 10) / 10;

  /** Splits a list into ops that each stay under the batch and frame limits. */
  function chunks(items, bytesOf) {
    const out = [];
    let cur = [];
    let size = 0;
    for (const it of items) {
      const b = bytesOf(it) + 1;
      if (cur.length && (cur.length >= MAX_BATCH || size + b > MAX_FRAME - 2048)) {
        out.push(cur);
        cur = [];
        size = 0;
      }
      cur.push(it);
      size += b;
    }
    if (cur.length) out.push(cur);
    return out;
  }

  // ---- history: our gestures, for undo and redo -----------------------------------------------

  class History {
    constructor(sync, board, hooks) {
      this.sync = sync;
      this.board = board;
      this.hooks = hooks;
      this.undoStack = [];
      this.redoStack = [];
      sync.onOpSettled = (op, refused) => { if (refused) op.refused = true; };
    }

    /** Records a finished gesture (its ops, oldest first). */
    push(ops) {
      const live = ops.filter(Boolean);
      if (!live.length) return;
      this.undoStack.push({ ops: live });
      if (this.undoStack.length > 200) this.undoStack.shift();
      this.redoStack = [];
      this.hooks.changed();
    }

    canUndo() {
      if (this.undoStack.length) return true;
      // After a reload the server still remembers what we did: allow undo if anything here is ours.
      const me = this.hooks.me();
      for (const el of this.board.shown.values()) if (el.userId === me) return true;
      return false;
    }

    canRedo() { return this.redoStack.length > 0; }

    undo() {
      const g = this.undoStack.pop();
      if (!g) {
        if (this.sync.live) this.sync.submit('UNDO', {}, { effect: {}, intent: null, kind: 'undo' });
        return;
      }
      const ops = g.ops.filter((op) => !op.refused);
      const sent = ops.filter((op) => op.everSent);
      // Offline, the server cannot undo; a re-join in progress (to learn an undo's effect) is fine.
      if (sent.length && !this.sync.live) {
        this.undoStack.push(g);
        this.hooks.toast('Undo needs a connection; try again when you are back online.');
        return;
      }
      // Ops that never left this page are simply taken back; the rest are undone by the server,
      // newest first, each predicted with the inverse we noted when we made it.
      const local = ops.filter((op) => !op.everSent);
      for (const op of [...local].reverse()) this.sync.withdraw(op);
      for (const op of [...sent].reverse()) {
        this.sync.submit('UNDO', {}, { effect: op.inverse || {}, intent: null, kind: 'undo' });
      }
      this.redoStack.push({ sent, local });
      this.hooks.changed();
    }

    redo() {
      const r = this.redoStack.pop();
      if (!r) return;
      if (r.sent.length && !this.sync.live) {
        this.redoStack.push(r);
        this.hooks.toast('Redo needs a connection; try again when you are back online.');
        return;
      }
      for (const op of r.sent) this.sync.submit('REDO', {}, { effect: op.effect, intent: null, kind: 'redo' });
      const again = r.local.map((op) => this.sync.submit(op.type, op.payload, { effect: op.effect, intent: op.intent, inverse: op.inverse }));
      this.undoStack.push({ ops: [...r.sent, ...again.filter(Boolean)] });
      this.hooks.changed();
    }
  }

  // ---- tools ----------------------------------------------------------------------------------

  class Tools {
    /**
     * hooks: me(), changed() (selection or history changed: refresh the toolbar), toast(text),
     * cursor(point) for CURSOR_MOVE, toolChanged(name).
     */
    constructor({ canvas, editor, carets, renderer, board, sync, hooks }) {
      this.canvas = canvas;
      this.editor = editor;
      this.r = renderer;
      this.board = board;
      this.sync = sync;
      this.hooks = hooks;
      this.history = new History(sync, board, hooks);
      this.tool = 'pen';
      this.style = { color: '#1d2430', fill: null, width: 4 };
      this.selection = renderer.selection;
      this.pointers = new Map(); // pointerId -> {x, y} in canvas CSS px
      this.action = null;
      this.spaceDown = false;
      this.clipboard = [];
      this.pasteCount = 0;
      this.editing = null; // {id, isNew, el, original, collab}
      /** Typing together into texts that are on the board (text.js). */
      this.collab = new W.text.CollabText({
        textarea: editor, overlay: carets, board, sync,
        hooks: {
          me: () => hooks.me(),
          user: (id) => hooks.user(id),
          pushGesture: (ops) => this.history.push(ops),
          caretsChanged: () => renderer.invalidate(),
        },
      });
      renderer.textCarets = () => this.collab.boardCarets();
      this.listen();
    }

    // -- helpers --

    local(e) {
      const r = this.canvas.getBoundingClientRect();
      return { x: e.clientX - r.left, y: e.clientY - r.top };
    }

    boardPoint(e) {
      const p = this.local(e);
      const b = this.r.toBoard(p.x, p.y);
      return { x: round1(b.x), y: round1(b.y) };
    }

    me() { return this.hooks.me(); }

    nextZ(n = 1) {
      const { max } = this.board.zRange();
      return Array.from({ length: n }, (_, i) => Math.floor(max) + 1 + i);
    }

    setTool(name) {
      // A viewer (read-only room) only looks around: every tool but the hand would change the board.
      if (this.readOnly) name = 'hand';
      this.cancelAction();
      this.commitText();
      this.tool = name;
      this.canvas.dataset.tool = name;
      // A drawing tool starts afresh: picking its colour must not recolour what was selected before.
      if (name !== 'select' && name !== 'hand' && this.selection.size) this.select([]);
      // Handles are for the select tool; with a drawing tool, a press on them draws.
      this.r.showHandles = name === 'select';
      this.hooks.toolChanged(name);
      this.r.invalidate();
    }

    select(ids) {
      this.selection.clear();
      for (const id of ids) if (this.board.get(id)) this.selection.add(id);
      this.r.invalidate();
      this.hooks.changed();
    }

    /** Drops ids that left the board (someone deleted them) from the selection. */
    pruneSelection() {
      let changed = false;
      for (const id of this.selection) {
        if (!this.board.get(id)) { this.selection.delete(id); changed = true; }
      }
      if (changed) this.hooks.changed();
      if (this.editing && !this.editing.isNew && !this.board.get(this.editing.id)) this.closeEditor();
    }

    selected() {
      return [...this.selection].map((id) => this.board.get(id)).filter(Boolean);
    }

    // -- ops --

    /** Adds elements (ours, new ids) as one gesture: nodes and shapes first, then edges that need them. */
    addElements(elements, { select = true } = {}) {
      const me = this.me();
      // A new element's text starts fresh (ids derived from `text` and its creator, as the server does).
      const els = elements.map((e) => M.compact({ ...e, userId: me, textState: undefined }));
      const first = els.filter((e) => e.kind !== 'edge');
      const edges = els.filter((e) => e.kind === 'edge');
      const ops = [];
      for (const group of [first, edges]) {
        for (const part of chunks(group, (e) => frameBytes(M.wireElement(e)))) ops.push(this.submitAdd(part));
      }
      this.history.push(ops);
      if (select) this.select(els.map((e) => e.id));
      return ops;
    }

    submitAdd(els) {
      if (els.length === 1 && els[0].kind === 'stroke') {
        // Strokes go as v1 CANVAS_UPDATE, so Canvas clients see them too. The server picks their z.
        const s = els[0];
        const canvasData = { strokeId: s.id, roomId: this.sync.roomId, userId: s.userId, points: s.points, color: s.color, width: s.width };
        const intent = { add: [{ ...s, z: undefined }] };
        return this.sync.submit('CANVAS_UPDATE', { canvasData }, { effect: { add: [s] }, intent, inverse: { del: [s.id] } });
      }
      const effect = { add: els };
      return this.sync.submit('ELEMENTS_ADD', { elements: els.map(M.wireElement) }, { effect, inverse: { del: els.map((e) => e.id) } });
    }

    /** Values the fields of `patch` have now (null when absent): what an undo would put back. */
    before(id, patch) {
      const el = this.board.get(id) || {};
      const out = {};
      for (const k of Object.keys(patch)) out[k] = el[k] === undefined ? null : el[k];
      return out;
    }

    /** Sends field changes as one gesture, split to fit the limits. Returns the ops. */
    updateElements(updates, { gesture = true } = {}) {
      const live = updates.filter((u) => this.board.get(u.id) && Object.keys(u.patch).length);
      const ops = chunks(live, (u) => frameBytes(u)).map((part) => this.submitUpdate(part));
      if (gesture) this.history.push(ops);
      return ops;
    }

    submitUpdate(updates) {
      const inverse = { set: updates.map((u) => ({ id: u.id, patch: this.before(u.id, u.patch) })) };
      return this.sync.submit('ELEMENTS_UPDATE', { updates }, { effect: { set: updates }, inverse });
    }

    deleteElements(ids, { gesture = true } = {}) {
      const live = ids.filter((id) => this.board.get(id));
      if (!live.length) return [];
      const ops = chunks(live, (id) => id.length + 3).map((part) => this.submitDelete(part));
      if (gesture) this.history.push(ops);
      return ops;
    }

    submitDelete(ids, held = false) {
      const nodes = new Set(ids.filter((id) => this.board.get(id).kind === 'node'));
      const all = [...new Set([...ids, ...this.board.edgesOf(nodes)])];
      const gone = all.map((id) => this.board.get(id));
      // Undo re-adds nodes before the edges that hang on them.
      gone.sort((a, b) => (a.kind === 'edge') - (b.kind === 'edge'));
      return this.sync.submit('ELEMENTS_DELETE', { ids }, { effect: { del: all }, intent: { del: ids }, inverse: { add: gone }, held });
    }

    // -- style --

    /** Sets a style field for new elements and for the selection (where the kind allows it). */
    setStyle(field, value) {
      this.style[field] = value;
      const updates = [];
      for (const el of this.selected()) {
        if (!M.allows(el.kind, field)) continue;
        if (field === 'fill' && el.kind === 'sticky' && value === null) continue; // a sticky is its colour
        if ((el[field] ?? null) !== value) updates.push({ id: el.id, patch: { [field]: value } });
      }
      if (updates.length) this.updateElements(updates);
    }

    // -- listening --

    listen() {
      const c = this.canvas;
      c.addEventListener('pointerdown', (e) => this.down(e));
      c.addEventListener('pointermove', (e) => this.move(e));
      c.addEventListener('pointerup', (e) => this.up(e, false));
      c.addEventListener('pointercancel', (e) => this.up(e, true));
      c.addEventListener('lostpointercapture', (e) => { if (this.pointers.has(e.pointerId)) this.up(e, false); });
      c.addEventListener('dblclick', (e) => this.doubleClick(e));
      c.addEventListener('wheel', (e) => this.wheel(e), { passive: false });
      c.addEventListener('contextmenu', (e) => e.preventDefault());
      this.editor.addEventListener('keydown', (e) => {
        if (e.key === 'Escape' || (e.key === 'Enter' && (e.ctrlKey || e.metaKey))) {
          e.preventDefault();
          this.commitText();
        } else if (this.editing && this.editing.collab && (e.ctrlKey || e.metaKey) && ['z', 'y'].includes(e.key.toLowerCase())) {
          // In a shared text, undo is the server's: it takes back our typing, not someone else's.
          e.preventDefault();
          this.collab.settle();
          if (e.key.toLowerCase() === 'z' && !e.shiftKey) this.history.undo();
          else this.history.redo();
        }
        e.stopPropagation();
      });
      this.editor.addEventListener('input', () => {
        if (this.editing && this.editing.collab) this.collab.onInput();
        this.fitEditor();
      });
      this.editor.addEventListener('blur', () => this.commitText());
    }

    down(e) {
      if (this.editing) this.commitText();
      const pt = this.local(e);
      // A mouse or pen has one pointer: an entry left from a release we never saw must not block it.
      if (e.pointerType !== 'touch' && !this.action) this.pointers.clear();
      this.pointers.set(e.pointerId, pt);
      if (e.pointerType === 'touch' && this.pointers.size === 2) {
        // A second finger turns whatever the first one started into a pinch.
        this.cancelAction();
        this.startPinch();
        return;
      }
      if (this.action || this.pointers.size > 1) return;
      if (e.pointerType === 'mouse' && e.button !== 0 && e.button !== 1) return;
      e.preventDefault();
      try { this.canvas.setPointerCapture(e.pointerId); } catch { /* synthetic pointer */ }
      const at = this.boardPoint(e);
      const base = { pointerId: e.pointerId, startScreen: pt, start: at, moved: false };
      if (e.button === 1 || this.spaceDown || this.tool === 'hand' || this.readOnly) {
        this.action = { ...base, type: 'pan', last: pt };
        this.canvas.classList.add('panning');
        return;
      }
      const start = {
        select: () => this.startSelect(base, e, pt),
        pen: () => this.startPen(base),
        eraser: () => this.startEraser(base),
        node: () => this.startNode(base, pt),
        text: () => { this.action = { ...base, type: 'place' }; },
        sticky: () => { this.action = { ...base, type: 'place' }; },
      }[this.tool];
      if (start) start();
      else this.startShape(base); // rect, ellipse, line, arrow
      this.r.invalidate();
    }

    move(e) {
      const pt = this.local(e);
      if (this.pointers.has(e.pointerId)) this.pointers.set(e.pointerId, pt);
      this.hooks.cursor(this.boardPoint(e));
      const a = this.action;
      if (!a) return;
      if (a.type === 'pinch') return this.movePinch();
      if (e.pointerId !== a.pointerId) return;
      if (Math.hypot(pt.x - a.startScreen.x, pt.y - a.startScreen.y) > CLICK_SLOP) a.moved = true;
      switch (a.type) {
        case 'pan':
          this.r.panBy(pt.x - a.last.x, pt.y - a.last.y);
          a.last = pt;
          return;
        case 'pen': {
          const evs = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
          for (const ev of evs.length ? evs : [e]) this.penPoint(a, this.boardPoint(ev));
          break;
        }
        case 'eraser': this.eraseAlong(this.boardPoint(e)); break;
        case 'shape': this.dragShape(this.boardPoint(e), e.shiftKey); break;
        case 'move': this.dragMove(this.boardPoint(e)); break;
        case 'resize': this.dragResize(this.boardPoint(e), e.shiftKey); break;
        case 'marquee': this.dragMarquee(this.boardPoint(e)); break;
        case 'connect': this.dragConnect(this.boardPoint(e), pt); break;
        default:
      }
      this.r.invalidate();
    }

    up(e, cancelled) {
      this.pointers.delete(e.pointerId);
      const a = this.action;
      if (!a) return;
      if (a.type === 'pinch') {
        if (this.pointers.size < 2) this.action = null;
        return;
      }
      if (e.pointerId !== a.pointerId) return;
      this.action = null;
      if (cancelled && a.type !== 'pan') {
        this.abort(a);
      } else {
        const at = e.type === 'pointerup' ? this.boardPoint(e) : null;
        const end = {
          pan: () => this.canvas.classList.remove('panning'),
          pen: () => { if (at) this.penPoint(a, at); this.finishPen(a); },
          eraser: () => this.finishEraser(a),
          shape: () => this.finishShape(a),
          move: () => this.finishDrag(a),
          resize: () => this.finishDrag(a),
          marquee: () => this.finishMarquee(a),
          connect: () => this.finishConnect(a, at),
          place: () => this.place(a),
          select: () => {},
        }[a.type];
        if (end) end();
      }
      this.r.invalidate();
      this.hooks.changed();
    }

    /** Abandons the gesture in progress (a second finger, Escape, a tool change). */
    cancelAction() {
      const a = this.action;
      if (!a) return;
      this.action = null;
      this.abort(a);
      this.r.invalidate();
    }

    abort(a) {
      this.canvas.classList.remove('panning');
      if (a.type === 'pen') {
        clearInterval(a.timer);
        this.r.previews = [];
        // A stroke others already watch being drawn is kept: a final element that never came would
        // leave it on their screens. One nobody saw yet (a finger that became a pinch) is dropped.
        if (a.sentUpTo > 0) this.finishPen(a);
      } else if (a.type === 'move' || a.type === 'resize') {
        this.finishDrag(a);
      } else if (a.type === 'eraser') {
        this.finishEraser(a);
      }
      this.r.previews = [];
      this.r.marquee = null;
    }

    // -- pan and zoom --

    wheel(e) {
      e.preventDefault();
      const p = this.local(e);
      const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
      if (e.shiftKey && !e.ctrlKey) {
        this.r.panBy(-(e.deltaX || e.deltaY) * unit, e.deltaX ? -e.deltaY * unit : 0);
        return;
      }
      // Pinch on a trackpad arrives as ctrl+wheel with small deltas; a mouse wheel as ±100.
      this.r.zoomAt(p.x, p.y, Math.exp(-e.deltaY * unit * (e.ctrlKey ? 0.01 : 0.0015)));
    }

    startPinch() {
      const [a, b] = [...this.pointers.values()];
      this.action = { type: 'pinch', dist: Math.hypot(a.x - b.x, a.y - b.y), mid: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 } };
    }

    movePinch() {
      const [a, b] = [...this.pointers.values()];
      if (!b) return;
      const dist = Math.hypot(a.x - b.x, a.y - b.y);
      const mid = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
      const act = this.action;
      this.r.panBy(mid.x - act.mid.x, mid.y - act.mid.y);
      if (act.dist > 10 && dist > 10) this.r.zoomAt(mid.x, mid.y, dist / act.dist);
      act.dist = dist;
      act.mid = mid;
    }

    // -- pen --

    startPen(base) {
      const stroke = { id: newId(), kind: 'stroke', points: [base.start], color: this.style.color, width: this.style.width, userId: this.me() };
      this.action = { ...base, type: 'pen', stroke, sentUpTo: 0 };
      this.action.timer = setInterval(() => this.sendProgress(this.action), PROGRESS_MS);
      this.r.previews = [stroke];
    }

    penPoint(a, pt) {
      const pts = a.stroke.points;
      const prev = pts[pts.length - 1];
      if (prev && Math.abs(prev.x - pt.x) < 0.5 && Math.abs(prev.y - pt.y) < 0.5) return;
      pts.push(pt);
      if (pts.length >= MAX_POINTS) {
        // Long strokes are split to respect the frame size; the next one starts where this ends.
        // The action carries on with the new stroke (the pointer is still down).
        this.finishPen(a);
        const stroke = { ...a.stroke, id: newId(), points: [pt] };
        Object.assign(a, { stroke, sentUpTo: 0, timer: setInterval(() => this.sendProgress(a), PROGRESS_MS) });
        this.r.previews = [stroke];
      }
    }

    /** Sends the points drawn since the last progress, so others watch the stroke being drawn. */
    sendProgress(a) {
      if (!a || a.type !== 'pen') return;
      const pts = a.stroke.points;
      // A press that has not moved yet may still become a pinch or a click: nothing to show.
      if (a.sentUpTo >= pts.length || pts.length < 2) return;
      const { id, color, width } = a.stroke;
      if (this.sync.sendTransient('STROKE_PROGRESS', { id, points: pts.slice(a.sentUpTo), color, width })) a.sentUpTo = pts.length;
    }

    finishPen(a) {
      clearInterval(a.timer);
      this.r.previews = [];
      const s = a.stroke;
      if (!s.points.length) return;
      this.addElements([{ ...s, z: this.nextZ()[0] }], { select: false });
    }

    // -- shapes --

    startShape(base) {
      this.action = { ...base, type: 'shape', kind: this.tool };
      this.dragShape(base.start, false);
    }

    /** The element a shape drag from `a.start` to `p` describes (shift: square, circle, 45°). */
    shapeFrom(a, p, constrain) {
      const { color, fill, width } = this.style;
      let dx = p.x - a.start.x;
      let dy = p.y - a.start.y;
      if (a.kind === 'line' || a.kind === 'arrow') {
        if (constrain) {
          const ang = Math.round(Math.atan2(dy, dx) / (Math.PI / 4)) * (Math.PI / 4);
          const len = Math.hypot(dx, dy);
          dx = len * Math.cos(ang);
          dy = len * Math.sin(ang);
        }
        return { id: a.id || (a.id = newId()), kind: a.kind, points: [a.start, { x: round1(a.start.x + dx), y: round1(a.start.y + dy) }], color, width };
      }
      if (constrain) {
        const m = Math.max(Math.abs(dx), Math.abs(dy));
        dx = Math.sign(dx || 1) * m;
        dy = Math.sign(dy || 1) * m;
      }
      return {
        id: a.id || (a.id = newId()), kind: a.kind, color, fill, width,
        x: round1(Math.min(a.start.x, a.start.x + dx)), y: round1(Math.min(a.start.y, a.start.y + dy)),
        w: round1(Math.abs(dx)), h: round1(Math.abs(dy)),
      };
    }

    dragShape(p, constrain) {
      this.r.previews = [this.shapeFrom(this.action, p, constrain)];
    }

    finishShape(a) {
      const prev = this.r.previews[0];
      this.r.previews = [];
      if (!prev) return;
      let el = prev;
      if (!a.moved) {
        // A click places a default-sized shape centred on the pointer.
        el = M.FRAMED.has(a.kind)
          ? { ...el, x: round1(a.start.x - 60), y: round1(a.start.y - 40), w: 120, h: 80 }
          : { ...el, points: [{ x: round1(a.start.x - 60), y: a.start.y }, { x: round1(a.start.x + 60), y: a.start.y }] };
      }
      this.addElements([{ ...el, z: this.nextZ()[0] }]);
    }

    // -- text, sticky notes, nodes --

    place(a) {
      const p = a.start;
      const s = this.r.toScreen(p.x, p.y);
      const hit = this.r.elementAt(s.x, s.y, (el) => el.kind === this.tool);
      if (hit) {
        // On a text or note of its own kind, the tool edits it rather than stacking a new one.
        this.select([hit.id]);
        this.openEditor(hit, false);
      } else if (this.tool === 'text') {
        this.openEditor({ id: newId(), kind: 'text', x: p.x, y: round1(p.y - 14), w: 240, h: 34, color: this.style.color, text: '' }, true);
      } else if (this.tool === 'sticky') {
        const el = { id: newId(), kind: 'sticky', x: round1(p.x - 100), y: round1(p.y - 100), w: 200, h: 200, color: '#1d2430', fill: this.style.fill || '#fff59d', z: this.nextZ()[0] };
        this.addElements([el]);
        this.openEditor(this.board.get(el.id), false);
      }
    }

    newNode(p) {
      const { color, fill, width } = this.style;
      return { id: newId(), kind: 'node', x: round1(p.x - 70), y: round1(p.y - 30), w: 140, h: 60, color, fill: fill || '#ffffff', width: Math.min(width, 8), text: '' };
    }

    nodeAt(pt) {
      return this.r.elementAt(pt.x, pt.y, (el) => el.kind === 'node');
    }

    startNode(base, pt) {
      const from = this.nodeAt(pt);
      this.action = { ...base, type: 'connect', from: from && from.id };
    }

    dragConnect(p, screen) {
      const a = this.action;
      if (!a.from) return;
      const from = this.board.get(a.from);
      if (!from) return;
      const target = this.nodeAt(screen);
      const start = M.frameExit(from, p.x, p.y);
      const end = target && target.id !== a.from ? M.frameExit(target, start.x, start.y) : p;
      this.r.previews = [{ id: 'draft-edge', kind: 'arrow', points: [start, end], color: this.style.color, width: 2 }];
    }

    /** Node tool: click places a node; a drag from a node to another connects them. */
    finishConnect(a, at) {
      this.r.previews = [];
      if (!a.from) {
        if (a.moved) return;
        const node = { ...this.newNode(a.start), z: this.nextZ()[0] };
        this.addElements([node]);
        this.openEditor(this.board.get(node.id), false);
        return;
      }
      if (!a.moved || !at) {
        this.select([a.from]);
        return;
      }
      const s = this.r.toScreen(at.x, at.y);
      const target = this.nodeAt(s);
      const edge = { id: newId(), kind: 'edge', from: a.from, color: this.style.color, width: Math.min(this.style.width, 8), z: this.nextZ()[0] };
      if (target && target.id !== a.from) {
        this.addElements([{ ...edge, to: target.id }]);
      } else if (!target) {
        // Dropped on empty board: a new node there, connected.
        const node = { ...this.newNode(at), z: this.nextZ()[0] };
        this.addElements([node, { ...edge, to: node.id, z: node.z + 1 }]);
      }
    }

    /**
     * Opens the text editor over element `el`. `isNew`: a text not on the board until it has some,
     * added whole when the editor closes. Otherwise the element is on the board and its text is
     * edited character by character with whoever else is typing in it (text.js).
     */
    openEditor(el, isNew) {
      if (this.readOnly) return;
      if (!el || !M.TEXTUAL.has(el.kind)) return;
      this.closeEditor();
      const collab = !isNew && !!this.board.get(el.id);
      this.editing = { id: el.id, isNew, el, original: el.text || '', collab };
      this.r.editing = el.id;
      this.r.contentChanged(null);
      const ed = this.editor;
      ed.dataset.kind = el.kind;
      ed.hidden = false;
      if (collab) {
        this.collab.open(el.id);
      } else {
        ed.value = el.text || '';
      }
      this.placeEditor();
      ed.focus();
      if (!collab) ed.select();
      else this.collab.sendCaret();
    }

    /** The board changed: an open shared text takes in others' edits (caret kept in place). */
    boardChanged(ids) {
      const ed = this.editing;
      if (!ed || !ed.collab || (ids && !ids.has(ed.id))) return;
      if (!this.board.get(ed.id)) return;
      this.collab.refresh();
      this.fitEditor();
    }

    /** Keeps the editor over its element when the view moves. */
    placeEditor() {
      if (!this.editing) return;
      const el = this.editing.isNew ? this.editing.el : this.board.get(this.editing.id) || this.editing.el;
      const ed = this.editor;
      const s = this.r.cam.s;
      const size = R.TEXT_SIZE[el.kind] || 16;
      const pad = R.PAD[el.kind] || 4;
      let box = el;
      if (el.kind === 'edge') {
        const ends = M.edgeEnds(this.board, el);
        const mid = ends ? { x: (ends[0].x + ends[1].x) / 2, y: (ends[0].y + ends[1].y) / 2 } : { x: 0, y: 0 };
        box = { x: mid.x - 80, y: mid.y - 14, w: 160, h: 28 };
      }
      const p = this.r.toScreen(box.x, box.y);
      Object.assign(ed.style, {
        left: `${p.x}px`, top: `${p.y}px`, width: `${Math.max(40, box.w * s)}px`, minHeight: `${Math.max(24, box.h * s)}px`,
        fontSize: `${size * s}px`, lineHeight: `${size * 1.25 * s}px`, padding: `${pad * s}px`,
        textAlign: el.kind === 'node' || el.kind === 'edge' ? 'center' : 'left',
        color: el.color || '#1d2430', background: el.kind === 'sticky' ? el.fill || '#fff59d' : 'rgba(255,255,255,0.92)',
      });
      this.fitEditor();
    }

    fitEditor() {
      const ed = this.editor;
      ed.style.height = 'auto';
      ed.style.height = `${ed.scrollHeight}px`;
      if (this.editing && this.editing.collab) this.collab.place();
    }

    /** Frame of a text element that fits `text`: as wide as its longest line (within limits), as tall as its lines. */
    textFrame(el, text) {
      const size = R.TEXT_SIZE.text;
      const pad = R.PAD.text;
      const ctx = document.createElement('canvas').getContext('2d');
      ctx.font = `${size}px ${R.FONT}`;
      const widest = Math.max(...text.split('\n').map((l) => ctx.measureText(l).width));
      const w = Math.round(Math.min(600, Math.max(40, widest + 2 * pad + 4)));
      const lines = R.layoutText({ ...el, text, w }, w - 2 * pad).length;
      return { w, h: Math.round(lines * size * 1.25 + 2 * pad) };
    }

    closeEditor() {
      this.collab.close();
      this.editing = null;
      this.r.editing = null;
      this.editor.hidden = true;
      this.r.contentChanged(null);
    }

    commitText() {
      const ed = this.editing;
      if (!ed) return;
      const text = this.editor.value.slice(0, 10000);
      if (ed.collab) {
        // The text went out as it was typed; a text element's frame still follows its text.
        this.collab.release();
        const burst = this.collab.burst;
        this.collab.burst = [];
        this.closeEditor();
        const el = this.board.get(ed.id);
        const ops = [...burst];
        if (el && el.kind === 'text' && burst.length) {
          const f = this.textFrame(el, el.text || '');
          if (f.w !== el.w || f.h !== el.h) ops.push(...this.updateElements([{ id: el.id, patch: f }], { gesture: false }));
        }
        this.history.push(ops);
        return;
      }
      this.closeEditor();
      if (ed.isNew) {
        if (text.trim()) this.addElements([{ ...ed.el, text, ...this.textFrame(ed.el, text), z: this.nextZ()[0] }]);
        return;
      }
      const el = this.board.get(ed.id);
      if (!el || text === (el.text || '')) return;
      const patch = { text };
      if (el.kind === 'text') Object.assign(patch, this.textFrame(el, text));
      this.updateElements([{ id: el.id, patch }]);
    }

    /** Enter on one selected text, note, node or edge: edit its text. */
    editSelected() {
      const [el] = this.selected();
      if (!el || !M.TEXTUAL.has(el.kind) || this.tool !== 'select') return false;
      this.cancelAction();
      this.openEditor(el, false);
      return true;
    }

    doubleClick(e) {
      if (this.tool !== 'select') return;
      const pt = this.local(e);
      const el = this.r.elementAt(pt.x, pt.y);
      if (el && M.TEXTUAL.has(el.kind)) {
        this.cancelAction();
        this.select([el.id]);
        this.openEditor(el, false);
      } else if (!el) {
        this.openEditor({ id: newId(), kind: 'text', ...this.boardPoint(e), w: 240, h: 34, color: this.style.color, text: '' }, true);
      }
    }

    // -- select, move, resize --

    startSelect(base, e, pt) {
      const handle = this.r.handleAt(pt.x, pt.y);
      if (handle) return this.startDrag(base, 'resize', handle);
      const hit = this.r.elementAt(pt.x, pt.y);
      if (hit) {
        if (e.shiftKey) {
          if (this.selection.has(hit.id)) this.selection.delete(hit.id);
          else this.selection.add(hit.id);
          this.action = { ...base, type: 'select' };
          this.hooks.changed();
          return undefined;
        }
        if (!this.selection.has(hit.id)) this.select([hit.id]);
        return this.startDrag(base, 'move');
      }
      if (!e.shiftKey) this.select([]);
      this.action = { ...base, type: 'marquee', keep: new Set(this.selection) };
      return undefined;
    }

    startDrag(base, type, handle) {
      const els = this.selected();
      const originals = new Map(els.map((el) => [el.id, el]));
      const nodes = new Set(els.filter((el) => el.kind === 'node').map((el) => el.id));
      // Edges on moving nodes are repainted live with them.
      const active = [...originals.keys(), ...this.board.edgesOf(nodes)];
      this.action = { ...base, type, handle, originals, startBox: this.r.selectionBox(), ops: [], lastSent: 0, patches: new Map(), sentPatches: new Map() };
      this.r.setActive(active);
      this.r.hideHandles = type === 'move';
    }

    dragMove(p) {
      const a = this.action;
      if (!a.moved) return;
      const dx = p.x - a.start.x;
      const dy = p.y - a.start.y;
      // An axis once moved stays in the patch, so coming back to where it started is sent too.
      a.axisX = a.axisX || dx !== 0;
      a.axisY = a.axisY || dy !== 0;
      for (const [id, el] of a.originals) {
        const patch = M.movePatch(el, dx, dy, { x: a.axisX, y: a.axisY });
        if (patch) a.patches.set(id, patch);
      }
      this.applyDraft(a);
    }

    dragResize(p, keepRatio) {
      const a = this.action;
      const b = a.startBox;
      if (!b) return;
      let to;
      if (a.handle === 'start' || a.handle === 'end') {
        const [id, el] = [...a.originals][0];
        const pts = el.points.slice();
        pts[a.handle === 'start' ? 0 : pts.length - 1] = { x: p.x, y: p.y };
        a.patches.set(id, { points: pts });
        return this.applyDraft(a);
      }
      const h = a.handle;
      to = { ...b };
      if (h.includes('w')) to.x0 = p.x;
      if (h.includes('e')) to.x1 = p.x;
      if (h.includes('n')) to.y0 = p.y;
      if (h.includes('s')) to.y1 = p.y;
      if (keepRatio && h.length === 2) {
        const k = Math.max(Math.abs(to.x1 - to.x0) / Math.max(1, b.x1 - b.x0), Math.abs(to.y1 - to.y0) / Math.max(1, b.y1 - b.y0));
        if (h.includes('w')) to.x0 = b.x1 - (b.x1 - b.x0) * k; else to.x1 = b.x0 + (b.x1 - b.x0) * k;
        if (h.includes('n')) to.y0 = b.y1 - (b.y1 - b.y0) * k; else to.y1 = b.y0 + (b.y1 - b.y0) * k;
      }
      // Dragging a handle past the opposite side flips the box rather than inverting it.
      const norm = { x0: Math.min(to.x0, to.x1), x1: Math.max(to.x0, to.x1), y0: Math.min(to.y0, to.y1), y1: Math.max(to.y0, to.y1) };
      for (const [id, el] of a.originals) {
        const patch = M.scalePatch(el, b, norm);
        if (patch) a.patches.set(id, patch);
      }
      return this.applyDraft(a);
    }

    applyDraft(a) {
      this.r.draft = new Map(a.patches);
      this.r.invalidate();
      if (performance.now() - a.lastSent >= DRAG_SEND_MS) this.sendDrag(a, false);
      else if (!a.sendTimer) a.sendTimer = setTimeout(() => { a.sendTimer = 0; if (this.action === a) this.sendDrag(a, false); }, DRAG_SEND_MS);
    }

    /**
     * Sends the drag's current patches. While it has not left, the previous update is replaced
     * (coalesced); otherwise a new op joins the gesture. A drag too large for one frame sends only
     * its final position, split over several ops.
     */
    sendDrag(a, final) {
      const updates = [];
      for (const [id, patch] of a.patches) {
        const prev = a.sentPatches.get(id);
        if (!prev || JSON.stringify(prev) !== JSON.stringify(patch)) updates.push({ id, patch });
      }
      if (!updates.length) return;
      a.lastSent = performance.now();
      const fits = frameBytes({ updates }) < MAX_FRAME - 2048;
      if (!fits && !final) return;
      const last = a.ops[a.ops.length - 1];
      if (fits && last && !last.everSent && !last.refused && this.board.pending.includes(last)) {
        // Not sent yet: the newer position replaces it. Its inverse (what came before it) still holds.
        const merged = new Map(last.payload.updates.map((u) => [u.id, u.patch]));
        for (const u of updates) merged.set(u.id, u.patch);
        const all = [...merged].map(([id, patch]) => ({ id, patch }));
        this.sync.amend(last, { updates: all }, { set: all });
      } else {
        a.ops.push(...this.updateElements(updates, { gesture: false }));
      }
      for (const u of updates) a.sentPatches.set(u.id, u.patch);
    }

    finishDrag(a) {
      clearTimeout(a.sendTimer);
      if (a.moved || a.type === 'resize') this.sendDrag(a, true);
      this.history.push(a.ops);
      this.r.draft = new Map();
      this.r.hideHandles = false;
      this.r.setActive([]);
    }

    dragMarquee(p) {
      const a = this.action;
      const r = { x0: Math.min(a.start.x, p.x), y0: Math.min(a.start.y, p.y), x1: Math.max(a.start.x, p.x), y1: Math.max(a.start.y, p.y) };
      this.r.marquee = r;
      this.selection.clear();
      for (const id of a.keep) this.selection.add(id);
      for (const id of this.r.elementsIn(r)) this.selection.add(id);
    }

    finishMarquee() {
      this.r.marquee = null;
      this.hooks.changed();
    }

    // -- eraser --

    startEraser(base) {
      this.action = { ...base, type: 'eraser', last: base.start, erased: new Set(), ops: [] };
      this.eraseAlong(base.start);
    }

    /**
     * Deletes whatever the eraser touched between its last position and `p`. The deletes of one
     * gesture are held back until the pointer lifts and go out as one op (one undo step); they
     * disappear from this page at once.
     */
    eraseAlong(p) {
      const a = this.action;
      const tol = 6 / this.r.cam.s;
      const steps = Math.max(1, Math.ceil(Math.hypot(p.x - a.last.x, p.y - a.last.y) / tol));
      const order = this.board.order();
      let found = false;
      for (let i = 1; i <= steps; i++) {
        const q = { x: a.last.x + ((p.x - a.last.x) * i) / steps, y: a.last.y + ((p.y - a.last.y) * i) / steps };
        for (let k = order.length - 1; k >= 0; k--) {
          const el = this.board.get(order[k]);
          if (el && !a.erased.has(el.id) && M.hits(el, q, tol, this.board, true)) {
            a.erased.add(el.id);
            found = true;
          }
        }
      }
      a.last = p;
      if (!found) return;
      for (const op of a.ops) this.sync.withdraw(op);
      const ids = [...a.erased].filter((id) => this.board.get(id));
      a.ops = chunks(ids, (id) => id.length + 3).map((part) => this.submitDelete(part, true));
      for (const id of a.erased) this.selection.delete(id);
    }

    finishEraser(a) {
      for (const op of a.ops) op.held = false;
      this.sync.flush();
      this.history.push(a.ops);
    }

    // -- commands (toolbar and keyboard) --

    selectAll() {
      this.select(this.board.order());
    }

    deleteSelection() {
      const ids = [...this.selection];
      if (!ids.length) return;
      this.deleteElements(ids);
      this.select([]);
    }

    /** The selection, with the edges between selected nodes, ready to paste. */
    copySelection() {
      const els = this.selected();
      const ids = new Set(els.map((e) => e.id));
      for (const el of this.board.shown.values()) {
        if (el.kind === 'edge' && ids.has(el.from) && ids.has(el.to) && !ids.has(el.id)) els.push(el);
      }
      const kept = els.filter((e) => e.kind !== 'edge' || (ids.has(e.from) && ids.has(e.to)));
      kept.sort(M.paintOrder);
      return kept.map((e) => JSON.parse(JSON.stringify(e)));
    }

    copy() {
      const els = this.copySelection();
      if (!els.length) return false;
      this.clipboard = els;
      this.pasteCount = 0;
      return true;
    }

    cut() {
      if (this.copy()) this.deleteSelection();
    }

    /** Adds copies of `els` shifted by `offset`, with new ids (edges follow their copied nodes). */
    pasteElements(els, offset) {
      if (!els.length) return;
      const ids = new Map(els.map((e) => [e.id, newId()]));
      const zs = this.nextZ(els.length);
      const copies = els.map((e, i) => {
        const c = { ...e, id: ids.get(e.id), z: zs[i] };
        delete c.v; delete c.userId; delete c.strokeId; delete c.roomId;
        if (e.kind === 'edge') { c.from = ids.get(e.from); c.to = ids.get(e.to); }
        return { ...c, ...(M.movePatch(c, offset, offset) || {}) };
      });
      this.addElements(copies);
    }

    paste() {
      this.pasteCount++;
      this.pasteElements(this.clipboard, 24 * this.pasteCount);
    }

    duplicate() {
      this.pasteElements(this.copySelection(), 24);
    }

    /** Bring to front / send to back, keeping the selection's own order. */
    reorder(front) {
      const els = this.selected().sort(M.paintOrder);
      if (!els.length) return;
      const { max, min } = this.board.zRange();
      const base = front ? Math.floor(max) + 1 : Math.ceil(min) - els.length;
      this.updateElements(els.map((el, i) => ({ id: el.id, patch: { z: base + i } })));
    }

    nudge(dx, dy) {
      const updates = this.selected().map((el) => ({ id: el.id, patch: M.movePatch(el, dx, dy) })).filter((u) => u.patch);
      if (updates.length) this.updateElements(updates);
    }

    escape() {
      if (this.editing) return this.commitText();
      if (this.action) return this.cancelAction();
      return this.select([]);
    }
  }

  W.tools = { Tools, History };
})();
