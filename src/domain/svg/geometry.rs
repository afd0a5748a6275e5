//! Geometry for the import: `transform` lists as affine maps, and path data read into subpaths
//! (relative and absolute commands, arcs as cubics) that flatten into the points a board element
//! holds.

use super::Point;

/// An affine map `[a b c d e f]`: `(x, y) -> (a x + c y + e, b x + d y + f)`, as SVG writes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Affine(pub(super) [f64; 6]);

impl Affine {
    pub(super) const IDENTITY: Self = Self([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);

    /// `self` after `inner`: what an element inside a group with transform `self` sees.
    pub(super) fn then(self, inner: Self) -> Self {
        let [a, b, c, d, e, f] = self.0;
        let [a2, b2, c2, d2, e2, f2] = inner.0;
        Self([
            a * a2 + c * b2,
            b * a2 + d * b2,
            a * c2 + c * d2,
            b * c2 + d * d2,
            a * e2 + c * f2 + e,
            b * e2 + d * f2 + f,
        ])
    }

    pub(super) fn apply(self, p: Point) -> Point {
        let [a, b, c, d, e, f] = self.0;
        Point {
            x: a * p.x + c * p.y + e,
            y: b * p.x + d * p.y + f,
        }
    }

    /// How much the map scales lengths, on average over directions: for line widths.
    pub(super) fn scale(self) -> f64 {
        let [a, b, c, d, ..] = self.0;
        (a * d - b * c).abs().sqrt()
    }

    /// Scale along x, scale along y and rotation (radians) of the map, skew ignored; `None`
    /// when it flattens the plane.
    pub(super) fn decompose(self) -> Option<(f64, f64, f64)> {
        let [a, b, c, d, ..] = self.0;
        let sx = a.hypot(b);
        let det = a * d - b * c;
        if !(sx.is_finite() && det.is_finite()) || sx == 0.0 || det == 0.0 {
            return None;
        }
        Some((sx, det / sx, b.atan2(a)))
    }
}

/// A `transform` attribute; `None` when it cannot be read (the element is then skipped, as a
/// browser would not draw it where the author meant).
pub(super) fn parse_transform(text: &str) -> Option<Affine> {
    let mut m = Affine::IDENTITY;
    let mut rest = text.trim();
    while !rest.is_empty() {
        let open = rest.find('(')?;
        let close = rest.find(')')?;
        if close < open {
            return None;
        }
        let name = rest[..open].trim().trim_start_matches(',').trim();
        let args: Vec<f64> = Numbers::new(&rest[open + 1..close]).collect();
        let t = match (name, args.as_slice()) {
            ("matrix", &[a, b, c, d, e, f]) => Affine([a, b, c, d, e, f]),
            ("translate", &[x]) => Affine([1.0, 0.0, 0.0, 1.0, x, 0.0]),
            ("translate", &[x, y]) => Affine([1.0, 0.0, 0.0, 1.0, x, y]),
            ("scale", &[s]) => Affine([s, 0.0, 0.0, s, 0.0, 0.0]),
            ("scale", &[x, y]) => Affine([x, 0.0, 0.0, y, 0.0, 0.0]),
            ("rotate", &[deg]) => rotation(deg),
            ("rotate", &[deg, cx, cy]) => Affine([1.0, 0.0, 0.0, 1.0, cx, cy])
                .then(rotation(deg))
                .then(Affine([1.0, 0.0, 0.0, 1.0, -cx, -cy])),
            ("skewX", &[deg]) => Affine([1.0, 0.0, deg.to_radians().tan(), 1.0, 0.0, 0.0]),
            ("skewY", &[deg]) => Affine([1.0, deg.to_radians().tan(), 0.0, 1.0, 0.0, 0.0]),
            _ => return None,
        };
        m = m.then(t);
        rest = rest[close + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    m.0.iter().all(|n| n.is_finite()).then_some(m)
}

fn rotation(deg: f64) -> Affine {
    let (sin, cos) = deg.to_radians().sin_cos();
    Affine([cos, sin, -sin, cos, 0.0, 0.0])
}

/// The numbers of an SVG list or path: separated by spaces, commas, or nothing where a sign or
/// a second `.` starts the next one (`1.5.5` is `1.5 0.5`). Stops at the first thing that is not
/// a number, which is where a path's next command starts.
pub(super) struct Numbers<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Numbers<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            text: text.as_bytes(),
            at: 0,
        }
    }

