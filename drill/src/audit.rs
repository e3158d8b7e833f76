//! The drill's audit: the shard's whole log, copied from Kafka as the drill ran (`tap`) and
//! replayed through an engine with the sites' configuration, against what the members were told and the state hashes
//! every site reported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Result};
use engine::{
    AccountId, Command, Engine, EngineConfig, Event, EventKind, OrderId, Qty, RejectReason, Request,
};
use hdrhistogram::Histogram;
use replicator::divergence::HashReport;

use crate::failover::{Ack, Outcome};
use crate::fills::{self, FillCheck};
use crate::market::{BookCheck, MdReport, MdResult};
use crate::switches::{CodCheck, SwitchWatch};
use crate::tap::Tapped;
use crate::trace;
use crate::{
    ms_between, site_hashes_at, ClientResult, DrillConfig, DrillReport, Fault, KillRecord, Moves,
    Percentiles, SiteHash, StatusCheck,
};

/// What the log's replay says.
#[derive(Default)]
pub(crate) struct History {
    /// Accepted events per (account, client order id).
    pub(crate) accepted: HashMap<(AccountId, OrderId), u32>,
    /// Orders the engine refused (a `new` rejected).
    pub(crate) rejected: HashSet<(AccountId, OrderId)>,
    /// Each live order's total quantity (as accepted, or as last amended).
    pub(crate) totals: HashMap<(AccountId, OrderId), Qty>,
    /// Each order's filled quantity, once it has traded (under its latest id).
    pub(crate) filled: HashMap<(AccountId, OrderId), Qty>,
    /// When each order last traded (log time, ns).
    pub(crate) filled_at: HashMap<(AccountId, OrderId), u64>,
    /// Trades that left an order filled beyond its total quantity.
    pub(crate) overfills: u64,
    /// The replay's state hash at each position a site reported.
    pub(crate) hashes: BTreeMap<u64, String>,
    /// The dead-man's switches: when each fired, whose orders it cancelled.
    pub(crate) cod: CodCheck,
    /// The market-data subscribers' books against the replay's.
    pub(crate) md: MdReport,
    /// The position and log time of the command being replayed.
    pub(crate) at: u64,
    pub(crate) ts: u64,
    /// A few client order ids accepted a second time, where.
    pub(crate) duplicate_examples: Vec<String>,
}

impl History {
    /// Takes in one event of the replay.
    pub(crate) fn record(&mut self, event: &EventKind) {
        match *event {
            EventKind::Accepted {
                account,
                order_id,
                qty,
                ..
            } => {
                let times = self.accepted.entry((account, order_id)).or_default();
                *times += 1;
                if *times == 2 && self.duplicate_examples.len() < 10 {
                    let (account, at) = (account.0, self.at);
                    self.duplicate_examples.push(format!(
                        "account {account} order {}: accepted again at position {at}",
                        order_id.as_str()
                    ));
                }
                self.totals.insert((account, order_id), qty);
            }
            // A duplicate's refusal says nothing of the order that holds the id.
            EventKind::Rejected {
                account,
                order_id,
                request: Request::New,
                reason,
                ..
            } if reason != RejectReason::DuplicateOrderId => {
                self.rejected.insert((account, order_id));
            }
            EventKind::Amended {
                account,
                order_id,
                total,
                new_order_id,
                ..
            } => {
                self.totals.remove(&(account, order_id));
                self.totals
                    .insert((account, new_order_id.unwrap_or(order_id)), total);
                if let Some(filled) = self.filled.remove(&(account, order_id)) {
                    self.filled
                        .insert((account, new_order_id.unwrap_or(order_id)), filled);
                }
                if let Some(at) = self.filled_at.remove(&(account, order_id)) {
                    self.filled_at
                        .insert((account, new_order_id.unwrap_or(order_id)), at);
                }
            }
            EventKind::Trade {
                maker_account,
                maker_order_id,
                taker_account,
                taker_order_id,
                maker_filled,
                taker_filled,
                ..
            } => {
                self.filled((maker_account, maker_order_id), maker_filled);
                self.filled((taker_account, taker_order_id), taker_filled);
            }
            _ => {}
        }
    }

    /// A trade left `order` filled `filled` in all.
    fn filled(&mut self, order: (AccountId, OrderId), filled: Qty) {
        if self.totals.get(&order).is_some_and(|total| filled > *total) {
            self.overfills += 1;
        }
        self.filled.insert(order, filled);
        self.filled_at.insert(order, self.ts);
    }

    /// Whether a member told `order` was accepted (`accepted`) was told what the history
    /// contradicts: `(lost, false_reject)`. Lost: told accepted, never accepted. A false
    /// reject: told the engine rejected it, which the history did not (it accepted it, or
    /// never saw it).
    pub(crate) fn contradicts(&self, order: (AccountId, OrderId), accepted: bool) -> (bool, bool) {
        if accepted {
            (!self.accepted.contains_key(&order), false)
        } else {
            (false, !self.rejected.contains(&order))
        }
    }
}

/// Replays `records` (a shard's log from its start, each command with its site's stamp)
/// through an engine of `config`: the history of its events, the switches as `switches`
/// judges them, the state hash at each of `positions` (ascending), and `after(next, engine)`
/// after each command. The drill's audit and the simulator's check.
pub(crate) fn replay_history<'a>(
    config: EngineConfig,
    records: impl Iterator<Item = (&'a Command, u64)>,
    positions: &[u64],
    mut switches: SwitchWatch,
    mut after: impl FnMut(u64, &Engine),
) -> Result<History> {
    let mut engine = Engine::new(config).map_err(|e| anyhow!("the sites' engine config: {e:?}"))?;
    let mut events: Vec<Event> = Vec::with_capacity(64);
    let mut history = History::default();
    let mut wanted = positions.iter().copied().peekable();
    for (at, (command, stamped)) in records.enumerate() {
        events.clear();
        engine.apply(command, &mut events);
        (history.at, history.ts) = (at as u64, command.ts.0);
        for event in &events {
            history.record(&event.kind);
        }
        switches.apply(command, stamped, &events);
        let next = at as u64 + 1;
        after(next, &engine);
        while wanted.peek().is_some_and(|p| *p < next) {
            wanted.next();
        }
        if wanted.peek() == Some(&next) {
            history.hashes.insert(next, engine.state_hash().to_string());
        }
    }
    history.cod = switches.finish();
    Ok(history)
}

