//! A self-contained HTML report of runs: a table, the latency by percentile (log percentile
//! axis, as HdrHistogram plots it) and the throughput over time, as inline SVG drawn here (no
//! scripts, nothing fetched).

use std::fmt::Write as _;
use std::path::Path;

use crate::result::RunResult;

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 50.0;

/// Writes [`html`] of `runs` to `path`.
pub fn write_html(path: &Path, runs: &[RunResult]) -> std::io::Result<()> {
    std::fs::write(path, html(runs))
}

/// The report as one HTML document.
pub fn html(runs: &[RunResult]) -> String {
    let mut out = String::new();
    out.push_str(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Load test</title>\n<style>\
         body{font-family:sans-serif;margin:2em;color:#222}\
         table{border-collapse:collapse;margin:1em 0}\
         td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
         th{background:#f3f3f3}svg{font-size:12px}\
         </style></head><body>\n<h1>Open-loop load test</h1>\n\
         <p>Latency runs from each request's <em>intended</em> send time (a fixed schedule) to \
         its acknowledgement, so a stall is charged to every request scheduled during it.</p>\n",
    );
    summary_table(&mut out, runs);
    out.push_str("<h2>Latency by percentile</h2>\n");
    latency_plot(&mut out, runs);
    out.push_str("<h2>Throughput</h2>\n<p>Acknowledgements per second (solid) and requests sent per second (dashed), from the start of the schedule; the grey band is the warm-up.</p>\n");
    throughput_plot(&mut out, runs);
    out.push_str("<h2>By request type</h2>\n");
    type_table(&mut out, runs);
    out.push_str("</body></html>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn summary_table(out: &mut String, runs: &[RunResult]) {
    out.push_str(
        "<table><tr><th>target /s</th><th>sent /s</th><th>requests</th><th>errors</th>\
         <th>p50 µs</th><th>p90 µs</th><th>p99 µs</th><th>p99.9 µs</th><th>p99.99 µs</th>\
         <th>max µs</th><th>late sends</th><th>errors by cause</th><th>engine rejects</th></tr>\n",
    );
    for run in runs {
        let l = &run.latency_us;
        let e = &run.error_counts;
        let causes = [
            ("busy", e.busy),
            ("unavailable", e.unavailable),
            ("throttled", e.throttled),
            ("timeout", e.timeout),
            ("disconnected", e.disconnected),
            ("protocol", e.protocol),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
        let rejects = run
            .rejects
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "<tr><td>{:.0}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td>\
             <td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            run.rate_target,
            run.rate_achieved,
            run.orders,
            run.errors,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.p9999,
            l.max,
            run.late_sends,
            escape(&causes),
            escape(&rejects),
        );
    }
    out.push_str("</table>\n");
}

fn type_table(out: &mut String, runs: &[RunResult]) {
    out.push_str(
        "<table><tr><th>target /s</th><th>type</th><th>count</th><th>p50 µs</th>\
         <th>p99 µs</th><th>p99.9 µs</th><th>max µs</th></tr>\n",
    );
    for run in runs {
        for (kind, l) in &run.latency_by_type {
            let _ = writeln!(
                out,
                "<tr><td>{:.0}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td>\
                 <td>{:.1}</td><td>{:.1}</td></tr>",
                run.rate_target,
                escape(kind),
                l.count,
                l.p50,
                l.p99,
                l.p999,
                l.max
            );
        }
    }
    out.push_str("</table>\n");
}

/// Linear map of `[lo, hi]` onto `[a, b]`.
fn scale(v: f64, lo: f64, hi: f64, a: f64, b: f64) -> f64 {
    if hi <= lo {
        return a;
    }
    a + (v - lo) / (hi - lo) * (b - a)
}

fn svg_open(out: &mut String, label: &str) {
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>",
        escape(label),
        WIDTH - LEFT - RIGHT,
        HEIGHT - TOP - BOTTOM
    );
}

fn legend(out: &mut String, runs: &[RunResult]) {
    for (i, run) in runs.iter().enumerate() {
        let y = TOP + 15.0 + 18.0 * i as f64;
        let x = WIDTH - RIGHT + 15.0;
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"2\"/>\
             <text x=\"{}\" y=\"{}\">{:.0}/s</text>",
            x + 20.0,
            color(i),
            x + 25.0,
            y + 4.0,
            run.rate_target
        );
    }
}

/// x: log10(1 / (1 - percentile)), so 90%, 99%, 99.9% ... are evenly spaced; y: log10(µs).
fn latency_plot(out: &mut String, runs: &[RunResult]) {
    let curves: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|run| {
            run.percentiles
                .get("all")
                .map(|points| {
                    points
                        .iter()
                        .map(|[p, us]| {
                            let p = p.min(99.9999) / 100.0;
                            ((1.0 / (1.0 - p)).log10(), us.max(0.001).log10())
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let points = curves.iter().flatten();
    let x_hi = points
        .clone()
        .map(|(x, _)| *x)
        .fold(2.0_f64, f64::max)
        .ceil();
    let y_lo = points.clone().map(|(_, y)| *y).fold(f64::MAX, f64::min);
    let y_hi = points.map(|(_, y)| *y).fold(f64::MIN, f64::max);
    let (y_lo, y_hi) = if y_lo > y_hi {
        (0.0, 3.0)
    } else {
        (y_lo.floor(), y_hi.ceil().max(y_lo.floor() + 1.0))
    };
    let px = |x: f64| scale(x, 0.0, x_hi, LEFT, WIDTH - RIGHT);
    let py = |y: f64| scale(y, y_lo, y_hi, HEIGHT - BOTTOM, TOP);
    svg_open(out, "latency by percentile");
    for decade in 0..=x_hi as i32 {
        let x = px(f64::from(decade));
        let label = match decade {
            0 => "0%".to_string(),
            d => format!("{}%", 100.0 - 100.0 / 10f64.powi(d)),
        };
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{TOP}\" x2=\"{x}\" y2=\"{}\" stroke=\"#eee\"/>\
             <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 16.0
        );
    }
    for decade in y_lo as i32..=y_hi as i32 {
        let y = py(f64::from(decade));
        let us = 10f64.powi(decade);
        let label = if us >= 1e6 {
            format!("{} s", us / 1e6)
        } else if us >= 1e3 {
            format!("{} ms", us / 1e3)
        } else {
            format!("{us} µs")
        };
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>",
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 10.0
    );
    for (i, curve) in curves.iter().enumerate() {
        polyline(
            out,
            curve.iter().map(|&(x, y)| (px(x), py(y))),
            color(i),
            false,
        );
    }
    legend(out, runs);
    out.push_str("</svg>\n");
}

fn polyline(out: &mut String, points: impl Iterator<Item = (f64, f64)>, color: &str, dashed: bool) {
    let mut text = String::new();
    for (x, y) in points {
        let _ = write!(text, "{x:.1},{y:.1} ");
    }
    let dash = if dashed {
        " stroke-dasharray=\"4 3\" stroke-opacity=\"0.6\""
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"{dash} points=\"{}\"/>",
        text.trim_end()
    );
}

/// A round step giving about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn throughput_plot(out: &mut String, runs: &[RunResult]) {
    let per_s = |run: &RunResult| 1000.0 / run.throughput.bucket_ms.max(1) as f64;
    let x_hi = runs
        .iter()
        .map(|run| run.throughput.acked.len() as f64 * run.throughput.bucket_ms as f64 / 1000.0)
        .fold(1.0_f64, f64::max);
    let y_max = runs
        .iter()
        .flat_map(|run| {
            let k = per_s(run);
            run.throughput
                .acked
                .iter()
                .chain(&run.throughput.sent)
                .map(move |n| *n as f64 * k)
        })
        .fold(1.0_f64, f64::max);
    let step = tick_step(y_max);
    let y_hi = (y_max / step).ceil() * step;
    let px = |x: f64| scale(x, 0.0, x_hi, LEFT, WIDTH - RIGHT);
    let py = |y: f64| scale(y, 0.0, y_hi, HEIGHT - BOTTOM, TOP);
    svg_open(out, "throughput over time");
    let warmup = runs.iter().map(|run| run.warmup_s).fold(0.0_f64, f64::max);
    if warmup > 0.0 {
        let _ = writeln!(
            out,
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"#eee\"/>",
            px(warmup) - LEFT,
            HEIGHT - TOP - BOTTOM
        );
    }
    let x_step = tick_step(x_hi);
    let mut t = 0.0;
    while t <= x_hi + 1e-9 {
        let x = px(t);
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{TOP}\" x2=\"{x}\" y2=\"{}\" stroke=\"#f3f3f3\"/>\
             <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{t} s</text>",
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 16.0
        );
        t += x_step;
    }
    let mut v = 0.0;
    while v <= y_hi + 1e-9 {
        let y = py(v);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#f3f3f3\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
        v += step;
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">time since the schedule started</text>\
         <text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">per second</text>",
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 10.0,
        (TOP + HEIGHT - BOTTOM) / 2.0,
        (TOP + HEIGHT - BOTTOM) / 2.0
    );
    for (i, run) in runs.iter().enumerate() {
        let k = per_s(run);
        let dt = run.throughput.bucket_ms as f64 / 1000.0;
        // Each bucket is drawn at its middle.
        let series = |counts: &[u64]| -> Vec<(f64, f64)> {
            counts
                .iter()
                .enumerate()
                .map(|(b, n)| (px((b as f64 + 0.5) * dt), py(*n as f64 * k)))
                .collect()
        };
        polyline(
            out,
            series(&run.throughput.sent).into_iter(),
            color(i),
            true,
        );
        polyline(
            out,
            series(&run.throughput.acked).into_iter(),
            color(i),
            false,
        );
    }
    legend(out, runs);
    out.push_str("</svg>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Latency, Throughput};

    #[test]
    fn the_report_holds_both_plots_and_every_run() {
        let run = |rate: f64, p99: f64| RunResult {
            rate_target: rate,
            rate_achieved: rate,
            orders: 100,
            latency_us: Latency {
                p50: 10.0,
                p99,
                max: 2.0 * p99,
                ..Latency::default()
            },
            percentiles: [(
                "all".to_string(),
                vec![[0.0, 5.0], [50.0, 10.0], [99.0, p99], [100.0, 2.0 * p99]],
            )]
            .into_iter()
            .collect(),
            warmup_s: 0.5,
            throughput: Throughput {
                bucket_ms: 100,
                sent: vec![10, 10, 10],
                acked: vec![9, 10, 11],
            },
            ..RunResult::default()
        };
        let page = html(&[run(1000.0, 80.0), run(2000.0, 3000.0)]);
        assert_eq!(page.matches("<svg").count(), 2);
        assert_eq!(page.matches("<polyline").count(), 2 + 4);
        assert!(page.contains("99.9%") && page.contains("1 ms"));
        assert!(page.contains("2000/s"));
        assert!(!page.contains("NaN") && !page.contains("inf"));
        // Nothing to plot is still a valid page.
        let empty = html(&[]);
        assert!(empty.contains("</html>") && !empty.contains("NaN"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(100.0), 20.0);
        assert_eq!(tick_step(240_000.0), 50_000.0);
        assert_eq!(tick_step(7.0), 2.0);
    }
}
