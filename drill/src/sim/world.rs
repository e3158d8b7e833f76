//! The simulated world: the event queue on simulated time, the network between members,
//! sites and the log, the faults, and the run's end.

use std::collections::{BTreeMap, BTreeSet};

use engine::{AddSymbol, Command, CommandKind, EngineConfig, OrderId, Price, Qty, Symbol};
use flow::SplitMix64;

use super::check::{self, Evidence, Verdict};
use super::client::{ClientConfig, Outgoing, SimClient};
use super::faults::{self, Fault, FaultKind};
use super::log::{Append, SimLog};
use super::msg::{Msg, Req};
use super::site::{Out, SimSite, SiteConfig};
use super::{SimConfig, SimRun};

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;
const SITES: usize = 3;
/// One way between a member and a site.
const MEMBER_LINK: u64 = MS / 2;
/// One way between each site and the log's leader: the clouds close, metal further.
const LOG_LINK: [u64; SITES] = [MS / 2, MS / 2, 3 * MS / 2];
const CLIENT_TICK: u64 = 20 * MS;
const SITE_TICK: u64 = 50 * MS;
const POLL_EVERY: u64 = 10 * MS;
const PROBE_EVERY: u64 = 250 * MS;
/// A dead-man's switch may fire this long after its deadline in log time (the drill's
/// `clock_every`): the sites' idle clocks keep log time moving at least this often.
const SWITCH_SLACK: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug)]
enum Ev {
    ClientTick(usize),
    ToSite {
        site: usize,
        client: usize,
        conn: u64,
        req: Req,
    },
    ToClient {
        site: usize,
        client: usize,
        conn: u64,
        msg: Msg,
    },
    Produce {
        site: usize,
        producer: u64,
        number: u64,
        command: Command,
    },
    Produced {
        site: usize,
        producer: u64,
        number: u64,
    },
    Poll(usize),
    Fetched {
        site: usize,
        incarnation: u64,
        from: u64,
        records: Vec<(Command, u64)>,
        end: u64,
    },
    SiteTick(usize),
    FaultStart(usize),
    FaultEnd(usize),
    Probe,
}

impl Ev {
    /// The site that handles it (a paused site handles nothing until it resumes).
    fn site(&self) -> Option<usize> {
        match *self {
            Ev::ToSite { site, .. }
            | Ev::Produced { site, .. }
            | Ev::Fetched { site, .. }
            | Ev::Poll(site)
            | Ev::SiteTick(site) => Some(site),
            _ => None,
        }
    }
}

/// The network's state between the sites, the log and the members.
#[derive(Default)]
struct Net {
    cut_log: [bool; SITES],
    cut_members: [bool; SITES],
    /// A crashed site's host is dark: connections to it hang rather than close.
    dark: [bool; SITES],
    paused_until: [u64; SITES],
    duplicates: [bool; SITES],
    slow: [bool; SITES],
    /// Added to every message to and from the site.
    delay: [u64; SITES],
    log_delay: u64,
    incarnation: [u64; SITES],
    /// When the last message on each link (site, peer, towards the site) arrives: none
    /// overtakes another on its link.
    links: BTreeMap<(usize, Peer, bool), u64>,
}

/// The other end of a site's link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Client(usize),
    Log,
}

impl Net {
    /// When a message sent `now` on the link arrives: after `base` and the site's delay, and
    /// not before the one sent before it.
    fn arrival(&mut self, now: u64, site: usize, peer: Peer, to_site: bool, base: u64) -> u64 {
        let last = self.links.entry((site, peer, to_site)).or_default();
        let extra = if peer == Peer::Log { self.log_delay } else { 0 };
        *last = (*last).max(now + base + self.delay[site] + extra);
        *last
    }
}

pub(super) struct World {
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    rng: SplitMix64,
    log: SimLog,
    sites: Vec<SimSite>,
    clients: Vec<SimClient>,
    site_config: SiteConfig,
    client_config: ClientConfig,
    net: Net,
    load_end: u64,
    faults: Vec<Fault>,
    stalls: Vec<(u64, u64)>,
    verdict: Verdict,
    events: u64,
    trace: bool,
    /// The sites send nothing more (the run's end).
    quiet: bool,
}

