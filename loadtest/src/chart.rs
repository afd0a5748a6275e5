//! The `--chart` SVG: latency percentiles (log scale) and throughput per second, with the
//! measured window marked; for latejoin, each join's time. Text is left to the SVG viewer's
//! fonts, so rendering needs no font files.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{Report, Second};
use crate::scenario::Mode;

/// A plotted line: legend, colour, and the value it takes from each second.
type Series = (&'static str, RGBColor, fn(&Second) -> f64);

const SIZE: (u32, u32) = (1200, 820);

/// Writes the chart of `report` to `path`.
pub fn render(report: &Report, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    draw(report, &root).map_err(|e| anyhow!("drawing the chart: {e}"))?;
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult<T> = Result<T, DrawingAreaErrorKind<std::io::Error>>;

fn title(report: &Report) -> String {
    let sc = &report.scenario;
    let name = sc.name();
    match sc.mode {
        Mode::Latejoin => format!(
            "drawbridge loadtest: {name}, {} sequential joins of a room holding {} strokes",
            sc.joins, sc.prefill
        ),
        Mode::Idle => format!(
            "drawbridge loadtest: {name}, {} idle connections in {} rooms",
            sc.connections, sc.rooms
        ),
        Mode::Traffic => format!(
            "drawbridge loadtest: {name}, {} conns, {} rooms, {} strokes/s, {} cursor/s per conn",
            sc.connections, sc.rooms, sc.strokes_per_sec, sc.cursor_per_sec
        ),
        Mode::Board => format!(
            "drawbridge loadtest: {name}, {} conns, {} rooms; {:.0} % drawing ({}/s live), \
             {:.0} % dragging ({}/s)",
            sc.connections,
            sc.rooms,
            sc.draw_share * 100.0,
            sc.progress_per_sec,
            sc.drag_share * 100.0,
            sc.drag_per_sec
        ),
    }
}

fn draw(report: &Report, root: &Area<'_>) -> DrawResult<()> {
    root.fill(&WHITE)?;
    let root = root.titled(&title(report), ("sans-serif", 22))?;
    if report.scenario.mode == Mode::Latejoin {
        return draw_joins(report, &root);
    }
    let (top, bottom) = root.split_vertically(SIZE.1 as i32 / 2);
    draw_latency(report, &top)?;
    draw_throughput(report, &bottom)?;
    Ok(())
}

fn x_range(report: &Report) -> f64 {
    (report.timeline.len() as f64)
        .max(report.measured_to_s)
        .max(1.0)
}

fn draw_latency(report: &Report, area: &Area<'_>) -> DrawResult<()> {
    let tl = &report.timeline;
    let series: [Series; 8] = [
        ("stroke p50", RGBColor(44, 160, 44), |s| s.stroke_p50_ms),
        ("stroke p90", RGBColor(31, 119, 180), |s| s.stroke_p90_ms),
        ("stroke p99", RGBColor(255, 127, 14), |s| s.stroke_p99_ms),
        ("stroke max", RGBColor(214, 39, 40), |s| s.stroke_max_ms),
        ("cursor p99", RGBColor(148, 103, 189), |s| s.cursor_p99_ms),
        ("live stroke p99", RGBColor(23, 190, 207), |s| {
            s.progress_p99_ms
        }),
        ("drag p99", RGBColor(188, 189, 34), |s| s.drag_p99_ms),
        ("ack p99", RGBColor(127, 127, 127), |s| s.ack_p99_ms),
    ];
    let max = tl
        .iter()
        .flat_map(|s| series.iter().map(move |(_, _, f)| f(s)))
        .fold(1.0f64, f64::max);
    let (lo, hi) = (0.05f64, max * 2.0);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .caption(
            "end-to-end latency per second (ms, log scale)",
            ("sans-serif", 16),
        )
        .build_cartesian_2d(0f64..x_range(report), (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .light_line_style(RGBColor(242, 242, 242))
        .y_desc("ms")
        .draw()?;
    window_marks(&mut chart, report, lo, hi)?;
    for (name, color, f) in series {
        // A second with nothing delivered has no latency: break the line there rather than
        // draw one across the silence.
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut prev: Option<u32> = None;
        for s in tl.iter().filter(|s| f(s) > 0.0) {
            if prev.is_none_or(|p| p + 1 != s.t) {
                runs.push(Vec::new());
            }
            if let Some(run) = runs.last_mut() {
                run.push((f64::from(s.t) + 0.5, f(s)));
            }
            prev = Some(s.t);
        }
        for (i, run) in runs.into_iter().enumerate() {
            let style = color.stroke_width(2);
            let drawn = if run.len() == 1 {
                chart.draw_series(run.into_iter().map(|p| Circle::new(p, 3, style.filled())))?
            } else {
                chart.draw_series(LineSeries::new(run, style))?
            };
            if i == 0 {
                drawn.label(name).legend(swatch(color, 2));
            }
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn draw_throughput(report: &Report, area: &Area<'_>) -> DrawResult<()> {
    let tl = &report.timeline;
    let series: [Series; 8] = [
        ("strokes sent/s", RGBColor(31, 119, 180), |s| {
            s.strokes_sent as f64
        }),
        ("live strokes delivered/s", RGBColor(140, 86, 75), |s| {
            s.progress_delivered as f64
        }),
        ("drags delivered/s", RGBColor(188, 189, 34), |s| {
            s.drags_delivered as f64
        }),
        ("strokes delivered/s", RGBColor(44, 160, 44), |s| {
            s.strokes_delivered as f64
        }),
        ("of which replayed/s", RGBColor(23, 190, 207), |s| {
            s.strokes_replayed as f64
        }),
        ("cursors delivered/s", RGBColor(148, 103, 189), |s| {
            s.cursors_delivered as f64
        }),
        ("acks/s", RGBColor(127, 127, 127), |s| s.acks as f64),
        ("joins/s", RGBColor(255, 127, 14), |s| s.joins as f64),
    ];
    let max = tl
        .iter()
        .flat_map(|s| series.iter().map(move |(_, _, f)| f(s)))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .caption("throughput per second", ("sans-serif", 16))
        .build_cartesian_2d(0f64..x_range(report), 0f64..max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .light_line_style(RGBColor(242, 242, 242))
        .y_desc("messages/s")
        .draw()?;
    window_marks(&mut chart, report, 0.0, max)?;
    for (name, color, f) in series {
        if tl.iter().all(|s| f(s) == 0.0) {
            continue;
        }
        let points: Vec<(f64, f64)> = tl.iter().map(|s| (f64::from(s.t) + 0.5, f(s))).collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(swatch(color, 2));
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// A legend entry's short line in `color`.
fn swatch(color: RGBColor, width: u32) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(width))
}

/// Draws the chart's legend in `corner`, on a light box so it stays readable over the lines.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    corner: SeriesLabelPosition,
) -> DrawResult<()> {
    chart
        .configure_series_labels()
        .position(corner)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// The measured window, shaded.
fn window_marks<'a, Y>(
    chart: &mut ChartContext<
        'a,
        SVGBackend<'a>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, Y>,
    >,
    report: &Report,
    lo: f64,
    hi: f64,
) -> DrawResult<()>
where
    Y: Ranged<ValueType = f64>,
{
    let shade = RGBColor(31, 119, 180).mix(0.07).filled();
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(report.measured_from_s, lo), (report.measured_to_s, hi)],
            shade,
        )))?
        .label("measured window")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], shade));
    Ok(())
}

