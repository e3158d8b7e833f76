//! The journal survives SIGKILL: a writer process (`exchange journal-bench --print-acks`)
//! appending flat out is killed at a random moment, again and again on the same directory.
//! After each kill, recovery must keep every record the writer had acknowledged (printed as
//! durable), and the journal must be exactly `command_at(0..n)`: no gap, no garbage, nothing
//! from after a torn record.
//!
//! Segments are small (256 KiB), so kills often land around a segment roll: that is how this
//! test once caught the writer publishing a batch as durable before writing it.
//!
//! `JOURNAL_KILLS` sets the number of kills (default 10, as CI runs it). The documented long
//! run is `JOURNAL_KILLS=200 cargo test --release --test journal_kill -- --nocapture`.
//! `JOURNAL_KILL_SEED` replays a run; the seed is printed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use exchange::cmd::journal_bench::command_at;
use replicator::journal::{Journal, JournalConfig};

/// Small segments, so that kills often land around a segment roll.
const SEGMENT_BYTES: u64 = 256 * 1024;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts a writer, lets it acknowledge some appends, kills it; returns the highest durable
/// position it printed.
fn run_and_kill(dir: &Path, rng: &mut Rng) -> u64 {
    let mut child = Process::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["journal-bench", "--print-acks", "--segment-bytes"])
        .arg(SEGMENT_BYTES.to_string())
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the writer");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Kill after a random number of acknowledgements, or a random time after the first.
    let acks_before_kill = 1 + rng.below(40);
    let run_for = Duration::from_millis(rng.below(60));
    let mut acked = 0;
    let mut seen = 0;
    let mut first_ack = None;
    while let Some(Ok(line)) = lines.next() {
        acked = parse_ack(&line);
        seen += 1;
        let started = *first_ack.get_or_insert_with(Instant::now);
        if seen >= acks_before_kill || started.elapsed() >= run_for {
            break;
        }
    }
    child.kill().expect("SIGKILL the writer");
    // Acknowledgements printed before the kill landed count too.
    for line in lines.map_while(Result::ok) {
        acked = acked.max(parse_ack(&line));
    }
    child.wait().expect("reap the writer");
    acked
}

fn parse_ack(line: &str) -> u64 {
    line.strip_prefix("durable ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected writer output {line:?}"))
}

#[test]
fn every_acknowledged_append_survives_sigkill() {
    let kills = env_or("JOURNAL_KILLS", 10);
    let seed = env_or("JOURNAL_KILL_SEED", 0x5eed ^ u64::from(std::process::id()));
    println!("journal kill test: {kills} kills, JOURNAL_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        segment_bytes_max: SEGMENT_BYTES,
        ..JournalConfig::new(dir.path())
    };
    let mut verified = 0u64;
    let mut torn_rounds = 0;
    let mut torn_bytes = 0;
    for round in 0..kills {
        let acked = run_and_kill(dir.path(), &mut rng);
        let (journal, recovery) = Journal::open(config.clone())
            .unwrap_or_else(|err| panic!("round {round}: recovery failed: {err}"));
        assert!(
            recovery.records >= acked,
            "round {round}: acknowledged up to {acked}, recovered only {}",
            recovery.records
        );
        assert!(
            recovery.records >= verified,
            "round {round}: lost verified records"
        );
        if recovery.truncated_bytes > 0 {
            torn_rounds += 1;
            torn_bytes += recovery.truncated_bytes;
        }
        // Everything new since the last round is exactly what the writer wrote there.
        let mut reader = journal.reader(verified).unwrap();
        let mut next = verified;
        while reader
            .poll(65_536, |position, command| {
                assert_eq!(position, next, "round {round}: positions are contiguous");
                // What was asked; its time is the writer's.
                assert_eq!(
                    command.kind,
                    command_at(position).kind,
                    "round {round}: record {position}"
                );
                next += 1;
            })
            .unwrap()
            > 0
        {}
        assert_eq!(
            next, recovery.records,
            "round {round}: every record is readable"
        );
        verified = next;
        journal.close();
        // Recovery is idempotent: a second open finds nothing more to cut.
        let (journal, again) = Journal::open(config.clone()).unwrap();
        assert_eq!((again.records, again.truncated_bytes), (verified, 0));
        journal.close();
    }
    println!(
        "{kills} kills: {verified} records verified; {torn_rounds} recoveries cut a torn tail \
         ({torn_bytes} bytes in all)"
    );
    assert!(verified > 0, "the writer acknowledged nothing");
}