/// The sites' engine: small capacities, and a dedup window of 20 s of log time (longer than
/// any resend or late delivery here: a producer gives up after 5 s, a member moves in 3).
fn engine_config() -> EngineConfig {
    EngineConfig {
        symbols_max: 4,
        accounts_max: 64,
        orders_max: 4096,
        retired_ids_max: 1 << 16,
        dedup_window_ns: 20 * S,
        switches_max: 256,
        levels_max: 1024,
        levels_per_side_max: 256,
        ..EngineConfig::default()
    }
}

fn symbol() -> Symbol {
    Symbol::new("BTC-USD").expect("a symbol")
}

impl World {
    pub(super) fn new(seed: u64, config: &SimConfig) -> World {
        let mut rng = SplitMix64(seed);
        let duration = config.duration.as_nanos() as u64;
        let extras = faults::Extras {
            long_outage: duration >= 90 * S && rng.below(4) == 0,
            log_overload: config.log_overload,
        };
        let faults = if config.faults {
            faults::plan(&mut rng, SITES, duration, extras)
        } else {
            Vec::new()
        };
        let sites = (0..SITES)
            .map(|k| SimSite::new(k, 37 + rng.below(400)))
            .collect();
        let clients = (0..config.clients)
            .map(|k| SimClient::new(k, k % SITES, k % 2 == 1))
            .collect();
        let mut world = World {
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            rng,
            log: SimLog::default(),
            sites,
            clients,
            site_config: site_config(config),
            client_config: client_config(),
            net: Net::default(),
            load_end: duration,
            faults,
            stalls: Vec::new(),
            verdict: Verdict::default(),
            events: 0,
            trace: config.trace,
            quiet: false,
        };
        world.start();
        world
    }

    /// Lists the symbol, starts every site and schedules the clocks and faults.
    fn start(&mut self) {
        let listing = CommandKind::AddSymbol(AddSymbol {
            symbol: symbol(),
            tick: Price(1),
            lot: Qty(1),
        });
        self.log.seed(Command::new(0, listing));
        for site in 0..SITES {
            self.sites[site].start(0, &self.site_config, self.log.end());
            self.at(site as u64 * MS, Ev::Poll(site));
            self.at(site as u64 * MS + 5 * MS, Ev::SiteTick(site));
        }
        for client in 0..self.clients.len() {
            self.at(100 * MS + client as u64 * 3 * MS, Ev::ClientTick(client));
        }
        for k in 0..self.faults.len() {
            self.at(self.faults[k].at, Ev::FaultStart(k));
        }
        self.at(PROBE_EVERY, Ev::Probe);
    }

    fn at(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    /// Handles every event up to `end`, in time order.
    pub(super) fn run_until(&mut self, end: u64) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > end {
                break;
            }
            let ((at, _), ev) = entry.remove_entry();
            self.now = at;
            self.events += 1;
            if self.trace {
                println!("{:>12.3} ms  {}", at as f64 / MS as f64, describe(&ev));
            }
            self.dispatch(ev);
        }
        self.now = end;
    }

    fn dispatch(&mut self, ev: Ev) {
        if let Some(site) = ev.site() {
            let resume = self.net.paused_until[site];
            if resume > self.now {
                self.at(resume, ev);
                return;
            }
        }
        match ev {
            Ev::ClientTick(client) => self.client_tick(client),
            Ev::ToSite {
                site,
                client,
                conn,
                req,
            } => self.at_site(site, client, conn, req),
            Ev::ToClient {
                site,
                client,
                conn,
                msg,
            } => self.at_client(site, client, conn, msg),
            Ev::Produce {
                site,
                producer,
                number,
                command,
            } => self.produce(site, producer, number, command),
            Ev::Produced {
                site,
                producer,
                number,
            } => self.produced(site, producer, number),
            Ev::Poll(site) => self.poll(site),
            Ev::Fetched {
                site,
                incarnation,
                from,
                records,
                end,
            } => self.fetched(site, incarnation, from, &records, end),
            Ev::SiteTick(site) => self.site_tick(site),
            Ev::FaultStart(k) => self.fault_start(k),
            Ev::FaultEnd(k) => self.fault_end(k),
            Ev::Probe => self.probe(),
        }
    }
}

