//! The open-loop load generator: [`run`] sends a seeded flow over many binary sessions at a
//! fixed rate and measures every request's latency from the moment the schedule meant to send
//! it, like wrk2 and exchange-core's tester.
//!
//! ```text
//!  plan (before the run): FlowGenerator ──▶ per-session request lists + the schedule
//!  sender thread:  sleeps to the next intended time, queues every due request on its
//!                  session, flushes; never waits for answers (open loop)
//!  reader tasks:   one per session; match each ExecutionReport / CancelReject /
//!                  MassCancelReport to its request by client order id and type, and record
//!                  now − intended time
//! ```
//!
//! A stalled server therefore shows up as latency for every request scheduled during the
//! stall (no coordinated omission). A sender that falls behind keeps sending to catch up; the
//! late requests are counted ([`RunResult::late_sends`]) and still measured from their
//! intended time, and [`RunResult::rate_achieved`] says what was really sent.
//!
//! The whole run is generated before it starts (about 42 bytes per request: 100 MB for 2.4
//! million), so the sender only paces and writes.
//!
//! A run: log on every session, send the flow's setup orders (the books' initial depth; not
//! measured), run the schedule (warm-up, then the measured window), wait for the outstanding
//! acknowledgements (at most [`LoadConfig::timeout`]), then mass-cancel each member's orders
//! (so the next run starts from empty books) and log out.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use engine::{OrderId, Symbol};
use gateway::binary::{
    exec_type, msg_type, reason, session_reject, CancelRequest, ClientMessage, ExecReport,
    ServerMessage,
};
use gateway::binary_client::{BinaryClient, ClientReader, ClientWriter};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

use crate::plan::{Ids, Plan, Planned, RequestKind, Sessions, ALL_SYMBOLS, SETUP};
use crate::result::{reject_name, Errors, Latency, RunResult, Throughput};
use flow::FlowConfig;

/// Width of a throughput bucket.
const BUCKET: Duration = Duration::from_millis(100);
/// A request sent later than this after its intended time counts as a late send.
const LATE: Duration = Duration::from_millis(1);
/// Setup orders queued per session before waiting for their acknowledgements.
const SETUP_CHUNK: usize = 256;
/// Most requests queued in one sender round before flushing.
const ROUND_MAX: usize = 4096;
/// A session with nothing sent for this long gets a heartbeat (the server logs out a client
/// silent for three of its 30 s heartbeat intervals).
const IDLE_HEARTBEAT: Duration = Duration::from_secs(10);
/// Latencies above this are recorded as this (histogram range).
const LATENCY_MAX_NS: u64 = 600_000_000_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Binary order-entry gateways; connections are spread over them round-robin.
    pub targets: Vec<SocketAddr>,
    /// Members as (logon token, account). Session `k` logs on as member `k % members.len()`.
    /// Give at least as many members as connections: the hub sends an account's reports to
    /// every session of the account, so shared members multiply the report traffic.
    pub members: Vec<(String, u64)>,
    /// Binary sessions.
    pub connections: usize,
    /// Requests per second, every type counted (new, cancel, replace, mass cancel).
    pub rate: f64,
    /// The measured window, after the warm-up.
    pub duration: Duration,
    /// Scheduled like the rest but not measured.
    pub warmup: Duration,
    /// The flow. Its `accounts` is replaced by the members in use (`min(members,
    /// connections)`): each flow account is one member, so the generator's own engine sees
    /// the same accounts as the exchange (self-trade prevention included).
    pub flow: FlowConfig,
    /// Names for the flow's symbols, which must be listed with the flow's tick and lot; empty:
    /// the flow's own names (see [`FlowConfig::symbol_specs`]).
    pub symbols: Vec<String>,
    /// How long a request may wait for its acknowledgement (also bounds the final drain, each
    /// logon and each write).
    pub timeout: Duration,
    /// Prefix of every client order id (at most 24 printable characters); `None`: a fresh one
    /// per run from the clock, so runs against the same site never reuse an id.
    pub id_prefix: Option<String>,
}

impl LoadConfig {
    /// Defaults against `targets` with `members`: one connection per member, 10,000
    /// requests/s for 10 s after 2 s of warm-up, the default flow, a 5 s timeout.
    pub fn new(targets: Vec<SocketAddr>, members: Vec<(String, u64)>) -> LoadConfig {
        LoadConfig {
            targets,
            connections: members.len().max(1),
            members,
            rate: 10_000.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            flow: FlowConfig::default(),
            symbols: Vec::new(),
            timeout: Duration::from_secs(5),
            id_prefix: None,
        }
    }

