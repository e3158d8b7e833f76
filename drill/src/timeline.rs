//! The drill's timeline: what the members saw, second by second, and the faults. Orders
//! acknowledged per site per second and the slowest acknowledgement of each second, from the
//! clients' own records (the report's `timeline`), and a self-contained HTML page of them with
//! each fault shaded over its site's time down and its RTO marked (`--timeline FILE`): inline
//! SVG drawn here, no scripts, nothing fetched.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::failover::Ack;
use crate::{DrillReport, Fault};

/// One bucket of the timeline.
const BUCKET: Duration = Duration::from_secs(1);
const COLOURS: [&str; 3] = ["#1f77b4", "#2ca02c", "#9467bd"];
const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;

/// Per-second series from the load's start.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timeline {
    pub bucket_ms: u64,
    /// Orders acknowledged in each second, per site (in the report's site order).
    pub acked: Vec<Vec<u32>>,
    /// The slowest acknowledgement of each second (first send to acknowledgement), in
    /// microseconds; 0 for a second without any.
    pub ack_latency_max_us: Vec<u64>,
}

impl Timeline {
    /// The series of `acks` (every client's) over `sites` sites from `started`.
    pub(crate) fn of<'a>(
        acks: impl Iterator<Item = &'a Ack>,
        sites: usize,
        started: Instant,
    ) -> Timeline {
        let mut timeline = Timeline {
            bucket_ms: BUCKET.as_millis() as u64,
            acked: vec![Vec::new(); sites],
            ack_latency_max_us: Vec::new(),
        };
        for ack in acks {
            let bucket = (ack.at.saturating_duration_since(started).as_millis()
                / BUCKET.as_millis()) as usize;
            if bucket >= timeline.ack_latency_max_us.len() {
                timeline.ack_latency_max_us.resize(bucket + 1, 0);
                for site in &mut timeline.acked {
                    site.resize(bucket + 1, 0);
                }
            }
            if let Some(site) = timeline.acked.get_mut(ack.site) {
                site[bucket] += 1;
            }
            let latency = ack.at.saturating_duration_since(ack.sent).as_micros() as u64;
            let slowest = &mut timeline.ack_latency_max_us[bucket];
            *slowest = (*slowest).max(latency);
        }
        timeline
    }

    fn seconds(&self) -> usize {
        self.ack_latency_max_us.len().max(1)
    }
}

/// The report's timeline as one HTML document.
pub fn html(report: &DrillReport) -> String {
    let mut out = String::new();
    out.push_str(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Drill timeline</title>\n\
         <style>body{font-family:sans-serif;margin:2em;color:#222}svg{font-size:12px}\
         td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}\
         table{border-collapse:collapse}</style></head><body>\n<h1>Failover drill</h1>\n",
    );
    let _ = writeln!(
        out,
        "<p>{} ({:.0} s at {}/s): {} orders, {} acknowledged; lost {}, duplicates {}, \
         converged {}; RTO max {}; {}.</p>",
        report.sites.join(", "),
        report.duration_s,
        report.rate_target,
        report.orders,
        report.acked_orders,
        report.lost_acked,
        report.duplicates,
        report.sites_converged,
        report
            .rto_ms_max
            .map_or("-".to_string(), |ms| format!("{ms} ms")),
        if report.passed() { "passed" } else { "FAILED" },
    );
    out.push_str(
        "<p>Shaded: a fault, from its start to its end (red: a site crashed, with its broker \
         on the drill's cluster; orange: frozen; purple: cut off from the log; brown: cut off \
         from the log and its members; grey: the whole of Kafka down; pink: its clock set ahead). Dashed: when the last \
         of its clients was acknowledged elsewhere (the RTO).</p>\n\
         <h2>Orders acknowledged per second, by site</h2>\n",
    );
    throughput_plot(&mut out, report);
    out.push_str("<h2>Slowest acknowledgement of each second (log scale)</h2>\n");
    latency_plot(&mut out, report);
    out.push_str(
        "<h2>Each site by its /health</h2>\n<p>Green: ok; yellow: catching up; red: its \
         clock ahead of the log's; purple: unavailable (cut off from its log); black: failed; grey: no answer (down, frozen, \
         isolated).</p>\n",
    );
    readiness_plot(&mut out, report);
    fault_table(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

/// The plot's frame: x in seconds over the run, y from 0 to `y_max` (`log`: 1 to `y_max`).
struct Frame {
    seconds: f64,
    y_max: f64,
    log: bool,
}

impl Frame {
    fn x(&self, second: f64) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * second / self.seconds
    }

    fn y(&self, value: f64) -> f64 {
        let share = if self.log {
            value.max(1.0).log10() / self.y_max.max(10.0).log10()
        } else {
            value / self.y_max.max(1.0)
        };
        HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * share.clamp(0.0, 1.0)
    }

    /// Opens the SVG with the axes, the faults shaded and the time ticks.
    fn open(&self, out: &mut String, report: &DrillReport, y_label: &str) {
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\">"
        );
        shade_faults(out, self, report);
        let (x0, x1, y0) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM);
        let _ = writeln!(
            out,
            "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#444\"/>\
             <line x1=\"{x0}\" y1=\"{TOP}\" x2=\"{x0}\" y2=\"{y0}\" stroke=\"#444\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds from the start</text>\
             <text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" \
             text-anchor=\"middle\">{y_label}</text>",
            (x0 + x1) / 2.0,
            HEIGHT - 6.0,
            (TOP + y0) / 2.0,
            (TOP + y0) / 2.0,
        );
        let step = tick_step(self.seconds);
        let mut second = 0.0;
        while second <= self.seconds {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{second:.0}</text>",
                self.x(second),
                y0 + 16.0
            );
            second += step;
        }
        self.y_ticks(out);
    }

    /// Labels and faint grid lines: each power of ten on a log axis, else 0 and the top.
    fn y_ticks(&self, out: &mut String) {
        let mut ticks = vec![if self.log { 1.0 } else { 0.0 }];
        let mut tick = 10.0;
        while self.log && tick < self.y_max {
            ticks.push(tick);
            tick *= 10.0;
        }
        ticks.push(self.y_max);
        for value in ticks {
            let y = self.y(value);
            let _ = writeln!(
                out,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{value}</text>",
                WIDTH - RIGHT,
                LEFT - 4.0,
                y + 4.0
            );
        }
    }
}