    fn skip_separators(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace() || *b == b',')
        {
            self.at += 1;
        }
    }

    /// An arc flag: a single `0` or `1`, which may be written with no separator after it.
    fn flag(&mut self) -> Option<bool> {
        self.skip_separators();
        let flag = match self.text.get(self.at)? {
            b'0' => false,
            b'1' => true,
            _ => return None,
        };
        self.at += 1;
        Some(flag)
    }
}

impl Iterator for Numbers<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        self.skip_separators();
        let start = self.at;
        let t = self.text;
        let mut i = start;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let digits = |i: &mut usize| {
            let from = *i;
            while t.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        let mut any = digits(&mut i);
        if t.get(i) == Some(&b'.') {
            i += 1;
            any |= digits(&mut i);
        }
        if !any {
            return None;
        }
        if matches!(t.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(t.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if digits(&mut j) {
                i = j;
            }
        }
        let n = std::str::from_utf8(&t[start..i])
            .ok()?
            .parse::<f64>()
            .ok()?;
        self.at = i;
        Some(n)
    }
}

/// One piece of a subpath, ending at its last point.
#[derive(Clone, Copy, Debug)]
enum Seg {
    Line(Point),
    Quad(Point, Point),
    Cubic(Point, Point, Point),
}

/// A subpath: a start, its segments, and whether it closes back to the start.
#[derive(Clone, Debug)]
pub(super) struct Subpath {
    start: Point,
    segs: Vec<Seg>,
    closed: bool,
}

impl Subpath {
    pub(super) fn transformed(&self, m: Affine) -> Self {
        let f = |p| m.apply(p);
        Self {
            start: f(self.start),
            segs: self
                .segs
                .iter()
                .map(|s| match *s {
                    Seg::Line(p) => Seg::Line(f(p)),
                    Seg::Quad(c, p) => Seg::Quad(f(c), f(p)),
                    Seg::Cubic(c1, c2, p) => Seg::Cubic(f(c1), f(c2), f(p)),
                })
                .collect(),
            closed: self.closed,
        }
    }

    /// The points a board element needs to draw this subpath: curves flattened, and (for a
    /// stroke, `doubled_corners`) the corner at the end of each straight piece written twice,
    /// since the page's smoothing (quadratics through midpoints) keeps a doubled point sharp. At most `max_points`, thinned evenly
    /// when there are more. `None` for a lone moveto, which draws nothing.
    pub(super) fn flatten(&self, max_points: usize, doubled_corners: bool) -> Option<Vec<Point>> {
        if self.segs.is_empty() && !self.closed {
            return None;
        }
        // Past this, curves get no more detail: a hostile path cannot make points without end.
        let budget = max_points.saturating_mul(4);
        let mut out = vec![self.start];
        let mut last = self.start;
        let mut segs = self.segs.clone();
        if self.closed {
            segs.push(Seg::Line(self.start));
        }
        let count = segs.len();
        for (i, seg) in segs.into_iter().enumerate() {
            let rich = out.len() < budget;
            match seg {
                Seg::Line(p) => {
                    if p.x == last.x && p.y == last.y {
                        continue;
                    }
                    out.push(p);
                    if doubled_corners && i + 1 < count {
                        out.push(p);
                    }
                    last = p;
                }
                Seg::Quad(c, p) => {
                    let n = if rich { steps(&[last, c, p]) } else { 1 };
                    for k in 1..=n {
                        let t = k as f64 / n as f64;
                        let u = 1.0 - t;
                        out.push(Point {
                            x: u * u * last.x + 2.0 * u * t * c.x + t * t * p.x,
                            y: u * u * last.y + 2.0 * u * t * c.y + t * t * p.y,
                        });
                    }
                    last = p;
                }
                Seg::Cubic(c1, c2, p) => {
                    let n = if rich { steps(&[last, c1, c2, p]) } else { 1 };
                    for k in 1..=n {
                        let t = k as f64 / n as f64;
                        let u = 1.0 - t;
                        out.push(Point {
                            x: u * u * u * last.x
                                + 3.0 * u * u * t * c1.x
                                + 3.0 * u * t * t * c2.x
                                + t * t * t * p.x,
                            y: u * u * u * last.y
                                + 3.0 * u * u * t * c1.y
                                + 3.0 * u * t * t * c2.y
                                + t * t * t * p.y,
                        });
                    }
                    last = p;
                }
            }
        }
        if out.len() == 1 {
            // A closed or zero-length subpath: a dot, as round caps draw it.
            return Some(out);
        }
        Some(thin(out, max_points))
    }

