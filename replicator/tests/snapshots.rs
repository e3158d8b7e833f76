//! The snapshot directory: round trips, pruning, atomic replacement, and falling back past
//! unusable files (corrupt, truncated, renamed, foreign) without ever panicking.

use std::fs;
use std::path::{Path, PathBuf};

use engine::{
    AccountId, AddSymbol, Command, CommandKind, Engine, EngineConfig, Event, NewOrder, OrdType,
    OrderId, Price, Qty, Side, Stp, Symbol, Tif, FIXED_ONE,
};
use replicator::snapshots::{
    decode, encode, LoadOutcome, SnapshotFileError, SnapshotStore, SnapshotStoreError, HEADER_LEN,
    MAGIC, TRAILER_LEN,
};

// ----- building engines with state ---------------------------------------------------------------

fn config() -> EngineConfig {
    EngineConfig {
        symbols_max: 4,
        accounts_max: 16,
        orders_max: 64,
        retired_ids_max: 64,
        levels_max: 64,
        levels_per_side_max: 32,
        hash_seed: 7,
        ..EngineConfig::default()
    }
}

fn btc() -> Symbol {
    Symbol::new("BTC-USD").unwrap()
}

/// The `i`-th command of a small deterministic flow: a listing, then limit orders around
/// 100.00 from three accounts, some of which cross and trade.
fn command(i: u64) -> Command {
    if i == 0 {
        return Command::new(
            1,
            CommandKind::AddSymbol(AddSymbol {
                symbol: btc(),
                tick: Price(FIXED_ONE / 100),
                lot: Qty(FIXED_ONE / 1000),
            }),
        );
    }
    let side = if i.is_multiple_of(2) {
        Side::Buy
    } else {
        Side::Sell
    };
    // Prices 98.00 .. 102.00 in a pattern that keeps both sides populated and crosses often.
    let cents = 9_800 + (i * 37 % 401) as i64;
    Command::new(
        1 + i,
        CommandKind::New(NewOrder {
            account: AccountId(i % 3 + 1),
            order_id: OrderId::new(&format!("o-{i}")).unwrap(),
            symbol: btc(),
            side,
            ord_type: OrdType::Limit,
            price: Some(Price(cents * (FIXED_ONE / 100))),
            qty: Qty((i as i64 % 5 + 1) * (FIXED_ONE / 1000)),
            tif: Tif::Gtc,
            post_only: false,
            stp: Stp::None,
            session: 0,
        }),
    )
}

/// The engine after the commands at log positions `0..position`, i.e. the state a snapshot at
/// `position` holds.
fn engine_at(position: u64) -> Engine {
    let mut engine = Engine::new(config()).unwrap();
    let mut events: Vec<Event> = Vec::new();
    for i in 0..position {
        engine.apply(&command(i), &mut events);
    }
    engine
}

/// The events of the commands at `from..to` applied to `engine`.
fn run(engine: &mut Engine, from: u64, to: u64) -> Vec<Event> {
    let mut events = Vec::new();
    for i in from..to {
        engine.apply(&command(i), &mut events);
    }
    events
}

// ----- helpers -----------------------------------------------------------------------------------

fn store(dir: &Path, keep: usize) -> SnapshotStore {
    SnapshotStore::open(dir, keep).unwrap()
}

