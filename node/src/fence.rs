//! Divergence fencing: a site that holds another state than the other sites at the same log
//! position stops taking orders.
//!
//! ```text
//!  persist thread ── own hash reports ──▶ fence thread ──▶ <prefix>.hashes (Kafka)
//!                                           ▲   │
//!   other sites' reports (same topic) ──────┘   └─▶ ShardView::diverged ─▶ refusals, /health
//! ```
//!
//! Every site publishes `(site, shard, position, state hash)` every `hash_every` records to
//! the hashes topic and reads everyone's. [`Fence`] lines up this site's reports with the
//! others' at equal `(shard, position)`: when a hash that at least two other sites agree on is
//! held by more sites than this site's, this site is the minority and the shard is fenced. It
//! then refuses every request as `unavailable` (members move to another site), `/health`
//! says `diverged` with the position and both hashes, and the node says so on standard error.
//! The node keeps running (a restart would replay the same log into the same state if the
//! cause is in the binary); an operator replaces the site (`exchange bootstrap`) once the
//! cause is known. Disagreement without such a majority (two sites, one each; three sites,
//! three hashes) fences nobody: it cannot tell which is right, and `exchange verify` names it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use replicator::divergence::{HashReader, HashReport, HashSink, KafkaHashSink};
use replicator::kafka::KafkaConfig;
use serde::Serialize;

use crate::shard::ShardView;

/// Own reports kept per shard for other sites that report later (they are behind).
const OURS_KEPT: usize = 4_096;
/// Other sites' reports kept for positions this site has not reported yet (it is behind).
const THEIRS_KEPT: usize = 65_536;

/// Why a shard is fenced: at `position`, this site's hash is not the majority's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diverged {
    pub shard: u32,
    pub position: u64,
    pub ours: String,
    pub majority: String,
    /// The sites that hold the majority's hash.
    pub sites: Vec<String>,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "state hash {} at log position {} of shard {}, where {} hold {}",
            self.ours,
            self.position,
            self.shard,
            self.sites.join(" and "),
            self.majority
        )
    }
}

/// This site's and the others' reports, lined up by `(shard, position)`.
pub struct Fence {
    site: String,
    ours: BTreeMap<(u32, u64), String>,
    theirs: BTreeMap<(u32, u64), BTreeMap<String, String>>,
}

impl Fence {
    pub fn new(site: &str) -> Fence {
        Fence {
            site: site.into(),
            ours: BTreeMap::new(),
            theirs: BTreeMap::new(),
        }
    }

    /// Takes any site's report (this site's own included, by name); the divergence it shows,
    /// if this site is now the minority at that position.
    pub fn take(&mut self, report: HashReport) -> Option<Diverged> {
        let key = (report.shard, report.position);
        if report.site == self.site {
            self.ours.insert(key, report.hash);
            trim(&mut self.ours, OURS_KEPT);
        } else {
            let at = self.theirs.entry(key).or_default();
            at.insert(report.site, report.hash);
            trim(&mut self.theirs, THEIRS_KEPT);
        }
        self.judge(key)
    }

    /// This site's hash at `key` against the others': the majority's, if it is not ours.
    fn judge(&self, key: (u32, u64)) -> Option<Diverged> {
        let ours = self.ours.get(&key)?;
        let theirs = self.theirs.get(&key)?;
        let mut holders: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (site, hash) in theirs {
            holders.entry(hash).or_default().push(site.clone());
        }
        let with_us = holders.get(ours.as_str()).map_or(0, Vec::len) + 1;
        let (majority, sites) = holders.into_iter().max_by_key(|(_, sites)| sites.len())?;
        (majority != ours && sites.len() >= 2 && sites.len() > with_us).then(|| Diverged {
            shard: key.0,
            position: key.1,
            ours: ours.clone(),
            majority: majority.to_string(),
            sites,
        })
    }
}

/// The hashes topic's client settings: the commands topic's cluster and settings,
/// [`replicator::divergence::hashes_topic`]'s name, partition 0.
pub fn hashes_topic(commands: &KafkaConfig) -> KafkaConfig {
    KafkaConfig {
        topic: replicator::divergence::hashes_topic(&commands.topic),
        partition: 0,
        ..commands.clone()
    }
}