    /// The points of a stroke we exported (`M p0 Q p1 m12 Q p2 m23 … L pn`): the quadratics'
    /// control points are the original points. `None` when the path is not of that shape.
    pub(super) fn drawn_points(&self) -> Option<Vec<Point>> {
        let (last, quads) = self.segs.split_last()?;
        let Seg::Line(end) = *last else { return None };
        let mut out = vec![self.start];
        for seg in quads {
            match *seg {
                Seg::Quad(c, _) => out.push(c),
                _ => return None,
            }
        }
        if quads.is_empty() && end.x == self.start.x && end.y == self.start.y {
            return Some(out);
        }
        out.push(end);
        Some(out)
    }
}

/// Segments to flatten a curve into: about one per 4 units of its control polygon, 1 to 32.
fn steps(control: &[Point]) -> usize {
    let len: f64 = control
        .windows(2)
        .map(|w| (w[1].x - w[0].x).hypot(w[1].y - w[0].y))
        .sum();
    if len.is_finite() {
        (len / 4.0).ceil().clamp(1.0, 32.0) as usize
    } else {
        1
    }
}

/// At most `max` points, evenly chosen, the first and last kept.
fn thin(points: Vec<Point>, max: usize) -> Vec<Point> {
    if points.len() <= max || max < 2 {
        return points;
    }
    let n = points.len();
    (0..max).map(|i| points[i * (n - 1) / (max - 1)]).collect()
}