/// A round tick step for `seconds` of run (about ten ticks).
fn tick_step(seconds: f64) -> f64 {
    [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]
        .into_iter()
        .find(|step| seconds / step <= 12.0)
        .unwrap_or(3600.0)
}

/// Each fault as a band over its time down, and its RTO as a dashed line.
fn shade_faults(out: &mut String, frame: &Frame, report: &DrillReport) {
    for fault in &report.kill_log {
        let from = fault.killed_at_ms as f64 / 1000.0;
        let to = fault
            .restarted_at_ms
            .map_or(frame.seconds, |ms| ms as f64 / 1000.0);
        let colour = match fault.fault {
            Fault::Crash => "#d62728",
            Fault::Pause => "#ff7f0e",
            Fault::Partition => "#9467bd",
            Fault::Isolation => "#8c564b",
            Fault::KafkaOutage => "#7f7f7f",
            Fault::ClockSkew => "#e377c2",
            Fault::Upgrade => "#17becf",
        };
        let (x0, x1) = (frame.x(from), frame.x(to));
        let _ = writeln!(
            out,
            "<rect x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{}\" fill=\"{colour}\" \
             fill-opacity=\"0.18\"><title>{} {:?} at {from:.1} s</title></rect>\
             <text x=\"{x0:.1}\" y=\"{}\" font-size=\"10\" fill=\"{colour}\">{}</text>",
            (x1 - x0).max(1.0),
            HEIGHT - TOP - BOTTOM,
            fault.site,
            fault.fault,
            TOP + 10.0,
            fault.site
        );
        if let Some(rto) = fault.rto_ms {
            let x = frame.x(from + rto as f64 / 1000.0);
            let _ = writeln!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"{colour}\" \
                 stroke-dasharray=\"4 3\"><title>RTO {rto} ms</title></line>",
                HEIGHT - BOTTOM
            );
        }
    }
}

/// Acknowledged orders per second, a line per site.
fn throughput_plot(out: &mut String, report: &DrillReport) {
    let timeline = &report.timeline;
    let peak = timeline.acked.iter().flatten().copied().max().unwrap_or(0);
    let frame = Frame {
        seconds: timeline.seconds() as f64,
        y_max: f64::from(peak.max(1)),
        log: false,
    };
    frame.open(out, report, "orders / s");
    for (k, (site, series)) in report.sites.iter().zip(&timeline.acked).enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        polyline(out, &frame, series.iter().map(|n| f64::from(*n)), colour);
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{site}</text>",
            LEFT + 10.0 + 90.0 * k as f64,
            HEIGHT - BOTTOM - 8.0
        );
    }
    out.push_str("</svg>\n");
}

