//! The faults of one simulated run, drawn from its seed: one at a time (each ends before the
//! next starts, so two sites always reach the log and log time always moves but for a leader
//! move), at random times through the load, each with its duration.

use flow::SplitMix64;
use serde::Serialize;

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FaultKind {
    /// The site's process dies and restarts from its snapshot and the log; `dark`: its host
    /// went dark too (connections hang instead of closing).
    Crash { dark: bool },
    /// The site cannot reach the log; `members`: nor can its members reach it.
    Partition { members: bool },
    /// The site's process freezes (every event for it waits).
    Pause,
    /// The partition's leader moves: nothing is appended or fetched meanwhile.
    LeaderMove,
    /// The site's clock runs this far off (nanoseconds).
    Skew(i64),
    /// The site's fetches come back starting before where it asked (records delivered twice).
    DuplicateDelivery,
    /// The site's fetches bring a few records at a time.
    SlowConsumer,
    /// Everything to and from the site (its members' links and its log's) takes this much
    /// longer (nanoseconds), in order.
    SlowLinks(u64),
    /// The log answers every site this much later (nanoseconds).
    LogOverload(u64),
}

impl FaultKind {
    /// Its name, for counts.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash { dark: true } => "crash (host dark)",
            FaultKind::Crash { dark: false } => "crash",
            FaultKind::Partition { members: true } => "partition (log and members)",
            FaultKind::Partition { members: false } => "partition (log)",
            FaultKind::Pause => "pause",
            FaultKind::LeaderMove => "leader move",
            FaultKind::Skew(_) => "clock skew",
            FaultKind::DuplicateDelivery => "duplicate delivery",
            FaultKind::SlowConsumer => "slow consumer",
            FaultKind::SlowLinks(_) => "slow links",
            FaultKind::LogOverload(_) => "log overload",
        }
    }
}

/// One fault: `kind` at `site` from `at` for `down` (simulated nanoseconds).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Fault {
    pub at: u64,
    pub down: u64,
    pub site: usize,
    pub kind: FaultKind,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (at, down) = (self.at / MS, self.down / MS);
        write!(
            f,
            "{:?} of site {} at {at} ms for {down} ms",
            self.kind, self.site
        )
    }
}

/// What a run's faults may include besides the usual mix.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    /// One crash of 20 to 40 s (the first fault).
    pub long_outage: bool,
    /// One fault in three a log overload: every site's log answers 0.5-3 s late for 20-40 s,
    /// longer than the dedup window (off by default, so the default mix's draws stay as they
    /// were).
    pub log_overload: bool,
}

/// The faults of a run of `duration_ns` over `sites` sites, none in its first 3 s and each over
/// before its end, with the `extras` asked for.
pub fn plan(rng: &mut SplitMix64, sites: usize, duration_ns: u64, extras: Extras) -> Vec<Fault> {
    let mut faults = Vec::new();
    let mut t = 3 * S;
    let mut long = extras.long_outage;
    loop {
        t += rng.below(3 * S);
        let (kind, down) = if std::mem::take(&mut long) {
            (FaultKind::Crash { dark: true }, 20 * S + rng.below(20 * S))
        } else if extras.log_overload && rng.below(3) == 0 {
            let delay = 500 * MS + rng.below(2_500 * MS);
            (FaultKind::LogOverload(delay), 20 * S + rng.below(20 * S))
        } else {
            draw(rng)
        };
        if t + down + S > duration_ns {
            return faults;
        }
        let site = rng.below(sites as u64) as usize;
        faults.push(Fault {
            at: t,
            down,
            site,
            kind,
        });
        t += down;
    }
}

fn draw(rng: &mut SplitMix64) -> (FaultKind, u64) {
    let down = 500 * MS + rng.below(7_500 * MS);
    match rng.below(11) {
        0 | 1 => (FaultKind::Crash { dark: rng.coin() }, down),
        2 | 3 => (
            FaultKind::Partition {
                members: rng.coin(),
            },
            down,
        ),
        4 => (FaultKind::Pause, down),
        5 => (FaultKind::LeaderMove, 100 * MS + rng.below(2_900 * MS)),
        6 => {
            let off = (1 + rng.below(300)) as i64 * S as i64;
            (FaultKind::Skew(if rng.coin() { off } else { -off }), down)
        }
        7 => (FaultKind::DuplicateDelivery, down),
        8 => (FaultKind::SlowConsumer, down),
        9 => (FaultKind::SlowLinks(50 * MS + rng.below(1_450 * MS)), down),
        _ => (FaultKind::Crash { dark: false }, down),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_follow_the_seed_one_at_a_time_within_the_run() {
        let long = Extras {
            long_outage: true,
            ..Extras::default()
        };
        let plan_of = |seed| plan(&mut SplitMix64(seed), 3, 120 * S, long);
        let faults = plan_of(5);
        assert!(faults.len() >= 3, "{faults:?}");
        assert_eq!(faults[0].kind, FaultKind::Crash { dark: true });
        assert!(faults[0].down >= 20 * S);
        for pair in faults.windows(2) {
            assert!(pair[0].at + pair[0].down <= pair[1].at, "{pair:?}");
        }
        let last = faults.last().unwrap();
        assert!(last.at + last.down + S <= 120 * S);
        assert!(faults.iter().all(|f| f.at >= 3 * S && f.site < 3));
        let again: Vec<String> = plan_of(5).iter().map(ToString::to_string).collect();
        let first: Vec<String> = faults.iter().map(ToString::to_string).collect();
        assert_eq!(first, again);
        let overload = |f: &Fault| matches!(f.kind, FaultKind::LogOverload(_));
        assert!(
            !(1..50).any(|seed| plan_of(seed).iter().any(overload)),
            "off by default"
        );
    }

    #[test]
    fn log_overloads_come_only_when_asked_and_outlast_the_dedup_window() {
        let extras = Extras {
            log_overload: true,
            ..Extras::default()
        };
        let faults: Vec<Fault> = (1..20)
            .flat_map(|seed| plan(&mut SplitMix64(seed), 3, 300 * S, extras))
            .collect();
        let overloads: Vec<&Fault> = faults
            .iter()
            .filter(|f| matches!(f.kind, FaultKind::LogOverload(_)))
            .collect();
        assert!(
            overloads.len() * 5 >= faults.len(),
            "{} of {}",
            overloads.len(),
            faults.len()
        );
        for fault in overloads {
            let FaultKind::LogOverload(delay) = fault.kind else {
                unreachable!()
            };
            assert!((500 * MS..3_000 * MS).contains(&delay), "{fault}");
            assert!((20 * S..40 * S).contains(&fault.down), "{fault}");
        }
    }
}