    fn check(&self) -> Result<()> {
        if self.targets.is_empty() {
            bail!("no target to connect to");
        }
        if self.members.is_empty() {
            bail!("no member to log on as");
        }
        if self.connections == 0 {
            bail!("at least one connection");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("the rate must be positive, not {}", self.rate);
        }
        if self.duration.is_zero() {
            bail!("the duration must be positive");
        }
        if self.timeout.is_zero() {
            bail!("the timeout must be positive");
        }
        if !self.symbols.is_empty() && self.symbols.len() != self.flow.symbols as usize {
            bail!(
                "{} symbol names for a flow of {} symbols",
                self.symbols.len(),
                self.flow.symbols
            );
        }
        if let Some(prefix) = &self.id_prefix {
            if prefix.len() > 24 || !prefix.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                bail!("the id prefix {prefix:?} is not 0 to 24 printable ASCII characters");
            }
        }
        self.flow
            .validate()
            .map_err(|problem| anyhow!("flow: {problem}"))
    }
}

/// A session's counters, shared by the sender and its reader.
#[derive(Default)]
struct SessionShared {
    /// Requests (from the session's list) queued for sending; the reader matches only these.
    sent: AtomicUsize,
    /// Requests answered (engine acknowledgement or gateway refusal).
    acked: AtomicUsize,
    /// The connection is lost: nothing more is sent on it.
    dead: AtomicBool,
    /// This session sent the final mass cancel.
    cleanup_sent: AtomicBool,
}

/// What the sender and the readers share.
struct Shared {
    plan: Plan,
    symbols: Vec<Symbol>,
    prefix: String,
    sessions: Vec<SessionShared>,
    /// The schedule's time zero (set once the setup orders are done).
    start: OnceLock<Instant>,
    ns_per_request: f64,
    warmup_ns: u64,
    timeout: Duration,
    /// The final mass cancels answered.
    cleanups_done: AtomicU64,
    /// Our own logouts are under way: a closing connection is not a loss.
    closing: AtomicBool,
    /// Errors so far (for the progress bar).
    errors: AtomicU64,
}

impl Shared {
    /// The intended send time of schedule place `seq`, from the start.
    fn intended_ns(&self, seq: u32) -> u64 {
        (f64::from(seq) * self.ns_per_request) as u64
    }

    fn scheduled_sent(&self) -> u64 {
        self.sessions
            .iter()
            .zip(&self.plan.setup)
            .map(|(s, setup)| s.sent.load(Ordering::Relaxed).saturating_sub(*setup) as u64)
            .sum()
    }

    fn acked(&self) -> u64 {
        self.sessions
            .iter()
            .map(|s| s.acked.load(Ordering::Relaxed) as u64)
            .sum()
    }

    /// Sent and not answered, on connections still up.
    fn outstanding(&self) -> usize {
        self.sessions
            .iter()
            .filter(|s| !s.dead.load(Ordering::Relaxed))
            .map(|s| {
                s.sent
                    .load(Ordering::Acquire)
                    .saturating_sub(s.acked.load(Ordering::Acquire))
            })
            .sum()
    }
}

/// Runs `config` once: see the module docs. Needs a tokio runtime with I/O and time enabled
/// (either flavour); the pacing runs on a thread of its own. `progress`, if given, shows the
/// requests sent.
pub async fn run(config: &LoadConfig, progress: Option<ProgressBar>) -> Result<RunResult> {
    config.check()?;
    let sessions = Sessions {
        connections: config.connections,
        members: config.members.len().min(config.connections),
    };
    let flow = FlowConfig {
        accounts: sessions.members as u32,
        ..config.flow
    };
    let symbols = flow_symbols(config, &flow)?;
    let scheduled = (config.rate * (config.warmup + config.duration).as_secs_f64()).ceil() as u64;
    let plan = tokio::task::spawn_blocking(move || Plan::build(flow, sessions, scheduled))
        .await
        .context("generating the flow")??;

    let (writers, readers) = log_on(config, sessions).await?;

    let prefix = config.id_prefix.clone().unwrap_or_else(run_prefix);
    let shared = Arc::new(Shared {
        sessions: (0..config.connections)
            .map(|_| SessionShared::default())
            .collect(),
        plan,
        symbols,
        prefix,
        start: OnceLock::new(),
        ns_per_request: 1e9 / config.rate,
        warmup_ns: config.warmup.as_nanos() as u64,
        timeout: config.timeout,
        cleanups_done: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        errors: AtomicU64::new(0),
    });

    let (stop, stopped) = watch::channel(false);
    let reader_tasks: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(session, reader)| {
            let task = SessionReader::new(session, shared.clone());
            tokio::spawn(task.run(reader, stopped.clone()))
        })
        .collect();

    if let Some(bar) = &progress {
        start_progress(bar, scheduled, config.rate);
    }
    let sent = send_and_drain(&shared, writers, scheduled, progress.as_ref()).await?;
    if let Some(bar) = &progress {
        bar.finish();
    }

    let mut writers = sent.writers;
    cleanup(&shared, &mut writers, sessions, config.timeout).await;
    let _ = stop.send(true);
    let mut tallies = Vec::with_capacity(reader_tasks.len());
    for task in reader_tasks {
        tallies.push(task.await.context("a session reader failed")?);
    }
    Ok(summarise(config, &shared, &sent.stats, tallies))
}

