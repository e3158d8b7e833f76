//! Recovery = newest valid snapshot + the journal after it, equal to a full replay.

use std::path::Path;
use std::time::{Duration, Instant};

use engine::{Command, Engine, EngineConfig, Event, StateHash, SNAPSHOT_VERSION};
use flow::{FlowConfig, FlowGenerator};
use replicator::journal::{Journal, JournalConfig};
use replicator::recovery::{recover, Checkpointer, RecoveryError, SnapshotPolicy};
use replicator::snapshots::{SnapshotStore, HEADER_LEN, TRAILER_LEN};

fn flow(count: usize) -> (EngineConfig, Vec<Command>) {
    let config = FlowConfig {
        seed: 7,
        book_depth: 200,
        accounts: 50,
        ..FlowConfig::default()
    };
    let mut generator = FlowGenerator::new(config);
    let mut commands = generator.setup();
    commands.extend(generator.generate(count));
    (config.engine_config(), commands)
}

fn full_replay(config: EngineConfig, commands: &[Command]) -> StateHash {
    let mut engine = Engine::new(config).unwrap();
    let mut events: Vec<Event> = Vec::new();
    for cmd in commands {
        engine.apply(cmd, &mut events);
    }
    engine.state_hash()
}

fn journal_of(dir: &Path, commands: &[Command]) -> Journal {
    let (journal, _) = Journal::open(JournalConfig::new(dir.join("journal"))).unwrap();
    let appender = journal.appender();
    for cmd in commands {
        appender.append(*cmd).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while journal.durable_position() < commands.len() as u64 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    journal
}

/// The commands as the journal holds them: stamped with its writer's time.
fn logged(journal: &Journal) -> Vec<Command> {
    let mut commands = Vec::new();
    let mut reader = journal.reader(0).unwrap();
    while reader
        .poll(usize::MAX, |_, cmd| commands.push(cmd))
        .unwrap()
        > 0
    {}
    commands
}

/// Applies the journal from 0, saving snapshots at `at` positions.
fn snapshot_at(journal: &Journal, store: &SnapshotStore, config: EngineConfig, at: &[u64]) {
    let mut engine = Engine::new(config).unwrap();
    let mut events = Vec::new();
    let mut reader = journal.reader(0).unwrap();
    while reader.position() < journal.durable_position() {
        if at.contains(&reader.position()) {
            store.save(reader.position(), &engine).unwrap();
        }
        reader
            .poll(1, |_, cmd| engine.apply(&cmd, &mut events))
            .unwrap();
    }
}

#[test]
fn recovery_from_a_snapshot_equals_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (config, commands) = flow(20_000);
    let journal = journal_of(dir.path(), &commands);
    let expected = full_replay(config, &logged(&journal));
    let store = SnapshotStore::open(&dir.path().join("snapshots"), 3).unwrap();

    // No snapshot: the whole journal.
    let fresh = recover(&journal, &store, config).unwrap();
    assert_eq!(fresh.snapshot, None);
    assert_eq!(fresh.replayed, commands.len() as u64);
    assert_eq!(fresh.engine.state_hash(), expected);

    snapshot_at(&journal, &store, config, &[5_000, 12_345]);
    let recovered = recover(&journal, &store, config).unwrap();
    assert_eq!(recovered.snapshot, Some(12_345));
    assert_eq!(recovered.replayed, commands.len() as u64 - 12_345);
    assert_eq!(recovered.position, commands.len() as u64);
    assert_eq!(recovered.engine.state_hash(), expected);
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let (config, commands) = flow(10_000);
    let journal = journal_of(dir.path(), &commands);
    let expected = full_replay(config, &logged(&journal));
    let store = SnapshotStore::open(&dir.path().join("snapshots"), 3).unwrap();
    snapshot_at(&journal, &store, config, &[3_000, 7_000]);
    let newest = store.path_for(7_000);
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&newest, bytes).unwrap();

    let recovered = recover(&journal, &store, config).unwrap();
    assert_eq!(recovered.snapshot, Some(3_000));
    assert_eq!(recovered.skipped.len(), 1);
    assert_eq!(recovered.engine.state_hash(), expected);
}