/// The slowest acknowledgement of each second, in milliseconds, log scale.
fn latency_plot(out: &mut String, report: &DrillReport) {
    let timeline = &report.timeline;
    let peak_ms = timeline
        .ack_latency_max_us
        .iter()
        .max()
        .copied()
        .unwrap_or(0)
        / 1000;
    let frame = Frame {
        seconds: timeline.seconds() as f64,
        y_max: 10f64.powf((peak_ms.max(10) as f64).log10().ceil()),
        log: true,
    };
    frame.open(out, report, "ms (log)");
    let series = timeline
        .ack_latency_max_us
        .iter()
        .map(|us| *us as f64 / 1000.0);
    polyline(out, &frame, series, "#333");
    out.push_str("</svg>\n");
}

/// A row per site, each second coloured by the worst status its `/health` gave in it.
fn readiness_plot(out: &mut String, report: &DrillReport) {
    const ROW: f64 = 18.0;
    let frame = Frame {
        seconds: report.timeline.seconds() as f64,
        y_max: 1.0,
        log: false,
    };
    let height = TOP + ROW * report.readiness.len() as f64 + 4.0;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\">"
    );
    for (k, site) in report.readiness.iter().enumerate() {
        let y = TOP + ROW * k as f64;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 4.0,
            y + ROW - 5.0,
            site.site
        );
        let letters = site.by_second.as_bytes();
        let mut start = 0;
        while start < letters.len() {
            let run = letters[start..]
                .iter()
                .take_while(|l| **l == letters[start])
                .count();
            let colour = match letters[start] {
                b'o' => "#2ca02c",
                b'c' => "#e6c229",
                b's' => "#d62728",
                b'u' => "#9467bd",
                b'f' => "#000000",
                _ => "#aaaaaa",
            };
            let (x0, x1) = (frame.x(start as f64), frame.x((start + run) as f64));
            let _ = writeln!(
                out,
                "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{}\" \
                 fill=\"{colour}\"><title>{} s {start}-{}</title></rect>",
                (x1 - x0).max(0.5),
                ROW - 4.0,
                site.site,
                start + run
            );
            start += run;
        }
    }
    out.push_str("</svg>\n");
}

/// One series as a polyline, a point per second.
fn polyline(out: &mut String, frame: &Frame, series: impl Iterator<Item = f64>, colour: &str) {
    let points: Vec<String> = series
        .enumerate()
        .map(|(second, value)| format!("{:.1},{:.1}", frame.x(second as f64 + 0.5), frame.y(value)))
        .collect();
    let _ = writeln!(
        out,
        "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
        points.join(" ")
    );
}

/// The faults, one row each.
fn fault_table(out: &mut String, report: &DrillReport) {
    out.push_str(
        "<h2>Faults</h2>\n<table><tr><th>site</th><th>fault</th><th>at (ms)</th>\
         <th>back at (ms)</th><th>broker down</th><th>leader moved to</th>\
         <th>clients failed over</th><th>noticed by (ms)</th>\
         <th title=\"hover a figure: the slowest client's way\">RTO (ms)</th>\
         <th>quoters moved</th><th>quoters' RTO (ms)</th><th>catch-up (ms)</th></tr>\n",
    );
    let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for fault in &report.kill_log {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            fault.site,
            fault.fault,
            fault.killed_at_ms,
            ms(fault.restarted_at_ms),
            fault.effects.broker_down,
            fault.effects.leader_moved_to.as_deref().unwrap_or("-"),
            fault.clients_failed_over,
            ms(fault.detect_ms),
            fault.slowest_path.join("; "),
            ms(fault.rto_ms),
            fault.quoters_moved,
            ms(fault.quote_rto_ms),
            ms(fault.catch_up_ms)
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use engine::OrderId;

    use super::*;
    use crate::failover::Outcome;

    #[test]
    fn acknowledgements_count_in_their_second_and_site_and_the_slowest_is_kept() {
        let started = Instant::now();
        let at = |ms| started + Duration::from_millis(ms);
        let ack = |site, sent, acked| Ack {
            cl_ord_id: OrderId::new("x").unwrap(),
            outcome: Outcome::Accepted,
            site,
            sent: at(sent),
            at: at(acked),
        };
        let acks = [
            ack(0, 0, 10),
            ack(0, 100, 900),
            ack(1, 1_500, 2_600),
            ack(2, 2_000, 2_050),
        ];
        let timeline = Timeline::of(acks.iter(), 3, started);
        assert_eq!(
            timeline.acked,
            [vec![2, 0, 0], vec![0, 0, 1], vec![0, 0, 1]]
        );
        assert_eq!(timeline.ack_latency_max_us, [800_000, 0, 1_100_000]);
        assert_eq!(tick_step(20.0), 2.0);
        assert_eq!(tick_step(600.0), 60.0);
    }
}
