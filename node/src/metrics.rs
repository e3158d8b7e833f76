//! The node's Prometheus exposition: every counter the node has, in one renderer.
//!
//! Families: the hub's (commands, events, rejects, reports, slow consumers), each shard's
//! (rings, log positions, lag, availability, Kafka deliveries), the stage latencies, market
//! data's (WebSocket connections, messages, lag, resyncs, bad requests) when HTTP is served,
//! and FIX's (connections, logons, messages, refusals, cancel-on-disconnect) when FIX is
//! served. Every series carries `site`; per-shard series carry `shard`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gateway::fix::FixCounters;
use gateway::{FixGateway, Hub, LatencyHistogram, MdServer, REJECT_REASONS};

use crate::shard::ShardView;

/// Labelled samples of one metric: `(",label=\"value\"...", value)`.
type Samples = Vec<(String, u64)>;

/// What `/metrics` reads.
pub struct NodeMetrics {
    pub site: String,
    pub shards: Vec<Arc<ShardView>>,
    pub md: Option<MdServer>,
    pub fix: Option<Arc<FixGateway>>,
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// One unlabelled sample.
fn one(counter: &AtomicU64) -> Samples {
    vec![(String::new(), load(counter))]
}

/// Text being written, for one site.
struct Exposition<'a> {
    out: String,
    site: &'a str,
}