/// One event, short, for a trace.
fn describe(ev: &Ev) -> String {
    match ev {
        Ev::Fetched {
            site,
            from,
            records,
            end,
            ..
        } => format!(
            "Fetched site {site}: {} from {from}, end {end}",
            records.len()
        ),
        other => format!("{other:?}"),
    }
}

fn site_config(config: &SimConfig) -> SiteConfig {
    SiteConfig {
        engine: engine_config(),
        symbol: symbol(),
        max_lag: std::time::Duration::from_secs(1),
        // Checked every site tick (50 ms): a clock at most 450 ms after the site's last
        // command, so log time never stands still longer than the switches' slack.
        clock_every: std::time::Duration::from_millis(400),
        hash_every: 100,
        log_silent_ns: S,
        retry_ns: 300 * MS,
        delivery_timeout_ns: 5 * S,
        session_timeout_ns: 3 * S,
        bug: config.bug,
    }
}

fn client_config() -> ClientConfig {
    ClientConfig {
        sites: SITES,
        symbol: symbol(),
        ack_timeout_ns: 3 * S,
        probe_after_ns: 250 * MS,
        silence_ns: S,
        connect_timeout_ns: S,
        retry_ns: 200 * MS,
        backoff_max_ns: 2 * S,
        mass_wait_ns: 3 * S,
        stay_ns: 5 * S,
    }
}

// ----- members and sites ---------------------------------------------------------------------

impl World {
    fn client_tick(&mut self, client: usize) {
        let load = self.now < self.load_end;
        let sends = self.clients[client].tick(self.now, &self.client_config, &mut self.rng, load);
        self.send_all(client, sends);
        self.at(self.now + CLIENT_TICK, Ev::ClientTick(client));
    }

    fn send_all(&mut self, client: usize, sends: Vec<Outgoing>) {
        for Outgoing { site, conn, req } in sends {
            if !self.net.cut_members[site] {
                let ev = Ev::ToSite {
                    site,
                    client,
                    conn,
                    req,
                };
                let at = self
                    .net
                    .arrival(self.now, site, Peer::Client(client), true, MEMBER_LINK);
                self.at(at, ev);
            }
        }
    }

    /// A request reaches a site: dropped on a cut link; a dead process's host closes the
    /// connection, a dark one says nothing.
    fn at_site(&mut self, site: usize, client: usize, conn: u64, req: Req) {
        if self.net.cut_members[site] {
            return;
        }
        if !self.sites[site].is_up() {
            if !self.net.dark[site] {
                self.send_to_client(site, client, conn, Msg::Closed);
            }
            return;
        }
        let mut out = Vec::new();
        let config = &self.site_config;
        self.sites[site].on_request(self.now, config, (client, conn), req, &mut out);
        self.route(site, out);
    }

    fn send_to_client(&mut self, site: usize, client: usize, conn: u64, msg: Msg) {
        if !self.net.cut_members[site] {
            let ev = Ev::ToClient {
                site,
                client,
                conn,
                msg,
            };
            let at = self
                .net
                .arrival(self.now, site, Peer::Client(client), false, MEMBER_LINK);
            self.at(at, ev);
        }
    }

    fn at_client(&mut self, site: usize, client: usize, conn: u64, msg: Msg) {
        if self.net.cut_members[site] {
            return;
        }
        let sends = self.clients[client].on_msg(self.now, &self.client_config, conn, msg);
        self.send_all(client, sends);
    }

    /// What a site sent: to its members, or to the log.
    fn route(&mut self, site: usize, out: Vec<Out>) {
        for item in out {
            match item {
                Out::ToClient { client, conn, msg } => self.send_to_client(site, client, conn, msg),
                Out::Produce {
                    producer,
                    number,
                    command,
                } if !self.net.cut_log[site] => {
                    let ev = Ev::Produce {
                        site,
                        producer,
                        number,
                        command,
                    };
                    let at = self
                        .net
                        .arrival(self.now, site, Peer::Log, false, LOG_LINK[site]);
                    self.at(at, ev);
                }
                Out::Produce { .. } => {}
            }
        }
    }

    /// From now on the sites send nothing to the log (no idle clock, no switch refresh).
    pub(super) fn quiesce(&mut self) {
        self.quiet = true;
    }

