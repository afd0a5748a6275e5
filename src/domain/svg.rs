//! A board as an SVG 1.1 document and back (`PROTOCOL.md` §5: `export.svg`, and import at room
//! creation).
//!
//! [`export`] draws each element the way the page paints it (`web/render.js`): smoothed strokes,
//! arrow heads, sticky notes, rounded nodes and edges between node borders. Every drawn element
//! carries `data-id` and `data-kind`, so [`import`] can give our own export back as the same
//! elements (same ids, kinds and geometry); any other SVG is read as well as the board can hold it:
//! paths become strokes (curves flattened), straight polylines become lines, rects, circles,
//! ellipses and texts become their kinds, with `transform`s applied.
//!
//! Import trusts nothing: the XML parser refuses DTDs (so no entity expansion), nesting and
//! element count are capped, and every element it builds is checked by
//! [`Element::from_client`], the very check a live client's element passes, so an import obeys
//! the same limits (points, coordinates, colours, widths). What fails is counted in
//! [`Imported::skipped`], never a panic.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde_json::{Map, Value, json};
use thiserror::Error;

use super::element::{Element, ElementLimits, Kind};
use super::ids::{MAX_ID_LEN, RoomId, UserId};
use super::stroke::Point;

mod geometry;
mod style;

use geometry::{Affine, Numbers, parse_path, parse_transform};
use style::{Style, length};

const SVG_NS: &str = "http://www.w3.org/2000/svg";
/// Outline colour the page paints when an element has none.
const INK: &str = "#1d2430";
/// Line width the page uses when an element has none.
const DEFAULT_WIDTH: f64 = 2.0;
/// Board units of empty space around the content in an export.
const MARGIN: f64 = 16.0;
/// What an empty board shows: the area v1 Canvas clients draw in (`render.js` `HOME`).
const EMPTY_VIEW: (f64, f64, f64, f64) = (0.0, 0.0, 1600.0, 1000.0);
const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
const STICKY_FILL: &str = "#fff59d";
const NODE_FILL: &str = "#ffffff";
const NODE_RADIUS: f64 = 10.0;
/// Where a text's first baseline sits below its top, as a fraction of the font size (a
/// typical sans-serif ascent), so SVG text lands where the page's `textBaseline = 'top'` puts it.
const ASCENT: f64 = 0.8;
/// Line height as a multiple of the font size, as the page lays text out.
const LINE_HEIGHT: f64 = 1.25;

/// Font size and padding per text-bearing kind: the page's `TEXT_SIZE` and `PAD`.
fn text_style(kind: Kind) -> (f64, f64) {
    match kind {
        Kind::Text => (20.0, 4.0),
        Kind::Sticky => (18.0, 12.0),
        Kind::Node => (16.0, 8.0),
        _ => (14.0, 4.0),
    }
}

// ---- export -------------------------------------------------------------------------------

/// The board as a standalone SVG 1.1 document, elements painted in the order given.
///
/// Elements that cannot be drawn (a stroke without points, an edge whose node is not among
/// `elements`) are left out rather than failing the export.
pub fn export(elements: &[Element]) -> String {
    let nodes: HashMap<&str, &Element> = elements
        .iter()
        .filter(|e| e.kind == Kind::Node)
        .map(|e| (e.id.as_str(), e))
        .collect();
    let mut body = String::new();
    let mut bounds = Bounds::default();
    let mut markers: Vec<String> = Vec::new();
    for element in elements {
        let mut out = Out {
            svg: &mut body,
            bounds: &mut bounds,
            markers: &mut markers,
        };
        out.element(element, &nodes);
    }
    let (x, y, w, h) = bounds.view();
    let mut doc = String::with_capacity(body.len() + 1024);
    doc.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n");
    let _ = writeln!(
        doc,
        "<svg xmlns=\"{SVG_NS}\" version=\"1.1\" viewBox=\"{} {} {} {}\" width=\"{}\" height=\"{}\">",
        num(x),
        num(y),
        num(w),
        num(h),
        num(w),
        num(h)
    );
    if !markers.is_empty() {
        doc.push_str("<defs>\n");
        for color in &markers {
            // One head per colour: SVG 1.1 markers cannot take the colour of the line they end.
            let (rgb, opacity) = split_alpha(color);
            let _ = writeln!(
                doc,
                "<marker id=\"{}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerUnits=\"strokeWidth\" markerWidth=\"4\" markerHeight=\"4\" orient=\"auto\"><path d=\"M0 0.6L10 5L0 9.4z\" fill=\"{}\"{}/></marker>",
                marker_id(color),
                esc(&rgb),
                opacity
                    .map(|o| format!(" fill-opacity=\"{}\"", num(o)))
                    .unwrap_or_default()
            );
        }
        doc.push_str("</defs>\n");
    }
    doc.push_str(&body);
    doc.push_str("</svg>\n");
    doc
}

/// The export being written: the drawn elements, the area they cover, the arrow heads used.
struct Out<'a> {
    svg: &'a mut String,
    bounds: &'a mut Bounds,
    markers: &'a mut Vec<String>,
}