/// The flow's symbols: `config.symbols`, or the flow's own names.
fn flow_symbols(config: &LoadConfig, flow: &FlowConfig) -> Result<Vec<Symbol>> {
    let names: Vec<String> = if config.symbols.is_empty() {
        (0..flow.symbols).map(FlowConfig::symbol_name).collect()
    } else {
        config.symbols.clone()
    };
    names
        .iter()
        .map(|name| Symbol::new(name).map_err(|e| anyhow!("symbol {name:?}: {e}")))
        .collect()
}

/// Logs every session on, in order, each logon bounded by `config.timeout`; the sessions'
/// writers and readers.
async fn log_on(
    config: &LoadConfig,
    sessions: Sessions,
) -> Result<(Vec<ClientWriter>, Vec<ClientReader>)> {
    let mut writers = Vec::with_capacity(config.connections);
    let mut readers = Vec::with_capacity(config.connections);
    for k in 0..config.connections {
        let (token, account) = &config.members[sessions.member_of(k)];
        let target = config.targets[k % config.targets.len()];
        let (client, logged_on) =
            tokio::time::timeout(config.timeout, BinaryClient::logon(target, token, false))
                .await
                .map_err(|_| anyhow!("logon to {target} timed out"))?
                .with_context(|| {
                    format!("logon to {target} as member {}", sessions.member_of(k))
                })?;
        if logged_on.0 != *account {
            bail!(
                "member {} logged on as account {}, not {account}",
                sessions.member_of(k),
                logged_on.0
            );
        }
        writers.push(client.writer);
        readers.push(client.reader);
    }
    Ok((writers, readers))
}

/// Resets `bar` for a run of `scheduled` requests at `rate`.
fn start_progress(bar: &ProgressBar, scheduled: u64, rate: f64) {
    bar.reset();
    bar.set_length(scheduled);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} sent, {msg} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{rate:.0}/s"));
}

/// Shows the requests sent, answered and failed so far on `progress`, if given.
fn show_progress(progress: Option<&ProgressBar>, shared: &Shared) {
    if let Some(bar) = progress {
        bar.set_position(shared.scheduled_sent());
        bar.set_message(format!(
            "{} answered, {} errors",
            shared.acked(),
            shared.errors.load(Ordering::Relaxed)
        ));
    }
}

/// Runs the schedule on the sender thread, then waits for the outstanding answers (at most
/// `shared.timeout`); `progress`, if given, is updated meanwhile.
async fn send_and_drain(
    shared: &Arc<Shared>,
    writers: Vec<ClientWriter>,
    scheduled: u64,
    progress: Option<&ProgressBar>,
) -> Result<Sent> {
    // The sender paces on a thread of its own: tokio's timers tick in milliseconds.
    let (done_tx, mut done_rx) = oneshot::channel();
    let sender = Sender::new(Handle::current(), writers, shared.clone(), scheduled);
    std::thread::Builder::new()
        .name("loadgen-sender".into())
        .spawn(move || {
            let _ = done_tx.send(sender.run());
        })
        .context("starting the sender thread")?;
    let sent = loop {
        tokio::select! {
            sent = &mut done_rx => break sent.map_err(|_| anyhow!("the sender thread failed"))?,
            _ = tokio::time::sleep(BUCKET) => show_progress(progress, shared),
        }
    };

    // Drain: what was sent gets `timeout` to be answered, counted from the later of its
    // intended and its actual send time.
    let deadline = Instant::now() + shared.timeout;
    while shared.outstanding() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        show_progress(progress, shared);
    }
    show_progress(progress, shared);
    Ok(sent)
}

/// A per-run client order id prefix from the clock: `t` and the time in base 36, then `-`.
fn run_prefix() -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let mut digits = Vec::new();
    while n > 0 {
        digits.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    digits.reverse();
    format!("t{}-", String::from_utf8_lossy(&digits))
}

