//! The density run's plot: one PNG (plotters' pure-Rust bitmap backend) with five panels over
//! the run's time axis — pods live/bound/Running, binds per second, API p99 per SLO class,
//! CPU cores per process, RSS per process — and the phase boundaries as grey lines.
//!
//! Invariants: text needs a TrueType font, read at run time from [`FONTS`] (plotters' ab_glyph
//! path, no system libraries); with none found the plot fails with [`Error::Plot`] and the
//! JSON report is still written. Empty series are skipped, axes never have zero height.

use crate::density::run::Outcome;
use crate::error::Error;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::OnceLock;

/// Fonts tried, in order (Debian's fonts-dejavu-core first).
pub const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

const COLORS: [RGBColor; 7] = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK, RGBColor(255, 140, 0)];

fn err(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

fn font() -> Result<(), Error> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = FONTS.iter().find_map(|p| std::fs::read(p).ok()).ok_or_else(|| format!("no font among {FONTS:?}"))?;
        // Registered once per process; plotters keeps a &'static.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| "not a TrueType font".to_string())
    })
    .clone()
    .map_err(Error::Plot)
}

type Series = (String, Vec<(f64, f64)>);

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    xmax: f64,
    series: &[Series],
    phases: &[(String, f64, f64)],
) -> Result<(), Error> {
    let ymax = series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).fold(0.0, f64::max).max(1e-3) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(err)?;
    chart.configure_mesh().x_desc("seconds since the ramp started").label_style(("sans-serif", 13)).draw().map_err(err)?;
    for (name, start, _) in phases {
        let line = PathElement::new(vec![(*start, 0.0), (*start, ymax)], BLACK.mix(0.3));
        chart.draw_series(std::iter::once(line)).map_err(err)?;
        chart.draw_series(std::iter::once(Text::new(name.clone(), (*start, ymax * 0.97), ("sans-serif", 12)))).map_err(err)?;
    }
    for (i, (name, points)) in series.iter().enumerate().filter(|(_, s)| !s.1.is_empty()) {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Draws `out` into the PNG at `path`, titled `title`.
pub fn draw(path: &Path, out: &Outcome, title: &str) -> Result<(), Error> {
    font()?;
    let root = BitMapBackend::new(path, (1200, 1700)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
    let areas = root.split_evenly((5, 1));
    let tl = &out.timeline;
    let xmax = tl.last().map_or(1.0, |s| s.t).max(out.binds.last().map_or(1.0, |b| b.0)).max(1.0);
    let pick = |f: &dyn Fn(&crate::density::run::Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        tl.iter().filter_map(|s| Some((s.t, f(s)?))).collect()
    };
    let pods: Vec<Series> = vec![
        ("live".into(), pick(&|s| Some(s.live as f64))),
        ("bound".into(), pick(&|s| Some(s.bound as f64))),
        ("Running".into(), pick(&|s| Some(s.running as f64))),
    ];
    let binds: Vec<Series> = vec![("binds/s (from the pod watch)".into(), out.binds.clone())];
    let p99: Vec<Series> =
        ["mutating", "read", "list"].iter().enumerate().map(|(i, c)| (format!("{c} p99"), pick(&|s| s.p99_ms[i]))).collect();
    let cores: Vec<Series> = out.procs.iter().enumerate().map(|(i, p)| (p.clone(), pick(&|s| s.cores.get(i).copied()))).collect();
    let rss: Vec<Series> = out.procs.iter().enumerate().map(|(i, p)| (p.clone(), pick(&|s| s.rss_mib.get(i).copied()))).collect();
    let panels: [(&str, &[Series]); 5] = [
        ("pods", &pods),
        ("scheduler: pods bound per second", &binds),
        ("API call p99 per sample interval, ms (apiserver_request_duration_seconds)", &p99),
        ("CPU, cores", &cores),
        ("RSS, MiB", &rss),
    ];
    for (area, (caption, series)) in areas.iter().zip(panels) {
        panel(area, caption, xmax, series, &out.phases)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