impl Out<'_> {
    fn element(&mut self, e: &Element, nodes: &HashMap<&str, &Element>) {
        match e.kind {
            Kind::Stroke => self.stroke(e),
            Kind::Line | Kind::Arrow => self.line(e),
            Kind::Rect | Kind::Ellipse => self.shape(e),
            Kind::Text | Kind::Sticky | Kind::Node => self.framed_text(e),
            Kind::Edge => self.edge(e, nodes),
        }
    }

    /// `data-id` and `data-kind`, which let an import give the element back as it was.
    fn tag(e: &Element) -> String {
        format!(
            " data-id=\"{}\" data-kind=\"{}\"",
            esc(e.id.as_str()),
            kind_name(e.kind)
        )
    }

    fn arrow_marker(&mut self, color: &str) -> String {
        if !self.markers.iter().any(|m| m == color) {
            self.markers.push(color.to_owned());
        }
        format!(" marker-end=\"url(#{})\"", marker_id(color))
    }

    fn stroke(&mut self, e: &Element) {
        let Some(pts) = e.points.as_deref().filter(|p| !p.is_empty()) else {
            return;
        };
        let width = e.width.unwrap_or(DEFAULT_WIDTH);
        self.bounds.points(pts, width / 2.0);
        // The page's outline: quadratic curves through the midpoints, ending on the last point.
        // A single point is a zero-length segment, which round caps draw as a dot.
        let mut d = format!("M{} {}", num(pts[0].x), num(pts[0].y));
        for i in 1..pts.len().saturating_sub(1) {
            let (p, q) = (pts[i], pts[i + 1]);
            let _ = write!(
                d,
                "Q{} {} {} {}",
                num(p.x),
                num(p.y),
                num((p.x + q.x) / 2.0),
                num((p.y + q.y) / 2.0)
            );
        }
        let end = pts[pts.len() - 1];
        let _ = write!(d, "L{} {}", num(end.x), num(end.y));
        let _ = writeln!(
            self.svg,
            "<path{} d=\"{d}\" fill=\"none\"{} stroke-width=\"{}\" stroke-linecap=\"round\" stroke-linejoin=\"round\"/>",
            Self::tag(e),
            paint("stroke", e.color.as_deref().unwrap_or(INK)),
            num(width)
        );
    }

    fn line(&mut self, e: &Element) {
        let Some(pts) = e.points.as_deref().filter(|p| p.len() >= 2) else {
            return;
        };
        let width = e.width.unwrap_or(DEFAULT_WIDTH);
        let color = e.color.as_deref().unwrap_or(INK);
        let arrow = e.kind == Kind::Arrow;
        let head = if arrow { (width * 3.0).max(10.0) } else { 0.0 };
        self.bounds.points(pts, width / 2.0 + head);
        let mut d = String::new();
        for (i, p) in pts.iter().enumerate() {
            let _ = write!(
                d,
                "{}{} {}",
                if i == 0 { 'M' } else { 'L' },
                num(p.x),
                num(p.y)
            );
        }
        let marker = if arrow {
            self.arrow_marker(color)
        } else {
            String::new()
        };
        let _ = writeln!(
            self.svg,
            "<path{} d=\"{d}\" fill=\"none\"{} stroke-width=\"{}\" stroke-linecap=\"round\" stroke-linejoin=\"round\"{marker}/>",
            Self::tag(e),
            paint("stroke", color),
            num(width)
        );
    }

    /// Outline and fill shared by rects and ellipses; the rotation turns about the centre.
    fn shape(&mut self, e: &Element) {
        let f = Frame::of(e);
        let width = e.width.unwrap_or(DEFAULT_WIDTH);
        self.bounds.frame(&f, width / 2.0);
        let style = format!(
            "{}{} stroke-width=\"{}\"{}",
            e.fill
                .as_deref()
                .map(|c| paint("fill", c))
                .unwrap_or_else(|| " fill=\"none\"".into()),
            paint("stroke", e.color.as_deref().unwrap_or(INK)),
            num(width),
            f.rotate()
        );
        if e.kind == Kind::Rect {
            let _ = writeln!(
                self.svg,
                "<rect{} x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"{style} stroke-linejoin=\"round\"/>",
                Self::tag(e),
                num(f.x),
                num(f.y),
                num(f.w),
                num(f.h)
            );
        } else {
            let _ = writeln!(
                self.svg,
                "<ellipse{} cx=\"{}\" cy=\"{}\" rx=\"{}\" ry=\"{}\"{style}/>",
                Self::tag(e),
                num(f.x + f.w / 2.0),
                num(f.y + f.h / 2.0),
                num(f.w / 2.0),
                num(f.h / 2.0)
            );
        }
    }

    /// Text, sticky notes and nodes: a group holding the frame as a rect (invisible for a plain
    /// text, so an import finds the frame) and the text laid out as the page does.
    fn framed_text(&mut self, e: &Element) {
        let f = Frame::of(e);
        let color = e.color.as_deref().unwrap_or(INK);
        let width = e.width.unwrap_or(DEFAULT_WIDTH);
        let _ = writeln!(self.svg, "<g{}{}>", Self::tag(e), f.rotate());
        let frame = match e.kind {
            Kind::Sticky => format!(
                "{} stroke=\"none\"",
                paint("fill", e.fill.as_deref().unwrap_or(STICKY_FILL))
            ),
            Kind::Node => format!(
                " rx=\"{NODE_RADIUS}\"{}{} stroke-width=\"{}\"",
                paint("fill", e.fill.as_deref().unwrap_or(NODE_FILL)),
                paint("stroke", color),
                num(width)
            ),
            _ => format!(
                "{} stroke=\"none\"",
                e.fill
                    .as_deref()
                    .map(|c| paint("fill", c))
                    .unwrap_or_else(|| " fill=\"none\"".into())
            ),
        };
        let pad = if e.kind == Kind::Node {
            width / 2.0
        } else {
            0.0
        };
        self.bounds.frame(&f, pad);
        let _ = writeln!(
            self.svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"{frame}/>",
            num(f.x),
            num(f.y),
            num(f.w),
            num(f.h)
        );
        let lines: Vec<String> = e
            .text
            .as_deref()
            .unwrap_or("")
            .split('\n')
            .map(xml_text)
            .collect();
        if lines.iter().any(|l| !l.is_empty()) {
            let (size, tpad) = text_style(e.kind);
            let lh = size * LINE_HEIGHT;
            let centred = e.kind == Kind::Node;
            let top = if centred {
                f.y + (f.h - lines.len() as f64 * lh) / 2.0
            } else {
                f.y + tpad
            };
            let x = if centred { f.x + f.w / 2.0 } else { f.x + tpad };
            let anchor = if centred {
                " text-anchor=\"middle\""
            } else {
                ""
            };
            let _ = write!(
                self.svg,
                "<text xml:space=\"preserve\" font-family=\"{FONT}\" font-size=\"{}\"{}{anchor}>",
                num(size),
                paint("fill", color)
            );
            for (i, line) in lines.iter().enumerate() {
                let baseline = top + i as f64 * lh + (lh - size) / 2.0 + size * ASCENT;
                let _ = write!(
                    self.svg,
                    "<tspan x=\"{}\" y=\"{}\">{}</tspan>",
                    num(x),
                    num(baseline),
                    esc(line)
                );
            }
            self.svg.push_str("</text>\n");
        }
        self.svg.push_str("</g>\n");
    }

    fn edge(&mut self, e: &Element, nodes: &HashMap<&str, &Element>) {
        let ends = e
            .from
            .as_ref()
            .zip(e.to.as_ref())
            .and_then(|(a, b)| Some((nodes.get(a.as_str())?, nodes.get(b.as_str())?)));
        let Some((a, b)) = ends else { return };
        let (fa, fb) = (Frame::of(a), Frame::of(b));
        // From border to border, as the page draws it, so the head is not hidden by the node.
        let p = fa.exit(fb.centre());
        let q = fb.exit(fa.centre());
        let width = e.width.unwrap_or(DEFAULT_WIDTH);
        let color = e.color.as_deref().unwrap_or(INK);
        self.bounds
            .points(&[p, q], width / 2.0 + (width * 3.0).max(10.0));
        let _ = writeln!(
            self.svg,
            "<g{} data-from=\"{}\" data-to=\"{}\">",
            Self::tag(e),
            esc(a.id.as_str()),
            esc(b.id.as_str())
        );
        let marker = self.arrow_marker(color);
        let _ = writeln!(
            self.svg,
            "<path d=\"M{} {}L{} {}\" fill=\"none\"{} stroke-width=\"{}\" stroke-linecap=\"round\"{marker}/>",
            num(p.x),
            num(p.y),
            num(q.x),
            num(q.y),
            paint("stroke", color),
            num(width)
        );
        // The page shows only an edge label's first line, on a white box at the middle.
        let label = xml_text(
            e.text
                .as_deref()
                .unwrap_or("")
                .split('\n')
                .next()
                .unwrap_or(""),
        );
        if !label.is_empty() {
            let (size, _) = text_style(Kind::Edge);
            let (mx, my) = ((p.x + q.x) / 2.0, (p.y + q.y) / 2.0);
            // No text metrics here: an average glyph is about 0.55 em wide.
            let tw = label.chars().count() as f64 * size * 0.55;
            let _ = writeln!(
                self.svg,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#ffffff\" stroke=\"none\"/>",
                num(mx - tw / 2.0 - 4.0),
                num(my - size / 2.0 - 3.0),
                num(tw + 8.0),
                num(size + 6.0)
            );
            let _ = writeln!(
                self.svg,
                "<text xml:space=\"preserve\" x=\"{}\" y=\"{}\" font-family=\"{FONT}\" font-size=\"{}\"{} text-anchor=\"middle\">{}</text>",
                num(mx),
                num(my + size * 0.35),
                num(size),
                paint("fill", color),
                esc(&label)
            );
        }
        self.svg.push_str("</g>\n");
    }
}

/// A framed element's `x, y, w, h` and rotation (radians), with zeros for missing fields so a
/// hand-built element never panics the export.
#[derive(Clone, Copy, Debug)]
struct Frame {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    rotation: f64,
}

impl Frame {
    fn of(e: &Element) -> Self {
        Self {
            x: e.x.unwrap_or(0.0),
            y: e.y.unwrap_or(0.0),
            w: e.w.unwrap_or(0.0),
            h: e.h.unwrap_or(0.0),
            rotation: e.rotation.unwrap_or(0.0),
        }
    }

    fn centre(&self) -> Point {
        Point {
            x: self.x + self.w / 2.0,
            y: self.y + self.h / 2.0,
        }
    }

    /// Where the ray from the centre towards `t` leaves the frame (`model.js` `frameExit`).
    fn exit(&self, t: Point) -> Point {
        let c = self.centre();
        let (dx, dy) = (t.x - c.x, t.y - c.y);
        if dx == 0.0 && dy == 0.0 {
            return c;
        }
        let tx = if dx != 0.0 {
            (self.w / 2.0) / dx.abs()
        } else {
            f64::INFINITY
        };
        let ty = if dy != 0.0 {
            (self.h / 2.0) / dy.abs()
        } else {
            f64::INFINITY
        };
        let t = tx.min(ty).min(1.0);
        Point {
            x: c.x + dx * t,
            y: c.y + dy * t,
        }
    }

    /// The `transform` attribute for a rotation about the centre, or nothing.
    fn rotate(&self) -> String {
        if self.rotation == 0.0 || !self.rotation.is_finite() {
            return String::new();
        }
        let c = self.centre();
        format!(
            " transform=\"rotate({} {} {})\"",
            num_to(self.rotation.to_degrees(), 6),
            num(c.x),
            num(c.y)
        )
    }
}

/// The area an export covers.
#[derive(Default)]
struct Bounds(Option<(f64, f64, f64, f64)>);

impl Bounds {
    fn add(&mut self, x0: f64, y0: f64, x1: f64, y1: f64) {
        if ![x0, y0, x1, y1].iter().all(|n| n.is_finite()) {
            return;
        }
        self.0 = Some(match self.0 {
            None => (x0, y0, x1, y1),
            Some((a, b, c, d)) => (a.min(x0), b.min(y0), c.max(x1), d.max(y1)),
        });
    }

    fn points(&mut self, pts: &[Point], pad: f64) {
        for p in pts {
            self.add(p.x - pad, p.y - pad, p.x + pad, p.y + pad);
        }
    }

