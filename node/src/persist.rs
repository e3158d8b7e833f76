//! Snapshots and state hashes: taken on the matcher threads between commands, at log
//! positions every site agrees on, and written by one persist thread.
//!
//! ```text
//!  matcher (shard s) ── Checkpoints::after_command ──▶ bounded channel ──▶ persist thread
//!                        snapshot bytes, hash reports                       ├─▶ snapshots/ of shard s
//!                                                                           ├─▶ hashes.jsonl
//!                                                                           └─▶ recent hashes (/v1/hashes)
//! ```

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use engine::runner::Observer;
use engine::Engine;
use replicator::divergence::{DivergenceError, FileHashSink, HashCadence, HashReport, HashSink};
use replicator::recovery::{Checkpointer, SnapshotPolicy};
use replicator::snapshots::{self, SnapshotStore};

/// Hash reports kept in memory for `GET /v1/hashes`.
const RECENT_HASHES: usize = 256;

/// The newest hash reports of every shard, oldest first, for `GET /v1/hashes`.
#[derive(Clone, Default)]
pub struct RecentHashes(Arc<Mutex<VecDeque<HashReport>>>);

impl RecentHashes {
    pub fn list(&self) -> Vec<HashReport> {
        self.0
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn push(&self, report: HashReport) {
        if let Ok(mut recent) = self.0.lock() {
            if recent.len() == RECENT_HASHES {
                recent.pop_front();
            }
            recent.push_back(report);
        }
    }
}

/// What the matchers hand the persist thread.
pub enum Persist {
    /// Shard, position, snapshot bytes.
    Snapshot(usize, u64, Vec<u8>),
    Hash(HashReport),
}

/// The persist thread: writes every shard's snapshots to its store and every hash report to
/// `hashes_path` and `recent`, and hands it to the divergence fence when there is one (a
/// full fence queue skips a report: one comparison fewer), until every sender is gone.
pub fn spawn_writer(
    stores: Vec<Arc<SnapshotStore>>,
    hashes_path: &Path,
    recent: RecentHashes,
    items: Receiver<Persist>,
    fence: Option<Sender<HashReport>>,
) -> std::io::Result<JoinHandle<anyhow::Result<()>>> {
    let hashes_path = hashes_path.to_path_buf();
    std::thread::Builder::new()
        .name("persist".into())
        .spawn(move || {
            let mut hashes = FileHashSink::open(&hashes_path)?;
            for item in items {
                match item {
                    Persist::Snapshot(shard, position, bytes) => {
                        stores[shard].save_encoded(position, &bytes)?;
                    }
                    Persist::Hash(report) => {
                        hashes.publish(&report)?;
                        if let Some(fence) = &fence {
                            let _ = fence.try_send(report.clone());
                        }
                        recent.push(report);
                    }
                }
            }
            Ok(())
        })
}

/// The matcher's observer: takes a shard's snapshots and hashes between commands.
pub struct Checkpoints {
    shard: usize,
    checkpointer: Checkpointer,
    hashes: Option<HashCadence>,
    tx: Sender<Persist>,
}

impl Checkpoints {
    /// For shard `shard` of site `site`, recovered with its next command at `position`:
    /// snapshots per `policy`, a state hash every `hash_every` records (0: none).
    pub fn new(
        site: &str,
        shard: usize,
        position: u64,
        policy: SnapshotPolicy,
        hash_every: u64,
        tx: Sender<Persist>,
    ) -> Checkpoints {
        Checkpoints {
            shard,
            checkpointer: Checkpointer::new(policy, position),
            hashes: (hash_every > 0).then(|| HashCadence::new(site, shard as u32, hash_every)),
            tx,
        }
    }
}

impl Observer for Checkpoints {
    fn after_command(&mut self, engine: &Engine, next_position: u64) {
        if self.checkpointer.due(next_position) {
            // A writer still busy with the previous snapshot is not waited for: the next
            // command tries again.
            let bytes = snapshots::encode(next_position, engine);
            if self
                .tx
                .try_send(Persist::Snapshot(self.shard, next_position, bytes))
                .is_ok()
            {
                self.checkpointer.taken(next_position);
            }
        }
        if let Some(cadence) = &self.hashes {
            let mut sink = ChannelSink(&self.tx);
            let _ = cadence.maybe_publish(next_position, engine, &mut sink);
        }
    }
}

struct ChannelSink<'a>(&'a Sender<Persist>);

impl HashSink for ChannelSink<'_> {
    fn publish(&mut self, report: &HashReport) -> Result<(), DivergenceError> {
        // Hash reports are small and rare; waiting for room keeps every one of them.
        let _ = self.0.send(Persist::Hash(report.clone()));
        Ok(())
    }
}