/// Mass-cancels each member's orders and logs every session out, each step bounded by
/// `timeout`.
async fn cleanup(
    shared: &Shared,
    writers: &mut [ClientWriter],
    sessions: Sessions,
    timeout: Duration,
) {
    let mut cancels = 0;
    for member in 0..sessions.members {
        let live = (member..sessions.connections)
            .step_by(sessions.members)
            .find(|&k| !shared.sessions[k].dead.load(Ordering::Acquire));
        let Some(k) = live else { continue };
        shared.sessions[k]
            .cleanup_sent
            .store(true, Ordering::Release);
        let sent = tokio::time::timeout(
            timeout,
            writers[k].send(&ClientMessage::MassCancel { symbol: None }),
        )
        .await;
        if matches!(sent, Ok(Ok(()))) {
            cancels += 1;
        }
    }
    let deadline = Instant::now() + timeout;
    while shared.cleanups_done.load(Ordering::Acquire) < cancels && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shared.closing.store(true, Ordering::Release);
    for (k, writer) in writers.iter_mut().enumerate() {
        if !shared.sessions[k].dead.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(timeout, writer.send(&ClientMessage::Logout)).await;
        }
    }
    // The readers stop at the server's Logout; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(2).min(timeout);
    while shared
        .sessions
        .iter()
        .any(|s| !s.dead.load(Ordering::Acquire))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ----- sender --------------------------------------------------------------------------------

/// What the sender measured.
#[derive(Default)]
struct SendStats {
    /// Scheduled requests sent per bucket.
    series: Vec<u64>,
    /// Requests of the measured window sent.
    measured: u64,
    /// When the last of them was sent, from the start.
    last_measured_ns: u64,
    late: u64,
    max_lag_ns: u64,
}

struct Sent {
    writers: Vec<ClientWriter>,
    stats: SendStats,
}

struct Sender {
    handle: Handle,
    writers: Vec<ClientWriter>,
    shared: Arc<Shared>,
    ids: Ids,
    scheduled: u64,
    /// Per session: the next request of its list to send.
    next: Vec<usize>,
    last_write: Vec<Instant>,
    /// Sessions with queued bytes, and a flag per session.
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    stats: SendStats,
}

impl Sender {
    fn new(
        handle: Handle,
        writers: Vec<ClientWriter>,
        shared: Arc<Shared>,
        scheduled: u64,
    ) -> Sender {
        let n = writers.len();
        Sender {
            handle,
            writers,
            ids: Ids::new(&shared.prefix),
            shared,
            scheduled,
            next: vec![0; n],
            last_write: vec![Instant::now(); n],
            dirty: Vec::with_capacity(n),
            is_dirty: vec![false; n],
            stats: SendStats::default(),
        }
    }

    fn run(mut self) -> Sent {
        self.setup();
        self.schedule();
        Sent {
            writers: self.writers,
            stats: self.stats,
        }
    }

    fn alive(&self, session: usize) -> bool {
        !self.shared.sessions[session].dead.load(Ordering::Acquire)
    }

    /// Queues session `k`'s next request.
    fn queue(&mut self, k: usize) {
        let planned = self.shared.plan.sessions[k][self.next[k]];
        let message = self.ids.message(&planned, &self.shared.symbols);
        self.writers[k].queue(&message);
        self.next[k] += 1;
        self.mark_dirty(k);
    }

    fn mark_dirty(&mut self, k: usize) {
        if !self.is_dirty[k] {
            self.is_dirty[k] = true;
            self.dirty.push(k);
        }
    }

    /// Publishes what was queued (so the readers can match it) and writes it.
    fn flush(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        for &k in &self.dirty {
            self.shared.sessions[k]
                .sent
                .store(self.next[k], Ordering::Release);
        }
        let timeout = self.shared.timeout;
        let shared = &self.shared;
        let writers = &mut self.writers;
        let dirty = &self.dirty;
        self.handle.block_on(async {
            for &k in dirty {
                let written = tokio::time::timeout(timeout, writers[k].flush()).await;
                if !matches!(written, Ok(Ok(()))) {
                    // Closed, or not read for `timeout`: the session is lost.
                    shared.sessions[k].dead.store(true, Ordering::Release);
                }
            }
        });
        let now = Instant::now();
        for &k in &self.dirty {
            self.last_write[k] = now;
            self.is_dirty[k] = false;
        }
        self.dirty.clear();
    }