/// Replays `log` (the shard's log from its start), hashing the state at `positions`.
fn replay(
    config: &DrillConfig,
    log: &Tapped,
    positions: &[u64],
    outages: &[(u64, u64)],
    md: &[MdResult],
) -> Result<History> {
    let mut books = BookCheck::new(config.symbol, md);
    let records = log.commands.iter().zip(log.stamped.iter().map(|s| s.0));
    // The sites' producers give a record up after the default delivery timeout.
    let hold_max = Duration::from_millis(u64::from(replicator::kafka::DEFAULT_DELIVERY_TIMEOUT_MS));
    let switches = SwitchWatch::new(config.clock_every, hold_max, outages);
    let mut history = replay_history(
        config.engine,
        records,
        positions,
        switches,
        |next, engine| books.after(next, engine),
    )?;
    history.md = books.finish(md);
    Ok(history)
}

/// An order acknowledged as accepted that the log's history never accepted.
fn is_lost(history: &History, account: AccountId, ack: &Ack) -> bool {
    let accepted = ack.outcome == Outcome::Accepted;
    history.contradicts((account, ack.cl_ord_id), accepted).0
}

/// An order a member was told the engine rejected that the history accepted, or never saw.
fn is_false_reject(history: &History, account: AccountId, ack: &Ack) -> bool {
    let accepted = ack.outcome == Outcome::Accepted;
    history.contradicts((account, ack.cl_ord_id), accepted).1
}

/// The (account, client order id) pairs the history accepted more than once.
fn accepted_twice(history: &History) -> impl Iterator<Item = &(AccountId, OrderId)> {
    history
        .accepted
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(key, _)| key)
}

/// A few client order ids the history accepted more than once, by account and id.
fn duplicated(history: &History) -> Vec<(AccountId, OrderId)> {
    let mut ids: Vec<(AccountId, OrderId)> = accepted_twice(history).copied().collect();
    ids.sort_unstable_by_key(|(account, id)| (account.0, *id));
    ids.truncate(STORIES_MAX);
    ids
}

/// Orders whose log story a failing check's examples tell, at most, per check.
const STORIES_MAX: usize = 3;

/// Adds the log's story of the first duplicates and false fills ([`crate::trace`]) to their
/// examples.
fn tell_stories(
    config: &DrillConfig,
    evidence: &Evidence,
    history: &mut History,
    fills: &mut FillCheck,
) -> Result<()> {
    let wall_ns = wall_ns(evidence.started.1);
    let tell = |orders: &[(AccountId, OrderId)]| -> Result<Vec<String>> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let mut lines = vec![format!("the log's story of {}:", names(orders))];
        lines.extend(trace::stories(
            config.engine,
            &evidence.log.commands,
            orders,
            wall_ns,
        )?);
        Ok(lines)
    };
    let duplicate_stories = tell(&duplicated(history))?;
    let false_orders = &fills.false_orders[..fills.false_orders.len().min(STORIES_MAX)];
    let false_fill_stories = tell(false_orders)?;
    history.duplicate_examples.extend(duplicate_stories);
    fills.examples.extend(false_fill_stories);
    Ok(())
}

/// Orders by account and id, in a few words.
fn names(orders: &[(AccountId, OrderId)]) -> String {
    let names: Vec<String> = orders
        .iter()
        .map(|(account, id)| format!("{}/{}", account.0, id.as_str()))
        .collect();
    names.join(", ")
}