    fn frame(&mut self, f: &Frame, pad: f64) {
        let (mut x, mut y, mut w, mut h) = (f.x, f.y, f.w, f.h);
        if f.rotation != 0.0 {
            // The circle the rotated frame turns in: enough to keep it in view.
            let r = w.hypot(h) / 2.0;
            x += w / 2.0 - r;
            y += h / 2.0 - r;
            w = 2.0 * r;
            h = w;
        }
        self.add(x - pad, y - pad, x + w + pad, y + h + pad);
    }

    /// `x, y, w, h` of the viewBox: the content and a margin, or the empty board's view.
    fn view(&self) -> (f64, f64, f64, f64) {
        match self.0 {
            None => EMPTY_VIEW,
            Some((x0, y0, x1, y1)) => (
                x0 - MARGIN,
                y0 - MARGIN,
                (x1 - x0 + 2.0 * MARGIN).max(1.0),
                (y1 - y0 + 2.0 * MARGIN).max(1.0),
            ),
        }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Stroke => "stroke",
        Kind::Line => "line",
        Kind::Arrow => "arrow",
        Kind::Rect => "rect",
        Kind::Ellipse => "ellipse",
        Kind::Text => "text",
        Kind::Sticky => "sticky",
        Kind::Node => "node",
        Kind::Edge => "edge",
    }
}

fn kind_named(name: &str) -> Option<Kind> {
    serde_json::from_value(Value::String(name.to_owned())).ok()
}

/// A colour attribute (`stroke` or `fill`) and, for `#rrggbbaa` (which SVG 1.1 does not know),
/// its opacity as a separate attribute.
fn paint(attr: &str, color: &str) -> String {
    let (rgb, opacity) = split_alpha(color);
    match opacity {
        Some(o) => format!(" {attr}=\"{}\" {attr}-opacity=\"{}\"", esc(&rgb), num(o)),
        None => format!(" {attr}=\"{}\"", esc(&rgb)),
    }
}

fn split_alpha(color: &str) -> (String, Option<f64>) {
    if color.len() == 9
        && color.starts_with('#')
        && color.is_ascii()
        && let Ok(alpha) = u8::from_str_radix(&color[7..], 16)
    {
        return (color[..7].to_owned(), Some(f64::from(alpha) / 255.0));
    }
    (color.to_owned(), None)
}

/// An XML id for the arrow head of one colour; colours are validated hex, anything else is
/// reduced to its hex digits so the id stays a valid name.
fn marker_id(color: &str) -> String {
    let hex: String = color.chars().filter(char::is_ascii_hexdigit).collect();
    format!("arrow-{hex}")
}

/// A number as SVG text: at most three decimals, no trailing zeros, and `0` for anything not
/// finite (a hand-built element must not produce an unreadable document).
fn num(n: f64) -> String {
    num_to(n, 3)
}

/// A number with up to `decimals` decimals (angles need more than coordinates to come back).
fn num_to(n: f64, decimals: usize) -> String {
    if !n.is_finite() {
        return "0".into();
    }
    let s = format!("{:.*}", decimals, n);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" || s.is_empty() {
        "0".into()
    } else {
        s.to_owned()
    }
}

/// Text content XML can hold: characters XML 1.0 forbids (control characters but tab, and
/// U+FFFE/U+FFFF) are dropped.
fn xml_text(s: &str) -> String {
    s.chars()
        .filter(|&c| (c == '\t' || !c.is_control()) && c != '\u{FFFE}' && c != '\u{FFFF}')
        .collect()
}

/// Escapes text for an attribute value or element content. Newlines and tabs (possible in
/// ids) are written as character references so an attribute keeps them; other characters XML
/// cannot hold are dropped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

// ---- import -------------------------------------------------------------------------------

/// How much one import may build. The input's size is capped before it gets here (the HTTP
/// layer answers 413); these bound what a small but hostile document can ask for.
#[derive(Clone, Copy, Debug)]
pub struct ImportLimits {
    /// Most board elements one file may produce (and it may leave out at most four times as
    /// many); more is refused whole rather than cut off silently, so nobody gets half a drawing
    /// without knowing.
    pub max_elements: usize,
    /// Deepest element nesting read: the walk recurses, and no drawing needs more.
    pub max_depth: usize,
    /// The live limits every element must pass.
    pub element: ElementLimits,
}

impl ImportLimits {
    pub const MAX_ELEMENTS: usize = 5_000;
    pub const MAX_DEPTH: usize = 64;

    /// The default caps with the room's live element limits.
    pub fn new(element: ElementLimits) -> Self {
        Self {
            max_elements: Self::MAX_ELEMENTS,
            max_depth: Self::MAX_DEPTH,
            element,
        }
    }
}

/// What an import built: valid elements in paint order, and how many drawn things were left out
/// (unsupported SVG elements, and elements the board's limits refused).
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    pub elements: Vec<Element>,
    pub skipped: usize,
}

/// Why a whole file was refused. The messages are meant for the person who chose the file.
#[derive(Debug, Error, PartialEq)]
pub enum ImportError {
    #[error("unreadable SVG: {0}")]
    Unreadable(String),
    #[error("the drawing has more than {max} elements")]
    TooMany { max: usize },
    #[error("the drawing nests elements more than {max} levels deep")]
    TooDeep { max: usize },
}

/// Reads an SVG document into board elements for `user` in `room`.
///
/// Our own exports come back element for element (`data-id`, `data-kind`); anything else is
/// mapped as well as the board's kinds allow. Ids are the `data-id`s when they are usable,
/// otherwise `imp-<n>`. Every element passes [`Element::from_client`] with `limits.element`.
pub fn import(
    bytes: &[u8],
    user: &UserId,
    room: &RoomId,
    limits: ImportLimits,
) -> Result<Imported, ImportError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ImportError::Unreadable("the file is not UTF-8 text".into()))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let options = roxmltree::ParsingOptions {
        // Entities are how a tiny file asks for gigabytes (billion laughs); SVGs do not need them.
        allow_dtd: false,
        nodes_limit: u32::MAX,
        entity_resolver: None,
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| {
        ImportError::Unreadable(match e {
            roxmltree::Error::DtdDetected => "DTDs and entities are not accepted".into(),
            other => other.to_string(),
        })
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "svg" || !in_svg_namespace(root) {
        return Err(ImportError::Unreadable(format!(
            "the document is a <{}>, not an <svg>",
            root.tag_name().name()
        )));
    }
    let mut reader = Reader {
        limits,
        user,
        room,
        elements: Vec::new(),
        skipped: 0,
        taken: HashSet::new(),
        reserved: root
            .descendants()
            .filter_map(|n| n.attribute("data-id"))
            .filter(|id| usable_id(id))
            .map(str::to_owned)
            .collect(),
        next_id: 0,
    };
    let style = Style::default().inherit(root);
    reader.children(root, Affine::IDENTITY, &style, 1)?;
    Ok(reader.finish())
}

fn in_svg_namespace(node: roxmltree::Node) -> bool {
    matches!(node.tag_name().namespace(), None | Some(SVG_NS))
}

/// Whether `node` is the SVG element `name` (documents without the namespace are read too).
fn is(node: roxmltree::Node, name: &str) -> bool {
    node.has_tag_name(name) && in_svg_namespace(node)
}

fn usable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN
}

/// How many left-out things per allowed element a file may hold before it is refused whole.
const SKIPPED_PER_ELEMENT: usize = 4;

/// Elements that draw nothing by themselves: left out without counting them as skipped.
const NOT_DRAWN: &[&str] = &[
    "defs",
    "title",
    "desc",
    "metadata",
    "style",
    "script",
    "marker",
    "clipPath",
    "mask",
    "pattern",
    "linearGradient",
    "radialGradient",
    "symbol",
    "filter",
    "font",
    "font-face",
    "cursor",
    "view",
];

struct Reader<'a> {
    limits: ImportLimits,
    user: &'a UserId,
    room: &'a RoomId,
    elements: Vec<Element>,
    skipped: usize,
    /// Ids given out so far.
    taken: HashSet<String>,
    /// Every usable `data-id` in the file, so a generated id never takes one a later element
    /// (or an edge's end) means.
    reserved: HashSet<String>,
    next_id: usize,
}