/// A snapshot in a format version this binary does not read (a newer binary wrote it) stops
/// recovery with both versions named, rather than being skipped for an older snapshot or a
/// replay from 0.
#[test]
fn a_snapshot_in_a_version_this_binary_does_not_read_is_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let (config, commands) = flow(2_000);
    let journal = journal_of(dir.path(), &commands);
    let store = SnapshotStore::open(&dir.path().join("snapshots"), 3).unwrap();
    snapshot_at(&journal, &store, config, &[500, 1_500]);
    let newest = store.path_for(1_500);
    let mut bytes = std::fs::read(&newest).unwrap();
    // The engine's version follows its 8 magic bytes, after the file's header.
    let at = HEADER_LEN + 8;
    bytes[at..at + 4].copy_from_slice(&(SNAPSHOT_VERSION + 1).to_le_bytes());
    let end = bytes.len() - TRAILER_LEN;
    let crc = crc32fast::hash(&bytes[..end]);
    bytes[end..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&newest, bytes).unwrap();

    let err = recover(&journal, &store, config).err().expect("refused");
    let found = SNAPSHOT_VERSION + 1;
    assert!(
        matches!(err, RecoveryError::SnapshotVersion { position: 1_500, found: f, reads: SNAPSHOT_VERSION, .. } if f == found),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("version {found}"))
            && text.contains(&format!("version {SNAPSHOT_VERSION}")),
        "{text}"
    );
}

#[test]
fn a_snapshot_with_other_capacities_or_ahead_of_the_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, commands) = flow(1_000);
    let journal = journal_of(dir.path(), &commands);
    let store = SnapshotStore::open(&dir.path().join("snapshots"), 3).unwrap();
    snapshot_at(&journal, &store, config, &[500]);
    let other = EngineConfig {
        orders_max: config.orders_max + 1,
        ..config
    };
    let secret = 0x1234_5678_9abc_def1_u64;
    let err = recover(
        &journal,
        &store,
        EngineConfig {
            hash_seed: secret,
            ..other
        },
    )
    .err()
    .expect("refused");
    assert!(
        matches!(err, RecoveryError::ConfigMismatch { position: 500, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains(&secret.to_string()), "{err}");
    // The seed is not a capacity.
    let reseeded = EngineConfig {
        hash_seed: 42,
        ..config
    };
    assert!(recover(&journal, &store, reseeded).is_ok());

    let ahead = Engine::new(config).unwrap();
    store.save(commands.len() as u64 + 10, &ahead).unwrap();
    assert!(matches!(
        recover(&journal, &store, config),
        Err(RecoveryError::SnapshotAhead { .. })
    ));
}

#[test]
fn the_checkpointer_saves_every_n_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), 10).unwrap();
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let policy = SnapshotPolicy {
        every_records: 100,
        every_seconds: 3600,
    };
    let mut checkpointer = Checkpointer::new(policy, 0);
    let saved: Vec<u64> = (0..=350)
        .filter(|&p| checkpointer.maybe_save(&store, p, &engine).unwrap())
        .collect();
    assert_eq!(saved, [100, 200, 300]);
    assert_eq!(store.list().unwrap().len(), 3);
}

/// A journal whose first `deleted` records retention took, as a Kafka partition's low
/// watermark says.
struct Retained<'a>(&'a Journal, u64);

impl replicator::CommandLog for Retained<'_> {
    type Reader = <Journal as replicator::CommandLog>::Reader;

    fn append(&self, command: &Command) -> Result<(), replicator::LogError> {
        replicator::CommandLog::append(self.0, command)
    }

    fn reader(&self, from: u64) -> Result<Self::Reader, replicator::LogError> {
        replicator::CommandLog::reader(self.0, from)
    }

    fn durable_position(&self) -> Result<u64, replicator::LogError> {
        replicator::CommandLog::durable_position(self.0)
    }

    fn first_position(&self) -> Result<u64, replicator::LogError> {
        Ok(self.1)
    }
}

#[test]
fn a_site_whose_snapshot_is_older_than_the_logs_first_record_is_told_to_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let (config, commands) = flow(1_000);
    let journal = journal_of(dir.path(), &commands);
    let store = SnapshotStore::open(&dir.path().join("snapshots"), 3).unwrap();
    // No snapshot, and the log starts at 300: nothing to start from.
    let err = recover(&Retained(&journal, 300), &store, config)
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            RecoveryError::LogStartsLater {
                first: 300,
                snapshot: None
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("exchange bootstrap"), "{err}");
    // A snapshot at 200 is still too old; one at 500 (as shipped from another site) is not.
    snapshot_at(&journal, &store, config, &[200]);
    let err = recover(&Retained(&journal, 300), &store, config)
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            RecoveryError::LogStartsLater {
                first: 300,
                snapshot: Some(200)
            }
        ),
        "{err:?}"
    );
    snapshot_at(&journal, &store, config, &[500]);
    let recovered = recover(&Retained(&journal, 300), &store, config).unwrap();
    assert_eq!(recovered.snapshot, Some(500));
    assert_eq!(
        recovered.engine.state_hash(),
        full_replay(config, &logged(&journal))
    );
}
