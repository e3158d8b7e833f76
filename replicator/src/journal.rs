//! The embedded log: an append-only journal of commands in segment files, with group commit.
//!
//! - Segments are `{first position:020}.journal` in one directory; a segment is sealed (fsynced)
//!   when it would grow past `segment_bytes_max`, and the next one starts.
//! - One writer thread takes commands from any number of [`Appender`]s, writes them as one
//!   batch, and makes them durable with `sync_data` per the [`FsyncPolicy`]. Only then does
//!   the durable position advance, and readers never read past it: a command is read back
//!   (and so acknowledged) only once it is on disk.
//! - **The writer is the log's clock.** It stamps every command of a batch with its own wall
//!   clock when it sequences the batch, never going backwards (`ts = max(previous ts, now)`,
//!   the previous one recovered from the journal at open); whatever `ts` a submitter put in a
//!   command is replaced. Readers, and so replays, read the stored `ts`.
//! - An fsync failure is fatal: the writer stops and every later append fails. It never
//!   retries (after a failed fsync the kernel may have dropped the dirty pages).
//! - Recovery ([`Journal::open`]) takes the directory's lock (one writer at a time), checks
//!   every record of the last segment (the only one a crash can tear: each earlier one was
//!   fsynced before the next began), so opening costs one segment, not the whole journal, and
//!   fsyncs what it keeps before anyone reads it (a killed writer's unsynced tail may survive in
//!   the page cache, and must not be acknowledged until it is on disk).
//!   - A record whose checksum holds but whose position or payload is wrong cannot come from a
//!     torn write: corruption (or a newer format), refused.
//!   - A record cut short or failing its checksum is refused if a later record or sync mark
//!     proves it had been durable (its `synced_through` is past it), else it is a torn tail from
//!     a crash mid-write: the segment is cut there and nothing after it is replayed.
//!   - The writer leaves a sync mark when it closes and when it syncs on going idle, so after a
//!     clean stop every record is witnessed. What stays unwitnessed after a crash is what came
//!     since the last witness: under per-batch fsync the last batch, under interval fsync the
//!     batches since the last idle sync. Damage there is cut like a torn tail.
//! - Readers check every record's checksum and position too, so damage anywhere in a sealed
//!   segment, or a missing segment, is refused with the place and reason when it is read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use engine::{Command, TimestampNs};
use serde::{Deserialize, Serialize};

use crate::record::{self, Invalid, HEADER_LEN};

/// When the writer makes written commands durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FsyncPolicy {
    /// After every batch: the lowest latency to acknowledgement under light load.
    PerBatch,
    /// At most every `ms` milliseconds, covering every batch written since: fewer fsyncs
    /// under heavy load, at up to `ms` of added acknowledgement latency.
    Interval { ms: u32 },
}

/// Journal settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    pub dir: PathBuf,
    /// A segment is sealed when the next batch would take it past this size.
    pub segment_bytes_max: u64,
    pub fsync: FsyncPolicy,
    /// Most commands written per batch.
    pub batch_max: usize,
    /// Commands that may wait for the writer; beyond it `try_append` reports `Full`.
    pub queue_max: usize,
}

impl JournalConfig {
    /// Defaults for a journal in `dir`: 64 MiB segments, fsync per batch.
    pub fn new(dir: impl Into<PathBuf>) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            segment_bytes_max: 64 << 20,
            fsync: FsyncPolicy::PerBatch,
            batch_max: 4096,
            queue_max: 1 << 16,
        }
    }
}

/// Journal failures.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the journal's record at position {position} needs a newer binary: {reason}")]
    NeedsNewerBinary { position: u64, reason: String },
    #[error("journal is corrupt in {segment} at byte {offset} (position {position}): {reason}")]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        position: u64,
        reason: String,
    },
    #[error(
        "journal has a gap: position {expected} should start segment {segment}, which is missing"
    )]
    Gap { segment: PathBuf, expected: u64 },
    #[error("position {0} is not in the journal (it holds positions from {1})")]
    Missing(u64, u64),
    #[error("the journal writer stopped after an I/O failure; nothing more can be appended")]
    Failed,
    #[error("the journal is closed")]
    Closed,
    #[error("journal {0} is open in another process (or another Journal in this one)")]
    Locked(PathBuf),
    #[error("the journal's queue is full")]
    Full,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub segments: usize,
    /// Records in the journal after recovery: positions `0..records`.
    pub records: u64,
    /// Bytes cut from the end of the last segment (a torn tail).
    pub truncated_bytes: u64,
}

