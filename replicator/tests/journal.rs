//! The file journal: order, durability, segments, and recovery from torn tails and corruption.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::{
    AccountId, AddSymbol, CancelAfter, Command, CommandKind, Engine, EngineConfig, Event,
    MassCancel, NewOrder, OrdType, OrderId, OrderStatus, Price, Qty, Side, Stp, Symbol, Tif,
    TimestampNs, FIXED_ONE,
};
use replicator::journal::{FsyncPolicy, Journal, JournalConfig, JournalError, JournalReader};

/// A command that says which position it was written at.
fn command(n: u64) -> Command {
    Command::new(
        1_000 + n,
        CommandKind::MassCancel(MassCancel {
            account: AccountId(n),
            symbol: None,
            session: None,
        }),
    )
}

fn config(dir: &Path) -> JournalConfig {
    JournalConfig::new(dir)
}

fn append_all(journal: &Journal, range: std::ops::Range<u64>) {
    let appender = journal.appender();
    for n in range {
        appender.append(command(n)).unwrap();
    }
}

fn wait_durable(journal: &Journal, position: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while journal.durable_position() < position {
        assert!(Instant::now() < deadline, "not durable in time");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn read_all(reader: &mut JournalReader) -> Vec<(u64, Command)> {
    let mut out = Vec::new();
    reader.poll(usize::MAX, |p, c| out.push((p, c))).unwrap();
    out
}

/// A record's position and what it asks (its `ts` is the writer's, not the appender's).
fn kind_at(record: &(u64, Command)) -> (u64, CommandKind) {
    (record.0, record.1.kind)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "journal"))
        .collect();
    paths.sort();
    paths
}

/// A byte of a record header's position field.
const POSITION_BYTE: usize = 9;

#[test]
fn appended_commands_are_read_back_in_order_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, recovery) = Journal::open(config(dir.path())).unwrap();
    assert_eq!(recovery.records, 0);
    append_all(&journal, 0..1000);
    wait_durable(&journal, 1000);
    let mut reader = journal.reader(0).unwrap();
    let records = read_all(&mut reader);
    assert_eq!(records.len(), 1000);
    for (n, (position, cmd)) in records.iter().enumerate() {
        assert_eq!((*position, cmd.kind), (n as u64, command(n as u64).kind));
    }
    assert_eq!(reader.position(), 1000);
    // A reader can start anywhere.
    let mut middle = journal.reader(640).unwrap();
    assert_eq!(kind_at(&read_all(&mut middle)[0]), (640, command(640).kind));
    assert_eq!(journal.close(), 1000);
}

#[test]
fn segments_roll_and_everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let small = JournalConfig {
        segment_bytes_max: 4096,
        batch_max: 16,
        ..config(dir.path())
    };
    let (journal, _) = Journal::open(small.clone()).unwrap();
    append_all(&journal, 0..2000);
    wait_durable(&journal, 2000);
    let live: Vec<_> = read_all(&mut journal.reader(0).unwrap());
    assert_eq!(journal.close(), 2000);
    assert!(segments(dir.path()).len() > 10, "segments rolled");

    let (journal, recovery) = Journal::open(small).unwrap();
    assert_eq!(recovery.records, 2000);
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(read_all(&mut journal.reader(0).unwrap()), live);
    // Appends continue at the next position, readable across the old segments.
    append_all(&journal, 2000..2100);
    wait_durable(&journal, 2100);
    let all = read_all(&mut journal.reader(1500).unwrap());
    assert_eq!(all.len(), 600);
    assert_eq!(kind_at(all.last().unwrap()), (2099, command(2099).kind));
}

#[test]
fn a_torn_tail_is_cut_and_nothing_after_it_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    append_all(&journal, 0..100);
    assert_eq!(journal.close(), 100);
    let last = segments(dir.path()).pop().unwrap();
    let good_len = fs::metadata(&last).unwrap().len();
    // A crash mid-write: the start of a record, then nothing.
    let mut torn = Vec::new();
    replicator::record::encode(&mut torn, 100, 100, &command(100));
    append_raw(dir.path(), &torn[..torn.len() / 2]);

    let (journal, recovery) = Journal::open(config(dir.path())).unwrap();
    assert_eq!(recovery.records, 100);
    assert_eq!(recovery.truncated_bytes, (torn.len() / 2) as u64);
    assert_eq!(fs::metadata(&last).unwrap().len(), good_len);
    append_all(&journal, 100..110);
    wait_durable(&journal, 110);
    let records = read_all(&mut journal.reader(95).unwrap());
    assert_eq!(records.len(), 15);
    assert_eq!(kind_at(records.last().unwrap()), (109, command(109).kind));
}