fn positions(store: &SnapshotStore) -> Vec<u64> {
    store.list().unwrap().into_iter().map(|(p, _)| p).collect()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn name(position: u64) -> String {
    format!("snapshot-{position:020}.snap")
}

/// Loads and expects a snapshot at `position` holding `engine_at(position)`.
fn expect_loaded(outcome: &LoadOutcome, position: u64) {
    let loaded = outcome.loaded.as_ref().expect("a usable snapshot");
    assert_eq!(loaded.position, position);
    assert_eq!(
        loaded.path.file_name().unwrap().to_str(),
        Some(&*name(position))
    );
    assert_eq!(loaded.engine.state_hash(), engine_at(position).state_hash());
}

fn skipped(outcome: &LoadOutcome) -> Vec<(u64, PathBuf, String)> {
    outcome
        .skipped
        .iter()
        .map(|s| (s.position, s.path.clone(), s.reason.to_string()))
        .collect()
}

// ----- tests -------------------------------------------------------------------------------------

#[test]
fn save_then_load_round_trips_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 3);
    let original = engine_at(40);
    assert!(
        original.stats().live_orders > 0,
        "the flow leaves orders resting"
    );
    let path = store.save(40, &original).unwrap();
    assert_eq!(path, dir.path().join(name(40)));
    assert_eq!(store.path_for(40), path);

    let outcome = store.load_latest().unwrap();
    assert!(outcome.skipped.is_empty());
    let loaded = outcome.loaded.unwrap();
    assert_eq!(loaded.position, 40);
    assert_eq!(loaded.path, path);
    assert_eq!(loaded.engine.state_hash(), original.state_hash());

    // The restored engine carries on exactly like the original.
    let mut original = original;
    let mut restored = loaded.engine;
    assert_eq!(run(&mut restored, 40, 80), run(&mut original, 40, 80));
    assert_eq!(restored.state_hash(), original.state_hash());
}

#[test]
fn the_file_is_header_engine_snapshot_and_crc() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 1);
    let engine = engine_at(12);
    let path = store.save(12, &engine).unwrap();
    let bytes = fs::read(&path).unwrap();
    let snapshot = engine.snapshot();
    assert_eq!(bytes.len(), HEADER_LEN + snapshot.len() + TRAILER_LEN);
    assert_eq!(&bytes[..8], MAGIC);
    assert_eq!(&bytes[..8], b"EXSNAPF1");
    assert_eq!(bytes[8..16], 12u64.to_le_bytes());
    assert_eq!(bytes[16..24], (snapshot.len() as u64).to_le_bytes());
    assert_eq!(&bytes[24..24 + snapshot.len()], &snapshot[..]);
    let crc = crc32fast::hash(&bytes[..bytes.len() - 4]);
    assert_eq!(bytes[bytes.len() - 4..], crc.to_le_bytes());
    assert_eq!(bytes, encode(12, &engine));
    assert_eq!(
        decode(&bytes, 12).unwrap().state_hash(),
        engine.state_hash()
    );
    // Nothing but the snapshot is left behind.
    assert_eq!(file_names(dir.path()), vec![name(12)]);
}

#[test]
fn open_creates_the_directory_and_refuses_keep_zero() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b");
    let store = store(&nested, 2);
    assert!(nested.is_dir());
    assert_eq!(store.dir(), nested);
    assert_eq!(store.keep(), 2);
    assert!(matches!(
        SnapshotStore::open(dir.path(), 0),
        Err(SnapshotStoreError::KeepZero)
    ));
    // A file where the directory should be.
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    match SnapshotStore::open(&file, 1) {
        Err(SnapshotStoreError::CreateDir { path, .. }) => assert_eq!(path, file),
        other => panic!("expected CreateDir, got {other:?}"),
    }
}

#[test]
fn keep_two_prunes_to_the_two_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 2);
    for position in [10, 20, 30, 40] {
        store.save(position, &engine_at(position)).unwrap();
    }
    assert_eq!(positions(&store), vec![40, 30]);
    assert_eq!(file_names(dir.path()), vec![name(30), name(40)]);
    // An older position saved late is pruned at once: only positions order snapshots.
    store.save(5, &engine_at(5)).unwrap();
    assert_eq!(positions(&store), vec![40, 30]);
    expect_loaded(&store.load_latest().unwrap(), 40);
}

#[test]
fn saving_at_an_existing_position_replaces_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 2);
    store.save(20, &engine_at(20)).unwrap();
    // Another state under the same position (as if the first were taken wrongly).
    let other = engine_at(25);
    store.save(20, &other).unwrap();
    assert_eq!(positions(&store), vec![20]);
    let loaded = store.load_latest().unwrap().loaded.unwrap();
    assert_eq!(loaded.engine.state_hash(), other.state_hash());
}

#[test]
fn empty_directory_has_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 2);
    assert!(store.list().unwrap().is_empty());
    let outcome = store.load_latest().unwrap();
    assert!(outcome.loaded.is_none());
    assert!(outcome.skipped.is_empty());
}

