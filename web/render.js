// drawbridge whiteboard, part 2 of 5: painting the board.
//
// The board is unbounded; a camera {x, y, s} maps it to the screen: screen = (board - cam) * s (CSS px).
// Frames are drawn on requestAnimationFrame, and only when something marked the renderer dirty.
// The settled elements are painted into a *scene cache* a little larger than the view: a pan
// just moves that bitmap, so even a 5,000-element board pans at full speed. The elements being
// dragged ("active"), the shapes being drawn and other people's live strokes are painted on
// top every frame, so editing them never repaints the cache. Stroke outlines are cached as
// Path2D per element object (elements are immutable, so a changed one is a new key).
'use strict';

(() => {
  const W = (window.Whiteboard = window.Whiteboard || {});
  const M = W.model;

  /** Extra CSS pixels painted around the view in the scene cache: pans within it cost a blit. */
  const MARGIN = 256;
  /** After the last zoom step, wait this long before repainting the cache at the new scale. */
  const ZOOM_SETTLE_MS = 140;
  const MIN_SCALE = 0.05;
  const MAX_SCALE = 8;
  /** The region a fresh view shows: where v1 Canvas clients draw (their fixed 1600x1000 board). */
  const HOME = { x0: 0, y0: 0, x1: 1600, y1: 1000 };
  const SELECT = '#2457d6';
  const HANDLE = 9; // CSS px

  const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  /** Text sizes are part of the shared look: every page lays text out the same way. */
  const TEXT_SIZE = { text: 20, sticky: 18, node: 16, edge: 14 };
  const PAD = { text: 4, sticky: 12, node: 8, edge: 4 };

  const paths = new WeakMap();
  const layouts = new WeakMap();
  const measure = document.createElement('canvas').getContext('2d');

  // ---- element painting ---------------------------------------------------------------------

  /** Smoothed stroke outline: quadratic curves through the midpoints, as every client draws it. */
  function strokePath(pts) {
    const p = new Path2D();
    if (pts.length === 1) return p;
    p.moveTo(pts[0].x, pts[0].y);
    for (let i = 1; i < pts.length - 1; i++) {
      p.quadraticCurveTo(pts[i].x, pts[i].y, (pts[i].x + pts[i + 1].x) / 2, (pts[i].y + pts[i + 1].y) / 2);
    }
    const end = pts[pts.length - 1];
    p.lineTo(end.x, end.y);
    return p;
  }

  function polyPath(pts) {
    const p = new Path2D();
    p.moveTo(pts[0].x, pts[0].y);
    for (let i = 1; i < pts.length; i++) p.lineTo(pts[i].x, pts[i].y);
    return p;
  }

  function pathOf(el) {
    let p = paths.get(el);
    if (!p) {
      p = el.kind === 'stroke' ? strokePath(el.points) : polyPath(el.points);
      paths.set(el, p);
    }
    return p;
  }

  function paintStroke(ctx, el) {
    const pts = el.points;
    ctx.strokeStyle = ctx.fillStyle = el.color || '#1d2430';
    ctx.lineWidth = el.width || 2;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0].x, pts[0].y, (el.width || 2) / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    ctx.stroke(pathOf(el));
  }

  function arrowHead(ctx, from, to, el) {
    const size = M.headSize(el);
    const a = Math.atan2(to.y - from.y, to.x - from.x);
    ctx.beginPath();
    ctx.moveTo(to.x, to.y);
    ctx.lineTo(to.x - size * Math.cos(a - 0.45), to.y - size * Math.sin(a - 0.45));
    ctx.lineTo(to.x - size * Math.cos(a + 0.45), to.y - size * Math.sin(a + 0.45));
    ctx.closePath();
    ctx.fill();
  }

  /** The point the arrow head points away from: far enough back that a wobble does not twist it. */
  function tailOf(pts) {
    const end = pts[pts.length - 1];
    for (let i = pts.length - 2; i >= 0; i--) {
      if (Math.hypot(end.x - pts[i].x, end.y - pts[i].y) > 4) return pts[i];
    }
    return pts[0];
  }

  function paintLine(ctx, el) {
    ctx.strokeStyle = ctx.fillStyle = el.color || '#1d2430';
    ctx.lineWidth = el.width || 2;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.stroke(pathOf(el));
    if (el.kind === 'arrow') arrowHead(ctx, tailOf(el.points), el.points[el.points.length - 1], el);
  }

  function roundRect(ctx, x, y, w, h, r) {
    r = Math.max(0, Math.min(r, w / 2, h / 2));
    ctx.beginPath();
    ctx.moveTo(x + r, y);
    ctx.arcTo(x + w, y, x + w, y + h, r);
    ctx.arcTo(x + w, y + h, x, y + h, r);
    ctx.arcTo(x, y + h, x, y, r);
    ctx.arcTo(x, y, x + w, y, r);
    ctx.closePath();
  }

  /** Word-wrapped lines of an element's text for its frame width (cached per element object). */
  function layoutText(el, maxWidth) {
    const key = layouts.get(el);
    if (key && key.maxWidth === maxWidth) return key.lines;
    const size = TEXT_SIZE[el.kind] || 16;
    measure.font = `${size}px ${FONT}`;
    const lines = [];
    for (const para of String(el.text || '').split('\n')) {
      let line = '';
      for (const word of para.split(/(\s+)/)) {
        const next = line + word;
        if (line && measure.measureText(next).width > maxWidth) {
          lines.push(line.trimEnd());
          line = word.trimStart();
          // A single word wider than the frame is cut by characters.
          while (measure.measureText(line).width > maxWidth && line.length > 1) {
            let i = line.length - 1;
            while (i > 1 && measure.measureText(line.slice(0, i)).width > maxWidth) i--;
            lines.push(line.slice(0, i));
            line = line.slice(i);
          }
        } else {
          line = next;
        }
      }
      lines.push(line);
    }
    layouts.set(el, { maxWidth, lines });
    return lines;
  }

  /** Text of a framed element: top-left for text and stickies, centred for nodes. */
  function paintText(ctx, el, centred) {
    if (!el.text) return;
    const size = TEXT_SIZE[el.kind] || 16;
    const pad = PAD[el.kind] || 4;
    const lines = layoutText(el, Math.max(1, el.w - 2 * pad));
    const lh = size * 1.25;
    ctx.font = `${size}px ${FONT}`;
    ctx.fillStyle = el.kind === 'text' ? el.color || '#1d2430' : el.kind === 'sticky' ? el.color || '#1d2430' : el.color || '#1d2430';
    ctx.textBaseline = 'top';
    ctx.save();
    ctx.beginPath();
    ctx.rect(el.x, el.y, el.w, el.h);
    ctx.clip();
    let y = centred ? el.y + (el.h - lines.length * lh) / 2 : el.y + pad;
    for (const line of lines) {
      if (centred) {
        ctx.textAlign = 'center';
        ctx.fillText(line, el.x + el.w / 2, y + (lh - size) / 2);
      } else {
        ctx.textAlign = 'left';
        ctx.fillText(line, el.x + pad, y + (lh - size) / 2);
      }
      y += lh;
    }
    ctx.restore();
    ctx.textAlign = 'left';
  }

  /**
   * Someone's caret in a text on the board (they type, we watch): a bar before visible character
   * `index`, found in the wrapped lines as paintText lays them out (wrapping eats the spaces at a
   * break, so a caret on one sits at the end of the line).
   */
  function paintCaret(ctx, el, index, color) {
    if (el.rotation || index === null || index === undefined) return;
    const size = TEXT_SIZE[el.kind] || 16;
    const pad = PAD[el.kind] || 4;
    const lh = size * 1.25;
    const text = String(el.text || '');
    const at = Array.from(text).slice(0, index).join('').length;
    const lines = layoutText(el, Math.max(1, el.w - 2 * pad));
    ctx.font = `${size}px ${FONT}`;
    let pos = 0;
    let row = lines.length - 1;
    let col = lines.length ? lines[row].length : 0;
    for (let i = 0; i < lines.length; i++) {
      const start = text.indexOf(lines[i], pos);
      const from = start < 0 ? pos : start;
      const next = i + 1 < lines.length ? text.indexOf(lines[i + 1], from + lines[i].length) : text.length;
      if (at <= (next < 0 ? text.length : next) || i === lines.length - 1) {
        row = i;
        col = Math.max(0, Math.min(lines[i].length, at - from));
        break;
      }
      pos = from + lines[i].length;
    }
    const line = lines[row] || '';
    const centred = el.kind === 'node';
    const top = centred ? el.y + (el.h - lines.length * lh) / 2 : el.y + pad;
    const width = ctx.measureText(line).width;
    const x0 = centred ? el.x + el.w / 2 - width / 2 : el.x + pad;
    const x = x0 + ctx.measureText(line.slice(0, col)).width;
    const y = top + row * lh;
    if (y + lh > el.y + el.h + 1) return; // clipped away, as the text is
    ctx.fillStyle = color;
    ctx.fillRect(x - 1, y + 1, 2, lh - 2);
  }

  function paintFramed(ctx, el) {
    const { x, y, w, h } = el;
    if (el.rotation) {
      ctx.save();
      ctx.translate(x + w / 2, y + h / 2);
      ctx.rotate(el.rotation);
      ctx.translate(-(x + w / 2), -(y + h / 2));
    }
    ctx.lineWidth = el.width || 2;
    ctx.lineJoin = 'round';
    ctx.strokeStyle = el.color || '#1d2430';
    switch (el.kind) {
      case 'rect':
        if (el.fill) { ctx.fillStyle = el.fill; ctx.fillRect(x, y, w, h); }
        ctx.strokeRect(x, y, w, h);
        break;
      case 'ellipse':
        ctx.beginPath();
        ctx.ellipse(x + w / 2, y + h / 2, w / 2, h / 2, 0, 0, Math.PI * 2);
        if (el.fill) { ctx.fillStyle = el.fill; ctx.fill(); }
        ctx.stroke();
        break;
      case 'sticky':
        ctx.save();
        ctx.shadowColor = 'rgba(0,0,0,0.18)';
        ctx.shadowBlur = 6;
        ctx.shadowOffsetY = 2;
        ctx.fillStyle = el.fill || '#fff59d';
        ctx.fillRect(x, y, w, h);
        ctx.restore();
        paintText(ctx, el, false);
        break;
      case 'text':
        if (el.fill) { ctx.fillStyle = el.fill; ctx.fillRect(x, y, w, h); }
        paintText(ctx, el, false);
        break;
      case 'node':
        roundRect(ctx, x, y, w, h, 10);
        ctx.fillStyle = el.fill || '#ffffff';
        ctx.fill();
        ctx.stroke();
        paintText(ctx, el, true);
        break;
      default:
    }
    if (el.rotation) ctx.restore();
  }

  function paintEdge(ctx, el, ends) {
    if (!ends) return;
    const [a, b] = ends;
    ctx.strokeStyle = ctx.fillStyle = el.color || '#1d2430';
    ctx.lineWidth = el.width || 2;
    ctx.lineCap = 'round';
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
    arrowHead(ctx, a, b, el);
    if (el.text) {
      const size = TEXT_SIZE.edge;
      ctx.font = `${size}px ${FONT}`;
      const label = String(el.text).split('\n')[0];
      const tw = ctx.measureText(label).width;
      const mx = (a.x + b.x) / 2;
      const my = (a.y + b.y) / 2;
      ctx.fillStyle = '#ffffff';
      ctx.fillRect(mx - tw / 2 - 4, my - size / 2 - 3, tw + 8, size + 6);
      ctx.fillStyle = el.color || '#1d2430';
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(label, mx, my);
      ctx.textAlign = 'left';
    }
  }

  /** Paints one element in board units; `frameOf` looks up nodes for edges (drafts included). */
  function paint(ctx, el, frameOf) {
    switch (el.kind) {
      case 'stroke': return paintStroke(ctx, el);
      case 'line': case 'arrow': return paintLine(ctx, el);
      case 'edge': return paintEdge(ctx, el, M.edgeEnds(null, el, (_, id) => frameOf(id)));
      default: return paintFramed(ctx, el);
    }
  }

  // ---- the renderer -------------------------------------------------------------------------

  class Renderer {
    constructor(canvas, board) {
      this.canvas = canvas;
      this.ctx = canvas.getContext('2d');
      this.board = board;
      this.cam = { x: 0, y: 0, s: 1 };
      /** Whether the camera is the starting view, which then follows the board's size. */
      this.atHome = false;
      this.dpr = 1;
      this.cssW = 0;
      this.cssH = 0;
      /** Ids to paint every frame, on top, not from the cache (being dragged or edited). */
      this.active = new Set();
      /** Live positions during a drag: id -> patch over the shown element. */
      this.draft = new Map();
      this.selection = new Set();
      /** Shapes being drawn right now (not on the board yet). */
      this.previews = [];
      /** Other people's strokes in progress: id -> {userId, points, color, width}. */
      this.live = new Map();
      this.marquee = null;
      this.showHandles = false;
      this.hideHandles = false; // during a move: the box travels, its handles would flicker
      /** Id of an element whose text is being edited in the DOM editor: its text is not painted. */
      this.editing = null;
      /** Other people's carets in texts: () => [{id, index, color}] (index in code points). */
      this.textCarets = () => [];
      this.cache = document.createElement('canvas');
      this.cacheCtx = this.cache.getContext('2d');
      this.cacheView = null; // {x, y, s, w, h}: board origin, scale and CSS size the cache covers
      this.cacheDirty = true;
      /** The element painted last into the cache (paint order), and new ones to paint above it. */
      this.cacheTop = null;
      this.appendQueue = [];
      this.zoomingUntil = 0;
      this.pendingFrame = false;
      this.settleTimer = 0;
      this.onCamera = () => {};
      /** For tests and tuning: how long frames took (the last 240), and what the last cache paint did. */
      this.stats = { frames: 0, cacheRenders: 0, lastFrameMs: 0, lastCacheMs: 0, maxFrameMs: 0, painted: 0, appended: 0, frameMs: [] };
      board.onChange = (ids, added) => this.contentChanged(ids, added);
    }

    // -- camera --

    resize(cssW, cssH) {
      const dpr = Math.min(2, Math.max(1, window.devicePixelRatio || 1));
      if (cssW === this.cssW && cssH === this.cssH && dpr === this.dpr) return;
      const first = !this.cssW;
      this.cssW = cssW;
      this.cssH = cssH;
      this.dpr = dpr;
      this.canvas.width = Math.max(1, Math.round(cssW * dpr));
      this.canvas.height = Math.max(1, Math.round(cssH * dpr));
      // A view nobody has moved stays the starting view: the bars above the board settle (wrap,
      // unwrap) after the first layout, and two pages of one size must show the board alike.
      if (first || this.atHome) this.home();
      this.cacheDirty = true;
      this.cameraChanged();
    }

    toBoard(sx, sy) {
      return { x: sx / this.cam.s + this.cam.x, y: sy / this.cam.s + this.cam.y };
    }

    toScreen(bx, by) {
      return { x: (bx - this.cam.x) * this.cam.s, y: (by - this.cam.y) * this.cam.s };
    }

    /** The board rectangle in view. */
    viewBox() {
      return { x0: this.cam.x, y0: this.cam.y, x1: this.cam.x + this.cssW / this.cam.s, y1: this.cam.y + this.cssH / this.cam.s };
    }

    fit(b, pad = 24, maxScale = MAX_SCALE) {
      if (!b || !this.cssW) return;
      const w = Math.max(1, b.x1 - b.x0);
      const h = Math.max(1, b.y1 - b.y0);
      const s = clamp(Math.min((this.cssW - 2 * pad) / w, (this.cssH - 2 * pad) / h), MIN_SCALE, maxScale);
      this.cam = { s, x: (b.x0 + b.x1) / 2 - this.cssW / 2 / s, y: (b.y0 + b.y1) / 2 - this.cssH / 2 / s };
      this.atHome = false;
      this.cameraChanged();
    }

    /** The starting view: the v1 board area, whole. */
    home() {
      this.fit(HOME, 8);
      this.atHome = true;
    }

    /** Every element in view (or home when the board is empty). */
    fitContent() {
      const b = this.contentBounds();
      if (b) this.fit(b, 40, 2);
      else this.home();
    }

    panBy(dx, dy) {
      this.cam = { ...this.cam, x: this.cam.x - dx / this.cam.s, y: this.cam.y - dy / this.cam.s };
      this.atHome = false;
      this.cameraChanged();
    }

    /** Zooms by `factor` keeping screen point (sx, sy) over the same board point. */
    zoomAt(sx, sy, factor) {
      const s = clamp(this.cam.s * factor, MIN_SCALE, MAX_SCALE);
      const p = this.toBoard(sx, sy);
      this.cam = { s, x: p.x - sx / s, y: p.y - sy / s };
      this.atHome = false;
      this.zoomingUntil = performance.now() + ZOOM_SETTLE_MS;
      clearTimeout(this.settleTimer);
      this.settleTimer = setTimeout(() => this.invalidate(), ZOOM_SETTLE_MS + 10);
      this.cameraChanged();
    }

    cameraChanged() {
      this.invalidate();
      this.onCamera();
    }

    // -- dirtiness --

    /**
     * Content changed for these ids (null: all). Changes to `active` elements leave the cache alone;
     * elements new on the board that paint above everything in it (the usual case: someone's new
     * stroke) are painted onto it; anything else repaints it.
     */
    contentChanged(ids, added) {
      if (!ids) this.cacheDirty = true;
      else {
        for (const id of ids) {
          if (this.active.has(id)) continue;
          const el = added && added.has(id) && this.board.get(id);
          if (el && !this.cacheDirty && this.cacheView && (!this.cacheTop || M.paintOrder(el, this.cacheTop) > 0)) {
            this.appendQueue.push(id);
            this.cacheTop = el;
            continue;
          }
          this.cacheDirty = true;
          break;
        }
      }
      if (this.cacheDirty) this.appendQueue = [];
      this.invalidate();
    }

    /** Paints queued new elements onto the cache (in the order they came, which is paint order). */
    appendToCache() {
      const cv = this.cacheView;
      const ctx = this.cacheCtx;
      const { dpr } = this;
      ctx.setTransform(dpr * cv.s, 0, 0, dpr * cv.s, -cv.x * cv.s * dpr, -cv.y * cv.s * dpr);
      const area = { x0: cv.x, y0: cv.y, x1: cv.x + cv.w / cv.s, y1: cv.y + cv.h / cv.s };
      const frameOf = (id) => { const n = this.board.get(id); return n && n.kind === 'node' ? n : null; };
      for (const id of this.appendQueue) {
        const el = this.board.get(id);
        const b = el && M.bounds(el, this.board);
        if (b && M.overlaps(b, area)) this.paintMaybeEditing(ctx, el, frameOf);
      }
      this.stats.appended += this.appendQueue.length;
      this.appendQueue = [];
    }

    /** Sets what is painted on top rather than from the cache. */
    setActive(ids) {
      const next = new Set(ids);
      if (next.size === this.active.size && [...next].every((id) => this.active.has(id))) return;
      this.active = next;
      this.cacheDirty = true;
      this.invalidate();
    }

    invalidate() {
      if (this.pendingFrame) return;
      this.pendingFrame = true;
      requestAnimationFrame(() => this.frame());
    }

    // -- frames --

    /** An element as currently displayed: the shown one with any live drag patch over it. */
    view(id) {
      const el = this.board.get(id);
      const d = el && this.draft.get(id);
      return d ? M.patched(el, d) : el;
    }

    frame() {
      this.pendingFrame = false;
      if (!this.cssW) return;
      const t0 = performance.now();
      const { ctx, dpr, cam } = this;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = '#ffffff';
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);

      this.blitScene();

      ctx.setTransform(dpr * cam.s, 0, 0, dpr * cam.s, -cam.x * cam.s * dpr, -cam.y * cam.s * dpr);
      const frameOf = (id) => { const n = this.view(id); return n && n.kind === 'node' ? n : null; };
      const order = this.board.order();
      if (this.active.size) {
        for (const id of order) {
          if (!this.active.has(id)) continue;
          const el = this.view(id);
          if (el) this.paintMaybeEditing(ctx, el, frameOf);
        }
      }
      for (const el of this.previews) paint(ctx, el, frameOf);
      for (const s of this.live.values()) {
        if (s.points.length) paintStroke(ctx, { kind: 'stroke', points: s.points, color: s.color, width: s.width });
      }
      for (const c of this.textCarets()) {
        const el = this.view(c.id);
        if (el && el.id !== this.editing && M.FRAMED.has(el.kind)) paintCaret(ctx, el, c.index, c.color);
      }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      this.paintSelection(ctx, frameOf);
      if (this.marquee) {
        const a = this.toScreen(this.marquee.x0, this.marquee.y0);
        const b = this.toScreen(this.marquee.x1, this.marquee.y1);
        ctx.fillStyle = 'rgba(36, 87, 214, 0.08)';
        ctx.strokeStyle = SELECT;
        ctx.lineWidth = 1;
        ctx.setLineDash([4, 3]);
        ctx.fillRect(a.x, a.y, b.x - a.x, b.y - a.y);
        ctx.strokeRect(a.x + 0.5, a.y + 0.5, b.x - a.x, b.y - a.y);
        ctx.setLineDash([]);
      }
      const ms = performance.now() - t0;
      this.stats.frames++;
      this.stats.lastFrameMs = ms;
      this.stats.maxFrameMs = Math.max(this.stats.maxFrameMs, ms);
      this.stats.frameMs.push(Math.round(ms * 10) / 10);
      if (this.stats.frameMs.length > 240) this.stats.frameMs.shift();
    }

    paintMaybeEditing(ctx, el, frameOf) {
      // The DOM editor shows the text being typed; painting the old text under it would double it.
      paint(ctx, el.id === this.editing ? { ...el, text: '' } : el, frameOf);
    }

    /** Puts the settled elements on screen from the cache, repainting the cache when it must. */
    blitScene() {
      const { cam, dpr } = this;
      const cv = this.cacheView;
      const zooming = performance.now() < this.zoomingUntil;
      const covers = cv && cv.s === cam.s && cam.x >= cv.x && cam.y >= cv.y
        && cam.x + this.cssW / cam.s <= cv.x + cv.w / cv.s && cam.y + this.cssH / cam.s <= cv.y + cv.h / cv.s;
      if (!this.cacheDirty && !covers && cv && zooming) {
        // Mid-zoom: stretch the old bitmap for now; the cache is repainted once the zoom settles.
        const k = cam.s / cv.s;
        const o = this.toScreen(cv.x, cv.y);
        this.ctx.drawImage(this.cache, o.x * dpr, o.y * dpr, this.cache.width * k, this.cache.height * k);
        return;
      }
      if (this.cacheDirty || !covers) this.renderCache();
      else if (this.appendQueue.length) this.appendToCache();
      const o = this.toScreen(this.cacheView.x, this.cacheView.y);
      this.ctx.drawImage(this.cache, Math.round(o.x * dpr), Math.round(o.y * dpr));
    }

    renderCache() {
      const t0 = performance.now();
      const { cam, dpr } = this;
      const w = this.cssW + 2 * MARGIN;
      const h = this.cssH + 2 * MARGIN;
      const pw = Math.round(w * dpr);
      const ph = Math.round(h * dpr);
      if (this.cache.width !== pw || this.cache.height !== ph) {
        this.cache.width = pw;
        this.cache.height = ph;
      }
      const cv = { x: cam.x - MARGIN / cam.s, y: cam.y - MARGIN / cam.s, s: cam.s, w, h };
      const ctx = this.cacheCtx;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, pw, ph);
      ctx.setTransform(dpr * cv.s, 0, 0, dpr * cv.s, -cv.x * cv.s * dpr, -cv.y * cv.s * dpr);
      const area = { x0: cv.x, y0: cv.y, x1: cv.x + w / cv.s, y1: cv.y + h / cv.s };
      const frameOf = (id) => { const n = this.board.get(id); return n && n.kind === 'node' ? n : null; };
      let painted = 0;
      for (const id of this.board.order()) {
        if (this.active.has(id)) continue;
        const el = this.board.get(id);
        const b = M.bounds(el, this.board);
        if (b && M.overlaps(b, area)) {
          this.paintMaybeEditing(ctx, el, frameOf);
          painted++;
        }
      }
      this.stats.painted = painted;
      const order = this.board.order();
      this.cacheTop = order.length ? this.board.get(order[order.length - 1]) : null;
      this.appendQueue = [];
      this.cacheView = cv;
      this.cacheDirty = false;
      this.stats.cacheRenders++;
      this.stats.lastCacheMs = performance.now() - t0;
    }

    // -- selection overlay --

    /** The selection's box in board units (null when nothing is selected). */
    selectionBox() {
      let b = null;
      for (const id of this.selection) {
        const el = this.view(id);
        if (el) b = M.union(b, M.box(el, this.board));
      }
      return b;
    }

    /** A single selected line or arrow is edited by its two ends rather than a box. */
    endpointTarget() {
      if (this.selection.size !== 1) return null;
      const el = this.view([...this.selection][0]);
      return el && (el.kind === 'line' || el.kind === 'arrow') ? el : null;
    }

    /** Resize handles in screen px: {name, x, y}. Edges alone have none (they follow nodes). */
    handles() {
      if (!this.showHandles || this.hideHandles || !this.selection.size) return [];
      const line = this.endpointTarget();
      if (line) {
        const p = line.points;
        return [{ name: 'start', ...this.toScreen(p[0].x, p[0].y) }, { name: 'end', ...this.toScreen(p[p.length - 1].x, p[p.length - 1].y) }];
      }
      const els = [...this.selection].map((id) => this.view(id)).filter(Boolean);
      if (!els.length || els.every((e) => e.kind === 'edge')) return [];
      const b = this.selectionBox();
      const a = this.toScreen(b.x0, b.y0);
      const c = this.toScreen(b.x1, b.y1);
      const mx = (a.x + c.x) / 2;
      const my = (a.y + c.y) / 2;
      return [
        { name: 'nw', x: a.x, y: a.y }, { name: 'n', x: mx, y: a.y }, { name: 'ne', x: c.x, y: a.y },
        { name: 'e', x: c.x, y: my }, { name: 'se', x: c.x, y: c.y }, { name: 's', x: mx, y: c.y },
        { name: 'sw', x: a.x, y: c.y }, { name: 'w', x: a.x, y: my },
      ];
    }

    handleAt(sx, sy) {
      for (const h of this.handles()) {
        if (Math.abs(h.x - sx) <= HANDLE && Math.abs(h.y - sy) <= HANDLE) return h.name;
      }
      return null;
    }

    paintSelection(ctx, frameOf) {
      if (!this.selection.size) return;
      ctx.strokeStyle = SELECT;
      ctx.lineWidth = 1;
      ctx.setLineDash([5, 4]);
      for (const id of this.selection) {
        const el = this.view(id);
        if (!el) continue;
        const b = el.kind === 'edge' ? (() => {
          const ends = M.edgeEnds(null, el, (_, nid) => frameOf(nid));
          return ends && { x0: Math.min(ends[0].x, ends[1].x), y0: Math.min(ends[0].y, ends[1].y), x1: Math.max(ends[0].x, ends[1].x), y1: Math.max(ends[0].y, ends[1].y) };
        })() : M.box(el, this.board);
        if (!b) continue;
        const a = this.toScreen(b.x0, b.y0);
        const c = this.toScreen(b.x1, b.y1);
        ctx.strokeRect(Math.round(a.x) - 3.5, Math.round(a.y) - 3.5, c.x - a.x + 7, c.y - a.y + 7);
      }
      ctx.setLineDash([]);
      for (const h of this.handles()) {
        ctx.fillStyle = '#ffffff';
        ctx.strokeStyle = SELECT;
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        if (h.name === 'start' || h.name === 'end') ctx.arc(h.x, h.y, 5, 0, Math.PI * 2);
        else ctx.rect(Math.round(h.x) - 4.5, Math.round(h.y) - 4.5, 9, 9);
        ctx.fill();
        ctx.stroke();
      }
    }

    // -- hit testing --

    /** The topmost element at screen point (sx, sy), or null. */
    elementAt(sx, sy, filter = () => true) {
      const p = this.toBoard(sx, sy);
      const tol = 4 / this.cam.s;
      const order = this.board.order();
      for (let i = order.length - 1; i >= 0; i--) {
        const el = this.view(order[i]);
        if (el && filter(el) && M.hits(el, p, tol, this.board)) return el;
      }
      return null;
    }

    /** Ids of the elements whose boxes lie wholly inside board rectangle `r`. */
    elementsIn(r) {
      const out = [];
      for (const id of this.board.order()) {
        const el = this.board.get(id);
        const b = M.box(el, this.board);
        if (b && b.x0 >= r.x0 && b.x1 <= r.x1 && b.y0 >= r.y0 && b.y1 <= r.y1) out.push(id);
      }
      return out;
    }

    contentBounds() {
      let b = null;
      for (const el of this.board.shown.values()) b = M.union(b, M.bounds(el, this.board));
      return b;
    }

    // -- export --

    /** The whole board as a PNG blob (white background, a margin around the content). */
    exportPng() {
      const content = this.contentBounds() || HOME;
      const pad = 32;
      const w = content.x1 - content.x0 + 2 * pad;
      const h = content.y1 - content.y0 + 2 * pad;
      // Sharp on high-DPI screens, but never a canvas the browser would refuse (about 16k px a side).
      const s = Math.min(2, 8000 / Math.max(w, h));
      const out = document.createElement('canvas');
      out.width = Math.max(1, Math.ceil(w * s));
      out.height = Math.max(1, Math.ceil(h * s));
      const ctx = out.getContext('2d');
      ctx.fillStyle = '#ffffff';
      ctx.fillRect(0, 0, out.width, out.height);
      ctx.setTransform(s, 0, 0, s, (pad - content.x0) * s, (pad - content.y0) * s);
      const frameOf = (id) => { const n = this.board.get(id); return n && n.kind === 'node' ? n : null; };
      for (const id of this.board.order()) paint(ctx, this.board.get(id), frameOf);
      return new Promise((resolve) => out.toBlob(resolve, 'image/png'));
    }
  }

  function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }

  W.render = { Renderer, paint, layoutText, TEXT_SIZE, PAD, FONT, HOME };
})();