struct Segment {
    first: u64,
    path: PathBuf,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.journal"))
}

/// The journal's segments, by first position.
fn list_segments(dir: &Path) -> Result<Vec<Segment>, JournalError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".journal"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            segments.push(Segment { first, path });
        }
    }
    segments.sort_by_key(|s| s.first);
    Ok(segments)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Checks the last segment from its start. Returns the position after its last good record,
/// the byte length of its good part and the `ts` of that record (if the segment has one). A record whose checksum holds but whose position or
/// payload is wrong cannot come from a torn write: that is corruption (or a newer format), and
/// is refused. A record cut short or failing its checksum is a torn tail, cut here, unless a
/// later record proves it had been durable.
fn scan_segment(segment: &Segment, recovery: &mut Recovery) -> Result<Scanned, JournalError> {
    let bytes = fs::read(&segment.path).map_err(io_err(&segment.path))?;
    let mut offset = 0usize;
    let mut position = segment.first;
    let mut last_ts = None;
    while offset < bytes.len() {
        let corrupt = |reason: String| JournalError::Corrupt {
            segment: segment.path.clone(),
            offset: offset as u64,
            position,
            reason,
        };
        let bad = match record::frame(&bytes[offset..]) {
            Ok(frame) if frame.is_mark() => {
                if frame.header.position != position {
                    let bad = Invalid::Position {
                        expected: position,
                        found: frame.header.position,
                    };
                    return Err(corrupt(format!("sync mark: {bad}")));
                }
                offset += frame.size();
                continue;
            }
            Ok(frame) if frame.header.position != position => {
                let bad = Invalid::Position {
                    expected: position,
                    found: frame.header.position,
                };
                return Err(corrupt(bad.to_string()));
            }
            Ok(frame) => match record::command(&frame) {
                Ok(command) => {
                    offset += frame.size();
                    position += 1;
                    last_ts = Some(command.ts.0);
                    continue;
                }
                Err(Invalid::Newer(reason)) => {
                    return Err(JournalError::NeedsNewerBinary { position, reason })
                }
                Err(bad) => return Err(corrupt(bad.to_string())),
            },
            Err(bad) => bad,
        };
        // Torn, or damaged after it was durable? Only a later record can say.
        if let Some(witness) = durable_witness(&bytes[offset + 1..], position) {
            return Err(corrupt(format!(
                "{bad}, yet a later record (position {}) was written when the journal was \
                 durable through position {}",
                witness.0, witness.1
            )));
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&segment.path)
            .map_err(io_err(&segment.path))?;
        file.set_len(offset as u64)
            .and_then(|()| file.sync_all())
            .map_err(io_err(&segment.path))?;
        recovery.truncated_bytes += (bytes.len() - offset) as u64;
        break;
    }
    Ok(Scanned {
        end: position,
        len: offset as u64,
        last_ts,
    })
}

/// What [`scan_segment`] found in the last segment.
struct Scanned {
    /// The position after its last good record.
    end: u64,
    /// The byte length of its good part.
    len: u64,
    /// The `ts` of its last good record.
    last_ts: Option<u64>,
}

/// The `ts` of the last record of a sealed segment (fsynced before the next one began), for
/// when the last segment holds none: a crash right after a roll, or a tail cut whole.
/// Damage stops the walk; readers refuse it with its place when they reach it.
fn last_ts_sealed(segment: &Segment) -> Result<Option<u64>, JournalError> {
    let bytes = fs::read(&segment.path).map_err(io_err(&segment.path))?;
    let mut offset = 0;
    let mut last_ts = None;
    while let Ok(frame) = record::frame(&bytes[offset..]) {
        offset += frame.size();
        if !frame.is_mark() {
            match record::command(&frame) {
                Ok(command) => last_ts = Some(command.ts.0),
                Err(_) => break,
            }
        }
    }
    Ok(last_ts)
}

/// The `ts` of the last record before the last segment (0 in an empty journal).
fn last_ts_before(segments: &[Segment]) -> Result<u64, JournalError> {
    let sealed = &segments[..segments.len().saturating_sub(1)];
    for segment in sealed.iter().rev() {
        if let Some(ts) = last_ts_sealed(segment)? {
            return Ok(ts);
        }
    }
    Ok(0)
}