    /// Sends the setup orders in chunks, waiting for each chunk's answers (at most `timeout`).
    fn setup(&mut self) {
        let sessions = self.writers.len();
        loop {
            for k in 0..sessions {
                let end = self.shared.plan.setup[k].min(self.next[k] + SETUP_CHUNK);
                while self.next[k] < end && self.alive(k) {
                    self.queue(k);
                }
            }
            if self.dirty.is_empty() {
                return;
            }
            self.flush();
            let deadline = Instant::now() + self.shared.timeout;
            while self.shared.outstanding() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Sends the schedule: each request at `start + seq / rate`, late ones as soon as possible.
    fn schedule(&mut self) {
        let start = Instant::now() + Duration::from_millis(10);
        let start = *self.shared.start.get_or_init(|| start);
        let mut seq = 0u64;
        let mut heartbeat_check = start;
        while seq < self.scheduled {
            let due = start + Duration::from_nanos(self.shared.intended_ns(seq as u32));
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_secs(1)));
                continue;
            }
            let elapsed = now.duration_since(start);
            let elapsed_ns = elapsed.as_nanos() as u64;
            let bucket = (elapsed.as_millis() / BUCKET.as_millis()) as usize;
            if self.stats.series.len() <= bucket {
                self.stats.series.resize(bucket + 1, 0);
            }
            let mut round = 0;
            while seq < self.scheduled && round < ROUND_MAX {
                let intended = self.shared.intended_ns(seq as u32);
                if intended > elapsed_ns {
                    break;
                }
                let k = usize::from(self.shared.plan.schedule[seq as usize]);
                seq += 1;
                round += 1;
                if !self.alive(k) {
                    continue;
                }
                self.queue(k);
                let lag = elapsed_ns - intended;
                self.stats.max_lag_ns = self.stats.max_lag_ns.max(lag);
                if lag > LATE.as_nanos() as u64 {
                    self.stats.late += 1;
                }
                if intended >= self.shared.warmup_ns {
                    self.stats.measured += 1;
                    self.stats.last_measured_ns = elapsed_ns;
                }
                self.stats.series[bucket] += 1;
            }
            if now >= heartbeat_check {
                heartbeat_check = now + Duration::from_secs(1);
                for k in 0..self.writers.len() {
                    if now.duration_since(self.last_write[k]) > IDLE_HEARTBEAT && self.alive(k) {
                        self.writers[k].queue(&ClientMessage::Heartbeat { test_id: 0 });
                        self.mark_dirty(k);
                    }
                }
            }
            self.flush();
        }
    }
}

// ----- readers -------------------------------------------------------------------------------

/// How a request was answered.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Applied by the engine as asked.
    Done,
    /// Applied by the engine and rejected with this reason code.
    Rejected(u8),
    /// Refused by the gateway (busy, unavailable, catching up, throttled).
    Refused(u8),
}

/// Requests sent and not yet answered, by (order number or symbol, type), oldest first.
#[derive(Default)]
struct Pending {
    map: HashMap<(u64, RequestKind), Waiting>,
}

enum Waiting {
    One(u32),
    Many(VecDeque<u32>),
}

impl Pending {
    fn push(&mut self, key: (u64, RequestKind), index: u32) {
        match self.map.entry(key) {
            Entry::Vacant(vacant) => {
                vacant.insert(Waiting::One(index));
            }
            Entry::Occupied(mut occupied) => {
                let waiting = occupied.get_mut();
                match waiting {
                    Waiting::Many(queue) => queue.push_back(index),
                    Waiting::One(first) => {
                        *waiting = Waiting::Many(VecDeque::from([*first, index]));
                    }
                }
            }
        }
    }

    fn contains(&self, key: &(u64, RequestKind)) -> bool {
        self.map.contains_key(key)
    }

    /// The oldest request waiting under `key`.
    fn take(&mut self, key: &(u64, RequestKind)) -> Option<u32> {
        match self.map.get_mut(key)? {
            Waiting::One(index) => {
                let index = *index;
                self.map.remove(key);
                Some(index)
            }
            Waiting::Many(queue) => {
                let index = queue.pop_front();
                if queue.is_empty() {
                    self.map.remove(key);
                }
                index
            }
        }
    }

    /// Any waiting mass cancel (a SessionReject does not say which).
    fn any_mass_cancel(&self) -> Option<(u64, RequestKind)> {
        self.map
            .keys()
            .find(|(_, kind)| *kind == RequestKind::MassCancel)
            .copied()
    }
}

/// What one session's reader counted.
struct Tally {
    latency: [Option<Histogram<u64>>; 4],
    acked_measured: u64,
    errors: Errors,
    rejects: BTreeMap<u8, u64>,
    series: Vec<u64>,
    lost: bool,
}