#[test]
fn unsynced_records_after_a_torn_one_are_cut_too() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    append_all(&journal, 0..10);
    assert_eq!(journal.close(), 10);
    // Records 10 and 11 written in one batch (durable through 10), the first damaged: the
    // page cache wrote them out of order before the crash. Neither was acknowledged.
    let mut batch = Vec::new();
    replicator::record::encode(&mut batch, 10, 10, &command(10));
    replicator::record::encode(&mut batch, 11, 10, &command(11));
    batch[POSITION_BYTE] ^= 0xff;
    append_raw(dir.path(), &batch);
    let (journal, recovery) = Journal::open(config(dir.path())).unwrap();
    assert_eq!(recovery.records, 10);
    assert_eq!(recovery.truncated_bytes, batch.len() as u64);
    assert_eq!(read_all(&mut journal.reader(0).unwrap()).len(), 10);
}

#[test]
fn a_damaged_record_that_was_durable_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    // Two batches: the second records that the first was durable.
    append_all(&journal, 0..5);
    wait_durable(&journal, 5);
    append_all(&journal, 5..10);
    assert_eq!(journal.close(), 10);
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    bytes[POSITION_BYTE] ^= 0x01; // record 0's position
    fs::write(&last, &bytes).unwrap();
    match Journal::open(config(dir.path())) {
        Err(JournalError::Corrupt {
            position, reason, ..
        }) => {
            assert_eq!(position, 0);
            assert!(reason.contains("durable through position"), "{reason}");
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok((_, recovery)) => panic!("expected corruption, recovered {recovery:?}"),
    }
}

#[test]
fn damage_in_a_sealed_segment_is_refused_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let small = JournalConfig {
        segment_bytes_max: 1024,
        batch_max: 4,
        ..config(dir.path())
    };
    let (journal, _) = Journal::open(small.clone()).unwrap();
    append_all(&journal, 0..200);
    assert_eq!(journal.close(), 200);
    let first = segments(dir.path()).remove(0);
    let mut bytes = fs::read(&first).unwrap();
    let last_byte = bytes.len() - 1;
    bytes[last_byte] ^= 0x40;
    fs::write(&first, &bytes).unwrap();
    // Opening checks only the last segment; the damage is found by the reader that reaches it.
    let (journal, recovery) = Journal::open(small).unwrap();
    assert_eq!(recovery.records, 200);
    let mut reader = journal.reader(0).unwrap();
    let mut read = 0;
    let err = loop {
        match reader.poll(1, |_, _| read += 1) {
            Ok(0) => panic!("the damaged record was read without error"),
            Ok(_) => {}
            Err(err) => break err,
        }
    };
    assert!(matches!(err, JournalError::Corrupt { position, .. } if position == read));
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn a_missing_segment_is_refused_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let small = JournalConfig {
        segment_bytes_max: 1024,
        batch_max: 4,
        ..config(dir.path())
    };
    let (journal, _) = Journal::open(small.clone()).unwrap();
    append_all(&journal, 0..200);
    assert_eq!(journal.close(), 200);
    fs::remove_file(&segments(dir.path())[1]).unwrap();
    let (journal, _) = Journal::open(small).unwrap();
    let mut reader = journal.reader(0).unwrap();
    let err = reader.poll(usize::MAX, |_, _| {}).unwrap_err();
    assert!(matches!(err, JournalError::Gap { .. }), "{err}");
}

#[test]
fn interval_fsync_makes_commands_durable_within_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let interval = JournalConfig {
        fsync: FsyncPolicy::Interval { ms: 5 },
        ..config(dir.path())
    };
    let (journal, _) = Journal::open(interval).unwrap();
    append_all(&journal, 0..50);
    wait_durable(&journal, 50);
    assert_eq!(read_all(&mut journal.reader(0).unwrap()).len(), 50);
    assert_eq!(journal.close(), 50);
}

