//! Recovery: the newest valid snapshot, then the log after it.
//!
//! A snapshot at position `p` is the state after the log's records `0..p`; recovery restores it
//! (skipping damaged snapshots for older ones) and applies records `p..` up to the durable end.
//! The result is the same state, hash for hash, as replaying the whole log into a fresh engine.

use std::time::{Duration, Instant};

use std::path::PathBuf;

use engine::{Engine, EngineConfig, Event, SnapshotError, RULES_VERSION, SNAPSHOT_VERSION};

use crate::snapshots::{Skipped, SnapshotFileError, SnapshotStore, SnapshotStoreError};
use crate::{CommandLog, LogError, LogReader};

/// Why recovery failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Snapshots(#[from] SnapshotStoreError),
    #[error("invalid engine configuration: {0}")]
    Config(#[from] engine::ConfigError),
    #[error("recovery made no progress for {seconds} s at position {position} (log end {end})")]
    Stalled {
        position: u64,
        end: u64,
        seconds: u64,
    },
    #[error(
        "snapshot at position {snapshot} is ahead of the journal, which ends at {journal}: \
         the journal lost acknowledged records, or the snapshot belongs to another log"
    )]
    SnapshotAhead { snapshot: u64, journal: u64 },
    #[error(
        "the log starts at position {first} (its retention deleted the records before it) and \
         this site would start from {}: it cannot rejoin from its own data; fetch another \
         site's newer snapshot with `exchange bootstrap --from <that site's HTTP>` and start \
         again",
        match snapshot { Some(at) => format!("its newest snapshot, at position {at}"), None => "position 0, having no snapshot".into() }
    )]
    LogStartsLater { first: u64, snapshot: Option<u64> },
    #[error(
        "snapshot at position {position} was taken with other engine capacities than \
         configured ({snapshot:?} vs {configured:?}, hash seeds left out); every replica \
         must use the same"
    )]
    ConfigMismatch {
        position: u64,
        snapshot: Box<EngineConfig>,
        configured: Box<EngineConfig>,
    },
    #[error(
        "snapshot {} (log position {position}) is in format version {found}, and this binary \
         reads version {reads}: start a binary that reads it, or move the file aside to \
         recover from an older snapshot or the log",
        path.display()
    )]
    SnapshotVersion {
        position: u64,
        path: PathBuf,
        found: u32,
        reads: u32,
    },
    #[error(
        "snapshot {} (log position {position}) is under rules version {found}, and this binary \
         implements rules 1 to {RULES_VERSION}: start a binary that implements it",
        path.display()
    )]
    SnapshotRules {
        position: u64,
        path: PathBuf,
        found: u32,
    },
    #[error(
        "the log switches to rules version {version} at position {position}, and this binary \
         implements rules 1 to {RULES_VERSION}: start a binary that implements it"
    )]
    NewerRules { position: u64, version: u32 },
}

impl RecoveryError {
    /// Whether a newer binary could go on where this one stopped: restarting this one will
    /// not help.
    pub fn needs_newer_binary(&self) -> bool {
        match self {
            RecoveryError::Log(err) => err.needs_newer_binary(),
            RecoveryError::SnapshotVersion { found, reads, .. } => found > reads,
            RecoveryError::SnapshotRules { .. } | RecoveryError::NewerRules { .. } => true,
            _ => false,
        }
    }
}

/// A recovered engine and how it got there.
pub struct Recovered {
    pub engine: Engine,
    /// The next log position to apply.
    pub position: u64,
    /// The snapshot it started from, if any.
    pub snapshot: Option<u64>,
    /// Snapshots skipped as unusable, newest first.
    pub skipped: Vec<Skipped>,
    /// Records applied after the snapshot.
    pub replayed: u64,
    pub elapsed: Duration,
}

/// How long recovery waits for the log to deliver anything before giving up.
const RECOVERY_STALL: Duration = Duration::from_secs(60);

/// Same capacities, whatever the hash seed (which changes no behaviour).
fn same_capacities(a: &EngineConfig, b: &EngineConfig) -> bool {
    EngineConfig { hash_seed: 0, ..*a } == EngineConfig { hash_seed: 0, ..*b }
}

/// A snapshot at `position` taken with `snapshot`'s capacities is usable with `configured`
/// only if they are the same (hash seeds aside): else [`RecoveryError::ConfigMismatch`].
pub fn check_capacities(
    position: u64,
    snapshot: &EngineConfig,
    configured: &EngineConfig,
) -> Result<(), RecoveryError> {
    if same_capacities(snapshot, configured) {
        return Ok(());
    }
    let unseeded = |c: &EngineConfig| Box::new(EngineConfig { hash_seed: 0, ..*c });
    Err(RecoveryError::ConfigMismatch {
        position,
        snapshot: unseeded(snapshot),
        configured: unseeded(configured),
    })
}