/// The wall clock's `at` in nanoseconds since the epoch (log time's scale).
fn wall_ns(at: SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Client order ids the history accepted more than once.
pub(crate) fn duplicates(history: &History) -> u64 {
    accepted_twice(history).count() as u64
}

/// What the audit is given besides the clients' results.
pub(crate) struct Evidence {
    /// The audit position: a hash boundary every site applied, where hashes and convergence
    /// are compared.
    pub position: u64,
    /// The shard's log from its start, with the sites' stamps, to the audit position or past
    /// it: to the log's end after the final mass statuses were asked (a command a site's
    /// producer delivered late can land after the boundary and fill an order, and a final
    /// mass status answered there says so; replayed only to the boundary, the history called
    /// that a false fill).
    pub log: Tapped,
    /// Every hash each site wrote over the run (its `hashes.jsonl`; empty when unreadable).
    pub hash_files: Vec<Vec<HashReport>>,
    /// The sites' answers to the same status questions.
    pub status: StatusCheck,
    /// Each member's orders' filled quantities in its last mass status (the status check's).
    pub final_filled: Vec<BTreeMap<OrderId, Qty>>,
    /// Whole-Kafka outages, from stop to start in log-time nanoseconds: a switch due while
    /// the log was down fires when it is back, before anything else is applied.
    pub log_outages: Vec<(u64, u64)>,
    /// What the market-data subscribers saw.
    pub md: Vec<MdResult>,
    /// When the load started, on the monotonic and the wall clock (log time is wall time).
    pub started: (Instant, SystemTime),
}

/// Audits a finished drill whose sites all applied the log up to `position`, a hash boundary:
/// the replay against every acknowledgement and every site's hashes.
pub(crate) fn audit(
    config: &DrillConfig,
    names: &[String],
    https: &[SocketAddr],
    mut evidence: Evidence,
    kills: Vec<(usize, KillRecord, Instant)>,
    results: Vec<ClientResult>,
    load_seconds: f64,
) -> Result<DrillReport> {
    let position = evidence.position;
    let replay = replayed(config, names, https, &mut evidence)?;
    let (mut history, sites_converged) = (replay.history, replay.sites_converged);
    let tally = Tally::of(&results, &history)?;
    let mut fills = fill_check(&history, &results, &evidence);
    let duplicates = duplicates(&history);
    tell_stories(config, &evidence, &mut history, &mut fills)?;
    let faults = kill_log(kills, &results, names);
    let kill_log = faults.records;
    let status = &evidence.status;
    let figures = Figures::of(&history, &fills, status, duplicates, sites_converged);
    let problems = problems(&tally, &figures, &kill_log);
    let ack_latency_us = tally.latency_percentiles();
    Ok(DrillReport {
        sites: names.to_vec(),
        duration_s: load_seconds,
        rate_target: config.rate,
        orders: tally.orders,
        acked_orders: tally.acked,
        accepted: tally.accepted,
        rejected_by_engine: tally.rejected,
        unacknowledged: tally.unacked,
        stale_resends: tally.stale_resends,
        amends_sent: results.iter().map(|r| r.changes.amends).sum(),
        cancels_sent: results.iter().map(|r| r.changes.cancels).sum(),
        lost_acked: tally.lost,
        lost_examples: tally.lost_examples,
        duplicate_examples: std::mem::take(&mut history.duplicate_examples),
        false_reports: tally.false_reports + fills.false_fills,
        missed_fills: fills.missed,
        lost_track: results.iter().map(|r| r.lost_track.len() as u64).sum(),
        lost_track_missed: fills.missed_known,
        false_fills: fills.false_fills,
        fill_examples: fills.examples,
        duplicates,
        overfills: history.overfills,
        cod: history.cod,
        md: history.md,
        status: evidence.status,
        hash_reports_checked: replay.reports.iter().map(|r| r.len() as u64).sum(),
        diverged: replay.hash_mismatches.len() as u64,
        sites_converged,
        audit_position: position,
        hashes: replay.hashes,
        hash_mismatches: replay.hash_mismatches,
        kills: kill_log.len(),
        rto_ms_max: kill_log.iter().filter_map(|k| k.rto_ms).max(),
        rto_client_ms: percentiles(faults.client_rtos),
        quote_rto_ms: percentiles(faults.quote_rtos),
        catch_up_ms_max: kill_log.iter().filter_map(|k| k.catch_up_ms).max(),
        kill_log,
        moves: tally.moves,
        timeline: Default::default(),
        fix: Default::default(),
        readiness: Vec::new(),
        log_time_ahead: Default::default(),
        ack_latency_us,
        problems,
    })
}

/// The fills check, its examples followed by the context of the first missed fills.
fn fill_check(history: &History, results: &[ClientResult], evidence: &Evidence) -> FillCheck {
    let mut fills = fills::check(&history.filled, results, &evidence.final_filled);
    let context = missed_fill_context(&fills, history, results, evidence.started);
    fills.examples.extend(context);
    let told_by = false_fill_context(&fills, results, evidence.started.0);
    fills.examples.extend(told_by);
    fills
}

/// For each false fill's order: the report that told its member (its kind, the site, when),
/// or that its last mass status did.
fn false_fill_context(
    fills: &fills::FillCheck,
    results: &[ClientResult],
    started: Instant,
) -> Vec<String> {
    let secs = |at: Instant| at.saturating_duration_since(started).as_secs_f64();
    let mut lines = Vec::new();
    for (account, order) in fills.false_orders.iter().take(STORIES_MAX) {
        let Some(member) = results.iter().find(|r| r.account == *account) else {
            continue;
        };
        let line = match member.told_by.get(order) {
            Some(by) => format!(
                "order {} was told filled by an execution report (exec type {:?}, status {:?}{}) at site {}, {:.3} s into the load; still waiting on replaces {:?}",
                order.as_str(),
                char::from(by.exec_type),
                char::from(by.ord_status),
                by.moved_from
                    .map_or(String::new(), |id| format!(", moved from {}", id.as_str())),
                by.site,
                secs(by.at),
                member.replaced.iter().filter(|(_, old)| *old == order).map(|(new, _)| new.as_str()).collect::<Vec<_>>()
            ),
            None => format!("order {} was told filled by its last mass status only", order.as_str()),
        };
        lines.push(line);
    }
    lines
}

/// For each missed fill's order: when it last traded (seconds into the load, log time), and
/// its member's moves and answered mass statuses from 5 s before to 120 s after: whether
/// the member was between sites, and for how long, when the fill it missed happened.
fn missed_fill_context(
    fills: &fills::FillCheck,
    history: &History,
    results: &[ClientResult],
    (started, wall): (Instant, SystemTime),
) -> Vec<String> {
    let wall_ns = wall_ns(wall);
    let secs = |at: Instant| at.saturating_duration_since(started).as_secs_f64();
    let mut lines = Vec::new();
    for (account, order) in fills.missed_orders.iter().take(3) {
        let Some(ts) = history.filled_at.get(&(*account, *order)) else {
            continue;
        };
        let filled = ts.saturating_sub(wall_ns) as f64 / 1e9;
        let near = |s: f64| (filled - 5.0..=filled + 120.0).contains(&s);
        let Some(member) = results.iter().find(|r| r.account == *account) else {
            continue;
        };
        let moves: Vec<String> = member
            .failovers
            .iter()
            // A move found while staying counts from when the stay began: by its logon too.
            .filter(|f| near(secs(f.detected)) || near(secs(f.logged_on)))
            .map(|f| {
                let (left, on) = (secs(f.detected), secs(f.logged_on));
                format!("{left:.1}-{on:.1} s {}->{} ({})", f.from, f.to, f.why)
            })
            .collect();
        let answers: Vec<String> = member
            .mass_answered
            .iter()
            .map(|at| secs(*at))
            .filter(|s| near(*s))
            .map(|s| format!("{s:.1}"))
            .collect();
        lines.push(format!(
            "order {} last traded at {filled:.1} s; its member's moves {moves:?}, mass statuses answered at {answers:?} s",
            order.as_str()
        ));
    }
    lines
}

/// The log's replay, and every site's hash reports against it.
struct Replayed {
    history: History,
    reports: Vec<Vec<HashReport>>,
    hashes: Vec<SiteHash>,
    hash_mismatches: Vec<String>,
    sites_converged: bool,
}

/// Replays `evidence`'s log, hashing at every position a site reported (its hash files are
/// taken), and compares.
fn replayed(
    config: &DrillConfig,
    names: &[String],
    https: &[SocketAddr],
    evidence: &mut Evidence,
) -> Result<Replayed> {
    let position = evidence.position;
    let files = std::mem::take(&mut evidence.hash_files);
    let reports = site_reports(https, files, position);
    let positions = hash_positions(&reports, position);
    let history = replay(
        config,
        &evidence.log,
        &positions,
        &evidence.log_outages,
        &evidence.md,
    )?;
    let (hashes, hash_mismatches) = convergence(names, &reports, &history, position);
    let sites_converged = hash_mismatches.is_empty() && hashes.iter().all(|h| h.matches_log);
    Ok(Replayed {
        history,
        reports,
        hashes,
        hash_mismatches,
        sites_converged,
    })
}

/// Every site's hash reports: `/v1/hashes` (once it has reported at `position`) merged with
/// its file.
fn site_reports(
    https: &[SocketAddr],
    files: Vec<Vec<HashReport>>,
    position: u64,
) -> Vec<Vec<HashReport>> {
    https
        .iter()
        .zip(files)
        .map(|(h, file)| merged(site_hashes_at(*h, position), file))
        .collect()
}

/// The positions the replay hashes at: every reported one and `position`, in order, once.
fn hash_positions(reports: &[Vec<HashReport>], position: u64) -> Vec<u64> {
    let mut positions: Vec<u64> = reports.iter().flatten().map(|r| r.position).collect();
    positions.push(position);
    positions.sort_unstable();
    positions.dedup();
    positions
}

/// A site's hash reports from `/v1/hashes` and from its file, in position order, each
/// (position, hash) once: a position reported again after a restart is compared again, and
/// kept twice if the hashes differ.
fn merged(recent: Vec<HashReport>, file: Vec<HashReport>) -> Vec<HashReport> {
    let mut distinct: BTreeMap<(u64, String), HashReport> = BTreeMap::new();
    for report in file.into_iter().chain(recent) {
        distinct.insert((report.position, report.hash.clone()), report);
    }
    distinct.into_values().collect()
}

/// Every site's hash at `position` against the replay's, and every reported hash (any
/// position) that differs from the replay's.
fn convergence(
    names: &[String],
    reports: &[Vec<HashReport>],
    history: &History,
    position: u64,
) -> (Vec<SiteHash>, Vec<String>) {
    let mut hash_mismatches = Vec::new();
    for report in reports.iter().flatten() {
        if let Some(expected) = history.hashes.get(&report.position) {
            if *expected != report.hash {
                hash_mismatches.push(format!(
                    "{} at {}: {} (log: {expected})",
                    report.site, report.position, report.hash
                ));
            }
        }
    }
    let final_hash = history.hashes.get(&position).cloned();
    let hashes = names
        .iter()
        .zip(reports)
        .map(|(name, reports)| {
            let hash = reports
                .iter()
                .find(|r| r.position == position)
                .map(|r| r.hash.clone());
            SiteHash {
                site: name.clone(),
                position,
                matches_log: hash.is_some() && hash == final_hash,
                hash,
            }
        })
        .collect();
    (hashes, hash_mismatches)
}

impl Moves {
    /// Adds one client's moves and refusals.
    fn add(&mut self, result: &ClientResult) {
        let c = &result.counts;
        for (reason, n) in [
            ("busy", c.refused_busy),
            ("unavailable", c.refused_unavailable),
            ("catching_up", c.refused_catching_up),
            ("clock_skew", c.refused_clock_skew),
            ("throttled", c.refused_throttled),
        ] {
            self.refused += n;
            *self
                .refused_by_reason
                .entry(reason.to_string())
                .or_default() += n;
        }
        self.returns_home += c.returns_home;
        self.stays += c.stays;
        self.found_ready += c.found_ready;
        self.failovers += result.failovers.len();
        self.reconciled_known += result.failovers.iter().map(|f| f.known).sum::<usize>();
        self.resent += result.failovers.iter().map(|f| f.resent).sum::<usize>();
    }
}

/// What the clients sent and were told, summed over all of them.
struct Tally {
    orders: u64,
    acked: u64,
    accepted: u64,
    rejected: u64,
    lost: u64,
    lost_examples: Vec<String>,
    /// Members told something the history contradicts (an engine reject of an order the
    /// history accepted or never saw).
    false_reports: u64,
    unacked: u64,
    stale_resends: u64,
    moves: Moves,
    /// Order → acknowledgement, microseconds.
    latency: Histogram<u64>,
}

impl Tally {
    fn of(results: &[ClientResult], history: &History) -> Result<Tally> {
        let mut tally = Tally {
            orders: 0,
            acked: 0,
            accepted: 0,
            rejected: 0,
            lost: 0,
            lost_examples: Vec::new(),
            false_reports: 0,
            unacked: 0,
            stale_resends: 0,
            moves: Moves::default(),
            latency: Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?,
        };
        for result in results {
            tally.orders += result.orders;
            tally.unacked += result.unacknowledged as u64;
            tally.stale_resends += result.counts.stale_resends;
            tally.moves.add(result);
            for ack in &result.acks {
                tally.ack(history, result.account, ack);
            }
        }
        Ok(tally)
    }

    /// Order → acknowledgement latency, microseconds.
    fn latency_percentiles(&self) -> Percentiles {
        let pct = |q: f64| self.latency.value_at_quantile(q);
        Percentiles {
            p50: pct(0.5),
            p99: pct(0.99),
            p999: pct(0.999),
            max: self.latency.max(),
        }
    }

    fn ack(&mut self, history: &History, account: AccountId, ack: &Ack) {
        self.acked += 1;
        let _ = self
            .latency
            .record(ack.at.duration_since(ack.sent).as_micros().max(1) as u64);
        match ack.outcome {
            Outcome::Accepted => {
                self.accepted += 1;
                if is_lost(history, account, ack) {
                    self.lost += 1;
                    if self.lost_examples.len() < 10 {
                        self.lost_examples.push(format!(
                            "account {} order {}",
                            account.0,
                            ack.cl_ord_id.as_str()
                        ));
                    }
                }
            }
            Outcome::Rejected(_) => {
                self.rejected += 1;
                if is_false_reject(history, account, ack) {
                    self.false_reports += 1;
                }
            }
        }
    }
}

/// RTO per kill: for each client that failed over from the killed site within 30 s of the
/// kill, from the kill (or from its arrival at the site, if later) to its first
/// acknowledgement at any other site after it noticed
/// (wherever it went, however many moves it took); the slowest client's, and the way it
/// went. Also every client's RTO, for the percentiles.
fn kill_log(
    kills: Vec<(usize, KillRecord, Instant)>,
    results: &[ClientResult],
    names: &[String],
) -> KillLog {
    let mut log = KillLog::default();
    for (site, mut record, killed) in kills {
        // Failovers from the site once it was back are not this fault's.
        let back = record
            .restarted_at_ms
            .map(|at| killed + Duration::from_millis(at.saturating_sub(record.killed_at_ms)));
        let moved = |quoters: bool| -> Vec<Move> {
            results
                .iter()
                .filter(|result| result.quoter == quoters)
                .filter_map(|result| Move::of(result, site, killed, back))
                .collect()
        };
        let (clients, quoters) = (moved(false), moved(true));
        record.detect_ms = clients.iter().map(|m| m.detect_ms(killed)).max();
        // The slowest: one never acknowledged elsewhere, else the longest RTO.
        if let Some(slowest) = clients
            .iter()
            .max_by_key(|m| m.rto_ms().unwrap_or(u64::MAX))
        {
            record.slowest_path = slowest.path(killed, names);
        }
        let rtos =
            |moved: Vec<Move>| -> Vec<Option<u64>> { moved.iter().map(Move::rto_ms).collect() };
        let (clients, quoters) = (rtos(clients), rtos(quoters));
        record.clients_failed_over = clients.len();
        record.rto_ms = slowest(&clients);
        record.quoters_moved = quoters.len();
        record.quote_rto_ms = slowest(&quoters);
        log.client_rtos.extend(clients.into_iter().flatten());
        log.quote_rtos.extend(quoters.into_iter().flatten());
        log.records.push(record);
    }
    log
}

/// Every fault's record, and the RTO of every client and every quoter that moved.
#[derive(Default)]
struct KillLog {
    records: Vec<KillRecord>,
    client_rtos: Vec<u64>,
    quote_rtos: Vec<u64>,
}

/// The slowest of `rtos`; none if any client never got an acknowledgement elsewhere.
fn slowest(rtos: &[Option<u64>]) -> Option<u64> {
    rtos.iter()
        .copied()
        .collect::<Option<Vec<u64>>>()
        .and_then(|r| r.into_iter().max())
}

/// A client's move away from a fault's site: its first failover from the site after the
/// fault (before the site was back, within 30 s), and its first acknowledgement at another
/// site after it, if any.
struct Move<'a> {
    result: &'a ClientResult,
    /// Where that failover is in the client's failovers.
    first: usize,
    /// The fault, or the client's arrival at the site if it came after the fault began.
    start: Instant,
    acked: Option<Instant>,
}