#[test]
fn a_corrupted_newest_snapshot_is_skipped_for_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 3);
    store.save(10, &engine_at(10)).unwrap();
    let newest = store.save(20, &engine_at(20)).unwrap();
    let mut bytes = fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&newest, &bytes).unwrap();

    let outcome = store.load_latest().unwrap();
    expect_loaded(&outcome, 10);
    assert_eq!(outcome.skipped.len(), 1);
    assert_eq!(outcome.skipped[0].position, 20);
    assert_eq!(outcome.skipped[0].path, newest);
    assert!(
        matches!(
            outcome.skipped[0].reason,
            SnapshotFileError::Checksum { .. }
        ),
        "{:?}",
        skipped(&outcome)
    );
    assert!(outcome.skipped[0]
        .reason
        .to_string()
        .contains("checksum mismatch"));
}

#[test]
fn a_truncated_newest_snapshot_is_skipped_for_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 3);
    store.save(10, &engine_at(10)).unwrap();
    store.save(20, &engine_at(20)).unwrap();
    let newest = store.save(30, &engine_at(30)).unwrap();
    let middle = store.path_for(20);
    let len = fs::metadata(&newest).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    // The one before it is cut inside its header.
    fs::OpenOptions::new()
        .write(true)
        .open(&middle)
        .unwrap()
        .set_len(10)
        .unwrap();

    let outcome = store.load_latest().unwrap();
    expect_loaded(&outcome, 10);
    let reasons: Vec<_> = outcome.skipped.iter().map(|s| &s.reason).collect();
    assert!(
        matches!(
            reasons[..],
            [
                SnapshotFileError::Truncated { len: l30, needed: n30 },
                SnapshotFileError::Truncated { len: 10, needed: 28 },
            ] if *l30 == len - 1 && *n30 == len
        ),
        "{:?}",
        skipped(&outcome)
    );
    assert_eq!(
        outcome
            .skipped
            .iter()
            .map(|s| s.position)
            .collect::<Vec<_>>(),
        vec![30, 20]
    );
}

#[test]
fn a_snapshot_whose_header_position_disagrees_with_its_name_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 3);
    store.save(10, &engine_at(10)).unwrap();
    // A valid snapshot of position 20, renamed (or copied) to position 30's name.
    let twenty = store.save(20, &engine_at(20)).unwrap();
    fs::rename(&twenty, store.path_for(30)).unwrap();

    let outcome = store.load_latest().unwrap();
    expect_loaded(&outcome, 10);
    assert_eq!(outcome.skipped.len(), 1);
    assert_eq!(outcome.skipped[0].position, 30);
    assert!(matches!(
        outcome.skipped[0].reason,
        SnapshotFileError::PositionMismatch {
            header: 20,
            expected: 30
        }
    ));
}

#[test]
fn bad_magic_trailing_bytes_and_engine_rejects_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 10);
    store.save(10, &engine_at(10)).unwrap();

    // Bad magic (with a correct CRC, so only the magic is wrong).
    let mut bytes = encode(20, &engine_at(20));
    bytes[0] = b'X';
    fs::write(store.path_for(20), reseal(bytes)).unwrap();
    // Bytes after the checksum.
    let mut bytes = encode(30, &engine_at(30));
    bytes.extend_from_slice(b"junk");
    fs::write(store.path_for(30), bytes).unwrap();
    // A frame that is intact but holds no engine snapshot.
    fs::write(store.path_for(40), frame(40, b"not an engine snapshot")).unwrap();
    // A length field far beyond the file.
    let mut bytes = encode(50, &engine_at(50));
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    fs::write(store.path_for(50), bytes).unwrap();
    // A directory with a snapshot's name is not a snapshot.
    fs::create_dir(store.path_for(60)).unwrap();

    let outcome = store.load_latest().unwrap();
    expect_loaded(&outcome, 10);
    let reasons: Vec<_> = outcome.skipped.iter().map(|s| &s.reason).collect();
    assert!(
        matches!(
            reasons[..],
            [
                SnapshotFileError::Truncated {
                    needed: u64::MAX,
                    ..
                },
                SnapshotFileError::Engine(_),
                SnapshotFileError::TrailingBytes(4),
                SnapshotFileError::BadMagic,
            ]
        ),
        "{:?}",
        skipped(&outcome)
    );
}

