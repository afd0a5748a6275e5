//! Fuzzing on the stable toolchain (issue 15): proptest drives the three parsers a client
//! reaches with its own bytes, the frame parser (`transport::protocol`), element and patch
//! validation (`domain::element`, `domain::stroke`) and SVG import (`domain::svg`), with
//! random and with structured hostile input. Each must never panic, and what it allocates
//! must stay bounded by its input: a counting allocator measures each call's peak on its own
//! thread, and the test fails past a fixed multiple of the input plus a constant.
//!
//! CI runs 2,000 cases per harness (500 for SVG documents); `scripts/fuzz.sh` runs many more
//! (`FUZZ_CASES=200000`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use drawbridge::domain::element::{Element, ElementLimits, Patch};
use drawbridge::domain::stroke::StrokeLimits;
use drawbridge::domain::svg::{self, ImportLimits};
use drawbridge::domain::{RoomId, UserId};
use drawbridge::metrics::CLIENT_TYPES;
use drawbridge::transport::protocol::ClientMessage;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---- bounded allocation ------------------------------------------------------------------

/// The system allocator, counting the bytes live on each thread and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: during thread teardown the counters may be gone; nothing to count then.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the most bytes it had allocated at once on this thread.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    (out, peak.max(0) as usize)
}

/// What a call may allocate for `input` bytes: a multiple of the input plus a constant.
fn budget(input: usize, per_byte: usize, fixed: usize) -> usize {
    input * per_byte + fixed
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

// ---- input ---------------------------------------------------------------------------------

/// JSON of any shape, a few levels deep, biased towards the names and values our parsers look at.
fn json_value() -> impl Strategy<Value = Value> {
    let word = prop::sample::select(vec![
        "id",
        "kind",
        "x",
        "y",
        "w",
        "h",
        "z",
        "points",
        "color",
        "width",
        "text",
        "from",
        "to",
        "roomId",
        "strokeId",
        "userId",
        "opId",
        "since",
        "epoch",
        "payload",
        "type",
        "elements",
        "updates",
        "patch",
        "ids",
        "canvasData",
        "textState",
        "protocol",
        "stroke",
        "rect",
        "ellipse",
        "line",
        "arrow",
        "sticky",
        "node",
        "edge",
        "#ff0000",
        "",
        "\u{0}",
        "é",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![Just(1e308), Just(-1e308), Just(1e7), Just(1e15), Just(-0.0)]
            .prop_map(|f| json!(f)),
        word.clone().prop_map(|w| json!(w)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((word.clone(), inner), 0..8).prop_map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A frame as a client could send it: a known type with a random payload, or a plausible
/// element op, or raw text; sometimes cut short, as a truncated frame is.
fn frame() -> impl Strategy<Value = String> {
    let typed = (prop::sample::select(CLIENT_TYPES.to_vec()), json_value())
        .prop_map(|(kind, payload)| json!({"type": kind, "payload": payload}).to_string());
    let add = prop::collection::vec(element_value(), 0..6).prop_map(|elements| {
        json!({"type": "ELEMENTS_ADD", "payload": {"roomId": "r", "elements": elements}})
            .to_string()
    });
    let text = prop_oneof![".{0,200}", "[{}\\[\\]\":,0-9a-z\\\\ ]{0,200}"];
    (
        prop_oneof![typed, add, text],
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut text, cut, truncate)| {
            if truncate && !text.is_empty() {
                let mut at = cut.index(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.truncate(at);
            }
            text
        })
}

/// An element a page might send, with any field replaced by anything.
fn element_value() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec![
        "stroke", "rect", "ellipse", "line", "arrow", "text", "sticky", "node", "edge", "image", "",
    ]);
    let points = prop::collection::vec((any::<f64>(), -1e8f64..1e8), 0..40).prop_map(|ps| {
        Value::Array(
            ps.into_iter()
                .map(|(x, y)| json!({"x": x, "y": y}))
                .collect(),
        )
    });
    (kind, "[a-z0-9-]{0,80}", points, json_value(), prop::option::of(json_value()))
        .prop_map(|(kind, id, points, extra, replaced)| {
            let mut e = json!({"id": id, "kind": kind, "x": 1, "y": 2, "w": 30, "h": 20,
                "points": points, "color": "#123456", "width": 2, "text": "hi", "from": "a", "to": "b"});
            if let (Some(map), Value::Object(more)) = (e.as_object_mut(), extra) {
                map.extend(more);
            }
            if let (Some(map), Some(v)) = (e.as_object_mut(), replaced) {
                map.insert("x".into(), v);
            }
            e
        })
}

/// SVG-shaped documents: nested known elements with random attributes, path data of random
/// commands and numbers, transforms; plus arbitrary text.
fn svg_document() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        (-1e4f64..1e4).prop_map(|f| format!("{f}")),
        Just("1e308".to_owned()),
        Just("-1e400".to_owned()),
        Just("NaN".to_owned()),
        Just(".5.5".to_owned()),
        "[0-9.eE+-]{1,8}",
    ];
    let path = prop::collection::vec(
        (
            prop::sample::select(vec![
                "M", "m", "L", "l", "C", "c", "Q", "q", "A", "a", "Z", "H", "V", "S", "T", "X",
            ]),
            prop::collection::vec(number.clone(), 0..8),
        ),
        0..30,
    )
    .prop_map(|cmds| {
        cmds.into_iter()
            .map(|(c, ns)| format!("{c}{}", ns.join(",")))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let transform = prop_oneof![
        Just(String::new()),
        (number.clone(), number.clone()).prop_map(|(a, b)| format!("translate({a},{b})")),
        (number.clone(), number.clone()).prop_map(|(a, b)| format!("scale({a} {b}) rotate({a})")),
        prop::collection::vec(number.clone(), 0..7)
            .prop_map(|ns| format!("matrix({})", ns.join(" "))),
    ];
    let attrs = (path, transform, prop::collection::vec(number.clone(), 0..12), number.clone(), number)
        .prop_map(|(d, t, pts, a, b)| {
            format!(
                r##"d="{d}" transform="{t}" points="{}" x="{a}" y="{b}" width="{a}" height="{b}" r="{a}" cx="{b}" rx="{a}" x1="{a}" y2="{b}" data-id="e{a}" data-kind="rect" stroke="#abc" fill="red" stroke-width="{b}""##,
                pts.join(" ")
            )
        });
    let tag = prop::sample::select(vec![
        "path",
        "rect",
        "circle",
        "ellipse",
        "line",
        "polyline",
        "polygon",
        "text",
        "g",
        "a",
        "use",
        "image",
        "foreignObject",
        "svg",
    ]);
    let leaf = (tag.clone(), attrs.clone()).prop_map(|(t, a)| format!("<{t} {a}/>"));
    let tree = leaf.prop_recursive(6, 200, 6, move |inner| {
        (
            tag.clone(),
            attrs.clone(),
            prop::collection::vec(inner, 0..6),
        )
            .prop_map(|(t, a, kids)| format!("<{t} {a}>{}</{t}>", kids.concat()))
    });
    prop_oneof![
        8 => tree.prop_map(|body| format!(r#"<svg xmlns="http://www.w3.org/2000/svg">{body}</svg>"#)),
        1 => ".{0,300}",
        1 => Just(r#"<!DOCTYPE svg [<!ENTITY a "aaaaaaaa">]><svg xmlns="http://www.w3.org/2000/svg">&a;</svg>"#.to_owned()),
    ]
}

// ---- harnesses ---------------------------------------------------------------------------

const LIMITS: ElementLimits = ElementLimits { max_points: 10_000 };

fn who() -> (UserId, RoomId) {
    (UserId::new("fuzz"), RoomId::new("r"))
}

/// Parses a frame and validates whatever it carries, as the session does.
fn parse_and_validate(text: &str) {
    let (user, room) = who();
    let Ok(message) = ClientMessage::parse(text) else {
        return;
    };
    match message {
        ClientMessage::CanvasUpdate(update) => {
            let _ = update.canvas_data.validate(
                &user,
                &room,
                StrokeLimits {
                    max_points: LIMITS.max_points,
                },
            );
        }
        ClientMessage::ElementsAdd(add) => {
            for e in &add.elements {
                let _ = Element::from_client(e, &user, &room, LIMITS);
            }
        }
        ClientMessage::ElementsUpdate(update) => {
            let base = Element::from_client(
                &json!({"id": "b", "kind": "rect", "x": 0, "y": 0, "w": 1, "h": 1}),
                &user,
                &room,
                LIMITS,
            )
            .expect("a valid rect");
            for u in &update.updates {
                if let Ok(patch) = Patch::from_client(&u.patch) {
                    let _ = base.patched(&patch, LIMITS);
                }
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Any frame: no panic, and no more than 64 bytes allocated per byte of it (JSON values
    /// and validated elements), plus 64 KiB.
    #[test]
    fn the_frame_parser_never_panics_and_allocates_in_proportion(text in frame()) {
        let ((), peak) = peak_of(|| parse_and_validate(&text));
        prop_assert!(peak <= budget(text.len(), 64, 64 << 10), "{peak} bytes for {} bytes of input", text.len());
    }

    /// Any element: no panic; a valid one's stored form is no bigger than a multiple of the input.
    #[test]
    fn element_validation_never_panics_and_stays_bounded(value in element_value()) {
        let (user, room) = who();
        let input = value.to_string().len();
        let (checked, peak) = peak_of(|| Element::from_client(&value, &user, &room, LIMITS));
        prop_assert!(peak <= budget(input, 64, 64 << 10), "{peak} bytes for {input} bytes of input");
        if let Ok(element) = checked {
            let body = element.body();
            prop_assert!(body.len() <= 4 * input + 512, "{} bytes stored from {input}", body.len());
            prop_assert!(Element::from_stored(&element.stored(1, "1")).is_some(), "stored form reads back");
        }
        if let Ok(patch) = Patch::from_client(&value) {
            let base = Element::from_client(&json!({"id": "b", "kind": "rect", "x": 0, "y": 0, "w": 1, "h": 1}), &user, &room, LIMITS)
                .expect("a valid rect");
            let _ = base.patched(&patch, LIMITS);
        }
    }

}

proptest! {
    // A document is a few kilobytes of nested elements, each case far slower than a frame.
    #![proptest_config(ProptestConfig { cases: cases() / 4, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any document: no panic, at most `MAX_ELEMENTS` elements, each valid, and memory bounded
    /// by the input (curves are flattened into points, so a byte of path data may become
    /// several points; the element limit caps the whole).
    #[test]
    fn svg_import_never_panics_and_stays_bounded(doc in svg_document()) {
        let (user, room) = who();
        let limits = ImportLimits::new(LIMITS);
        let (imported, peak) = peak_of(|| svg::import(doc.as_bytes(), &user, &room, limits));
        prop_assert!(peak <= budget(doc.len(), 512, 4 << 20), "{peak} bytes for {} bytes of input", doc.len());
        if let Ok(imported) = imported {
            prop_assert!(imported.elements.len() <= ImportLimits::MAX_ELEMENTS);
            for e in &imported.elements {
                prop_assert!(Element::from_stored(&e.stored(1, "1")).is_some());
            }
        }
    }
}

/// Inputs that once needed care, checked every run whatever the random cases are.
#[test]
fn known_hostile_inputs() {
    // The meter itself: what a call holds at its peak is seen, what it freed before is not.
    let ((), peak) = peak_of(|| drop(std::hint::black_box(vec![0u8; 1 << 20])));
    assert!(peak >= 1 << 20, "{peak}");
    for text in [
        "",
        "{",
        r#"{"type":"ELEMENTS_ADD","payload":{"roomId":"r","elements":[{"id":"a","kind":"stroke","points":[]}]}}"#,
        r#"{"type":"CANVAS_UPDATE","payload":{"roomId":"r","canvasData":{"strokeId":"s","points":[{"x":1e400,"y":0}]}}}"#,
        &format!(r#"{{"type":"JOIN_ROOM","payload":{}}}"#, "[".repeat(10_000)),
    ] {
        parse_and_validate(text);
    }
    let (user, room) = who();
    let deep = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg">{}{}</svg>"#,
        "<g>".repeat(10_000),
        "</g>".repeat(10_000)
    );
    assert!(svg::import(deep.as_bytes(), &user, &room, ImportLimits::new(LIMITS)).is_err());
}