#[test]
fn appends_after_close_fail_and_a_missing_position_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    let appender = journal.appender();
    append_all(&journal, 0..3);
    journal.close();
    assert!(matches!(
        appender.append(command(3)),
        Err(JournalError::Closed)
    ));
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    assert!(matches!(
        journal.reader(4),
        Err(JournalError::Missing(4, 0))
    ));
}

/// Appends raw bytes to the last segment, as a crash (or a disk) might have left them.
fn append_raw(dir: &Path, bytes: &[u8]) {
    let last = segments(dir).pop().unwrap();
    OpenOptions::new()
        .append(true)
        .open(last)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn a_record_with_a_valid_checksum_but_a_wrong_position_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    append_all(&journal, 0..10);
    journal.close();
    // A torn write cannot produce a valid checksum: this is corruption, or another log.
    let mut alien = Vec::new();
    replicator::record::encode(&mut alien, 77, 10, &command(77));
    append_raw(dir.path(), &alien);
    let err = Journal::open(config(dir.path())).err().expect("refused");
    assert!(
        err.to_string()
            .contains("position 77 where 10 was expected"),
        "{err}"
    );
}

#[test]
fn a_record_with_a_valid_checksum_that_is_not_a_command_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    append_all(&journal, 0..10);
    journal.close();
    // What a newer binary's new kind of command looks like to this one.
    let payload = [0xee_u8; 12];
    let crc = replicator::record::checksum(12, 10, 10, &payload);
    let mut frame = Vec::new();
    frame.extend_from_slice(&12u32.to_le_bytes());
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(&10u64.to_le_bytes());
    frame.extend_from_slice(&10u64.to_le_bytes());
    frame.extend_from_slice(&payload);
    append_raw(dir.path(), &frame);
    let err = Journal::open(config(dir.path())).err().expect("refused");
    // Told apart from damage: this binary cannot read on, a newer one can.
    assert!(err.to_string().contains("needs a newer binary"), "{err}");
    assert!(matches!(
        err,
        replicator::journal::JournalError::NeedsNewerBinary { position: 10, .. }
    ));
}

#[test]
fn after_a_clean_close_damage_to_the_last_batch_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let interval = JournalConfig {
        fsync: FsyncPolicy::Interval { ms: 1000 },
        ..config(dir.path())
    };
    let (journal, _) = Journal::open(interval.clone()).unwrap();
    // One interval's worth of records, none witnessed by a later batch.
    append_all(&journal, 0..500);
    assert_eq!(journal.close(), 500);
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    bytes[POSITION_BYTE] ^= 0x01;
    fs::write(&last, &bytes).unwrap();
    // The sync mark written at close proves those records were durable.
    let err = Journal::open(interval).err().expect("refused");
    assert!(
        err.to_string().contains("durable through position 500"),
        "{err}"
    );
}

#[test]
fn a_journal_has_one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    assert!(matches!(
        Journal::open(config(dir.path())),
        Err(JournalError::Locked(_))
    ));
    journal.close();
    let (journal, recovery) = Journal::open(config(dir.path())).unwrap();
    assert_eq!(recovery.records, 0);
    drop(journal);
}

#[test]
fn sync_marks_are_invisible_to_readers() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let (journal, recovery) = Journal::open(config(dir.path())).unwrap();
        assert_eq!(recovery.records, round * 10);
        append_all(&journal, round * 10..round * 10 + 10);
        journal.close();
    }
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    let records = read_all(&mut journal.reader(0).unwrap());
    assert_eq!(records.len(), 30);
    assert!(records
        .iter()
        .enumerate()
        .all(|(n, r)| kind_at(r) == (n as u64, command(n as u64).kind)));
    assert_eq!(read_all(&mut journal.reader(15).unwrap()).len(), 15);
}

const TEN_MINUTES_NS: u64 = 600_000_000_000;

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn at(ts: u64, command: Command) -> Command {
    Command {
        ts: TimestampNs(ts),
        ..command
    }
}