impl<'a> Move<'a> {
    /// The move of a client that failed over from `site` after `killed` and before it was
    /// `back`; `None` for any other.
    fn of(
        result: &'a ClientResult,
        site: usize,
        killed: Instant,
        back: Option<Instant>,
    ) -> Option<Move<'a>> {
        let window_end = match back {
            Some(back) => back.min(killed + Duration::from_secs(30)),
            None => killed + Duration::from_secs(30),
        };
        let first = result
            .failovers
            .iter()
            .position(|f| f.from == site && f.detected >= killed && f.detected <= window_end)?;
        let detected = result.failovers[first].detected;
        let acked = result
            .acks
            .iter()
            .find(|ack| ack.site != site && ack.at >= detected)
            .map(|ack| ack.at);
        // A client that came to the site after the fault began (moving from another) was
        // in trouble from then on, not before: counted from the fault, clients that met a
        // site restarted with its clock skewed long after its restart had RTOs of 13-15 s.
        // (Returns home are not failovers: one that came home after the fault began still
        // counts from the fault, which can only overstate its RTO.)
        let start = result.failovers[..first]
            .iter()
            .rev()
            .find(|f| f.to == site)
            .map_or(killed, |f| f.logged_on.max(killed));
        Some(Move {
            result,
            first,
            start,
            acked,
        })
    }

    /// When the client noticed, in milliseconds from the fault at `killed`.
    fn detect_ms(&self, killed: Instant) -> u64 {
        ms_between(killed, self.result.failovers[self.first].detected)
    }

    /// Its RTO: from the fault (or its arrival at the site, if later) to its first
    /// acknowledgement elsewhere (`None` if none came).
    fn rto_ms(&self) -> Option<u64> {
        self.acked.map(|at| ms_between(self.start, at))
    }

    /// The way it went: each move from its first one away from the site ("WHY at MS, SITE at
    /// MS": why and when it left, where and when it logged on, milliseconds from the fault),
    /// up to its first acknowledgement elsewhere ("acknowledged at MS").
    fn path(&self, killed: Instant, names: &[String]) -> Vec<String> {
        let name = |at: usize| names.get(at).map_or("?", String::as_str).to_string();
        // A client that came after the fault began: its RTO counts from then.
        let came =
            (self.start > killed).then(|| format!("came at {} ms", ms_between(killed, self.start)));
        let mut way: Vec<String> = came.into_iter().collect();
        way.extend(
            self.result.failovers[self.first..]
                .iter()
                .take_while(|f| self.acked.is_none_or(|acked| f.detected <= acked))
                .map(|f| {
                    let (noticed, on) = (
                        ms_between(killed, f.detected),
                        ms_between(killed, f.logged_on),
                    );
                    format!("{} at {noticed} ms, {} at {on} ms", f.why, name(f.to))
                }),
        );
        way.extend(
            self.acked
                .map(|at| format!("acknowledged at {} ms", ms_between(killed, at))),
        );
        way
    }
}