#[test]
fn partial_and_foreign_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 2);
    store.save(10, &engine_at(10)).unwrap();
    // A crash mid-save leaves a newer `.partial`; foreign files sit beside the snapshots.
    let partial = dir.path().join(format!("{}.partial", name(20)));
    fs::write(&partial, &encode(20, &engine_at(20))[..50]).unwrap();
    let foreign = [
        "README.txt",
        "snapshot-30.snap",
        "snapshot-00000000000000000030.snap.bak",
        "snapshot-0000000000000000003a.snap",
    ];
    for name in foreign {
        fs::write(dir.path().join(name), b"garbage").unwrap();
    }

    assert_eq!(positions(&store), vec![10]);
    let outcome = store.load_latest().unwrap();
    expect_loaded(&outcome, 10);
    assert!(outcome.skipped.is_empty(), "{:?}", skipped(&outcome));

    // The next save deletes the stale `.partial` and leaves foreign files alone.
    store.save(30, &engine_at(30)).unwrap();
    assert!(!partial.exists());
    let mut expected: Vec<String> = foreign.iter().map(|s| s.to_string()).collect();
    expected.extend([name(10), name(30)]);
    expected.sort();
    assert_eq!(file_names(dir.path()), expected);
}

#[test]
fn no_usable_snapshot_reports_every_skipped_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 3);
    fs::write(store.path_for(1), b"").unwrap();
    fs::write(store.path_for(2), b"EXSNAPF1 but nothing else").unwrap();
    let outcome = store.load_latest().unwrap();
    assert!(outcome.loaded.is_none());
    assert_eq!(
        outcome
            .skipped
            .iter()
            .map(|s| s.position)
            .collect::<Vec<_>>(),
        vec![2, 1]
    );
}

#[test]
fn listing_is_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 10);
    for position in [3, 1_000, 20, u64::MAX, 0] {
        // The state does not matter for listing.
        store.save(position, &engine_at(position.min(5))).unwrap();
    }
    let listed = store.list().unwrap();
    assert_eq!(
        listed.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        vec![u64::MAX, 1_000, 20, 3, 0]
    );
    for (position, path) in listed {
        assert_eq!(path, dir.path().join(name(position)));
    }
}

#[test]
fn a_missing_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let store = store(&gone, 1);
    fs::remove_dir(&gone).unwrap();
    assert!(matches!(
        store.load_latest(),
        Err(SnapshotStoreError::ListDir { .. })
    ));
    assert!(matches!(
        store.save(1, &engine_at(1)),
        Err(SnapshotStoreError::Write { .. })
    ));
}

#[test]
fn decode_never_panics_on_damaged_bytes() {
    let engine = engine_at(30);
    let good = encode(30, &engine);
    assert_eq!(decode(&good, 30).unwrap().state_hash(), engine.state_hash());
    // Every truncation.
    for len in 0..good.len() {
        assert!(decode(&good[..len], 30).is_err(), "truncated to {len}");
    }
    // Every single-bit flip: the CRC catches it.
    for at in 0..good.len() {
        let mut bytes = good.clone();
        bytes[at] ^= 0x01;
        assert!(decode(&bytes, 30).is_err(), "flip at {at}");
    }
    // Every byte damaged and the frame resealed: the engine's own checks refuse it (or, if
    // the damage lands somewhere harmless to the engine, it restores; either way no panic).
    let body = engine.snapshot();
    for at in 0..body.len() {
        let mut damaged = body.clone();
        damaged[at] = damaged[at].wrapping_add(0x55);
        let _ = decode(&frame(30, &damaged), 30);
    }
}

/// A well-formed file frame around arbitrary engine bytes.
fn frame(position: u64, snapshot: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&position.to_le_bytes());
    bytes.extend_from_slice(&(snapshot.len() as u64).to_le_bytes());
    bytes.extend_from_slice(snapshot);
    reseal_with_room(bytes)
}

/// Recomputes the CRC of a complete file.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - TRAILER_LEN);
    reseal_with_room(bytes)
}

fn reseal_with_room(mut bytes: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}