/// A snapshot skipped for a format version this binary does not read: recovery stops there
/// (written by a newer binary; replaying past it from an older snapshot or from 0 would hide
/// that), naming both versions.
fn unreadable_version(skipped: &Skipped) -> Option<RecoveryError> {
    let (position, path) = (skipped.position, skipped.path.clone());
    match skipped.reason {
        SnapshotFileError::Engine(SnapshotError::UnsupportedVersion(found)) => {
            Some(RecoveryError::SnapshotVersion {
                position,
                path,
                found,
                reads: SNAPSHOT_VERSION,
            })
        }
        SnapshotFileError::Engine(SnapshotError::NewerRules(found)) => {
            Some(RecoveryError::SnapshotRules {
                position,
                path,
                found,
            })
        }
        _ => None,
    }
}

/// Restores the newest usable snapshot (or a fresh engine with `config`) and applies every
/// durable record of `log` after it, whichever backend holds the log. A damaged snapshot is
/// skipped for an older one (and reported in [`Recovered::skipped`]); one in a format
/// version this binary does not read is an error.
pub fn recover<L: CommandLog>(
    log: &L,
    snapshots: &SnapshotStore,
    config: EngineConfig,
) -> Result<Recovered, RecoveryError> {
    let started = Instant::now();
    let outcome = snapshots.load_latest()?;
    if let Some(error) = outcome.skipped.iter().find_map(unreadable_version) {
        return Err(error);
    }
    let end = log.durable_position()?;
    let (mut engine, position, snapshot) = match outcome.loaded {
        Some(loaded) => {
            if loaded.position > end {
                return Err(RecoveryError::SnapshotAhead {
                    snapshot: loaded.position,
                    journal: end,
                });
            }
            check_capacities(loaded.position, loaded.engine.config(), &config)?;
            (loaded.engine, loaded.position, Some(loaded.position))
        }
        None => (Engine::new(config)?, 0, None),
    };
    let first = log.first_position()?;
    if position < first {
        return Err(RecoveryError::LogStartsLater { first, snapshot });
    }
    let mut reader = log.reader(position)?;
    let mut events: Vec<Event> = Vec::with_capacity(1024);
    let mut replayed = 0;
    // Up to the durable end as it was when recovery began; a live node reads on from there.
    let mut last_progress = Instant::now();
    let mut newer = None;
    while reader.position() < end {
        let applied = reader.poll(4096, Duration::from_secs(1), &mut |at, command| {
            // Nothing is applied from a rules switch this binary does not implement on.
            if newer.is_none() {
                newer = command.needs_newer_binary().map(|version| (at, version));
            }
            if newer.is_none() {
                events.clear();
                engine.apply(&command, &mut events);
            }
        })?;
        if let Some((position, version)) = newer {
            return Err(RecoveryError::NewerRules { position, version });
        }
        replayed += applied as u64;
        if applied > 0 {
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= RECOVERY_STALL {
            return Err(RecoveryError::Stalled {
                position: reader.position(),
                end,
                seconds: RECOVERY_STALL.as_secs(),
            });
        }
    }
    Ok(Recovered {
        engine,
        position: reader.position(),
        snapshot,
        skipped: outcome.skipped,
        replayed,
        elapsed: started.elapsed(),
    })
}

/// When to take snapshots: every `every_records` records or `every` of wall time, whichever
/// comes first (a node's own clock decides this, never the engine's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPolicy {
    pub every_records: u64,
    pub every_seconds: u64,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            every_records: 1_000_000,
            every_seconds: 60,
        }
    }
}

/// Decides, as records are applied, when the next snapshot is due.
pub struct Checkpointer {
    policy: SnapshotPolicy,
    last_position: u64,
    last_time: Instant,
}

impl Checkpointer {
    /// Starts counting from `position` (the last snapshot's, or where recovery ended).
    pub fn new(policy: SnapshotPolicy, position: u64) -> Checkpointer {
        Checkpointer {
            policy,
            last_position: position,
            last_time: Instant::now(),
        }
    }

    /// Whether a snapshot at `position` is due.
    pub fn due(&self, position: u64) -> bool {
        let records_due =
            position.saturating_sub(self.last_position) >= self.policy.every_records.max(1);
        let time_due = position > self.last_position
            && self.last_time.elapsed() >= Duration::from_secs(self.policy.every_seconds);
        records_due || time_due
    }

    /// Records that a snapshot at `position` was taken (or handed to a writer).
    pub fn taken(&mut self, position: u64) {
        self.last_position = position;
        self.last_time = Instant::now();
    }

    /// Saves a snapshot of `engine` at `position` if one is due; returns whether it did.
    pub fn maybe_save(
        &mut self,
        snapshots: &SnapshotStore,
        position: u64,
        engine: &Engine,
    ) -> Result<bool, SnapshotStoreError> {
        if !self.due(position) {
            return Ok(false);
        }
        snapshots.save(position, engine)?;
        self.taken(position);
        Ok(true)
    }
}