/// Wall-clock nanoseconds since the Unix epoch: the writer's clock.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A record in `bytes` (which follow a bad record at `position`) proving that the bad record had
/// been durable: a complete frame that is a sync mark or decodes as a command, with a position
/// the remaining bytes could hold, and a `synced_through` past `position` but not past itself.
/// Returns `(its position, its synced_through)`.
fn durable_witness(bytes: &[u8], position: u64) -> Option<(u64, u64)> {
    let most_records = (bytes.len() / HEADER_LEN) as u64 + 1;
    (0..bytes.len().saturating_sub(HEADER_LEN - 1)).find_map(|at| {
        let frame = record::frame(&bytes[at..]).ok()?;
        let h = frame.header;
        let plausible = h.position > position
            && h.position <= position + most_records
            && h.synced_through > position
            && h.synced_through <= h.position
            && (frame.is_mark() || record::command(&frame).is_ok());
        plausible.then_some((h.position, h.synced_through))
    })
}

/// Positions and files shared by the writer and readers.
struct Shared {
    dir: PathBuf,
    /// Records on disk and synced: positions below it can be read.
    durable: AtomicU64,
    failed: AtomicBool,
    /// Readers waiting for `durable` to move sleep on this; the writer wakes them.
    moved: Mutex<()>,
    wake: Condvar,
}

impl Shared {
    /// Wakes readers waiting for new durable records.
    fn wake_readers(&self) {
        // Taken so that a reader between its check and its wait cannot miss the wake-up.
        let _guard = self.moved.lock().unwrap_or_else(|e| e.into_inner());
        self.wake.notify_all();
    }
}

enum Msg {
    Append(Command),
    Close,
}

/// An open journal: its writer thread and the handles to use it.
pub struct Journal {
    shared: Arc<Shared>,
    tx: Sender<Msg>,
    writer: Option<JoinHandle<()>>,
    first: u64,
    /// Holds the directory's lock until the journal is dropped.
    _lock: File,
}

/// Submits commands to the journal's writer. Cheap to clone; one per gateway session is fine.
#[derive(Clone)]
pub struct Appender {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
}

impl Appender {
    /// Queues `command`, waiting while the queue is full.
    pub fn append(&self, command: Command) -> Result<(), JournalError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(JournalError::Failed);
        }
        self.tx
            .send(Msg::Append(command))
            .map_err(|_| self.stopped())
    }

    /// Queues `command`, or reports `Full` at once (a gateway turns that into a reject).
    pub fn try_append(&self, command: Command) -> Result<(), JournalError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(JournalError::Failed);
        }
        self.tx
            .try_send(Msg::Append(command))
            .map_err(|err| match err {
                TrySendError::Full(_) => JournalError::Full,
                TrySendError::Disconnected(_) => self.stopped(),
            })
    }

    fn stopped(&self) -> JournalError {
        if self.shared.failed.load(Ordering::Acquire) {
            JournalError::Failed
        } else {
            JournalError::Closed
        }
    }

    /// Positions below this are durable.
    pub fn durable_position(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Whether the writer failed (the journal takes nothing more).
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }
}