impl Reader<'_> {
    fn children(
        &mut self,
        parent: roxmltree::Node,
        m: Affine,
        style: &Style,
        depth: usize,
    ) -> Result<(), ImportError> {
        if depth > self.limits.max_depth {
            return Err(ImportError::TooDeep {
                max: self.limits.max_depth,
            });
        }
        for node in parent.children().filter(roxmltree::Node::is_element) {
            // Editors' own elements (Inkscape's, Sodipodi's) describe the file, not the drawing.
            if !in_svg_namespace(node) {
                continue;
            }
            let name = node.tag_name().name();
            if NOT_DRAWN.contains(&name) {
                continue;
            }
            let style = style.inherit(node);
            if style.hidden {
                continue;
            }
            let Some(own) = node
                .attribute("transform")
                .map_or(Some(Affine::IDENTITY), parse_transform)
            else {
                self.skip()?;
                continue;
            };
            let m = m.then(own);
            if let Some(kind) = node.attribute("data-kind").and_then(kind_named) {
                let fields = self.ours(node, kind, m, &style);
                self.add(kind, node.attribute("data-id"), fields)?;
                continue;
            }
            match name {
                "g" | "svg" | "a" | "switch" => self.children(node, m, &style, depth + 1)?,
                "path" => self.path(node, m, &style)?,
                "polyline" | "polygon" | "line" => {
                    let fields = poly(node, m, &style);
                    self.add(Kind::Line, None, fields)?;
                }
                "rect" | "circle" | "ellipse" => {
                    let kind = if name == "rect" {
                        Kind::Rect
                    } else {
                        Kind::Ellipse
                    };
                    let fields = shape(node, m, &style);
                    self.add(kind, None, fields)?;
                }
                "text" => {
                    let fields = text(node, m, &style);
                    self.add(Kind::Text, None, fields)?;
                }
                _ => self.skip()?,
            }
        }
        Ok(())
    }

    /// Each subpath of a path is a stroke of its own (the board's strokes are single lines).
    fn path(&mut self, node: roxmltree::Node, m: Affine, style: &Style) -> Result<(), ImportError> {
        let Some(color) = style.outline() else {
            // Neither stroked nor filled: invisible in the source, so nothing is lost.
            return Ok(());
        };
        let width = style.width(m);
        for sub in parse_path(node.attribute("d").unwrap_or("")) {
            let sub = sub.transformed(m);
            let Some(points) = sub.flatten(self.limits.element.max_points, true) else {
                continue;
            };
            let mut fields = Map::new();
            fields.insert("points".into(), points_json(&points));
            fields.insert("color".into(), json!(color));
            fields.insert("width".into(), json!(width));
            self.add(Kind::Stroke, None, Some(fields))?;
        }
        Ok(())
    }

    /// An element of our own export, read back as the kind it says it is.
    fn ours(
        &self,
        node: roxmltree::Node,
        kind: Kind,
        m: Affine,
        style: &Style,
    ) -> Option<Map<String, Value>> {
        match kind {
            Kind::Stroke | Kind::Line | Kind::Arrow => {
                let sub = parse_path(node.attribute("d")?).into_iter().next()?;
                let sub = sub.transformed(m);
                let points = if kind == Kind::Stroke {
                    sub.drawn_points()
                        .or_else(|| sub.flatten(self.limits.element.max_points, true))?
                } else {
                    sub.flatten(self.limits.element.max_points, false)?
                };
                let mut fields = Map::new();
                fields.insert("points".into(), points_json(&points));
                fields.insert("color".into(), json!(style.outline()?));
                fields.insert("width".into(), json!(style.width(m)));
                Some(fields)
            }
            Kind::Rect | Kind::Ellipse => shape(node, m, style),
            Kind::Text | Kind::Sticky | Kind::Node => {
                let rect = node.children().find(|n| is(*n, "rect"))?;
                let rect_style = style.inherit(rect);
                let rm = m.then(
                    rect.attribute("transform")
                        .map_or(Some(Affine::IDENTITY), parse_transform)?,
                );
                let mut fields = frame_fields(rect_frame(rect)?, rm)?;
                let label = node.children().find(|n| is(*n, "text"));
                if let Some(label) = label {
                    fields.insert("text".into(), json!(text_lines(label).join("\n")));
                }
                let text_color = label.and_then(|l| style.inherit(l).fill_color());
                match kind {
                    Kind::Node => {
                        if let Some(c) = rect_style.stroke_color() {
                            fields.insert("color".into(), json!(c));
                        }
                        fields.insert("width".into(), json!(rect_style.width(rm)));
                        if let Some(c) = rect_style.fill_color() {
                            fields.insert("fill".into(), json!(c));
                        }
                    }
                    _ => {
                        if let Some(c) = text_color {
                            fields.insert("color".into(), json!(c));
                        }
                        if let Some(c) = rect_style.fill_color() {
                            fields.insert("fill".into(), json!(c));
                        }
                    }
                }
                Some(fields)
            }
            Kind::Edge => {
                let mut fields = Map::new();
                fields.insert("from".into(), json!(node.attribute("data-from")?));
                fields.insert("to".into(), json!(node.attribute("data-to")?));
                if let Some(path) = node.children().find(|n| is(*n, "path")) {
                    let ps = style.inherit(path);
                    if let Some(c) = ps.stroke_color() {
                        fields.insert("color".into(), json!(c));
                    }
                    fields.insert("width".into(), json!(ps.width(m)));
                }
                if let Some(label) = node.children().find(|n| is(*n, "text")) {
                    fields.insert("text".into(), json!(text_lines(label).join("\n")));
                }
                Some(fields)
            }
        }
    }

    /// Checks one element as a live client's would be, and keeps it or counts it as skipped.
    fn add(
        &mut self,
        kind: Kind,
        wanted_id: Option<&str>,
        fields: Option<Map<String, Value>>,
    ) -> Result<(), ImportError> {
        let Some(mut fields) = fields else {
            return self.skip();
        };
        if self.elements.len() >= self.limits.max_elements {
            return Err(ImportError::TooMany {
                max: self.limits.max_elements,
            });
        }
        let id = match wanted_id {
            Some(id) if usable_id(id) && !self.taken.contains(id) => id.to_owned(),
            _ => self.fresh_id(),
        };
        fields.insert("id".into(), json!(id));
        fields.insert("kind".into(), json!(kind_name(kind)));
        match Element::from_client(
            &Value::Object(fields),
            self.user,
            self.room,
            self.limits.element,
        ) {
            Ok(element) => {
                self.taken.insert(id);
                self.elements.push(element);
            }
            Err(_) => self.skip()?,
        }
        Ok(())
    }

    /// Counts one drawn thing left out. Past [`SKIPPED_PER_ELEMENT`] times the element cap the
    /// file is refused: it is mostly what the board cannot hold, and checking each costs time.
    fn skip(&mut self) -> Result<(), ImportError> {
        self.skipped += 1;
        if self.skipped > self.limits.max_elements.saturating_mul(SKIPPED_PER_ELEMENT) {
            return Err(ImportError::TooMany {
                max: self.limits.max_elements,
            });
        }
        Ok(())
    }

    fn fresh_id(&mut self) -> String {
        loop {
            self.next_id += 1;
            let id = format!("imp-{}", self.next_id);
            if !self.taken.contains(&id) && !self.reserved.contains(&id) {
                return id;
            }
        }
    }

    /// Drops edges whose nodes did not make it (the board refuses an edge without both), and
    /// numbers the rest in document order, which is paint order in SVG.
    fn finish(mut self) -> Imported {
        let nodes: HashSet<String> = self
            .elements
            .iter()
            .filter(|e| e.kind == Kind::Node)
            .map(|e| e.id.to_string())
            .collect();
        let has = |id: &Option<super::ids::StrokeId>| {
            id.as_ref().is_some_and(|id| nodes.contains(id.as_str()))
        };
        let before = self.elements.len();
        self.elements
            .retain(|e| e.kind != Kind::Edge || (has(&e.from) && has(&e.to)));
        self.skipped += before - self.elements.len();
        for (i, e) in self.elements.iter_mut().enumerate() {
            e.z = Some(i as f64 + 1.0);
        }
        Imported {
            elements: self.elements,
            skipped: self.skipped,
        }
    }
}

fn points_json(points: &[Point]) -> Value {
    Value::Array(
        points
            .iter()
            .map(|p| json!({"x": round(p.x), "y": round(p.y)}))
            .collect(),
    )
}

/// Board coordinates to a thousandth: no drawing needs more, and numbers stay short on the wire.
fn round(n: f64) -> f64 {
    let r = (n * 1000.0).round() / 1000.0;
    if r.is_finite() { r } else { n }
}

/// `polyline`, `polygon` and `line`: straight segments, so a board line, which the page draws
/// with sharp corners.
fn poly(node: roxmltree::Node, m: Affine, style: &Style) -> Option<Map<String, Value>> {
    let mut points = if node.has_tag_name("line") {
        let at = |name| length(node.attribute(name).unwrap_or("0"));
        vec![
            Point {
                x: at("x1")?,
                y: at("y1")?,
            },
            Point {
                x: at("x2")?,
                y: at("y2")?,
            },
        ]
    } else {
        let numbers = Numbers::new(node.attribute("points")?).collect::<Vec<f64>>();
        numbers
            .chunks_exact(2)
            .map(|c| Point { x: c[0], y: c[1] })
            .collect()
    };
    if node.has_tag_name("polygon")
        && let Some(&first) = points.first()
    {
        points.push(first);
    }
    let points: Vec<Point> = points.into_iter().map(|p| m.apply(p)).collect();
    let mut fields = Map::new();
    fields.insert("points".into(), points_json(&points));
    fields.insert("color".into(), json!(style.outline()?));
    fields.insert("width".into(), json!(style.width(m)));
    Some(fields)
}

