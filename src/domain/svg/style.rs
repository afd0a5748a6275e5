//! Presentation for the import: colours, opacities, line widths and font sizes, read from
//! attributes and the `style` attribute and inherited down the tree, and the few CSS units a
//! drawing uses.

use super::geometry::Affine;
use super::{DEFAULT_WIDTH, round};

/// The presentation attributes the import reads, as inherited down the tree.
#[derive(Clone, Debug)]
pub(super) struct Style {
    pub(super) stroke: Option<[u8; 3]>,
    pub(super) fill: Option<[u8; 3]>,
    pub(super) stroke_width: f64,
    pub(super) stroke_opacity: f64,
    pub(super) fill_opacity: f64,
    /// Group opacity, multiplied down: an approximation of compositing, good enough for colour.
    pub(super) opacity: f64,
    pub(super) font_size: f64,
    pub(super) anchor: Option<String>,
    pub(super) hidden: bool,
}

impl Default for Style {
    /// SVG's initial values: no stroke, black fill, width 1.
    fn default() -> Self {
        Self {
            stroke: None,
            fill: Some([0, 0, 0]),
            stroke_width: 1.0,
            stroke_opacity: 1.0,
            fill_opacity: 1.0,
            opacity: 1.0,
            font_size: 16.0,
            anchor: None,
            hidden: false,
        }
    }
}

impl Style {
    /// This element's style: its parent's, overridden by its attributes, then by its `style`.
    pub(super) fn inherit(&self, node: roxmltree::Node) -> Self {
        let mut s = self.clone();
        let mut props: Vec<(&str, &str)> = Vec::new();
        for attr in node.attributes() {
            if attr.namespace().is_none() {
                props.push((attr.name(), attr.value()));
            }
        }
        if let Some(style) = node.attribute("style") {
            for decl in style.split(';') {
                if let Some((k, v)) = decl.split_once(':') {
                    props.push((k.trim(), v.trim()));
                }
            }
        }
        for (name, value) in props {
            let value = value.trim_end_matches("!important").trim();
            match name {
                "stroke" => s.stroke = parse_paint(value, s.stroke),
                "fill" => s.fill = parse_paint(value, s.fill),
                "stroke-width" => {
                    if let Some(w) = length(value) {
                        s.stroke_width = w;
                    }
                }
                "stroke-opacity" => s.stroke_opacity = opacity(value, s.stroke_opacity),
                "fill-opacity" => s.fill_opacity = opacity(value, s.fill_opacity),
                "opacity" => s.opacity *= opacity(value, 1.0),
                "font-size" => {
                    if let Some(size) = length(value).filter(|n| *n > 0.0) {
                        s.font_size = size;
                    }
                }
                "text-anchor" => s.anchor = Some(value.to_owned()),
                "display" => s.hidden |= value == "none",
                "visibility" => s.hidden = value == "hidden" || value == "collapse",
                _ => {}
            }
        }
        s
    }

    pub(super) fn stroke_color(&self) -> Option<String> {
        self.stroke
            .map(|c| hex(c, self.stroke_opacity * self.opacity))
    }

    pub(super) fn fill_color(&self) -> Option<String> {
        self.fill.map(|c| hex(c, self.fill_opacity * self.opacity))
    }

    /// The colour a board outline takes: the stroke, or the fill for a shape drawn filled only.
    pub(super) fn outline(&self) -> Option<String> {
        self.stroke_color().or_else(|| self.fill_color())
    }

    /// The line width in board units, kept within what the board accepts.
    pub(super) fn width(&self, m: Affine) -> f64 {
        let w = self.stroke_width * m.scale();
        if w.is_finite() && w > 0.0 {
            round(w.clamp(0.5, 100.0))
        } else {
            DEFAULT_WIDTH
        }
    }
}

fn opacity(value: &str, otherwise: f64) -> f64 {
    let v = match value.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|n| n / 100.0),
        None => value.parse::<f64>(),
    };
    v.ok()
        .filter(|n| n.is_finite())
        .map_or(otherwise, |n| n.clamp(0.0, 1.0))
}