    fn site_tick(&mut self, site: usize) {
        if self.quiet {
            return;
        }
        let mut out = Vec::new();
        self.sites[site].tick(self.now, &self.site_config, &mut out);
        self.route(site, out);
        self.at(self.now + SITE_TICK, Ev::SiteTick(site));
    }
}

// ----- the log -------------------------------------------------------------------------------

impl World {
    /// A record reaches the leader (even from a site that has died since: it was in flight).
    fn produce(&mut self, site: usize, producer: u64, number: u64, command: Command) {
        if self.net.cut_log[site] {
            return;
        }
        let appended = self.log.append(self.now, producer, number, command);
        if let (true, Append::At(position)) = (self.trace, appended) {
            println!("{:>15} appended at {position}", "");
        }
        if matches!(appended, Append::At(_) | Append::Duplicate) {
            let ev = Ev::Produced {
                site,
                producer,
                number,
            };
            let at = self
                .net
                .arrival(self.now, site, Peer::Log, true, LOG_LINK[site]);
            self.at(at, ev);
        }
    }

    fn produced(&mut self, site: usize, producer: u64, number: u64) {
        if !self.net.cut_log[site] {
            self.sites[site].on_produced(self.now, producer, number);
        }
    }

    /// The site's feeder asks for the records past its position (some it has, with a
    /// duplicate-delivery fault; a few at a time, with a slow-consumer fault).
    fn poll(&mut self, site: usize) {
        self.at(self.now + POLL_EVERY, Ev::Poll(site));
        let Some(next) = self.sites[site].next() else {
            return;
        };
        if self.net.cut_log[site] {
            return;
        }
        let from = if self.net.duplicates[site] {
            next.saturating_sub(1 + self.rng.below(20))
        } else {
            next
        };
        let max = if self.net.slow[site] { 2 } else { 500 };
        let Some(records) = self.log.fetch(self.now, from, max) else {
            return;
        };
        let ev = Ev::Fetched {
            site,
            incarnation: self.net.incarnation[site],
            from,
            records: records.to_vec(),
            end: self.log.end(),
        };
        let at = self
            .net
            .arrival(self.now, site, Peer::Log, true, 2 * LOG_LINK[site]);
        self.at(at, ev);
    }

    fn fetched(
        &mut self,
        site: usize,
        incarnation: u64,
        from: u64,
        records: &[(Command, u64)],
        end: u64,
    ) {
        if incarnation != self.net.incarnation[site] || self.net.cut_log[site] {
            return;
        }
        let mut out = Vec::new();
        let config = &self.site_config;
        self.sites[site].on_fetched(self.now, config, from, records, end, &mut out);
        self.route(site, out);
    }
}

// ----- faults, probes, the end ---------------------------------------------------------------

impl World {
    fn fault_start(&mut self, k: usize) {
        let Fault {
            site, kind, down, ..
        } = self.faults[k];
        let net = &mut self.net;
        match kind {
            FaultKind::Crash { dark } => {
                net.dark[site] = dark;
                net.incarnation[site] += 1;
                let open = self.sites[site].crash();
                if !dark {
                    for (client, conn) in open {
                        self.send_to_client(site, client, conn, Msg::Closed);
                    }
                }
            }
            FaultKind::Partition { members } => {
                net.cut_log[site] = true;
                net.cut_members[site] = members;
            }
            FaultKind::Pause => net.paused_until[site] = self.now + down,
            FaultKind::LeaderMove => {
                self.log.stall(self.now + down);
                self.stalls.push((self.now, self.now + down));
            }
            FaultKind::Skew(off) => self.sites[site].skew_ns = off,
            FaultKind::DuplicateDelivery => net.duplicates[site] = true,
            FaultKind::SlowConsumer => net.slow[site] = true,
            FaultKind::SlowLinks(delay) => net.delay[site] = delay,
            FaultKind::LogOverload(delay) => net.log_delay = delay,
        }
        self.at(self.now + down, Ev::FaultEnd(k));
    }