/// `rect`, `circle` and `ellipse` as a framed element: the frame goes through the transform
/// (rotation and scale kept; a skew cannot be kept and is dropped).
fn shape(node: roxmltree::Node, m: Affine, style: &Style) -> Option<Map<String, Value>> {
    let at = |name| node.attribute(name).map_or(Some(0.0), length);
    let frame = if node.has_tag_name("rect") {
        rect_frame(node)?
    } else {
        let (rx, ry) = if node.has_tag_name("circle") {
            (at("r")?, at("r")?)
        } else {
            (at("rx")?, at("ry")?)
        };
        let (cx, cy) = (at("cx")?, at("cy")?);
        (cx - rx, cy - ry, 2.0 * rx, 2.0 * ry)
    };
    let mut fields = frame_fields(frame, m)?;
    // The board always outlines a shape; a shape only filled in the source is outlined in its
    // fill colour, so it looks the same.
    if let Some(c) = style.outline() {
        fields.insert("color".into(), json!(c));
    }
    if let Some(c) = style.fill_color() {
        fields.insert("fill".into(), json!(c));
    }
    fields.insert("width".into(), json!(style.width(m)));
    Some(fields)
}

fn rect_frame(node: roxmltree::Node) -> Option<(f64, f64, f64, f64)> {
    let at = |name| node.attribute(name).map_or(Some(0.0), length);
    Some((at("x")?, at("y")?, at("width")?, at("height")?))
}

/// `x, y, w, h` and `rotation` of a frame `(x, y, w, h)` drawn through `m`.
fn frame_fields((x, y, w, h): (f64, f64, f64, f64), m: Affine) -> Option<Map<String, Value>> {
    let (sx, sy, angle) = m.decompose()?;
    let c = m.apply(Point {
        x: x + w / 2.0,
        y: y + h / 2.0,
    });
    let (w, h) = ((w * sx).abs(), (h * sy).abs());
    let mut fields = Map::new();
    fields.insert("x".into(), json!(round(c.x - w / 2.0)));
    fields.insert("y".into(), json!(round(c.y - h / 2.0)));
    fields.insert("w".into(), json!(round(w)));
    fields.insert("h".into(), json!(round(h)));
    if angle.abs() > 1e-9 {
        fields.insert("rotation".into(), json!(angle));
    }
    Some(fields)
}

/// A `<text>` of another program: a board text whose frame is estimated from its lines (there
/// are no font metrics here), placed so its first baseline stays where it was.
fn text(node: roxmltree::Node, m: Affine, style: &Style) -> Option<Map<String, Value>> {
    let lines = text_lines(node);
    if lines.iter().all(|l| l.trim().is_empty()) {
        return None;
    }
    let first = |name| {
        node.attribute(name)
            .or_else(|| {
                node.children()
                    .find(|n| is(*n, "tspan"))
                    .and_then(|t| t.attribute(name))
            })
            .and_then(|v| Numbers::new(v).next())
            .unwrap_or(0.0)
    };
    let (size, pad) = text_style(Kind::Text);
    let lh = size * LINE_HEIGHT;
    let chars = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let w = chars as f64 * size * 0.55 + 2.0 * pad;
    let h = lines.len() as f64 * lh + 2.0 * pad;
    // The source's font size scales the frame; the board's text keeps its own size.
    let k = style.font_size / size;
    let anchor = node.attribute("text-anchor").or(style.anchor.as_deref());
    let shift = match anchor {
        Some("middle") => w * k / 2.0,
        Some("end") => w * k,
        _ => 0.0,
    };
    let x = first("x") - shift - pad * k;
    let y = first("y") - (size * ASCENT + (lh - size) / 2.0 + pad) * k;
    let local = Affine([k, 0.0, 0.0, k, x, y]);
    let mut fields = frame_fields((0.0, 0.0, w, h), m.then(local))?;
    fields.insert("text".into(), json!(lines.join("\n")));
    if let Some(c) = style.fill_color() {
        fields.insert("color".into(), json!(c));
    }
    Some(fields)
}