/// p50, p99, p99.9 and max of `values` (nearest rank), none if empty.
fn percentiles(mut values: Vec<u64>) -> Option<Percentiles> {
    values.sort_unstable();
    let max = *values.last()?;
    let rank = |q: f64| values[((values.len() as f64 * q).ceil() as usize).max(1) - 1];
    Some(Percentiles {
        p50: rank(0.5),
        p99: rank(0.99),
        p999: rank(0.999),
        max,
    })
}

/// Why the drill failed; empty when it passed.
/// The history's must-be-zero figures, and convergence.
struct Figures {
    duplicates: u64,
    overfills: u64,
    status_mismatches: u64,
    missed_fills: u64,
    false_fills: u64,
    cod_late: u64,
    cod_wrong_session: u64,
    md_gaps: u64,
    /// Market-data subscribers ran but no book of theirs was compared with the log's.
    md_unchecked: bool,
    sites_converged: bool,
}

impl Figures {
    fn of(
        history: &History,
        fills: &fills::FillCheck,
        status: &StatusCheck,
        duplicates: u64,
        sites_converged: bool,
    ) -> Figures {
        Figures {
            duplicates,
            overfills: history.overfills,
            status_mismatches: status.mismatches,
            missed_fills: fills.missed,
            false_fills: fills.false_fills,
            cod_late: history.cod.late,
            cod_wrong_session: history.cod.wrong_session,
            md_gaps: history.md.md_gaps,
            md_unchecked: history.md.subscribers > 0 && history.md.books_checked == 0,
            sites_converged,
        }
    }
}

fn problems(tally: &Tally, figures: &Figures, kill_log: &[KillRecord]) -> Vec<String> {
    let mut problems = nonzero_figures(tally, figures);
    if !figures.sites_converged {
        problems.push("the sites did not converge on the log's state".into());
    }
    if tally.acked == 0 {
        problems.push("no order was acknowledged".into());
    }
    problems.extend(fault_problems(kill_log));
    problems
}