    fn fault_end(&mut self, k: usize) {
        let Fault { site, kind, .. } = self.faults[k];
        let net = &mut self.net;
        match kind {
            FaultKind::Crash { .. } => {
                net.dark[site] = false;
                let end = self.log.end();
                self.sites[site].start(self.now, &self.site_config, end);
            }
            FaultKind::Partition { .. } => {
                net.cut_log[site] = false;
                net.cut_members[site] = false;
            }
            FaultKind::Pause | FaultKind::LeaderMove => {}
            FaultKind::Skew(_) => self.sites[site].skew_ns = 0,
            FaultKind::DuplicateDelivery => net.duplicates[site] = false,
            FaultKind::SlowConsumer => net.slow[site] = false,
            FaultKind::SlowLinks(_) => net.delay[site] = 0,
            FaultKind::LogOverload(_) => net.log_delay = 0,
        }
    }

    /// Every site at the same position must answer every member's mass status alike.
    fn probe(&mut self) {
        self.compare_sites();
        self.at(self.now + PROBE_EVERY, Ev::Probe);
    }

    fn compare_sites(&mut self) {
        for a in 0..SITES {
            for b in a + 1..SITES {
                let (Some(at), Some(other)) = (self.sites[a].next(), self.sites[b].next()) else {
                    continue;
                };
                if at != other {
                    continue;
                }
                for client in &self.clients {
                    self.verdict.status_compared += 1;
                    let first = status_of(&self.sites[a], client);
                    if first != status_of(&self.sites[b], client) {
                        self.verdict.status_mismatches += 1;
                        self.verdict.example(format!(
                            "sites {a} and {b} at {at} answer client {}'s mass status differently",
                            client.index
                        ));
                    }
                }
            }
        }
    }

    /// The run's end: every site's final state, each member's last mass status, the checks.
    pub(super) fn finish(mut self, seed: u64) -> SimRun {
        self.compare_sites();
        let end = self.log.end();
        let final_hashes = self
            .sites
            .iter()
            .map(|s| {
                if s.next() == Some(end) {
                    s.state_hash()
                } else {
                    None
                }
            })
            .collect();
        let (final_filled, lost_track) = self.final_answers().into_iter().unzip();
        let evidence = Evidence {
            engine: engine_config(),
            clock_every: SWITCH_SLACK,
            hold_max: std::time::Duration::from_nanos(self.site_config.delivery_timeout_ns),
            log: self.log.records(),
            stalls: &self.stalls,
            clients: &self.clients,
            final_filled,
            lost_track,
            site_hashes: self.sites.iter().map(|s| s.hashes.clone()).collect(),
            final_hashes,
        };
        check::check(&evidence, &mut self.verdict);
        SimRun {
            seed,
            simulated_ms: self.now / MS,
            events: self.events,
            log_records: end,
            orders_acknowledged: self.clients.iter().map(|c| c.acks.len() as u64).sum(),
            failovers: self.clients.iter().map(|c| c.failovers).sum(),
            found_ready: self.clients.iter().map(|c| c.found_ready).sum(),
            refused: self.clients.iter().map(|c| c.refused).sum(),
            stale_resends: self.clients.iter().map(|c| c.stale_resends).sum(),
            slowest_ack_ms: self
                .clients
                .iter()
                .flat_map(|c| &c.acks)
                .map(|a| (a.at - a.sent) / MS)
                .max()
                .unwrap_or(0),
            faults: self.faults,
            verdict: self.verdict,
        }
    }

    /// Each member's last mass status, from the first site at the log's end: the filled
    /// quantity of every order in it, and the member's live orders it shows were lost track
    /// of ([`SimClient::lost_in`]) with those it knew of already.
    fn final_answers(&self) -> Vec<(BTreeMap<OrderId, Qty>, BTreeSet<OrderId>)> {
        let end = self.log.end();
        let site = self.sites.iter().find(|s| s.next() == Some(end));
        self.clients
            .iter()
            .map(|client| {
                let reports = site
                    .map(|s| s.mass_status(client.account))
                    .unwrap_or_default();
                let mut lost = client.lost_track.clone();
                lost.extend(client.lost_in(&reports));
                let filled = reports.iter().map(|r| (r.cl_ord_id, r.cum_qty)).collect();
                (filled, lost)
            })
            .collect()
    }
}

/// A site's mass status answer for a member, without what only says when it was asked (the
/// drill's status check compares the same way).
fn status_of(site: &SimSite, client: &SimClient) -> Vec<gateway::Report> {
    let mut reports = site.mass_status(client.account);
    for report in &mut reports {
        report.seq = 0;
        report.ts = 0;
    }
    reports
}