impl Journal {
    /// Opens (creating if needed) the journal in `config.dir`, recovering it first.
    pub fn open(config: JournalConfig) -> Result<(Journal, Recovery), JournalError> {
        let dir = config.dir.clone();
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        // One writer per journal: a second one would interleave records at the same positions.
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.try_lock().map_err(|err| match err {
            fs::TryLockError::WouldBlock => JournalError::Locked(dir.clone()),
            fs::TryLockError::Error(source) => io_err(&lock_path)(source),
        })?;
        let mut segments = list_segments(&dir)?;
        let mut recovery = Recovery {
            segments: segments.len(),
            ..Recovery::default()
        };
        let first = segments.first().map_or(0, |s| s.first);
        // Only the last segment can have a torn tail: every earlier one was fsynced before the
        // next was started. Their records are checked as they are read, like every record.
        let scanned = match segments.last() {
            Some(last) => scan_segment(last, &mut recovery)?,
            None => Scanned {
                end: 0,
                len: 0,
                last_ts: None,
            },
        };
        let (end, tail_len) = (scanned.end, scanned.len);
        let last_ts = match scanned.last_ts {
            Some(ts) => ts,
            None => last_ts_before(&segments)?,
        };
        recovery.records = end;
        if segments.is_empty() {
            let path = segment_path(&dir, 0);
            File::create(&path).map_err(io_err(&path))?;
            sync_dir(&dir)?;
            segments.push(Segment { first: 0, path });
        }
        let tail = segments.pop().expect("at least one segment");
        let file = OpenOptions::new()
            .append(true)
            .open(&tail.path)
            .map_err(io_err(&tail.path))?;
        // What a killed writer wrote but never synced may still be in the page cache, whole:
        // make it durable before anyone can read it, or a power loss could take it back.
        file.sync_all().map_err(io_err(&tail.path))?;
        sync_dir(&dir)?;
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            durable: AtomicU64::new(end),
            failed: AtomicBool::new(false),
            moved: Mutex::new(()),
            wake: Condvar::new(),
        });
        let (tx, rx) = crossbeam_channel::bounded(config.queue_max.max(1));
        let writer = Writer {
            config,
            shared: shared.clone(),
            file,
            path: tail.path,
            segment_len: tail_len,
            next: end,
            written: end,
            last_ts,
            buf: Vec::with_capacity(1 << 20),
            unsynced_since: None,
        };
        let writer = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(&dir))?;
        Ok((
            Journal {
                shared,
                tx,
                writer: Some(writer),
                first,
                _lock: lock,
            },
            recovery,
        ))
    }

    /// A handle to submit commands.
    pub fn appender(&self) -> Appender {
        Appender {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Positions below this are durable (and readable).
    pub fn durable_position(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Whether the writer stopped on an I/O failure.
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Reads durable records from `from` on.
    pub fn reader(&self, from: u64) -> Result<JournalReader, JournalError> {
        JournalReader::new(self.shared.clone(), self.first, from)
    }

    /// Queues a command, waiting while the queue is full (see [`Appender::append`]).
    pub fn append(&self, command: Command) -> Result<(), JournalError> {
        self.appender().append(command)
    }

    /// Writes and syncs everything queued before this call, stops the writer, and returns
    /// the final durable position.
    pub fn close(mut self) -> u64 {
        self.stop();
        self.durable_position()
    }

    fn stop(&mut self) {
        let _ = self.tx.send(Msg::Close);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Writer {
    config: JournalConfig,
    shared: Arc<Shared>,
    file: File,
    path: PathBuf,
    segment_len: u64,
    /// Position of the next record to encode.
    next: u64,
    /// Position after the last record written to the file: what a sync makes durable.
    written: u64,
    /// The `ts` of the last record written: the next batch's is never below it.
    last_ts: u64,
    buf: Vec<u8>,
    /// When the oldest written-but-unsynced batch was written.
    unsynced_since: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        // A panic stops the writer as surely as an I/O error: appenders must learn of it.
        struct FailOnPanic(Arc<Shared>);
        impl Drop for FailOnPanic {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.failed.store(true, Ordering::Release);
                }
            }
        }
        let _guard = FailOnPanic(self.shared.clone());
        if let Err(err) = self.serve(&rx) {
            // Nothing after a failed write or fsync can be trusted: stop for good.
            eprintln!("journal writer stopped: {err}");
            self.shared.failed.store(true, Ordering::Release);
        }
    }

    fn serve(&mut self, rx: &Receiver<Msg>) -> Result<(), JournalError> {
        let mut batch = Vec::with_capacity(self.config.batch_max);
        loop {
            let first = match self.unsynced_since {
                None => rx.recv().ok(),
                Some(since) => {
                    let wait = self.interval().saturating_sub(since.elapsed());
                    match rx.recv_timeout(wait) {
                        Ok(msg) => Some(msg),
                        Err(RecvTimeoutError::Timeout) => {
                            // Idle: sync, then witness it while nothing waits.
                            self.sync()?;
                            self.mark()?;
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => None,
                    }
                }
            };
            let mut closing = first.is_none();
            batch.clear();
            if let Some(Msg::Append(command)) = first {
                batch.push(command);
            } else {
                closing = true;
            }
            while !closing && batch.len() < self.config.batch_max {
                match rx.try_recv() {
                    Ok(Msg::Append(command)) => batch.push(command),
                    Ok(Msg::Close) => closing = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.write(&batch)?;
            }
            let due = match (self.config.fsync, self.unsynced_since) {
                (_, None) => false,
                (FsyncPolicy::PerBatch, Some(_)) => true,
                (FsyncPolicy::Interval { .. }, Some(since)) => since.elapsed() >= self.interval(),
            };
            if due || (closing && self.unsynced_since.is_some()) {
                self.sync()?;
            }
            if closing {
                return self.mark();
            }
        }
    }

    fn interval(&self) -> Duration {
        match self.config.fsync {
            FsyncPolicy::PerBatch => Duration::ZERO,
            FsyncPolicy::Interval { ms } => Duration::from_millis(u64::from(ms)),
        }
    }

    /// Writes `batch` as records at the next positions (not yet durable), each stamped with
    /// the writer's clock as it sequences them (one reading per batch, never backwards).
    fn write(&mut self, batch: &[Command]) -> Result<(), JournalError> {
        let synced_through = self.shared.durable.load(Ordering::Relaxed);
        self.last_ts = self.last_ts.max(now_ns());
        let ts = TimestampNs(self.last_ts);
        self.buf.clear();
        for command in batch {
            let stamped = Command { ts, ..*command };
            record::encode(&mut self.buf, self.next, synced_through, &stamped);
            self.next += 1;
        }
        let first = self.next - batch.len() as u64;
        if self.segment_len > 0
            && self.segment_len + self.buf.len() as u64 > self.config.segment_bytes_max
        {
            self.roll(first)?;
        }
        self.file.write_all(&self.buf).map_err(io_err(&self.path))?;
        self.segment_len += self.buf.len() as u64;
        self.written = self.next;
        self.unsynced_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Seals the current segment and starts one at `first`.
    fn roll(&mut self, first: u64) -> Result<(), JournalError> {
        self.sync()?;
        let path = segment_path(&self.shared.dir, first);
        self.file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(&self.shared.dir)?;
        self.path = path;
        self.segment_len = 0;
        Ok(())
    }

    /// Appends a sync mark for the durable position and makes it durable: a witness that every
    /// record before it had been synced, so later damage to them is refused, not cut.
    fn mark(&mut self) -> Result<(), JournalError> {
        self.buf.clear();
        record::encode_mark(&mut self.buf, self.written);
        self.file.write_all(&self.buf).map_err(io_err(&self.path))?;
        self.segment_len += self.buf.len() as u64;
        self.file.sync_data().map_err(io_err(&self.path))
    }

    /// Makes everything written durable, then lets readers see it. Only what is in the file:
    /// a batch being encoded (or waiting for a segment roll) is not covered.
    fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(io_err(&self.path))?;
        self.unsynced_since = None;
        self.shared.durable.store(self.written, Ordering::Release);
        self.shared.wake_readers();
        Ok(())
    }
}

/// Reads durable records in order.
pub struct JournalReader {
    shared: Arc<Shared>,
    /// Next position to read.
    next: u64,
    file: BufReader<File>,
    path: PathBuf,
    /// Byte offset of the next record in the current segment.
    offset: u64,
    /// The record being read: header, then payload.
    buf: Vec<u8>,
}

impl JournalReader {
    fn new(shared: Arc<Shared>, first: u64, from: u64) -> Result<JournalReader, JournalError> {
        let segments = list_segments(&shared.dir)?;
        let segment = segments
            .iter()
            .rev()
            .find(|s| s.first <= from)
            .filter(|_| from >= first)
            .ok_or(JournalError::Missing(from, first))?;
        let file = File::open(&segment.path).map_err(io_err(&segment.path))?;
        let mut reader = JournalReader {
            next: segment.first,
            file: BufReader::with_capacity(1 << 16, file),
            path: segment.path.clone(),
            offset: 0,
            shared,
            buf: Vec::with_capacity(HEADER_LEN + 256),
        };
        // Skip to `from`.
        while reader.next < from {
            if reader.next_record()?.is_none() {
                return Err(JournalError::Missing(from, first));
            }
        }
        Ok(reader)
    }

    /// The position of the next record this reader returns.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Hands up to `max` durable records, in order, to `each` (position, command); returns
    /// how many. Zero when nothing new is durable.
    pub fn poll(
        &mut self,
        max: usize,
        mut each: impl FnMut(u64, Command),
    ) -> Result<usize, JournalError> {
        let mut count = 0;
        while count < max {
            match self.next_record()? {
                Some((position, command)) => {
                    each(position, command);
                    count += 1;
                }
                None => break,
            }
        }
        Ok(count)
    }

    /// The next durable record, or `None` if there is none yet.
    fn next_record(&mut self) -> Result<Option<(u64, Command)>, JournalError> {
        if self.next >= self.shared.durable.load(Ordering::Acquire) {
            return Ok(None);
        }
        self.buf.resize(HEADER_LEN, 0);
        match self.file.read_exact(&mut self.buf) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof && self.offset > 0 => {
                // Durable, but not in this segment: the writer rolled to the next one.
                self.open_next_segment()?;
                self.file
                    .read_exact(&mut self.buf)
                    .map_err(io_err(&self.path))?;
            }
            Err(err) => return Err(io_err(&self.path)(err)),
        }
        let header = record::Header::parse(self.buf[..HEADER_LEN].try_into().expect("header"));
        if header.len == 0 {
            // A sync mark: check it and read on.
            let frame = record::frame(&self.buf).map_err(|bad| self.corrupt(bad.to_string()))?;
            if frame.header.position != self.next {
                return Err(
                    self.corrupt(format!("sync mark at position {}", frame.header.position))
                );
            }
            self.offset += HEADER_LEN as u64;
            return self.next_record();
        }
        let len = (header.len as usize).min(record::PAYLOAD_MAX + 1);
        self.buf.resize(HEADER_LEN + len, 0);
        self.file
            .read_exact(&mut self.buf[HEADER_LEN..])
            .map_err(io_err(&self.path))?;
        let frame = record::frame(&self.buf).map_err(|bad| self.corrupt(bad.to_string()))?;
        if frame.header.position != self.next {
            let bad = Invalid::Position {
                expected: self.next,
                found: frame.header.position,
            };
            return Err(self.corrupt(bad.to_string()));
        }
        let command = record::command(&frame).map_err(|bad| match bad {
            Invalid::Newer(reason) => JournalError::NeedsNewerBinary {
                position: self.next,
                reason,
            },
            bad => self.corrupt(bad.to_string()),
        })?;
        let size = frame.size() as u64;
        self.next += 1;
        self.offset += size;
        Ok(Some((header.position, command)))
    }

    /// Corruption at the record this reader is at.
    fn corrupt(&self, reason: String) -> JournalError {
        JournalError::Corrupt {
            segment: self.path.clone(),
            offset: self.offset,
            position: self.next,
            reason,
        }
    }

    fn open_next_segment(&mut self) -> Result<(), JournalError> {
        let path = segment_path(&self.shared.dir, self.next);
        let file = File::open(&path).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => JournalError::Gap {
                segment: path.clone(),
                expected: self.next,
            },
            _ => io_err(&path)(err),
        })?;
        self.file = BufReader::with_capacity(1 << 16, file);
        self.path = path;
        self.offset = 0;
        Ok(())
    }
}