/// Reads path data into subpaths (absolute coordinates, arcs as cubics). As SVG asks, data
/// after an error is ignored and what came before it is kept.
pub(super) fn parse_path(d: &str) -> Vec<Subpath> {
    let mut subs: Vec<Subpath> = Vec::new();
    let mut nums = Numbers::new(d);
    let mut cur = Point { x: 0.0, y: 0.0 };
    let mut start = cur;
    // The last control point, for S and T's reflection.
    let mut last_cubic: Option<Point> = None;
    let mut last_quad: Option<Point> = None;
    let mut cmd: Option<u8> = None;
    loop {
        nums.skip_separators();
        let Some(&b) = nums.text.get(nums.at) else {
            break;
        };
        if b.is_ascii_alphabetic() {
            nums.at += 1;
            cmd = Some(b);
            if matches!(b, b'Z' | b'z') {
                if let Some(sub) = subs.last_mut() {
                    sub.closed = true;
                }
                cur = start;
                last_cubic = None;
                last_quad = None;
                // Drawing after Z without a moveto starts a new subpath at the same point.
                cmd = None;
                continue;
            }
        }
        let Some(c) = cmd else {
            // Numbers with no command, or after Z: a malformed path from here on.
            break;
        };
        let rel = c.is_ascii_lowercase();
        let at = |p: Point, cur: Point| {
            if rel {
                Point {
                    x: cur.x + p.x,
                    y: cur.y + p.y,
                }
            } else {
                p
            }
        };
        let pair = |nums: &mut Numbers| {
            let x = nums.next()?;
            let y = nums.next()?;
            Some(Point { x, y })
        };
        // Path data must start with a moveto; drawing on after Z restarts from the start point.
        if !matches!(c, b'M' | b'm') && subs.is_empty() {
            break;
        }
        if !matches!(c, b'M' | b'm') && subs.last().is_some_and(|s| s.closed) {
            subs.push(Subpath {
                start: cur,
                segs: Vec::new(),
                closed: false,
            });
            start = cur;
        }
        let mut seg_cubic = None;
        let mut seg_quad = None;
        let ok = match c.to_ascii_uppercase() {
            b'M' => match pair(&mut nums) {
                Some(p) => {
                    cur = at(p, cur);
                    start = cur;
                    subs.push(Subpath {
                        start: cur,
                        segs: Vec::new(),
                        closed: false,
                    });
                    // Further pairs after a moveto are linetos.
                    cmd = Some(if rel { b'l' } else { b'L' });
                    true
                }
                None => false,
            },
            b'L' => match pair(&mut nums) {
                Some(p) => {
                    cur = at(p, cur);
                    push(&mut subs, Seg::Line(cur));
                    true
                }
                None => false,
            },
            b'H' => match nums.next() {
                Some(x) => {
                    cur.x = if rel { cur.x + x } else { x };
                    push(&mut subs, Seg::Line(cur));
                    true
                }
                None => false,
            },
            b'V' => match nums.next() {
                Some(y) => {
                    cur.y = if rel { cur.y + y } else { y };
                    push(&mut subs, Seg::Line(cur));
                    true
                }
                None => false,
            },
            b'C' => match (pair(&mut nums), pair(&mut nums), pair(&mut nums)) {
                (Some(c1), Some(c2), Some(p)) => {
                    let (c1, c2, p) = (at(c1, cur), at(c2, cur), at(p, cur));
                    push(&mut subs, Seg::Cubic(c1, c2, p));
                    seg_cubic = Some(c2);
                    cur = p;
                    true
                }
                _ => false,
            },
            b'S' => match (pair(&mut nums), pair(&mut nums)) {
                (Some(c2), Some(p)) => {
                    let c1 = reflect(last_cubic, cur);
                    let (c2, p) = (at(c2, cur), at(p, cur));
                    push(&mut subs, Seg::Cubic(c1, c2, p));
                    seg_cubic = Some(c2);
                    cur = p;
                    true
                }
                _ => false,
            },
            b'Q' => match (pair(&mut nums), pair(&mut nums)) {
                (Some(q), Some(p)) => {
                    let (q, p) = (at(q, cur), at(p, cur));
                    push(&mut subs, Seg::Quad(q, p));
                    seg_quad = Some(q);
                    cur = p;
                    true
                }
                _ => false,
            },
            b'T' => match pair(&mut nums) {
                Some(p) => {
                    let q = reflect(last_quad, cur);
                    let p = at(p, cur);
                    push(&mut subs, Seg::Quad(q, p));
                    seg_quad = Some(q);
                    cur = p;
                    true
                }
                None => false,
            },
            b'A' => {
                let radii = (nums.next(), nums.next(), nums.next());
                let flags = (nums.flag(), nums.flag());
                match (radii, flags, pair(&mut nums)) {
                    ((Some(rx), Some(ry), Some(rot)), (Some(large), Some(sweep)), Some(p)) => {
                        let p = at(p, cur);
                        for seg in arc(cur, rx, ry, rot, large, sweep, p) {
                            push(&mut subs, seg);
                        }
                        cur = p;
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if !ok {
            break;
        }
        last_cubic = seg_cubic;
        last_quad = seg_quad;
    }
    subs
}

fn push(subs: &mut [Subpath], seg: Seg) {
    if let Some(sub) = subs.last_mut() {
        sub.segs.push(seg);
    }
}

/// The reflection of the previous control point about the current point (S and T), or the
/// current point when the previous segment was not of the same kind.
fn reflect(control: Option<Point>, cur: Point) -> Point {
    match control {
        Some(c) => Point {
            x: 2.0 * cur.x - c.x,
            y: 2.0 * cur.y - c.y,
        },
        None => cur,
    }
}

/// An elliptical arc as cubic Béziers of at most a quarter turn each (SVG 1.1 appendix F.6).
fn arc(
    from: Point,
    rx: f64,
    ry: f64,
    rotation_deg: f64,
    large: bool,
    sweep: bool,
    to: Point,
) -> Vec<Seg> {
    let (mut rx, mut ry) = (rx.abs(), ry.abs());
    if (from.x == to.x && from.y == to.y) || !(rx.is_finite() && ry.is_finite()) {
        return if from.x == to.x && from.y == to.y {
            Vec::new()
        } else {
            vec![Seg::Line(to)]
        };
    }
    if rx == 0.0 || ry == 0.0 {
        return vec![Seg::Line(to)];
    }
    let (sin, cos) = rotation_deg.to_radians().sin_cos();
    let dx = (from.x - to.x) / 2.0;
    let dy = (from.y - to.y) / 2.0;
    let x1 = cos * dx + sin * dy;
    let y1 = -sin * dx + cos * dy;
    let lambda = (x1 * x1) / (rx * rx) + (y1 * y1) / (ry * ry);
    if lambda > 1.0 {
        let k = lambda.sqrt();
        rx *= k;
        ry *= k;
    }
    let num = rx * rx * ry * ry - rx * rx * y1 * y1 - ry * ry * x1 * x1;
    let den = rx * rx * y1 * y1 + ry * ry * x1 * x1;
    let mut coef = if den == 0.0 {
        0.0
    } else {
        (num / den).max(0.0).sqrt()
    };
    if large == sweep {
        coef = -coef;
    }
    let cx1 = coef * rx * y1 / ry;
    let cy1 = -coef * ry * x1 / rx;
    let cx = cos * cx1 - sin * cy1 + (from.x + to.x) / 2.0;
    let cy = sin * cx1 + cos * cy1 + (from.y + to.y) / 2.0;
    let angle = |ux: f64, uy: f64, vx: f64, vy: f64| {
        let a = (ux * vy - uy * vx).atan2(ux * vx + uy * vy);
        if a.is_finite() { a } else { 0.0 }
    };
    let theta1 = angle(1.0, 0.0, (x1 - cx1) / rx, (y1 - cy1) / ry);
    let mut delta = angle(
        (x1 - cx1) / rx,
        (y1 - cy1) / ry,
        (-x1 - cx1) / rx,
        (-y1 - cy1) / ry,
    );
    if !sweep && delta > 0.0 {
        delta -= std::f64::consts::TAU;
    } else if sweep && delta < 0.0 {
        delta += std::f64::consts::TAU;
    }
    let pieces = (delta.abs() / std::f64::consts::FRAC_PI_2)
        .ceil()
        .clamp(1.0, 4.0) as usize;
    let step = delta / pieces as f64;
    let k = 4.0 / 3.0 * (step / 4.0).tan();
    let on = |t: f64| {
        let (s, c) = t.sin_cos();
        (
            Point {
                x: cx + rx * c * cos - ry * s * sin,
                y: cy + rx * c * sin + ry * s * cos,
            },
            // The tangent at t, for the control points.
            Point {
                x: -rx * s * cos - ry * c * sin,
                y: -rx * s * sin + ry * c * cos,
            },
        )
    };
    let mut segs = Vec::with_capacity(pieces);
    let mut t = theta1;
    for i in 0..pieces {
        let (p0, d0) = on(t);
        let (p1, d1) = on(t + step);
        let end = if i + 1 == pieces { to } else { p1 };
        segs.push(Seg::Cubic(
            Point {
                x: p0.x + k * d0.x,
                y: p0.y + k * d0.y,
            },
            Point {
                x: p1.x - k * d1.x,
                y: p1.y - k * d1.y,
            },
            end,
        ));
        t += step;
    }
    segs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn numbers_split_where_svg_splits_them() {
        let n: Vec<f64> = Numbers::new("1.5.5-2e2,3 .25E-1 +4 7e").collect();
        assert_eq!(n, [1.5, 0.5, -200.0, 3.0, 0.025, 4.0, 7.0]);
        assert_eq!(Numbers::new("x1").next(), None);
    }

    #[test]
    fn arc_flags_may_run_into_the_next_number() {
        // "a25 25 0 1150 0": large = 1, sweep = 1, then the end point (50, 0).
        let subs = parse_path("M0 0a25 25 0 1150 0");
        let Some(Seg::Cubic(_, _, end)) = subs[0].segs.last().copied() else {
            panic!("an arc is cubics: {subs:?}");
        };
        assert!(close(end.x, 50.0) && close(end.y, 0.0));
        // A half circle of radius 25 about (25, 0); a positive sweep turns clockwise on a
        // y-down screen, so from the left end it rises above the chord.
        let highest = subs[0]
            .flatten(1000, false)
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.y)
            .fold(f64::INFINITY, f64::min);
        assert!((highest + 25.0).abs() < 0.05, "{highest}");
    }

    #[test]
    fn transform_lists_compose_left_to_right() {
        let m = parse_transform("translate(10,20) rotate(90 5 5), scale(2)").expect("reads");
        let p = m.apply(Point { x: 1.0, y: 0.0 });
        // scale: (2, 0); rotate 90° about (5, 5): (10, 2); translate: (20, 22).
        assert!(close(p.x, 20.0) && close(p.y, 22.0), "{p:?}");
        assert_eq!(
            parse_transform("rotate(1 2)"),
            None,
            "rotate takes 1 or 3 numbers"
        );
        assert_eq!(parse_transform("wobble(1)"), None);
        assert_eq!(
            parse_transform("scale(1e308) scale(1e308)"),
            None,
            "not finite"
        );
        let (sx, sy, angle) = parse_transform("matrix(0 2 -3 0 0 0)")
            .and_then(Affine::decompose)
            .expect("decomposes");
        assert!(close(sx, 2.0) && close(sy, 3.0) && close(angle, std::f64::consts::FRAC_PI_2));
    }

    #[test]
    fn a_path_that_breaks_keeps_what_came_before() {
        let subs = parse_path("M0 0L10 0L20 x L30 0");
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].segs.len(), 1);
        assert!(
            parse_path("L10 10").is_empty(),
            "path data starts with a moveto"
        );
    }
}