impl Exposition<'_> {
    fn metric(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
        let (out, site) = (&mut self.out, self.site);
        let _ = writeln!(out, "# HELP exchange_{name} {help}");
        let _ = writeln!(out, "# TYPE exchange_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "exchange_{name}{{site=\"{site}\"{labels}}} {value}");
        }
    }

    fn counter(&mut self, name: &str, help: &str, samples: &[(String, u64)]) {
        self.metric(name, "counter", help, samples);
    }

    fn histogram(&mut self, name: &str, help: &str, series: &[(String, &LatencyHistogram)]) {
        let (out, site) = (&mut self.out, self.site);
        let name = format!("stage_latency_{name}_microseconds");
        let _ = writeln!(out, "# HELP exchange_{name} {help}");
        let _ = writeln!(out, "# TYPE exchange_{name} histogram");
        for (labels, histogram) in series {
            let (buckets, sum, count) = histogram.read();
            for (bound, n) in buckets {
                let le = bound.map_or("+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "exchange_{name}_bucket{{site=\"{site}\"{labels},le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(out, "exchange_{name}_sum{{site=\"{site}\"{labels}}} {sum}");
            let _ = writeln!(
                out,
                "exchange_{name}_count{{site=\"{site}\"{labels}}} {count}"
            );
        }
    }
}

impl NodeMetrics {
    /// The Prometheus text exposition of the node's metrics.
    pub fn render(&self, hub: &Hub) -> String {
        let mut text = Exposition {
            out: String::new(),
            site: &self.site,
        };
        hub_families(&mut text, hub);
        self.shard_families(&mut text, hub);
        self.readiness_families(&mut text);
        self.latency_families(&mut text, hub);
        if let Some(md) = &self.md {
            md_families(&mut text, md);
        }
        if let Some(fix) = &self.fix {
            fix_families(&mut text, fix);
        }
        text.out
    }

    /// Samples of every shard, each labelled with its `shard`.
    fn per_shard(&self, each: impl Fn(usize, &ShardView) -> Samples) -> Samples {
        let mut samples = Vec::new();
        for (at, shard) in self.shards.iter().enumerate() {
            for (labels, value) in each(at, shard) {
                samples.push((format!(",shard=\"{}\"{labels}", shard.name), value));
            }
        }
        samples
    }

    fn shard_families(&self, text: &mut Exposition, hub: &Hub) {
        let rings = self.per_shard(|_, shard| match shard.rings.get() {
            Some(rings) => vec![
                (",ring=\"commands\"".into(), rings.commands.get() as u64),
                (",ring=\"output\"".into(), rings.output.get() as u64),
            ],
            None => Vec::new(),
        });
        text.metric(
            "ring_depth",
            "gauge",
            "Items waiting in a shard's matcher rings.",
            &rings,
        );
        let positions = self.per_shard(|at, shard| {
            let (durable, applied) = shard.positions(hub, at);
            vec![
                (",of=\"durable\"".into(), durable),
                (",of=\"applied\"".into(), applied),
            ]
        });
        text.metric(
            "log_position",
            "gauge",
            "A shard log's durable end, and the next position its engine applies.",
            &positions,
        );
        let lag = self.per_shard(|at, shard| {
            let (durable, applied) = shard.positions(hub, at);
            let lag = durable.saturating_sub(applied);
            vec![(String::new(), lag)]
        });
        text.metric(
            "consumer_lag",
            "gauge",
            "Durable records of a shard's log its engine has not applied yet.",
            &lag,
        );
        let deliveries = self.per_shard(|_, shard| match shard.log.deliveries() {
            Some(counts) => vec![
                (",outcome=\"delivered\"".into(), load(&counts.delivered)),
                (",outcome=\"failed\"".into(), load(&counts.failed)),
            ],
            None => Vec::new(),
        });
        if !deliveries.is_empty() {
            text.counter(
                "kafka_deliveries_total",
                "Produce outcomes: delivered (committed), or failed (fate unknown: the client \
                 resends with the same client order id).",
                &deliveries,
            );
        }
    }

    /// Whether each shard takes orders: its log is available, it is not catching up.
    fn readiness_families(&self, text: &mut Exposition) {
        let available = self.per_shard(|_, shard| {
            let up = u64::from(shard.log.available());
            vec![(format!(",log=\"{}\"", shard.log.kind()), up)]
        });
        text.metric(
            "log_available",
            "gauge",
            "1 when a shard's log takes commands (journal not failed, Kafka leader reachable).",
            &available,
        );
        let catching_up = self
            .per_shard(|_, shard| vec![(String::new(), u64::from(shard.freshness.catching_up()))]);
        text.metric(
            "catching_up",
            "gauge",
            "1 while a shard is too far behind its log to take orders (max_lag_ms).",
            &catching_up,
        );
        let skewed =
            self.per_shard(|_, shard| vec![(String::new(), u64::from(shard.clock_skewed()))]);
        text.metric(
            "clock_skew",
            "gauge",
            "1 while the site's clock runs too far ahead of a shard's log to take orders \
             (max_clock_ahead_ms).",
            &skewed,
        );
        let diverged = self
            .per_shard(|_, shard| vec![(String::new(), u64::from(shard.diverged.get().is_some()))]);
        text.metric(
            "diverged",
            "gauge",
            "1 once a shard's state hash was the minority's at a log position: fenced, it \
             refuses every request.",
            &diverged,
        );
    }

    fn latency_families(&self, text: &mut Exposition, hub: &Hub) {
        let sequenced: Vec<(String, &LatencyHistogram)> = self
            .shards
            .iter()
            .map(|shard| {
                let labels = format!(",shard=\"{}\"", shard.name);
                (labels, &shard.sequenced_latency)
            })
            .collect();
        text.histogram(
            "sequenced",
            "From the gateway's stamp to the command read back from its shard's committed log.",
            &sequenced,
        );
        text.histogram(
            "applied",
            "From the gateway's stamp to the command applied by its shard's engine.",
            &[(String::new(), &hub.counters().applied_latency)],
        );
    }
}

fn hub_families(text: &mut Exposition, hub: &Hub) {
    let c = hub.counters();
    text.counter(
        "commands_submitted_total",
        "Commands sessions queued for the log, by outcome.",
        &outcomes(&[
            ("queued", &c.submitted),
            ("busy", &c.submit_busy),
            ("unavailable", &c.submit_unavailable),
            ("catching_up", &c.submit_catching_up),
            ("clock_skew", &c.submit_clock_skew),
        ]),
    );
    text.counter(
        "binary_stale_resends_total",
        "Binary new orders resent (the resend flag) from longer ago than the dedup window, \
         with a client order id the site does not know, refused as stale_resend.",
        &one(&c.stale_resends),
    );
    text.counter(
        "commands_applied_total",
        "Commands the engines applied from the logs.",
        &one(&c.applied),
    );
    text.counter("events_total", "Engine events.", &one(&c.events));
    let rejects: Samples = REJECT_REASONS
        .iter()
        .zip(&c.rejects)
        .map(|(reason, n)| (format!(",reason=\"{}\"", reason.as_str()), load(n)))
        .collect();
    text.counter("rejects_total", "Engine rejects by reason.", &rejects);
    text.counter(
        "reports_total",
        "Reports routed to sessions.",
        &one(&c.reports),
    );
    text.counter(
        "slow_consumers_total",
        "Sessions disconnected because their report queue was full.",
        &one(&c.slow_consumers),
    );
}

fn md_families(text: &mut Exposition, md: &MdServer) {
    let c = md.counters();
    text.metric(
        "md_websockets_open",
        "gauge",
        "Market data WebSocket connections open now.",
        &[(String::new(), md.open_connections() as u64)],
    );
    text.counter(
        "md_websockets_total",
        "Market data WebSocket connections, by outcome (refused: over max_connections, or \
         shutting down).",
        &outcomes(&[("accepted", &c.connections), ("refused", &c.refused)]),
    );
    for (name, help, counter) in [
        (
            "md_messages_total",
            "Messages sent on market data WebSockets.",
            &c.messages_out,
        ),
        (
            "md_lagged_total",
            "Times a WebSocket's receiver fell behind the feed.",
            &c.lagged,
        ),
        (
            "md_resyncs_total",
            "Snapshots sent to repair a book subscription (lagged, or asked for).",
            &c.resyncs,
        ),
        (
            "md_bad_requests_total",
            "Market data requests answered with an error (HTTP or WebSocket).",
            &c.bad_requests,
        ),
    ] {
        text.counter(name, help, &one(counter));
    }
}

/// Samples labelled by `outcome`.
fn outcomes(each: &[(&str, &AtomicU64)]) -> Samples {
    each.iter()
        .map(|(outcome, n)| (format!(",outcome=\"{outcome}\""), load(n)))
        .collect()
}

fn fix_families(text: &mut Exposition, fix: &FixGateway) {
    let c = fix.counters();
    text.counter(
        "fix_connections_total",
        "FIX connections, by outcome (refused: max_connections were open).",
        &outcomes(&[
            ("accepted", &c.connections),
            ("refused", &c.connections_refused),
        ]),
    );
    text.counter(
        "fix_logons_total",
        "FIX logons, by outcome (refused: credentials, CompIDs, HeartBtInt or 8013).",
        &outcomes(&[("accepted", &c.logons), ("refused", &c.logons_refused)]),
    );
    text.counter(
        "fix_cancel_on_disconnect_total",
        "Cancel-on-disconnect mass cancels, by outcome (failed: still refused by the log \
         after retrying).",
        &outcomes(&[
            ("sent", &c.cancel_on_disconnect),
            ("failed", &c.cancel_on_disconnect_failed),
        ]),
    );
    fix_counts(text, c);
}

/// The FIX gateway's counters that stand alone (no outcome label).
fn fix_counts(text: &mut Exposition, c: &FixCounters) {
    for (name, help, counter) in [
        (
            "fix_handshakes_failed_total",
            "FIX connections that never became a session (refused, timed out, not FIX).",
            &c.handshakes_failed,
        ),
        (
            "fix_app_messages_total",
            "FIX application messages received.",
            &c.app_messages,
        ),
        (
            "fix_throttled_total",
            "FIX application messages refused by the rate limit.",
            &c.throttled,
        ),
        (
            "fix_malformed_total",
            "Malformed FIX application messages (session Reject).",
            &c.malformed,
        ),
        (
            "fix_unsupported_total",
            "Unsupported FIX application messages (35=j).",
            &c.unsupported,
        ),
        (
            "fix_submit_refused_total",
            "FIX requests the log refused (busy, unavailable), each answered with a reject.",
            &c.submit_refused,
        ),
        (
            "fix_stale_resends_total",
            "FIX new orders resent (PossDupFlag) from longer ago than the dedup window, with a \
             ClOrdID the venue does not know, refused as stale_resend.",
            &c.stale_resends,
        ),
        (
            "fix_slow_consumers_total",
            "FIX sessions disconnected because their report queue was full.",
            &c.slow_consumers,
        ),
        (
            "fix_send_errors_total",
            "Outbound FIX messages the session refused (a bug if ever nonzero).",
            &c.send_errors,
        ),
    ] {
        text.counter(name, help, &one(counter));
    }
}