fn hex([r, g, b]: [u8; 3], alpha: f64) -> String {
    if alpha >= 1.0 {
        format!("#{r:02x}{g:02x}{b:02x}")
    } else {
        let a = (alpha.clamp(0.0, 1.0) * 255.0).round() as u8;
        format!("#{r:02x}{g:02x}{b:02x}{a:02x}")
    }
}

/// A paint value: `none`, a colour, or `inherit`; a gradient or pattern (`url(#g) fallback`)
/// becomes its fallback or a neutral grey, since the board has flat colours only.
fn parse_paint(value: &str, inherited: Option<[u8; 3]>) -> Option<[u8; 3]> {
    let value = value.trim();
    match value {
        "none" => None,
        "inherit" => inherited,
        // No `color` property is tracked; black is what most documents mean by it.
        "currentColor" => Some([0, 0, 0]),
        v if v.starts_with("url(") => {
            let fallback = v.split_once(')').map_or("", |(_, rest)| rest.trim());
            parse_color(fallback).or(Some([128, 128, 128]))
        }
        v => parse_color(v).or(inherited),
    }
}

/// `#rgb`, `#rrggbb`, `rgb(r, g, b)` (numbers or percentages) and the common colour names.
pub(super) fn parse_color(value: &str) -> Option<[u8; 3]> {
    let v = value.trim().to_ascii_lowercase();
    if let Some(h) = v.strip_prefix('#') {
        let digit = |i: usize, len: usize| u8::from_str_radix(h.get(i..i + len)?, 16).ok();
        return match h.len() {
            3 => Some([digit(0, 1)? * 17, digit(1, 1)? * 17, digit(2, 1)? * 17]),
            6 => Some([digit(0, 2)?, digit(2, 2)?, digit(4, 2)?]),
            _ => None,
        };
    }
    if let Some(args) = v.strip_prefix("rgb(").or_else(|| v.strip_prefix("rgba(")) {
        let args = args.strip_suffix(')')?;
        let mut out = [0u8; 3];
        let mut parts = args.split([',', ' ']).filter(|s| !s.is_empty());
        for slot in &mut out {
            let part = parts.next()?;
            let n = match part.strip_suffix('%') {
                Some(p) => p.parse::<f64>().ok()? * 2.55,
                None => part.parse::<f64>().ok()?,
            };
            *slot = n.clamp(0.0, 255.0).round() as u8;
        }
        return Some(out);
    }
    Some(match v.as_str() {
        "black" => [0, 0, 0],
        "white" => [255, 255, 255],
        "red" => [255, 0, 0],
        "green" => [0, 128, 0],
        "lime" => [0, 255, 0],
        "blue" => [0, 0, 255],
        "yellow" => [255, 255, 0],
        "orange" => [255, 165, 0],
        "purple" => [128, 0, 128],
        "magenta" | "fuchsia" => [255, 0, 255],
        "cyan" | "aqua" => [0, 255, 255],
        "gray" | "grey" => [128, 128, 128],
        "silver" => [192, 192, 192],
        "maroon" => [128, 0, 0],
        "navy" => [0, 0, 128],
        "olive" => [128, 128, 0],
        "teal" => [0, 128, 128],
        "brown" => [165, 42, 42],
        "pink" => [255, 192, 203],
        "darkgray" | "darkgrey" => [169, 169, 169],
        "lightgray" | "lightgrey" => [211, 211, 211],
        _ => return None,
    })
}

/// A length in user units: plain numbers and `px`, and absolute units at CSS's 96 dpi.
/// Percentages and font-relative units need a context the import does not track: `None`.
pub(super) fn length(value: &str) -> Option<f64> {
    let v = value.trim();
    let units = [
        ("px", 1.0),
        ("pt", 96.0 / 72.0),
        ("pc", 16.0),
        ("mm", 96.0 / 25.4),
        ("cm", 96.0 / 2.54),
        ("in", 96.0),
    ];
    let (number, factor) = units
        .iter()
        .find_map(|(u, f)| v.strip_suffix(u).map(|n| (n, *f)))
        .unwrap_or((v, 1.0));
    number
        .trim()
        .parse::<f64>()
        .ok()
        .map(|n| n * factor)
        .filter(|n| n.is_finite())
}