fn draw_joins(report: &Report, area: &Area<'_>) -> DrawResult<()> {
    let samples = &report.joins.samples_ms;
    let max = samples.iter().copied().fold(1.0f64, f64::max) * 1.2;
    let n = samples.len().max(1) as f64;
    let b = &report.joins.initial_state_bytes;
    let caption = format!(
        "JOIN_ROOM → INITIAL_STATE per join (ms); p50 {:.2} ms, p99 {:.2} ms, INITIAL_STATE {} bytes",
        report.joins.time.p50_ms, report.joins.time.p99_ms, b.p50
    );
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .caption(caption, ("sans-serif", 16))
        .build_cartesian_2d(0f64..n, 0f64..max)?;
    chart
        .configure_mesh()
        .x_desc("join #")
        .light_line_style(RGBColor(242, 242, 242))
        .y_desc("ms")
        .draw()?;
    let color = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(
            samples.iter().enumerate().map(|(i, v)| (i as f64, *v)),
            color.stroke_width(2),
        ))?
        .label("join time")
        .legend(swatch(color, 2));
    let p50 = report.joins.time.p50_ms;
    let grey = RGBColor(214, 39, 40);
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, p50), (n, p50)],
            grey.stroke_width(1),
        ))?
        .label("p50")
        .legend(swatch(grey, 1));
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}