/// Each must-be-zero figure that is not, worded.
fn nonzero_figures(tally: &Tally, figures: &Figures) -> Vec<String> {
    let mut problems = Vec::new();
    for (count, what) in [
        (
            tally.lost,
            "acknowledged orders are not in the log's history",
        ),
        (
            tally.false_reports,
            "engine rejects the history contradicts",
        ),
        (
            figures.false_fills,
            "orders were told filled further than the history filled them",
        ),
        (
            figures.missed_fills,
            "orders were filled further than their members were told",
        ),
        (figures.duplicates, "client order ids were accepted twice"),
        (
            figures.overfills,
            "trades filled an order beyond its quantity",
        ),
        (
            figures.status_mismatches,
            "status questions were answered differently by two sites",
        ),
        (
            figures.cod_late,
            "dead-man's switches fired later than their timeout plus a clock interval",
        ),
        (
            figures.cod_wrong_session,
            "orders were cancelled by another session's dead-man's switch",
        ),
        (
            figures.md_gaps,
            "market-data updates were missed or mis-numbered, or books differed from the log's",
        ),
        (
            u64::from(figures.md_unchecked),
            "market-data runs compared no book with the log's",
        ),
    ] {
        if count > 0 {
            problems.push(format!("{count} {what}"));
        }
    }
    problems
}