impl crate::CommandLog for Journal {
    type Reader = JournalReader;

    fn append(&self, command: &Command) -> Result<(), crate::LogError> {
        Ok(Journal::append(self, *command)?)
    }

    fn reader(&self, from: u64) -> Result<JournalReader, crate::LogError> {
        Ok(Journal::reader(self, from)?)
    }

    fn durable_position(&self) -> Result<u64, crate::LogError> {
        Ok(Journal::durable_position(self))
    }
}

impl crate::LogReader for JournalReader {
    fn position(&self) -> u64 {
        self.next
    }

    fn poll(
        &mut self,
        max: usize,
        wait: Duration,
        each: &mut dyn FnMut(u64, Command),
    ) -> Result<usize, crate::LogError> {
        let deadline = Instant::now() + wait;
        loop {
            let count = JournalReader::poll(self, max, &mut *each)?;
            let now = Instant::now();
            if count > 0 || now >= deadline {
                return Ok(count);
            }
            // Sleep until the writer makes more records durable (it wakes us), or the deadline.
            let guard = self.shared.moved.lock().unwrap_or_else(|e| e.into_inner());
            if self.shared.durable.load(Ordering::Acquire) > self.next
                || self.shared.failed.load(Ordering::Acquire)
            {
                continue;
            }
            let _ = self.shared.wake.wait_timeout(guard, deadline - now);
        }
    }
}