/// Drops the lowest positions past `kept` entries.
fn trim<V>(map: &mut BTreeMap<(u32, u64), V>, kept: usize) {
    while map.len() > kept {
        map.pop_first();
    }
}

/// The fence thread: publishes this site's reports (from `own`) to the hashes topic, reads
/// every site's from it, and fences the shards where this site is the minority, until `own`
/// closes.
pub fn spawn(
    site: &str,
    hashes: KafkaConfig,
    views: Vec<Arc<ShardView>>,
    own: Receiver<HashReport>,
) -> anyhow::Result<JoinHandle<()>> {
    let topic = || {
        format!(
            "the hashes topic {}: create it (one partition, replicated like the commands \
             topic), or set hash_every = 0 (no state hashes, no divergence fencing)",
            hashes.topic
        )
    };
    let mut sink = KafkaHashSink::new(&hashes).with_context(topic)?;
    let mut reader = HashReader::new(&hashes).with_context(topic)?;
    let mut fence = Fence::new(site);
    let site = site.to_string();
    let thread = std::thread::Builder::new()
        .name("fence".into())
        .spawn(move || loop {
            match own.recv_timeout(Duration::from_millis(100)) {
                Ok(report) => {
                    if let Err(err) = sink.publish(&report) {
                        eprintln!("node {site}: publishing a state hash: {err}");
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            for report in reader.poll() {
                if let Some(diverged) = fence.take(report) {
                    fence_shard(&site, &views, diverged);
                }
            }
        })?;
    Ok(thread)
}

/// Fences the shard `diverged` names, once, and says so.
fn fence_shard(site: &str, views: &[Arc<ShardView>], diverged: Diverged) {
    let Some(view) = views.get(diverged.shard as usize) else {
        return;
    };
    if view.diverged.set(diverged.clone()).is_ok() {
        eprintln!(
            "node {site}: shard {} DIVERGED: {diverged}; it refuses every request from now on \
             (replace this site: exchange bootstrap from a site that agrees)",
            view.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(site: &str, position: u64, hash: &str) -> HashReport {
        HashReport {
            site: site.into(),
            shard: 0,
            position,
            hash: hash.into(),
        }
    }

    #[test]
    fn a_site_outvoted_by_two_others_at_one_position_is_fenced_whoever_reports_last() {
        for order in [[0, 1, 2], [1, 0, 2], [1, 2, 0], [2, 1, 0]] {
            let mut fence = Fence::new("a");
            let reports = [
                report("a", 100, "x"),
                report("b", 100, "y"),
                report("c", 100, "y"),
            ];
            let verdicts: Vec<_> = order
                .iter()
                .filter_map(|&k| fence.take(reports[k].clone()))
                .collect();
            assert_eq!(
                verdicts,
                vec![Diverged {
                    shard: 0,
                    position: 100,
                    ours: "x".into(),
                    majority: "y".into(),
                    sites: vec!["b".into(), "c".into()],
                }],
                "{order:?}"
            );
        }
    }

    #[test]
    fn agreement_or_a_disagreement_without_a_majority_fences_nobody() {
        let mut fence = Fence::new("a");
        for r in [
            report("a", 100, "x"),
            report("b", 100, "x"),
            report("c", 100, "y"),
        ] {
            assert_eq!(fence.take(r), None);
        }
        // One against one, and three hashes among three sites: no majority.
        for r in [
            report("a", 200, "x"),
            report("b", 200, "y"),
            report("c", 200, "z"),
        ] {
            assert_eq!(fence.take(r), None);
        }
        // Reports at other positions are never compared.
        for r in [
            report("a", 300, "x"),
            report("b", 301, "y"),
            report("c", 301, "y"),
        ] {
            assert_eq!(fence.take(r), None);
        }
    }

    #[test]
    fn memory_is_bounded_and_keeps_the_newest_positions() {
        let mut fence = Fence::new("a");
        for position in 0..(OURS_KEPT as u64 + 10) {
            fence.take(report("a", position, "x"));
        }
        assert_eq!(fence.ours.len(), OURS_KEPT);
        assert_eq!(fence.ours.keys().next(), Some(&(0, 10)));
    }
}
