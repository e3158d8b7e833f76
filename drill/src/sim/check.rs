//! The simulator's checker: the log replayed through an engine, against what every member was
//! told and every hash a site wrote. The same history, fills and switch checks as the drill's
//! audit ([`crate::audit::History`], [`crate::fills::check_told`], [`crate::switches`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use engine::{Command, EngineConfig, OrderId, Qty};
use serde::Serialize;

use super::client::SimClient;
use crate::audit::{duplicates, replay_history, History};
use crate::fills::Told;
use crate::switches::SwitchWatch;

/// Must-be-zero figures of a run, and what explains them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    /// Orders a member was told were accepted that the history never accepted.
    pub lost_acked: u64,
    /// Engine rejects the history does not have, and fills beyond the history's.
    pub false_reports: u64,
    /// Client order ids the history accepted twice.
    pub duplicates: u64,
    pub overfills: u64,
    /// Orders filled further than their member was ever told (reports, mass statuses), the
    /// member not knowing it.
    pub missed_fills: u64,
    /// Orders their members knew they had lost track of ([`SimClient::lost_track`], and in
    /// the mass status at the end), and of those, the ones filled further than the member was
    /// told: not failures, the bound of what a mass status covers (the dedup window of the
    /// log time the answering site has applied).
    pub lost_track: u64,
    pub lost_track_missed: u64,
    /// Dead-man's switches that fired late, or cancelled another session's orders.
    pub cod_late: u64,
    /// The same mass status question at the same position answered differently by two sites.
    pub status_mismatches: u64,
    /// Hashes a site wrote that differ from the replay's at their position.
    pub diverged: u64,
    /// Orders still unacknowledged when the run ended (every site up and caught up).
    pub unacknowledged: u64,
    /// Sites not up, or not at the log's end, or whose state differs from the replay's, at
    /// the end.
    pub not_converged: u64,
    /// How much the checks covered: mass status answers compared between two sites at the
    /// same position, and hash reports compared with the replay.
    pub status_compared: u64,
    pub hashes_compared: u64,
    pub examples: Vec<String>,
}

impl Verdict {
    /// Each must-be-zero figure that is not, named.
    pub fn problems(&self) -> Vec<String> {
        let figures = [
            ("lost_acked", self.lost_acked),
            ("false_reports", self.false_reports),
            ("duplicates", self.duplicates),
            ("overfills", self.overfills),
            ("missed_fills", self.missed_fills),
            ("cod_late", self.cod_late),
            ("status_mismatches", self.status_mismatches),
            ("diverged", self.diverged),
            ("unacknowledged", self.unacknowledged),
            ("not_converged", self.not_converged),
        ];
        figures
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect()
    }

    pub fn example(&mut self, text: String) {
        if self.examples.len() < 10 {
            self.examples.push(text);
        }
    }
}

/// What the run left for the checker.
pub struct Evidence<'a> {
    pub engine: EngineConfig,
    pub clock_every: Duration,
    /// The longest the log holds a command a site stamped (the producers' delivery timeout).
    pub hold_max: Duration,
    pub log: &'a [(Command, u64)],
    /// Leader moves, from and to in log time: a switch due then fires when the log is back.
    pub stalls: &'a [(u64, u64)],
    pub clients: &'a [SimClient],
    /// Each client's orders' filled quantities in its mass status at the end.
    pub final_filled: Vec<BTreeMap<OrderId, Qty>>,
    /// Each client's orders it knew it had lost track of, with those the last mass status
    /// showed.
    pub lost_track: Vec<BTreeSet<OrderId>>,
    /// Every hash each site wrote, and each site's state hash at the end (`None`: not up or
    /// not at the end).
    pub site_hashes: Vec<Vec<(u64, String)>>,
    pub final_hashes: Vec<Option<String>>,
}

/// Replays the log and checks everything members were told and every site's hashes;
/// `verdict` already holds what the run counted as it went (status mismatches).
pub fn check(evidence: &Evidence, verdict: &mut Verdict) {
    let mut positions: Vec<u64> = evidence.site_hashes.iter().flatten().map(|h| h.0).collect();
    positions.push(evidence.log.len() as u64);
    positions.sort_unstable();
    positions.dedup();
    let history = replay(evidence, &positions);
    told_against(evidence, &history, verdict);
    for (site, hashes) in evidence.site_hashes.iter().enumerate() {
        verdict.hashes_compared += hashes.len() as u64;
        for (position, hash) in hashes {
            if history.hashes.get(position) != Some(hash) {
                verdict.diverged += 1;
                verdict.example(format!(
                    "site {site} hash at {position} differs from the replay's"
                ));
            }
        }
    }
    let end = history.hashes.get(&(evidence.log.len() as u64));
    for (site, hash) in evidence.final_hashes.iter().enumerate() {
        if hash.as_ref() != end {
            verdict.not_converged += 1;
            verdict.example(format!(
                "site {site} at the end: {hash:?}, the replay {end:?}"
            ));
        }
    }
    verdict.duplicates = duplicates(&history);
    verdict.overfills = history.overfills;
    verdict.cod_late = history.cod.late + history.cod.wrong_session;
    for text in history
        .duplicate_examples
        .iter()
        .chain(&history.cod.examples)
    {
        verdict.example(text.clone());
    }
}

/// The log through an engine ([`replay_history`], as the drill's audit does it): the history
/// of events, the switches, hashes at `positions`.
fn replay(evidence: &Evidence, positions: &[u64]) -> History {
    let records = evidence
        .log
        .iter()
        .map(|(command, stamped)| (command, *stamped));
    let switches = SwitchWatch::new(evidence.clock_every, evidence.hold_max, evidence.stalls);
    replay_history(evidence.engine, records, positions, switches, |_, _| {})
        .expect("the simulator's engine config")
}

/// Every acknowledgement and every fill a member was told, against the history.
fn told_against(evidence: &Evidence, history: &History, verdict: &mut Verdict) {
    let mut members: Vec<Told> = Vec::new();
    for (k, client) in evidence.clients.iter().enumerate() {
        for ack in &client.acks {
            let (lost, false_reject) = history.contradicts((client.account, ack.id), ack.accepted);
            if lost || false_reject {
                let what = if lost { "lost" } else { "falsely rejected" };
                verdict.example(format!(
                    "client {} order {}: {what} (told by site {} at {} ms)",
                    client.index,
                    ack.id.as_str(),
                    ack.site,
                    ack.at / 1_000_000
                ));
            }
            verdict.lost_acked += u64::from(lost);
            verdict.false_reports += u64::from(false_reject);
        }
        verdict.unacknowledged += client.unacknowledged() as u64;
        let lost_track = evidence.lost_track.get(k).cloned().unwrap_or_default();
        verdict.lost_track += lost_track.len() as u64;
        members.push(Told {
            account: client.account,
            filled: crate::fills::told_with(&client.told, evidence.final_filled.get(k)),
            lost_track,
        });
    }
    let fills = crate::fills::check_told(&history.filled, &members);
    verdict.missed_fills = fills.missed;
    verdict.lost_track_missed = fills.missed_known;
    verdict.false_reports += fills.false_fills;
    for text in fills.examples {
        verdict.example(text);
    }
}