#[test]
fn the_writer_stamps_each_command_with_its_own_clock_whatever_the_submitter_said() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    let before = wall_ns();
    // A submitter ten minutes fast, then one at the epoch, then ordinary ones.
    journal
        .append(at(before + TEN_MINUTES_NS, command(0)))
        .unwrap();
    journal.append(at(0, command(1))).unwrap();
    append_all(&journal, 2..1000);
    wait_durable(&journal, 1000);
    let after = wall_ns();
    let records = read_all(&mut journal.reader(0).unwrap());
    assert_eq!(records.len(), 1000);
    for (position, cmd) in &records {
        assert!(
            (before..=after).contains(&cmd.ts.0),
            "record {position} at {} is not the writer's time ({before}..={after})",
            cmd.ts.0
        );
    }
    assert!(
        records.windows(2).all(|w| w[0].1.ts <= w[1].1.ts),
        "log time never goes back"
    );
    journal.close();
    // A replay reads the stored time, not a new one.
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    assert_eq!(read_all(&mut journal.reader(0).unwrap()), records);
}

#[test]
fn log_time_never_goes_back_across_a_restart_even_after_an_empty_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    append_all(&journal, 0..10);
    journal.close();
    // The last record was stamped an hour ahead of this clock (the machine's clock has since
    // been stepped back).
    let ahead = wall_ns() + 6 * TEN_MINUTES_NS;
    let mut raw = Vec::new();
    replicator::record::encode(&mut raw, 10, 10, &at(ahead, command(10)));
    append_raw(dir.path(), &raw);
    let (journal, recovery) = Journal::open(config(dir.path())).unwrap();
    assert_eq!(recovery.records, 11);
    append_all(&journal, 11..20);
    wait_durable(&journal, 20);
    let records = read_all(&mut journal.reader(11).unwrap());
    assert!(records.iter().all(|(_, c)| c.ts.0 == ahead), "{records:?}");
    journal.close();
    // A crash right after a roll leaves the last segment empty: the time comes from the one
    // before it.
    fs::File::create(dir.path().join(format!("{:020}.journal", 20))).unwrap();
    let (journal, recovery) = Journal::open(config(dir.path())).unwrap();
    assert_eq!((recovery.records, recovery.segments), (20, 2));
    append_all(&journal, 20..25);
    wait_durable(&journal, 25);
    let records = read_all(&mut journal.reader(20).unwrap());
    assert!(records.iter().all(|(_, c)| c.ts.0 == ahead), "{records:?}");
}

/// A listed symbol, a resting order of session 7 and that session's dead-man's switch of
/// `timeout_ns`, all submitted at `now`.
fn armed_switch(now: u64, timeout_ns: u64) -> Vec<Command> {
    let symbol = Symbol::new("BTC-USD").unwrap();
    let new = NewOrder {
        account: AccountId(1),
        order_id: OrderId::new("resting").unwrap(),
        symbol,
        side: Side::Buy,
        ord_type: OrdType::Limit,
        price: Some(Price(100 * FIXED_ONE)),
        qty: Qty(FIXED_ONE),
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::CancelTaker,
        session: 7,
    };
    let switch = CancelAfter {
        account: AccountId(1),
        session: 7,
        timeout_ns,
    };
    let add = AddSymbol {
        symbol,
        tick: Price(FIXED_ONE / 100),
        lot: Qty(FIXED_ONE / 100),
    };
    [
        CommandKind::AddSymbol(add),
        CommandKind::New(new),
        CommandKind::CancelAfter(switch),
    ]
    .map(|kind| Command::new(now, kind))
    .to_vec()
}

#[test]
fn a_submitter_ten_minutes_fast_fires_no_dead_mans_switch_early() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path())).unwrap();
    let now = wall_ns();
    let mut commands = armed_switch(now, 30_000_000_000);
    // Another gateway, its clock ten minutes fast, moves the clock.
    commands.push(Command::new(now + TEN_MINUTES_NS, CommandKind::Clock));
    for cmd in &commands {
        journal.append(*cmd).unwrap();
    }
    wait_durable(&journal, commands.len() as u64);
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    let mut events: Vec<Event> = Vec::new();
    let mut reader = journal.reader(0).unwrap();
    reader
        .poll(usize::MAX, |_, cmd| engine.apply(&cmd, &mut events))
        .unwrap();
    let after = wall_ns();
    let order = engine
        .order(AccountId(1), &OrderId::new("resting").unwrap())
        .unwrap();
    assert_eq!(order.status, OrderStatus::New, "the switch fired early");
    assert!(
        (now..=after).contains(&engine.stats().clock.0),
        "the engine's clock moved to {:?} (now {now})",
        engine.stats().clock
    );
}