/// Faults whose sites did not come back, catch up, or all become ready again.
fn fault_problems(kill_log: &[KillRecord]) -> Vec<String> {
    let mut problems = Vec::new();
    for lost in kill_log.iter().filter(|k| k.return_error.is_some()) {
        problems.push(format!(
            "{} did not come back: {}",
            lost.site,
            lost.return_error.as_deref().unwrap_or_default()
        ));
    }
    if kill_log.iter().any(|k| k.catch_up_ms.is_none()) {
        problems.push("a restarted site did not catch up".into());
    }
    let unseen = |k: &&KillRecord| k.fault == Fault::ClockSkew && k.skew_seen_ms.is_none();
    if let Some(skew) = kill_log.iter().find(unseen) {
        problems.push(format!(
            "{}, its clock set ahead at {} ms, never said clock_skew",
            skew.site, skew.killed_at_ms
        ));
    }
    let unready = |k: &&KillRecord| k.return_error.is_none() && k.ready_ms.is_none();
    if let Some(fault) = kill_log.iter().find(unready) {
        problems.push(format!(
            "after the fault at {} ms, the sites were not all ready again",
            fault.killed_at_ms
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> OrderId {
        OrderId::new(text).unwrap()
    }

    fn ack(text: &str, outcome: Outcome) -> Ack {
        let now = Instant::now();
        Ack {
            cl_ord_id: id(text),
            outcome,
            site: 0,
            sent: now,
            at: now,
        }
    }

    fn failover(from: usize, to: usize, detected: Instant) -> crate::failover::Failover {
        crate::failover::Failover {
            from,
            to,
            why: "silent",
            detected,
            logged_on: detected,
            known: 0,
            resent: 0,
        }
    }

    fn client(
        failovers: Vec<crate::failover::Failover>,
        acks: Vec<(usize, Instant)>,
    ) -> ClientResult {
        ClientResult {
            orders: acks.len() as u64,
            acks: acks
                .into_iter()
                .map(|(site, at)| Ack {
                    site,
                    at,
                    ..ack("x", Outcome::Accepted)
                })
                .collect(),
            unacknowledged: 0,
            failovers,
            counts: Default::default(),
            account: AccountId(1),
            quoter: false,
            told: BTreeMap::new(),
            told_by: BTreeMap::new(),
            lost_track: Default::default(),
            replaced: BTreeMap::new(),
            changes: Default::default(),
            mass_answered: Vec::new(),
            protocol: "binary",
        }
    }

    /// cloud-a's crash at `killed_at_ms` from the start, back at `restarted_at_ms`, before
    /// its failovers are counted.
    fn crash(killed_at_ms: u64, restarted_at_ms: Option<u64>) -> KillRecord {
        KillRecord {
            restarted_at_ms,
            ..KillRecord::new(
                "cloud-a",
                crate::Fault::Crash,
                killed_at_ms,
                Default::default(),
            )
        }
    }

    fn names() -> Vec<String> {
        ["cloud-a", "cloud-b", "metal"].map(String::from).to_vec()
    }

    /// Seen in the drill on the mock cluster: a client that failed over from the killed site,
    /// then again from a site that had stalled too, before any acknowledgement, had no RTO
    /// (it was measured per move, from the new site only), so the kill had none either.
    #[test]
    fn a_client_that_moves_twice_before_an_acknowledgement_has_an_rto() {
        let killed = Instant::now();
        let at = |ms| killed + Duration::from_millis(ms);
        let record = crash(0, None);
        let twice = client(
            vec![failover(0, 1, at(3000)), failover(1, 2, at(6000))],
            vec![(0, at(100)), (2, at(7000))],
        );
        let once = client(vec![failover(0, 2, at(3000))], vec![(2, at(3200))]);
        let elsewhere = client(vec![], vec![(1, at(500))]);
        let quoter = ClientResult {
            quoter: true,
            ..client(vec![failover(0, 1, at(2000))], vec![(1, at(2500))])
        };
        let KillLog {
            records: log,
            client_rtos: rtos,
            quote_rtos,
        } = kill_log(
            vec![(0, record.clone(), killed)],
            &[twice, once, elsewhere, quoter],
            &names(),
        );
        assert_eq!((log[0].clients_failed_over, log[0].rto_ms), (2, Some(7000)));
        assert_eq!(
            log[0].slowest_path,
            [
                "silent at 3000 ms, cloud-b at 3000 ms",
                "silent at 6000 ms, metal at 6000 ms",
                "acknowledged at 7000 ms"
            ]
        );
        assert_eq!(rtos, [7000, 3200]);
        // A quoter's move is counted apart: it has no order in flight to be answered.
        assert_eq!((log[0].quoters_moved, log[0].quote_rto_ms), (1, Some(2500)));
        assert_eq!(quote_rtos, [2500]);
        let p = percentiles(rtos).unwrap();
        assert_eq!((p.p50, p.p99, p.max), (3200, 7000, 7000));
        assert!(percentiles(Vec::new()).is_none());

        // A client that never hears from another site leaves the kill without an RTO.
        let silent = client(vec![failover(0, 1, at(3000))], vec![(0, at(100))]);
        let KillLog {
            records: log,
            client_rtos: rtos,
            ..
        } = kill_log(vec![(0, record, killed)], &[silent], &names());
        assert_eq!((log[0].clients_failed_over, log[0].rto_ms), (1, None));
        assert_eq!(
            log[0].slowest_path,
            ["silent at 3000 ms, cloud-b at 3000 ms"]
        );
        assert!(rtos.is_empty());
    }

    /// Seen in the 10-minute drill: a kill's RTO of 21.6 s while no acknowledgement took over
    /// 2.6 s. A client had gone back to the restarted site and left it again 20 s after the
    /// kill (the site still catching up), and that move was taken for the kill's failover.
    #[test]
    fn a_move_away_from_the_site_after_it_is_back_is_not_the_faults() {
        let killed = Instant::now();
        let at = |ms| killed + Duration::from_millis(ms);
        let record = crash(1_000, Some(5_000));
        let prompt = client(vec![failover(0, 1, at(10))], vec![(1, at(60))]);
        let later = client(vec![failover(0, 2, at(20_000))], vec![(2, at(21_600))]);
        let KillLog {
            records: log,
            client_rtos: rtos,
            ..
        } = kill_log(vec![(0, record, killed)], &[prompt, later], &names());
        assert_eq!((log[0].clients_failed_over, log[0].rto_ms), (1, Some(60)));
        assert_eq!(rtos, [60]);
    }

    /// Seen in the 100-fault drill with FIX members: RTOs of 13-15 s at clock skews, from
    /// clients that came to the skewed site from another long after the fault began and left
    /// it at once. A client's RTO counts from its arrival when that came after the fault.
    #[test]
    fn a_client_that_came_to_the_site_after_the_fault_counts_from_its_arrival() {
        let killed = Instant::now();
        let at = |ms| killed + Duration::from_millis(ms);
        let record = crash(0, None);
        let mut came = failover(1, 0, at(9_000));
        came.logged_on = at(9_010);
        let late = client(vec![came, failover(0, 2, at(9_020))], vec![(2, at(9_100))]);
        let there = client(vec![failover(0, 1, at(40))], vec![(1, at(90))]);
        let results = [late, there];
        let KillLog {
            records: log,
            client_rtos: rtos,
            ..
        } = kill_log(vec![(0, record, killed)], &results, &names());
        assert_eq!((log[0].clients_failed_over, log[0].rto_ms), (2, Some(90)));
        assert_eq!(rtos, [90, 90]);
        let late = Move::of(&results[0], 0, killed, None).unwrap();
        assert_eq!(
            late.path(killed, &names()),
            [
                "came at 9010 ms",
                "silent at 9020 ms, metal at 9020 ms",
                "acknowledged at 9100 ms"
            ]
        );
    }

    /// The audit's judgement itself: an acknowledged order missing from the history is lost
    /// (a rejected one is not), and an id accepted twice is a duplicate.
    #[test]
    fn the_audit_finds_lost_and_duplicate_orders() {
        let account = AccountId(7);
        let mut history = History::default();
        history.accepted.insert((account, id("in-log")), 1);
        assert!(!is_lost(
            &history,
            account,
            &ack("in-log", Outcome::Accepted)
        ));
        assert!(is_lost(
            &history,
            account,
            &ack("missing", Outcome::Accepted)
        ));
        assert!(!is_lost(
            &history,
            account,
            &ack("missing", Outcome::Rejected(6))
        ));
        // The same id under another account is another order.
        assert!(is_lost(
            &history,
            AccountId(8),
            &ack("in-log", Outcome::Accepted)
        ));
        assert_eq!(duplicates(&history), 0);
        history.accepted.insert((account, id("twice")), 2);
        assert_eq!(duplicates(&history), 1);
        // Accepted a second time in a replay: the example names it and where.
        history.at = 41;
        history.record(&accepted(account, "in-log", 1));
        assert_eq!(duplicates(&history), 2);
        assert_eq!(
            history.duplicate_examples,
            ["account 7 order in-log: accepted again at position 41"]
        );
    }

    fn accepted(account: AccountId, order: &str, qty: i64) -> EventKind {
        EventKind::Accepted {
            account,
            order_id: id(order),
            symbol: engine::Symbol::new("BTC-USD").unwrap(),
            side: engine::Side::Buy,
            price: None,
            qty: Qty(qty),
            number: 0,
        }
    }

    fn trade(maker: (AccountId, &str, i64), taker: (AccountId, &str, i64)) -> EventKind {
        EventKind::Trade {
            symbol: engine::Symbol::new("BTC-USD").unwrap(),
            price: engine::Price(1),
            qty: Qty(1),
            maker_account: maker.0,
            maker_order_id: id(maker.1),
            taker_account: taker.0,
            taker_order_id: id(taker.1),
            taker_side: engine::Side::Sell,
            maker_leaves: Qty(0),
            taker_leaves: Qty(0),
            maker_filled: Qty(maker.2),
            taker_filled: Qty(taker.2),
            trade_id: 1,
        }
    }

    /// A trade that leaves an order filled beyond its quantity (as accepted, or as amended
    /// since) is an overfill; filled up to it is not.
    #[test]
    fn the_audit_finds_overfills() {
        let (a, b) = (AccountId(1), AccountId(2));
        let mut history = History::default();
        history.record(&accepted(a, "m", 5));
        history.record(&accepted(b, "t", 3));
        history.record(&trade((a, "m", 3), (b, "t", 3)));
        assert_eq!(history.overfills, 0);
        history.record(&trade((a, "m", 6), (b, "t", 3)));
        assert_eq!(history.overfills, 1, "the maker filled 6 of 5");
        history.record(&EventKind::Amended {
            account: a,
            order_id: id("m"),
            symbol: engine::Symbol::new("BTC-USD").unwrap(),
            price: engine::Price(1),
            total: Qty(8),
            leaves: Qty(2),
            filled: Qty(6),
            new_order_id: Some(id("m2")),
        });
        history.record(&trade((a, "m2", 8), (b, "t", 3)));
        assert_eq!(history.overfills, 1, "8 of the amended 8");
        history.record(&trade((a, "m2", 9), (b, "t", 4)));
        assert_eq!(history.overfills, 3, "both sides beyond their totals");
    }

    /// A member told the engine rejected an order is told the truth only when the history
    /// rejected it; a duplicate copy refused does not make the order rejected.
    #[test]
    fn the_audit_finds_false_rejects() {
        let account = AccountId(7);
        let mut history = History::default();
        let rejected = |order: &str, reason| EventKind::Rejected {
            account,
            order_id: id(order),
            symbol: engine::Symbol::new("BTC-USD").unwrap(),
            request: Request::New,
            reason,
        };
        history.record(&rejected("bad", RejectReason::InvalidQty));
        history.record(&accepted(account, "good", 1));
        history.record(&rejected("good", RejectReason::DuplicateOrderId));
        let told = |order| ack(order, Outcome::Rejected(3));
        assert!(!is_false_reject(&history, account, &told("bad")));
        assert!(is_false_reject(&history, account, &told("good")));
        assert!(is_false_reject(&history, account, &told("never-seen")));
        assert!(!is_false_reject(
            &history,
            account,
            &ack("good", Outcome::Accepted)
        ));
    }

    /// A position a restarted site reports again is compared again: a different hash there
    /// is kept beside the first, the same one once.
    #[test]
    fn every_hash_a_site_wrote_is_compared_once() {
        let report = |position, hash: &str| HashReport {
            site: "metal".into(),
            shard: 0,
            position,
            hash: hash.into(),
        };
        let file = vec![report(1000, "a"), report(2000, "b"), report(2000, "x")];
        let recent = vec![report(2000, "b"), report(3000, "c")];
        let merged = merged(recent, file);
        let pairs: Vec<(u64, &str)> = merged
            .iter()
            .map(|r| (r.position, r.hash.as_str()))
            .collect();
        assert_eq!(pairs, [(1000, "a"), (2000, "b"), (2000, "x"), (3000, "c")]);
    }

    /// The fills check: a fill the member was never told (not in a report, not in a mass
    /// status) is missed; one told beyond the history is false; the last mass status makes
    /// up for reports lost while moving.
    #[test]
    fn the_audit_finds_missed_and_false_fills() {
        let account = AccountId(1);
        let mut history = History::default();
        for (order, filled) in [("a", 3), ("b", 2), ("c", 5)] {
            history.filled.insert((account, id(order)), Qty(filled));
        }
        let mut member = client(vec![], vec![]);
        member.told = [(id("a"), Qty(3)), (id("b"), Qty(1)), (id("d"), Qty(1))].into();
        let final_status = [(id("c"), Qty(5))].into();
        let check = fills::check(&history.filled, &[member], &[final_status]);
        // b: told 1 of 2 (missed); d: told a fill the history never made (false).
        assert_eq!((check.missed, check.false_fills), (1, 1), "{check:?}");
        assert_eq!(check.examples.len(), 2);
        let none = fills::check(&history.filled, &[client(vec![], vec![])], &[]);
        assert_eq!(none.missed, 3, "nothing told, nothing reconciled");
    }

    /// Seen in the mixed drill (`false_reports` 1, then 4): a FIX member replaced `a` with
    /// `z`, the replace took (the history keeps the fills under `z`), and no report named `z`
    /// before the end. Its fills told under `a` belong to `z` once its last mass status names
    /// `z`, as the member moves them when any report does; not if it does not (the replace
    /// did not take, and the fills stay `a`'s).
    #[test]
    fn fills_told_under_a_replaced_id_follow_it_when_the_last_mass_status_names_the_new_one() {
        let account = AccountId(1);
        let mut history = History::default();
        history.filled.insert((account, id("z")), Qty(2));
        let mut member = client(vec![], vec![]);
        member.told = [(id("a"), Qty(2))].into();
        member.replaced = [(id("z"), id("a"))].into();
        let named: BTreeMap<OrderId, Qty> = [(id("z"), Qty(2))].into();
        let check = fills::check(&history.filled, &[member], &[named]);
        assert_eq!((check.missed, check.false_fills), (0, 0), "{check:?}");

        let mut untaken = History::default();
        untaken.filled.insert((account, id("a")), Qty(2));
        let mut member = client(vec![], vec![]);
        member.told = [(id("a"), Qty(2))].into();
        member.replaced = [(id("z"), id("a"))].into();
        let check = fills::check(&untaken.filled, &[member], &[BTreeMap::new()]);
        assert_eq!((check.missed, check.false_fills), (0, 0), "{check:?}");
    }

    /// A missed fill is shown with when its order traded and what its member was doing then:
    /// its moves and answered mass statuses around it, in seconds into the load.
    #[test]
    fn a_missed_fill_says_when_it_traded_and_where_its_member_was() {
        let account = AccountId(1);
        let (started, wall) = (Instant::now(), SystemTime::now());
        let wall_ns = wall
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut history = History::default();
        history.filled.insert((account, id("b")), Qty(2));
        history
            .filled_at
            .insert((account, id("b")), wall_ns + 40_000_000_000);
        let at = |s: u64| started + Duration::from_secs(s);
        let mut member = client(
            vec![failover(0, 1, at(41)), failover(1, 2, at(300))],
            vec![],
        );
        member.mass_answered = vec![at(44), at(500)];
        let check = fills::check(&history.filled, std::slice::from_ref(&member), &[]);
        let lines = missed_fill_context(&check, &history, &[member], (started, wall));
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(line.starts_with("order b last traded at 40.0 s"), "{line}");
        assert!(line.contains("41.0-41.0 s 0->1 (silent)"), "{line}");
        assert!(
            line.contains("[\"44.0\"]"),
            "only the answers near the fill: {line}"
        );
        assert!(!line.contains("300.0"), "{line}");
    }

    /// The tally and figures of a run in which nothing went wrong.
    fn nothing_wrong() -> (Tally, Figures) {
        let tally = Tally::of(&[], &History::default()).unwrap();
        let figures = Figures::of(
            &History::default(),
            &fills::FillCheck::default(),
            &StatusCheck::default(),
            0,
            true,
        );
        (tally, figures)
    }

    /// A site that did not come back fails the drill, naming the site and why.
    #[test]
    fn a_site_that_did_not_come_back_is_a_problem() {
        let (tally, figures) = nothing_wrong();
        let lost = KillRecord {
            return_error: Some("site cloud-a did not listen within 900s".into()),
            ..crash(1_000, None)
        };
        let problems = problems(&tally, &figures, &[lost]);
        assert!(
            problems.contains(
                &"cloud-a did not come back: site cloud-a did not listen within 900s".to_string()
            ),
            "{problems:?}"
        );
    }

    /// A site whose clock was set ahead and that never refused for it: the clock check is
    /// not working (or the skew never reached a member), and the drill fails.
    #[test]
    fn a_clock_skew_never_seen_is_a_problem() {
        let (tally, figures) = nothing_wrong();
        let skew = |seen| KillRecord {
            ready_ms: Some(10),
            skew_seen_ms: seen,
            ..KillRecord::new("metal", Fault::ClockSkew, 2_000, Default::default())
        };
        let unseen = "metal, its clock set ahead at 2000 ms, never said clock_skew".to_string();
        assert!(problems(&tally, &figures, &[skew(None)]).contains(&unseen));
        assert!(!problems(&tally, &figures, &[skew(Some(900))]).contains(&unseen));
    }
}