/// The lines of a `<text>`: each `<tspan>` that sets its own position starts a line. Whitespace
/// is collapsed as SVG shows it, unless the text asks for it to be kept (ours does).
fn text_lines(node: roxmltree::Node) -> Vec<String> {
    let preserve = node
        .attribute(("http://www.w3.org/XML/1998/namespace", "space"))
        .is_some_and(|v| v == "preserve");
    let mut lines: Vec<String> = vec![String::new()];
    // Whether a line has begun: the first positioned tspan continues the text's own line.
    let mut begun = false;
    for child in node.children() {
        if child.is_text() {
            let text = child.text().unwrap_or("");
            begun |= !text.trim().is_empty();
            if let Some(last) = lines.last_mut() {
                last.push_str(text);
            }
        } else if is(child, "tspan") {
            let positioned = ["x", "y", "dy"]
                .iter()
                .any(|a| child.attribute(*a).is_some());
            if positioned && begun {
                lines.push(String::new());
            } else if positioned {
                lines[0].clear();
            }
            begun = true;
            let content: String = child
                .descendants()
                .filter(|n| n.is_text())
                .filter_map(|n| n.text())
                .collect();
            if let Some(last) = lines.last_mut() {
                last.push_str(&content);
            }
        }
    }
    lines
        .into_iter()
        .map(|l| {
            if preserve {
                l.replace(['\n', '\r', '\t'], " ")
            } else {
                l.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::style::parse_color;
    use super::*;
    use proptest::prelude::*;

    const ELEMENT_LIMITS: ElementLimits = ElementLimits { max_points: 5_000 };

    fn limits() -> ImportLimits {
        ImportLimits::new(ELEMENT_LIMITS)
    }

    fn user() -> UserId {
        UserId::new("u1")
    }

    fn room() -> RoomId {
        RoomId::new("r1")
    }

    fn el(v: Value) -> Element {
        Element::from_client(&v, &user(), &room(), ELEMENT_LIMITS).expect("valid element")
    }

    fn read(svg: &str) -> Imported {
        import(svg.as_bytes(), &user(), &room(), limits()).expect("imports")
    }

    fn doc(body: &str) -> String {
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">{body}</svg>"#)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-3
    }

    fn pts(e: &Element) -> Vec<(f64, f64)> {
        e.points
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|p| (p.x, p.y))
            .collect()
    }

    fn assert_points(e: &Element, want: &[(f64, f64)]) {
        let got = pts(e);
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(close(g.0, w.0) && close(g.1, w.1), "{got:?} vs {want:?}");
        }
    }

    fn frame(e: &Element) -> (f64, f64, f64, f64) {
        (
            e.x.unwrap_or(f64::NAN),
            e.y.unwrap_or(f64::NAN),
            e.w.unwrap_or(f64::NAN),
            e.h.unwrap_or(f64::NAN),
        )
    }

    fn assert_frame(e: &Element, want: (f64, f64, f64, f64)) {
        let f = frame(e);
        assert!(
            close(f.0, want.0) && close(f.1, want.1) && close(f.2, want.2) && close(f.3, want.3),
            "{f:?} vs {want:?}"
        );
    }

    /// One element of every kind, as a board would hold them.
    fn board() -> Vec<Element> {
        vec![
            el(
                json!({"id": "s1", "kind": "stroke", "color": "#e53935", "width": 4,
                "points": [{"x": 10, "y": 10}, {"x": 30, "y": 40}, {"x": 60, "y": 20}, {"x": 90, "y": 50}]}),
            ),
            el(
                json!({"id": "dot", "kind": "stroke", "color": "#000", "width": 6,
                "points": [{"x": 5, "y": 5}]}),
            ),
            el(json!({"id": "l1", "kind": "line", "width": 2,
                "points": [{"x": 0, "y": 100}, {"x": 50, "y": 120}, {"x": 80, "y": 100}]})),
            el(
                json!({"id": "a1", "kind": "arrow", "color": "#1e88e5", "width": 3,
                "points": [{"x": 0, "y": 150}, {"x": 100, "y": 150}]}),
            ),
            el(
                json!({"id": "r1", "kind": "rect", "x": 200, "y": 10, "w": 80, "h": 40,
                "color": "#ff0000", "fill": "#ff0000", "width": 2, "rotation": 0.5}),
            ),
            el(
                json!({"id": "e1", "kind": "ellipse", "x": 300, "y": 10, "w": 60, "h": 30,
                "color": "#00ff0080"}),
            ),
            el(
                json!({"id": "t1", "kind": "text", "x": 10, "y": 200, "w": 200, "h": 60,
                "text": "first line\nsecond <line> & \"more\" 'x'", "color": "#333333"}),
            ),
            el(
                json!({"id": "k1", "kind": "sticky", "x": 250, "y": 200, "w": 120, "h": 120,
                "text": "note", "fill": "#fff59d", "rotation": -0.25}),
            ),
            el(
                json!({"id": "n1", "kind": "node", "x": 400, "y": 200, "w": 100, "h": 50,
                "text": "start", "fill": "#ffffff", "color": "#1d2430", "width": 2}),
            ),
            el(
                json!({"id": "n2", "kind": "node", "x": 600, "y": 200, "w": 100, "h": 50,
                "text": "end"}),
            ),
            el(
                json!({"id": "g1", "kind": "edge", "from": "n1", "to": "n2", "text": "next",
                "color": "#444444", "width": 2}),
            ),
        ]
    }

    // ---- export ---------------------------------------------------------------------------

    #[test]
    fn an_export_is_a_well_formed_svg_with_one_tagged_element_per_board_element() {
        let svg = export(&board());
        assert!(svg.starts_with("<?xml version=\"1.0\""), "{svg}");
        let parsed = roxmltree::Document::parse(&svg).expect("well-formed");
        let root = parsed.root_element();
        assert!(root.has_tag_name((SVG_NS, "svg")));
        assert_eq!(root.attribute("version"), Some("1.1"));
        let tagged: Vec<(&str, &str, &str)> = root
            .children()
            .filter(|n| n.attribute("data-id").is_some())
            .map(|n| {
                (
                    n.tag_name().name(),
                    n.attribute("data-kind").unwrap_or(""),
                    n.attribute("data-id").unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            tagged,
            [
                ("path", "stroke", "s1"),
                ("path", "stroke", "dot"),
                ("path", "line", "l1"),
                ("path", "arrow", "a1"),
                ("rect", "rect", "r1"),
                ("ellipse", "ellipse", "e1"),
                ("g", "text", "t1"),
                ("g", "sticky", "k1"),
                ("g", "node", "n1"),
                ("g", "node", "n2"),
                ("g", "edge", "g1"),
            ]
        );
        // Arrow heads: one marker per colour, defined once.
        let markers: Vec<&str> = parsed
            .descendants()
            .filter(|n| n.has_tag_name("marker"))
            .filter_map(|n| n.attribute("id"))
            .collect();
        assert_eq!(markers, ["arrow-1e88e5", "arrow-444444"]);
    }

    #[test]
    fn strokes_are_smoothed_paths_in_their_colour_and_width() {
        let svg = export(&board()[..1]);
        let parsed = roxmltree::Document::parse(&svg).expect("well-formed");
        let path = parsed
            .descendants()
            .find(|n| n.has_tag_name("path"))
            .expect("a path");
        assert_eq!(
            path.attribute("d"),
            Some("M10 10Q30 40 45 30Q60 20 75 35L90 50")
        );
        assert_eq!(path.attribute("stroke"), Some("#e53935"));
        assert_eq!(path.attribute("stroke-width"), Some("4"));
        assert_eq!(path.attribute("fill"), Some("none"));
        assert_eq!(path.attribute("stroke-linecap"), Some("round"));
        assert_eq!(path.attribute("stroke-linejoin"), Some("round"));
        // The viewBox covers the points, half the width and the margin.
        assert_eq!(
            parsed.root_element().attribute("viewBox"),
            Some("-8 -8 116 76")
        );
    }

    #[test]
    fn shapes_carry_rotation_fill_and_opacity() {
        let svg = export(&board()[4..6]);
        let parsed = roxmltree::Document::parse(&svg).expect("well-formed");
        let rect = parsed
            .descendants()
            .find(|n| n.has_tag_name("rect"))
            .expect("rect");
        assert_eq!(rect.attribute("fill"), Some("#ff0000"));
        assert_eq!(rect.attribute("transform"), Some("rotate(28.64789 240 30)"));
        let ellipse = parsed
            .descendants()
            .find(|n| n.has_tag_name("ellipse"))
            .expect("ellipse");
        assert_eq!(ellipse.attribute("fill"), Some("none"));
        // SVG 1.1 has no #rrggbbaa: the alpha becomes an opacity.
        assert_eq!(ellipse.attribute("stroke"), Some("#00ff00"));
        assert_eq!(ellipse.attribute("stroke-opacity"), Some("0.502"));
        assert_eq!(
            (ellipse.attribute("cx"), ellipse.attribute("rx")),
            (Some("330"), Some("30"))
        );
    }

    #[test]
    fn text_is_escaped_split_into_tspans_and_rid_of_control_characters() {
        let t = el(
            json!({"id": "t<&\"'>", "kind": "text", "x": 0, "y": 0, "w": 100, "h": 50,
            "text": "a<b & \"c\" 'd'\u{1}\u{7}\nline ]]> two\u{FFFF}"}),
        );
        let svg = export(&[t]);
        assert!(!svg.contains('\u{1}') && !svg.contains('\u{FFFF}'));
        let parsed = roxmltree::Document::parse(&svg).expect("well-formed");
        let g = parsed
            .descendants()
            .find(|n| n.attribute("data-kind") == Some("text"))
            .expect("group");
        assert_eq!(g.attribute("data-id"), Some("t<&\"'>"));
        let lines: Vec<String> = g
            .descendants()
            .filter(|n| n.has_tag_name("tspan"))
            .map(|n| n.text().unwrap_or("").to_owned())
            .collect();
        assert_eq!(lines, ["a<b & \"c\" 'd'", "line ]]> two"]);
    }

    #[test]
    fn edges_run_between_node_borders_and_vanish_without_their_nodes() {
        let b = board();
        let svg = export(&b[8..]);
        let parsed = roxmltree::Document::parse(&svg).expect("well-formed");
        let edge = parsed
            .descendants()
            .find(|n| n.attribute("data-kind") == Some("edge"))
            .expect("edge");
        let path = edge
            .children()
            .find(|n| n.has_tag_name("path"))
            .expect("path");
        assert_eq!(path.attribute("d"), Some("M500 225L600 225"));
        assert_eq!(path.attribute("marker-end"), Some("url(#arrow-444444)"));
        let lonely = export(&b[10..]);
        assert!(!lonely.contains("data-kind=\"edge\""), "{lonely}");
    }

    #[test]
    fn an_empty_board_exports_the_home_view() {
        let svg = export(&[]);
        let parsed = roxmltree::Document::parse(&svg).expect("well-formed");
        assert_eq!(
            parsed.root_element().attribute("viewBox"),
            Some("0 0 1600 1000")
        );
    }

    // ---- import ---------------------------------------------------------------------------

    #[test]
    fn paths_of_every_command_become_strokes_one_per_subpath() {
        let got = read(&doc(r##"<path stroke="#00f" stroke-width="3" fill="none"
                d="M10 10 L20 10 H30 V20 l-10 0 h-5 v5 z m50 50 30 0"/>"##));
        assert_eq!(got.skipped, 0);
        assert_eq!(got.elements.len(), 2);
        let first = &got.elements[0];
        assert_eq!(first.kind, Kind::Stroke);
        assert_eq!(first.color.as_deref(), Some("#0000ff"));
        assert_eq!(first.width, Some(3.0));
        // Corners are doubled so the page's smoothing keeps them sharp; Z closes the subpath.
        assert_points(
            first,
            &[
                (10.0, 10.0),
                (20.0, 10.0),
                (20.0, 10.0),
                (30.0, 10.0),
                (30.0, 10.0),
                (30.0, 20.0),
                (30.0, 20.0),
                (20.0, 20.0),
                (20.0, 20.0),
                (15.0, 20.0),
                (15.0, 20.0),
                (15.0, 25.0),
                (15.0, 25.0),
                (10.0, 10.0),
            ],
        );
        // After Z the current point is the subpath's start: m50 50 goes to (60, 60).
        assert_points(&got.elements[1], &[(60.0, 60.0), (90.0, 60.0)]);
    }

    #[test]
    fn curves_and_arcs_are_flattened_onto_the_true_curve() {
        let got = read(&doc(
            r#"<path stroke="black" d="M0 0 C0 50 100 50 100 0 S200 -50 200 0"/>
               <path stroke="black" d="M0 0 Q50 100 100 0 T200 0"/>
               <path stroke="black" d="M100 0 A100 100 0 0 1 0 100"/>
               <path stroke="black" d="M0,0q50,100,100,0t100,0"/>"#,
        ));
        assert_eq!(got.elements.len(), 4);
        let cubic = pts(&got.elements[0]);
        // The first cubic's middle is at (50, 37.5); S reflects its control point.
        assert!(cubic.iter().any(|p| close(p.0, 50.0) && close(p.1, 37.5)));
        assert!(cubic.iter().any(|p| close(p.0, 150.0) && close(p.1, -37.5)));
        assert_eq!(cubic.last().copied(), Some((200.0, 0.0)));
        let quad = pts(&got.elements[1]);
        assert!(quad.iter().any(|p| close(p.0, 50.0) && close(p.1, 50.0)));
        assert!(quad.iter().any(|p| close(p.0, 150.0) && close(p.1, -50.0)));
        // Every point of the quarter circle is 100 from its centre (0, 0), within 0.1%.
        let arc = pts(&got.elements[2]);
        assert!(arc.len() > 8);
        for (x, y) in &arc {
            assert!((x.hypot(*y) - 100.0).abs() < 0.1, "{x} {y}");
        }
        assert_eq!(arc.first().copied(), Some((100.0, 0.0)));
        assert_eq!(arc.last().copied(), Some((0.0, 100.0)));
        assert_eq!(pts(&got.elements[3]), quad, "relative equals absolute");
    }

    #[test]
    fn transforms_compose_through_groups() {
        let got = read(&doc(r#"<g transform="translate(100 50)">
                 <g transform="scale(2)">
                   <line x1="0" y1="0" x2="10" y2="0" stroke="red" stroke-width="1"/>
                   <rect x="0" y="0" width="10" height="5" transform="rotate(90)" stroke="red"/>
                 </g>
                 <polyline points="0,0 10,0 10,10" stroke="red" transform="matrix(1 0 0 1 5 5)"/>
                 <polygon points="0 0 10 0 10 10" stroke="red" transform="skewX(45)"/>
                 <circle cx="0" cy="0" r="5" fill="blue" transform="rotate(45 0 0) translate(10)"/>
               </g>"#));
        assert_eq!(got.skipped, 0);
        let kinds: Vec<Kind> = got.elements.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Line,
                Kind::Rect,
                Kind::Line,
                Kind::Line,
                Kind::Ellipse
            ]
        );
        let line = &got.elements[0];
        assert_points(line, &[(100.0, 50.0), (120.0, 50.0)]);
        assert_eq!(line.width, Some(2.0), "the width scales with the drawing");
        assert_eq!(line.color.as_deref(), Some("#ff0000"));
        // rect (0,0,10,5) turned a quarter about the origin, doubled, moved: centre (95, 60).
        let rect = &got.elements[1];
        assert_frame(rect, (85.0, 55.0, 20.0, 10.0));
        assert!(close(
            rect.rotation.unwrap_or(0.0),
            std::f64::consts::FRAC_PI_2
        ));
        assert_points(
            &got.elements[2],
            &[(105.0, 55.0), (115.0, 55.0), (115.0, 65.0)],
        );
        // skewX(45): x += y.
        assert_points(
            &got.elements[3],
            &[(100.0, 50.0), (110.0, 50.0), (120.0, 60.0), (100.0, 50.0)],
        );
        let circle = &got.elements[4];
        let c = 10.0 / 2f64.sqrt();
        assert_frame(circle, (100.0 + c - 5.0, 50.0 + c - 5.0, 10.0, 10.0));
        assert_eq!(circle.fill.as_deref(), Some("#0000ff"));
        assert_eq!(
            circle.color.as_deref(),
            Some("#0000ff"),
            "a fill-only shape is outlined in its fill"
        );
    }

    #[test]
    fn style_attributes_override_presentation_attributes_and_inherit() {
        let got = read(&doc(
            r#"<g style="stroke: rgb(0, 128, 255); stroke-width: 4px" opacity="0.5">
                 <path d="M0 0 L10 10" stroke="red" style="stroke-opacity:1"/>
                 <path d="M0 0 L10 10"/>
                 <ellipse cx="50" cy="50" rx="20" ry="10" style="fill:none"/>
                 <path d="M0 0 L10 10" style="stroke:none;fill:none"/>
                 <path d="M0 0 L10 10" display="none" stroke="red"/>
               </g>"#,
        ));
        assert_eq!(got.elements.len(), 3);
        // Its own attribute beats the group's style; the group's opacity still applies.
        assert_eq!(got.elements[0].color.as_deref(), Some("#ff000080"));
        assert_eq!(got.elements[0].width, Some(4.0));
        assert_eq!(got.elements[1].color.as_deref(), Some("#0080ff80"));
        let e = &got.elements[2];
        assert_frame(e, (30.0, 40.0, 40.0, 20.0));
        assert_eq!(e.fill, None);
    }

    #[test]
    fn texts_keep_their_lines_and_first_baseline() {
        let got = read(&doc(r#"<text x="10" y="40" font-size="20" fill="green">
                 <tspan x="10" y="40">Hello   &amp; welcome</tspan>
                 <tspan x="10" dy="25">to &lt;the&gt; board</tspan>
               </text>"#));
        assert_eq!(got.elements.len(), 1);
        let t = &got.elements[0];
        assert_eq!(t.kind, Kind::Text);
        assert_eq!(t.text.as_deref(), Some("Hello & welcome\nto <the> board"));
        assert_eq!(t.color.as_deref(), Some("#008000"));
        // The board's text (size 20, pad 4, line height 25) has its first baseline at y = 40.
        let (x, y, _, h) = frame(t);
        assert!(
            close(x, 6.0) && close(y, 40.0 - 16.0 - 2.5 - 4.0),
            "{x} {y}"
        );
        assert!(close(h, 2.0 * 25.0 + 8.0));
    }

    #[test]
    fn unsupported_elements_are_skipped_and_counted_and_metadata_ignored() {
        let got = read(&doc(
            r##"<title>t</title><defs><linearGradient id="g"/></defs>
               <image href="x.png" width="10" height="10"/>
               <foreignObject width="10" height="10"><div xmlns="http://www.w3.org/1999/xhtml">x</div></foreignObject>
               <use href="#a"/><blink/>
               <sodipodi:namedview xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"/>
               <rect width="10" height="10" fill="url(#g)"/>"##,
        ));
        assert_eq!(got.skipped, 4);
        assert_eq!(got.elements.len(), 1);
        assert_eq!(got.elements[0].fill.as_deref(), Some("#808080"));
        assert_eq!(got.elements[0].id.as_str(), "imp-1");
    }

    #[test]
    fn elements_the_board_refuses_are_skipped_not_fatal() {
        let many: String = (0..6_000).map(|i| format!("L{i} 0")).collect();
        let got = read(&doc(&format!(
            r#"<rect x="2e7" y="0" width="10" height="10" stroke="red"/>
               <rect x="0" y="0" width="10" height="10" transform="scale(0)"/>
               <rect x="0" y="0" width="10" height="10" transform="rotate(oops)"/>
               <path stroke="red" d="M0 0{many}"/>"#
        )));
        assert_eq!(got.skipped, 3);
        assert_eq!(got.elements.len(), 1);
        let stroke = &got.elements[0];
        let points = pts(stroke);
        assert_eq!(
            points.len(),
            ELEMENT_LIMITS.max_points,
            "thinned to the limit"
        );
        assert_eq!(points.first().copied(), Some((0.0, 0.0)));
        assert_eq!(points.last().copied(), Some((5_999.0, 0.0)));
    }

    #[test]
    fn ids_come_from_data_id_when_usable_and_never_collide() {
        let long = "x".repeat(65);
        let got = read(&doc(&format!(
            r#"<rect data-id="imp-1" data-kind="rect" width="1" height="1"/>
               <rect data-id="dup" data-kind="rect" width="1" height="1"/>
               <rect data-id="dup" data-kind="rect" width="1" height="1"/>
               <rect data-id="{long}" data-kind="rect" width="1" height="1"/>
               <rect width="1" height="1"/>"#
        )));
        let ids: Vec<&str> = got.elements.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["imp-1", "dup", "imp-2", "imp-3", "imp-4"]);
        let z: Vec<f64> = got.elements.iter().filter_map(|e| e.z).collect();
        assert_eq!(z, [1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn edges_without_both_nodes_are_skipped() {
        let got = read(&doc(
            r#"<g data-id="n1" data-kind="node"><rect x="0" y="0" width="10" height="10"/></g>
               <g data-id="e1" data-kind="edge" data-from="n1" data-to="gone"><path d="M0 0L1 1"/></g>"#,
        ));
        assert_eq!(got.skipped, 1);
        assert_eq!(got.elements.len(), 1);
        assert_eq!(got.elements[0].kind, Kind::Node);
    }

    #[test]
    fn our_export_comes_back_as_the_same_board() {
        let original = board();
        let back = read(&export(&original));
        assert_eq!(back.skipped, 0);
        assert_eq!(back.elements.len(), original.len());
        for (a, b) in original.iter().zip(&back.elements) {
            assert_eq!((a.kind, &a.id), (b.kind, &b.id));
            assert_eq!(pts(a), pts(b), "{}", a.id);
            if a.kind.framed_for_tests() {
                assert_frame(b, frame(a));
                let turn = |r: f64| r.rem_euclid(std::f64::consts::TAU);
                assert!(
                    (turn(a.rotation.unwrap_or(0.0)) - turn(b.rotation.unwrap_or(0.0))).abs()
                        < 1e-6,
                    "{}",
                    a.id
                );
            }
            // Colours come back in their long form (#000 as #000000); an absent one may come
            // back as the default the page paints.
            let long = |c: &Option<String>| c.as_deref().and_then(parse_color);
            if a.color.is_some() {
                assert_eq!(long(&a.color), long(&b.color), "{}", a.id);
            }
            if a.fill.is_some() {
                assert_eq!(long(&a.fill), long(&b.fill), "{}", a.id);
            }
            assert_eq!(a.text, b.text, "{}", a.id);
            assert_eq!((&a.from, &a.to), (&b.from, &b.to));
            if a.width.is_some() {
                assert_eq!(a.width, b.width, "{}", a.id);
            }
        }
        // A second trip changes nothing more.
        let again = read(&export(&back.elements));
        assert_eq!(again.elements, back.elements);
    }

    impl Kind {
        fn framed_for_tests(self) -> bool {
            matches!(
                self,
                Kind::Rect | Kind::Ellipse | Kind::Text | Kind::Sticky | Kind::Node
            )
        }
    }

    // ---- hostile input --------------------------------------------------------------------

    fn refused(bytes: &[u8]) -> ImportError {
        import(bytes, &user(), &room(), limits()).expect_err("refused")
    }

    #[test]
    fn garbage_and_other_documents_are_unreadable_with_a_reason() {
        for bad in [
            &b""[..],
            b"not xml at all",
            b"<svg xmlns='http://www.w3.org/2000/svg'><rect></svg>",
            b"<html><body/></html>",
            b"\xff\xfe<svg/>",
        ] {
            let err = refused(bad);
            assert!(
                matches!(err, ImportError::Unreadable(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(err.to_string().starts_with("unreadable SVG: "), "{err}");
        }
        assert_eq!(
            refused(b"<html/>").to_string(),
            "unreadable SVG: the document is a <html>, not an <svg>"
        );
    }

    #[test]
    fn dtds_and_entity_bombs_are_refused() {
        let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE svg [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<svg xmlns="http://www.w3.org/2000/svg"><text>&lol9;</text></svg>"#;
        assert_eq!(
            refused(laughs.as_bytes()),
            ImportError::Unreadable("DTDs and entities are not accepted".into())
        );
        let external = r#"<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>"#;
        assert!(matches!(
            refused(external.as_bytes()),
            ImportError::Unreadable(_)
        ));
    }

    #[test]
    fn too_many_elements_and_deep_nesting_are_refused_whole() {
        let many: String = (0..5_001)
            .map(|i| format!(r#"<rect x="{i}" width="1" height="1"/>"#))
            .collect();
        assert_eq!(
            refused(doc(&many).as_bytes()),
            ImportError::TooMany { max: 5_000 }
        );
        let subpaths: String = (0..5_001).map(|i| format!("M{i} 0L{i} 1")).collect();
        let err = refused(doc(&format!(r#"<path stroke="red" d="{subpaths}"/>"#)).as_bytes());
        assert_eq!(err.to_string(), "the drawing has more than 5000 elements");
        let unsupported = "<image/>".repeat(20_001);
        assert_eq!(
            refused(doc(&unsupported).as_bytes()),
            ImportError::TooMany { max: 5_000 }
        );
        let deep = format!(
            "{}<rect width='1' height='1'/>{}",
            "<g>".repeat(100_000),
            "</g>".repeat(100_000)
        );
        assert_eq!(
            refused(doc(&deep).as_bytes()),
            ImportError::TooDeep { max: 64 }
        );
        let fine = format!(
            "{}<rect width='1' height='1'/>{}",
            "<g>".repeat(60),
            "</g>".repeat(60)
        );
        assert_eq!(read(&doc(&fine)).elements.len(), 1);
    }

    // ---- never a panic --------------------------------------------------------------------

    fn arb_point() -> impl Strategy<Value = Value> {
        (-1e4f64..1e4, -1e4f64..1e4).prop_map(|(x, y)| json!({"x": x, "y": y}))
    }

    fn arb_color() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("#[0-9a-f]{3}|#[0-9a-f]{6}|#[0-9a-f]{8}")
    }

    /// Any element the live check accepts (edges point at nodes `n0`..`n2`, which may be absent).
    fn arb_element() -> impl Strategy<Value = Value> {
        (
            0usize..9,
            "[a-z0-9<&\"'>]{1,12}",
            proptest::collection::vec(arb_point(), 2..12),
            (-1e4f64..1e4, -1e4f64..1e4, 0f64..1e3, 0f64..1e3),
            proptest::option::of(-10f64..10.0),
            (arb_color(), arb_color()),
            0.1f64..100.0,
            proptest::option::of("\\PC{0,40}"),
            (0u8..3, 0u8..3),
        )
            .prop_map(
                |(kind, id, points, (x, y, w, h), rotation, (color, fill), width, text, (a, b))| {
                    let kind = kind_name(
                        [
                            Kind::Stroke,
                            Kind::Line,
                            Kind::Arrow,
                            Kind::Rect,
                            Kind::Ellipse,
                            Kind::Text,
                            Kind::Sticky,
                            Kind::Node,
                            Kind::Edge,
                        ][kind],
                    );
                    let mut v = json!({"id": id, "kind": kind});
                    let framed = ["rect", "ellipse", "text", "sticky", "node"].contains(&kind);
                    if framed {
                        v["x"] = json!(x);
                        v["y"] = json!(y);
                        v["w"] = json!(w);
                        v["h"] = json!(h);
                        if let Some(r) = rotation {
                            v["rotation"] = json!(r);
                        }
                        if let Some(f) = &fill {
                            v["fill"] = json!(f);
                        }
                    } else if kind == "edge" {
                        v["from"] = json!(format!("n{a}"));
                        v["to"] = json!(format!("n{b}"));
                    } else {
                        v["points"] = Value::Array(points);
                    }
                    if let Some(c) = color.or_else(|| (kind == "stroke").then(|| "#000".into())) {
                        v["color"] = json!(c);
                    }
                    if !["text", "sticky"].contains(&kind) {
                        v["width"] = json!(width);
                    }
                    if ["text", "sticky", "node", "edge"].contains(&kind)
                        && let Some(t) = text
                    {
                        v["text"] = json!(t);
                    }
                    v
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = import(&bytes, &user(), &room(), limits());
        }

        #[test]
        fn arbitrary_path_data_and_transforms_never_panic(
            d in "[MmLlHhVvCcSsQqTtAaZz0-9 ,.eE+-]{0,80}",
            t in "(matrix|translate|scale|rotate|skewX|skewY)\\([0-9 ,.eE+-]{0,30}\\)",
        ) {
            let svg = doc(&format!(r#"<g transform="{t}"><path stroke="red" d="{d}"/></g>"#));
            let _ = import(svg.as_bytes(), &user(), &room(), limits());
        }

        #[test]
        fn mutated_exports_never_panic(
            cut in any::<prop::sample::Index>(),
            junk in "\\PC{0,12}",
            flip in any::<prop::sample::Index>(),
        ) {
            let svg = export(&board());
            let mut bytes = svg.into_bytes();
            let at = cut.index(bytes.len());
            bytes.splice(at..at, junk.bytes());
            let i = flip.index(bytes.len());
            bytes[i] ^= 0x20;
            let _ = import(&bytes, &user(), &room(), limits());
        }

        #[test]
        fn any_board_exports_to_an_svg_that_imports(elements in proptest::collection::vec(arb_element(), 0..12)) {
            let mut board: Vec<Element> = Vec::new();
            for v in elements {
                if let Ok(e) = Element::from_client(&v, &user(), &room(), ELEMENT_LIMITS)
                    && board.iter().all(|b| b.id != e.id) {
                        board.push(e);
                    }
            }
            let svg = export(&board);
            prop_assert!(roxmltree::Document::parse(&svg).is_ok(), "{}", svg);
            let back = import(svg.as_bytes(), &user(), &room(), limits());
            prop_assert!(back.is_ok(), "{:?}", back);
        }
    }
}