struct SessionReader {
    session: usize,
    shared: Arc<Shared>,
    ids: Ids,
    pending: Pending,
    /// Requests of the session's list taken into `pending`.
    ingested: usize,
    tally: Tally,
}

impl SessionReader {
    fn new(session: usize, shared: Arc<Shared>) -> SessionReader {
        SessionReader {
            session,
            ids: Ids::new(&shared.prefix),
            shared,
            pending: Pending::default(),
            ingested: 0,
            tally: Tally {
                latency: [None, None, None, None],
                acked_measured: 0,
                errors: Errors::default(),
                rejects: BTreeMap::new(),
                series: Vec::new(),
                lost: false,
            },
        }
    }

    async fn run(mut self, mut reader: ClientReader, mut stop: watch::Receiver<bool>) -> Tally {
        loop {
            // The stop is checked first: a server flooding us must not keep the reader alive.
            let received = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => break,
                received = reader.recv() => received,
            };
            let ended = match received {
                Ok(Some(message)) => self.on_message(message),
                Ok(None) => true,
                Err(_) => {
                    // Undecodable bytes: the stream cannot be resynchronised.
                    self.error(|e| &mut e.protocol);
                    true
                }
            };
            if ended {
                if !self.shared.closing.load(Ordering::Acquire) {
                    self.tally.lost = true;
                }
                self.shared.sessions[self.session]
                    .dead
                    .store(true, Ordering::Release);
                break;
            }
        }
        self.tally
    }

    fn error(&mut self, which: impl FnOnce(&mut Errors) -> &mut u64) {
        *which(&mut self.tally.errors) += 1;
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the requests sent since the last message into `pending`.
    fn ingest(&mut self) {
        let sent = self.shared.sessions[self.session]
            .sent
            .load(Ordering::Acquire);
        let list = &self.shared.plan.sessions[self.session];
        while self.ingested < sent.min(list.len()) {
            self.pending
                .push(list[self.ingested].key(), self.ingested as u32);
            self.ingested += 1;
        }
    }

    /// Handles one message; true when the session is over.
    fn on_message(&mut self, message: ServerMessage) -> bool {
        self.ingest();
        match message {
            ServerMessage::ExecutionReport(report) => self.on_execution_report(&report),
            ServerMessage::CancelReject {
                cl_ord_id,
                request,
                reason: code,
            } => self.on_cancel_reject(&cl_ord_id, request, code),
            ServerMessage::MassCancelReport { symbol, .. } => self.on_mass_cancel_report(symbol),
            ServerMessage::SessionReject {
                code,
                rejected_type,
            } => self.on_session_reject(code, rejected_type),
            ServerMessage::Logout { .. } => return true,
            // A mass status or a switch is never asked for here.
            ServerMessage::Heartbeat { .. }
            | ServerMessage::LogonAck { .. }
            | ServerMessage::MassStatusReport { .. }
            | ServerMessage::SwitchReport { .. } => {}
        }
        false
    }

    /// An execution report: answers the new order, replace or cancel it reports on, if any.
    fn on_execution_report(&mut self, report: &ExecReport) {
        let Some(num) = self.ids.number(&report.cl_ord_id) else {
            return;
        };
        // A new order's first report answers it, whatever it says; a replace is
        // answered by `replaced`, a cancel by its own `cancelled`. Other reports
        // (fills of resting orders, IOC remainders) answer nothing.
        let kind = if self.pending.contains(&(num, RequestKind::New)) {
            RequestKind::New
        } else {
            match (report.exec_type, report.reason) {
                (exec_type::REPLACED, _) => RequestKind::Replace,
                (exec_type::CANCELED, reason::USER) => RequestKind::Cancel,
                _ => return,
            }
        };
        let answer = match (report.exec_type, report.reason) {
            (exec_type::REJECTED, refused) if reason::is_refusal(refused) => {
                Answer::Refused(refused)
            }
            (exec_type::REJECTED, code) => Answer::Rejected(code),
            // The state of an order whose id was already used.
            (exec_type::ORDER_STATUS, _) => Answer::Rejected(reason::DUPLICATE_ORDER_ID),
            _ => Answer::Done,
        };
        if let Some(index) = self.pending.take(&(num, kind)) {
            self.answered(index, answer);
        }
    }

    /// A cancel or replace refused: answers it.
    fn on_cancel_reject(&mut self, cl_ord_id: &OrderId, request: CancelRequest, code: u8) {
        let Some(num) = self.ids.number(cl_ord_id) else {
            return;
        };
        let kind = match request {
            CancelRequest::Cancel => RequestKind::Cancel,
            CancelRequest::Replace => RequestKind::Replace,
        };
        let answer = match code {
            code if reason::is_refusal(code) => Answer::Refused(code),
            code => Answer::Rejected(code),
        };
        if let Some(index) = self.pending.take(&(num, kind)) {
            self.answered(index, answer);
        }
    }

    /// A mass cancel done: answers the scheduled one, or counts the final cleanup's.
    fn on_mass_cancel_report(&mut self, symbol: Option<Symbol>) {
        let key = match symbol {
            None => u64::from(ALL_SYMBOLS),
            Some(symbol) => match self.shared.symbols.iter().position(|s| *s == symbol) {
                Some(index) => index as u64,
                None => return,
            },
        };
        if let Some(index) = self.pending.take(&(key, RequestKind::MassCancel)) {
            self.answered(index, Answer::Done);
        } else if symbol.is_none()
            && self.shared.sessions[self.session]
                .cleanup_sent
                .load(Ordering::Acquire)
        {
            self.shared.cleanups_done.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A session-level reject: a mass cancel refused answers one pending mass cancel; anything
    /// else is a protocol error.
    fn on_session_reject(&mut self, code: u16, rejected_type: u8) {
        let refused = match (rejected_type, code) {
            (msg_type::MASS_CANCEL, session_reject::THROTTLED) => Some(reason::THROTTLED),
            (msg_type::MASS_CANCEL, session_reject::BUSY) => Some(reason::BUSY),
            (msg_type::MASS_CANCEL, session_reject::UNAVAILABLE) => Some(reason::UNAVAILABLE),
            (msg_type::MASS_CANCEL, session_reject::CATCHING_UP) => Some(reason::CATCHING_UP),
            (msg_type::MASS_CANCEL, session_reject::CLOCK_SKEW) => Some(reason::CLOCK_SKEW),
            _ => None,
        };
        match refused.zip(self.pending.any_mass_cancel()) {
            Some((reason, key)) => {
                if let Some(index) = self.pending.take(&key) {
                    self.answered(index, Answer::Refused(reason));
                }
            }
            None => self.error(|e| &mut e.protocol),
        }
    }

    /// Request `index` of the session's list was answered now.
    fn answered(&mut self, index: u32, answer: Answer) {
        let planned: Planned = self.shared.plan.sessions[self.session][index as usize];
        match answer {
            Answer::Refused(reason::BUSY) => self.error(|e| &mut e.busy),
            Answer::Refused(reason::UNAVAILABLE | reason::CATCHING_UP | reason::CLOCK_SKEW) => {
                self.error(|e| &mut e.unavailable)
            }
            Answer::Refused(_) => self.error(|e| &mut e.throttled),
            Answer::Rejected(reason) => *self.tally.rejects.entry(reason).or_default() += 1,
            Answer::Done => {}
        }
        self.shared.sessions[self.session]
            .acked
            .fetch_add(1, Ordering::Release);
        let Some(start) = self.shared.start.get() else {
            return;
        };
        if planned.seq == SETUP {
            return;
        }
        let elapsed_ns = start.elapsed().as_nanos() as u64;
        let intended_ns = self.shared.intended_ns(planned.seq);
        let latency = elapsed_ns.saturating_sub(intended_ns);
        let bucket = (elapsed_ns / BUCKET.as_nanos() as u64) as usize;
        if self.tally.series.len() <= bucket {
            self.tally.series.resize(bucket + 1, 0);
        }
        self.tally.series[bucket] += 1;
        if matches!(answer, Answer::Refused(_)) {
            return;
        }
        if latency > self.shared.timeout.as_nanos() as u64 {
            self.error(|e| &mut e.timeout);
        }
        if intended_ns >= self.shared.warmup_ns {
            self.tally.acked_measured += 1;
            self.tally.latency[planned.kind.index()]
                .get_or_insert_with(new_histogram)
                .saturating_record(latency.max(1));
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid histogram bounds")
}

// ----- results -------------------------------------------------------------------------------

/// The sessions' tallies added up.
struct Merged {
    /// Latencies of the measured window, by [`RequestKind::index`].
    by_kind: [Histogram<u64>; 4],
    errors: Errors,
    rejects: BTreeMap<String, u64>,
    /// Answers per throughput bucket.
    acked_series: Vec<u64>,
    /// Requests of the measured window answered (refusals not counted).
    acked: u64,
    /// Connections lost.
    lost: u64,
}

/// Adds up the sessions' tallies; what a session never had answered counts as timed out, or
/// as disconnected if its connection was lost or a write failed.
fn merge_tallies(shared: &Shared, tallies: &[Tally]) -> Merged {
    let mut by_kind: [Histogram<u64>; 4] = std::array::from_fn(|_| new_histogram());
    let mut errors = Errors::default();
    let mut rejects = BTreeMap::new();
    let mut acked_series: Vec<u64> = Vec::new();
    let mut acked = 0;
    let mut lost = 0;
    for (k, tally) in tallies.iter().enumerate() {
        for (all, latency) in by_kind.iter_mut().zip(&tally.latency) {
            if let Some(latency) = latency {
                all.add(latency).expect("histograms with the same bounds");
            }
        }
        errors.add(&tally.errors);
        for (code, count) in &tally.rejects {
            *rejects.entry(reject_name(*code)).or_default() += count;
        }
        if acked_series.len() < tally.series.len() {
            acked_series.resize(tally.series.len(), 0);
        }
        for (sum, n) in acked_series.iter_mut().zip(&tally.series) {
            *sum += n;
        }
        acked += tally.acked_measured;
        lost += u64::from(tally.lost);
        // What was never answered: lost with the connection, or timed out.
        let session = &shared.sessions[k];
        let planned = shared.plan.sessions[k].len();
        let sent = session.sent.load(Ordering::Acquire);
        let unanswered = sent.saturating_sub(session.acked.load(Ordering::Acquire)) as u64;
        if tally.lost {
            errors.disconnected += unanswered + planned.saturating_sub(sent) as u64;
        } else {
            errors.timeout += unanswered;
            // Not sent because a write failed or stalled: the connection was lost to us.
            errors.disconnected += planned.saturating_sub(sent) as u64;
        }
    }
    Merged {
        by_kind,
        errors,
        rejects,
        acked_series,
        acked,
        lost,
    }
}

/// The run's result, from the sender's counts and the sessions' tallies.
fn summarise(
    config: &LoadConfig,
    shared: &Shared,
    sent: &SendStats,
    tallies: Vec<Tally>,
) -> RunResult {
    let Merged {
        by_kind,
        errors,
        rejects,
        mut acked_series,
        acked,
        lost,
    } = merge_tallies(shared, &tallies);
    let mut all = new_histogram();
    for histogram in &by_kind {
        all.add(histogram).expect("histograms with the same bounds");
    }
    let mut percentiles = BTreeMap::new();
    percentiles.insert("all".to_string(), percentile_curve(&all));
    let mut latency_by_type = BTreeMap::new();
    let mut requests = BTreeMap::new();
    for kind in RequestKind::ALL {
        let histogram = &by_kind[kind.index()];
        requests.insert(kind.name().to_string(), shared.plan.kinds[kind.index()]);
        if !histogram.is_empty() {
            latency_by_type.insert(kind.name().to_string(), Latency::of(histogram));
            percentiles.insert(kind.name().to_string(), percentile_curve(histogram));
        }
    }
    let ns_per = shared.ns_per_request;
    let span_ns = (sent.last_measured_ns.saturating_sub(shared.warmup_ns)) as f64 + ns_per;
    let rate_achieved = if sent.measured == 0 {
        0.0
    } else {
        sent.measured as f64 / (span_ns.max(ns_per) / 1e9)
    };
    let mut sent_series = sent.series.clone();
    let len = sent_series.len().max(acked_series.len());
    sent_series.resize(len, 0);
    acked_series.resize(len, 0);
    RunResult {
        rate_target: config.rate,
        rate_achieved: (rate_achieved * 10.0).round() / 10.0,
        orders: sent.measured,
        acked,
        errors: errors.total(),
        latency_us: Latency::of(&all),
        latency_by_type,
        percentiles,
        error_counts: errors,
        rejects,
        requests,
        connections: config.connections,
        connections_lost: lost,
        warmup_s: config.warmup.as_secs_f64(),
        duration_s: config.duration.as_secs_f64(),
        late_sends: sent.late,
        max_send_lag_us: sent.max_lag_ns as f64 / 1_000.0,
        throughput: Throughput {
            bucket_ms: BUCKET.as_millis() as u64,
            sent: sent_series,
            acked: acked_series,
        },
    }
}

/// `[percentile, µs]` points of a histogram, denser towards the tail (HdrHistogram's
/// percentile distribution).
fn percentile_curve(histogram: &Histogram<u64>) -> Vec<[f64; 2]> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<[f64; 2]> = histogram
        .iter_quantiles(4)
        .map(|v| {
            [
                v.quantile_iterated_to() * 100.0,
                v.value_iterated_to() as f64 / 1_000.0,
            ]
        })
        .collect();
    points.dedup_by(|b, a| a[0] == b[0]);
    points
}
