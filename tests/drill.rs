//! Failover drills, run as `exchange drill` processes: three sites, each an `exchange node`
//! process on one Kafka log, under load from failover clients.
//!
//! - whole sites crashed and restarted: the node SIGKILLed and its broker taken down (the
//!   drill's default cluster, librdkafka's mock cluster of three brokers racked as the sites,
//!   in the drill's process; the drill moves the partition's leadership when its site goes);
//! - a site frozen (SIGSTOP) and thawed (SIGCONT) while its broker carries on;
//! - a site cut off from the brokers (nftables on its node's cgroup), and one cut off from its
//!   members too, each healed later;
//! - the whole Kafka cluster stopped for 10 s under load (tansu killed and restarted): new
//!   orders are refused as "unavailable" meanwhile, and trading resumes by itself;
//! - Kafka's own failover driven from outside (`--kafka`): a mock cluster in this process
//!   whose partition leader moves to another site's broker and whose first leader's broker
//!   goes down, mid-drill, while no node is killed at that moment.
//!
//! Each drill ends with its audit: no acknowledged order lost, no client order id executed
//! twice, every site (the restarted ones too) on the log's state hash. The drills run one at
//! a time: each starts three nodes on a 2-core machine.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use serde_json::Value;

/// One drill at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn drill(args: &[&str], report: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_exchange"))
        .arg("drill")
        .args(args)
        .arg("--report")
        .arg(report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("exchange drill starts")
}

/// Waits for the drill and returns its report, failing with its output if it failed.
fn finish(child: Child, report: &Path) -> Value {
    let (passed, output, report) = outcome(child, report);
    assert!(passed, "the drill failed:\n{output}");
    report
}

/// Waits for the drill: whether it passed, its output, and its report.
fn outcome(child: Child, report: &Path) -> (bool, String, Value) {
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("the drill runs");
    let stdout = String::from_utf8_lossy(&stdout);
    let stderr = String::from_utf8_lossy(&stderr);
    println!("{stdout}");
    let text = std::fs::read_to_string(report).unwrap_or_else(|err| {
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "the drill wrote no report ({err}); {status}; its stderr ends:\n{}",
            tail.join("\n")
        )
    });
    let report = serde_json::from_str(&text).expect("the report is JSON");
    (status.success(), format!("{stdout}\n{stderr}"), report)
}

/// The must-be-zero figures and convergence.
fn assert_sound(report: &Value) {
    assert_eq!(report["lost_acked"], 0, "{report:#}");
    assert_eq!(report["false_reports"], 0, "{report:#}");
    assert_eq!(report["duplicates"], 0, "{report:#}");
    assert_eq!(report["overfills"], 0, "{report:#}");
    assert_eq!(report["missed_fills"], 0, "{report:#}");
    assert_eq!(report["cod"]["late"], 0, "{report:#}");
    assert_eq!(report["cod"]["wrong_session"], 0, "{report:#}");
    assert_eq!(report["status"]["mismatches"], 0, "{report:#}");
    assert_eq!(report["md"]["md_gaps"], 0, "{report:#}");
    assert_eq!(report["log_time_ahead"]["records"], 0, "{report:#}");
    assert!(
        report["md"]["books_checked"].as_u64().unwrap() > 10,
        "{report:#}"
    );
    assert!(
        report["status"]["questions"].as_u64().unwrap() > 3,
        "{report:#}"
    );
    assert_eq!(report["diverged"], 0, "{report:#}");
    assert!(
        report["hash_reports_checked"].as_u64().unwrap() >= 3,
        "{report:#}"
    );
    assert_eq!(report["sites_converged"], true, "{report:#}");
    assert_eq!(report["unacknowledged"], 0, "{report:#}");
    let hashes = report["hashes"].as_array().unwrap();
    assert_eq!(hashes.len(), 3);
    assert!(
        hashes.iter().all(|h| h["matches_log"] == true),
        "{report:#}"
    );
    assert!(
        report["acked_orders"].as_u64().unwrap() > 1000,
        "{report:#}"
    );
    assert_eq!(report["acked_orders"], report["orders"], "{report:#}");
}

/// The default drill: three brokers racked as the sites (the mock cluster in the drill's
/// process), each site's crash taking its node and its broker. Seed 5 kills cloud-a first,
/// whose broker leads the partition (the leadership moves to cloud-b's), then cloud-b, the
/// new leader (it moves back to cloud-a's, up again by then). Each site has a FIX member too
/// (a QuickFIX initiator), audited with the binary clients.
#[test]
fn a_short_drill_with_two_site_crashes_passes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let timeline = dir.path().join("timeline.html");
    let child = drill(
        &[
            "--duration",
            "20",
            "--kills",
            "2",
            "--rate",
            "150",
            "--down-secs",
            "2,3",
            "--seed",
            "5",
            "--fix-members-per-site",
            "1",
            "--timeline",
            timeline.to_str().unwrap(),
        ],
        &report,
    );
    let report = finish(child, &report);
    assert_sound(&report);
    assert_eq!(report["kills"], 2);
    // The FIX members traded through every crash: all acknowledged, the crashed sites' moved.
    let fix = &report["fix"];
    assert_eq!(fix["members"], 3, "{report:#}");
    assert!(fix["orders"].as_u64().unwrap() > 300, "{report:#}");
    assert_eq!(fix["acked"], fix["orders"], "{report:#}");
    assert!(fix["cancels_sent"].as_u64().unwrap() > 0, "{report:#}");
    assert!(fix["replaces_sent"].as_u64().unwrap() > 0, "{report:#}");
    assert!(fix["failovers"].as_u64().unwrap() >= 1, "{report:#}");
    // The timeline: two plots, each shading both crashes, the sites' readiness (each crashed
    // site did not answer for a while), and a row per crash.
    let page = std::fs::read_to_string(&timeline).expect("the drill wrote its timeline");
    assert_eq!(page.matches("<svg").count(), 3, "{page}");
    assert_eq!(page.matches("Crash at").count(), 4, "{page}");
    assert_eq!(page.matches("<tr><td>cloud-").count(), 2, "{page}");
    let readiness = report["readiness"].as_array().unwrap();
    assert_eq!(readiness.len(), 3, "{report:#}");
    for site in readiness {
        let crashed = site["site"] != "metal";
        let silent = site["no_answer_s"].as_f64().unwrap();
        assert_eq!(silent > 1.0, crashed, "{site}");
        // Down 2-3 s of 20 and restarting (a debug build's start takes seconds under load);
        // metal unavailable for a moment only, while the leadership moved.
        let least = if crashed { 0.3 } else { 0.7 };
        assert!(site["ready_fraction"].as_f64().unwrap() > least, "{site}");
    }
    let seconds = report["timeline"]["acked"][0].as_array().unwrap().len();
    assert!(seconds >= 20, "{seconds} seconds");
    let kills = report["kill_log"].as_array().unwrap();
    let moves: Vec<(&str, &str)> = kills
        .iter()
        .map(|k| {
            assert_eq!(k["broker_down"], true, "{k}");
            let moved = k["leader_moved_to"]
                .as_str()
                .expect("the leader's site crashed");
            (k["site"].as_str().unwrap(), moved)
        })
        .collect();
    assert_eq!(moves, [("cloud-a", "cloud-b"), ("cloud-b", "cloud-a")]);
    // The first site's clients fail over and are acknowledged again, well before a client
    // gives up on a site (3 s without an acknowledgement). Before the clients' socket timeout
    // was cut to 500 ms, every client of one surviving site stalled after each move, and the
    // RTO was that 3 s and more. The second site may have no clients left by its crash: a
    // client moves on an `unavailable`, which every site answers for a moment while the
    // first crash moves the leader (seen in CI).
    assert!(
        kills[0]["clients_failed_over"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
    for kill in kills {
        if kill["clients_failed_over"].as_u64().unwrap() > 0 {
            let rto = kill["rto_ms"].as_u64().expect("an RTO");
            assert!(rto < 2_500, "{kill}");
        }
        assert!(kill["catch_up_ms"].as_u64().is_some(), "{kill}");
    }
    assert!(report["rto_ms_max"].as_u64().is_some());
}

/// A 20 s drill whose one fault freezes a site for 6 s.
const FREEZE: [&str; 10] = [
    "--duration",
    "20",
    "--kills",
    "0",
    "--pauses",
    "1",
    "--rate",
    "150",
    "--down-secs",
    "6,6",
];

/// A site frozen for 6 s (SIGSTOP, then SIGCONT: a long GC-like pause) while its broker and
/// the other sites carry on: its clients notice within a second (their test requests go
/// unanswered), fail over and are acknowledged elsewhere; what the frozen node's producer
/// still held reaches the log late and is deduplicated by client order id; the thawed site
/// catches up. Before the clients sent test requests they noticed only by an order going
/// unanswered for 3 s, and the RTO was 4.1 s; before they waited 3 s to probe their first
/// site again, 2.06 s.
#[test]
fn a_frozen_site_is_failed_over_and_catches_up_when_it_thaws() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let child = drill(&FREEZE, &report);
    let report = finish(child, &report);
    assert_sound(&report);
    let faults = report["kill_log"].as_array().unwrap();
    assert_eq!(faults.len(), 1);
    let pause = &faults[0];
    assert_eq!(pause["fault"], "pause", "{pause}");
    assert_eq!(pause["broker_down"], false, "{pause}");
    assert!(
        pause["clients_failed_over"].as_u64().unwrap() >= 1,
        "{pause}"
    );
    // Noticed after about a second of silence; the move itself takes milliseconds. Before,
    // a client that had just moved probed its frozen first site at once and read nothing
    // for the probe's second, took its new site for silent and moved again: 2.06 s.
    let rto = pause["rto_ms"].as_u64().expect("an RTO");
    assert!(rto < 2_000, "{pause}");
    assert!(pause["catch_up_ms"].as_u64().is_some(), "{pause}");
}

/// A site restarted with its clock five minutes ahead (as after a bad NTP step), for 12 s,
/// then restarted with the right one. On the mock cluster a record's time is its producer's
/// create time, so what that site stamped would move every site's log time five minutes on
/// and fire every dead-man's switch early; instead it finds its clock ahead of the other
/// sites' records and refuses everything with `clock_skew` (`/health` says so), and no
/// record of the log is stamped ahead of time.
#[test]
fn a_site_whose_clock_runs_ahead_refuses_and_moves_no_log_time() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let args = [
        "--duration",
        "40",
        "--kills",
        "0",
        "--skews",
        "1",
        "--rate",
        "150",
        "--down-secs",
        "12,12",
        "--seed",
        "3",
    ];
    let report = finish(drill(&args, &report), &report);
    assert_sound(&report);
    let faults = report["kill_log"].as_array().unwrap();
    assert_eq!(faults.len(), 1);
    let skew = &faults[0];
    assert_eq!(skew["fault"], "clock_skew", "{skew}");
    assert!(skew["ready_ms"].as_u64().is_some(), "{skew}");
    // The skew's 12 s count from the site saying clock_skew, after its restart's catch-up.
    assert!(skew["skew_seen_ms"].as_u64().is_some(), "{skew}");
    let site = skew["site"].as_str().unwrap();
    let readiness = report["readiness"].as_array().unwrap();
    let skewed = readiness.iter().find(|r| r["site"] == site).unwrap();
    assert!(
        skewed["clock_skew_s"].as_f64().unwrap() >= 1.0,
        "{site} never said clock_skew: {skewed}"
    );
    let others = readiness.iter().filter(|r| r["site"] != site);
    assert!(
        others.clone().all(|r| r["clock_skew_s"] == 0.0),
        "{readiness:?}"
    );
}

/// A site cut off from the cluster (nftables drops every packet between its node's cgroup and
/// the brokers) while its members still reach it, and later a site cut off from its members
/// too: the node stays up, its gateway answers "unavailable" once the partition's leader has
/// not answered for a second, and its members fail over on that answer (before, the gateway
/// waited 4 s and the clients only their 3 s acknowledgement timeout: RTO 3.1 s); the
/// isolated site's members notice the silence. Its market-data subscribers are told the
/// site's data is stale, and move. Its quoters, with nothing in flight, are
/// logged out (16) once their switch cannot be refreshed. Healed, both catch up and converge, and the
/// drill leaves no rule or cgroup behind. Needs root and nftables (CI has both).
#[test]
fn sites_cut_off_from_the_log_and_from_their_members_are_failed_over_and_heal() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let args = [
        "--duration",
        "40",
        "--kills",
        "0",
        "--partitions",
        "1",
        "--isolations",
        "1",
        "--rate",
        "200",
        "--down-secs",
        "5,5",
        "--seed",
        "5",
    ];
    let child = drill(&args, &report);
    let pid = child.id();
    let report = finish(child, &report);
    assert_sound(&report);
    let faults = report["kill_log"].as_array().unwrap();
    let kinds: Vec<&str> = faults
        .iter()
        .map(|f| f["fault"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 2, "{report:#}");
    assert!(
        kinds.contains(&"partition") && kinds.contains(&"isolation"),
        "{kinds:?}"
    );
    for fault in faults {
        assert_eq!(fault["broker_down"], false, "{fault}");
        assert!(
            fault["clients_failed_over"].as_u64().unwrap() >= 1,
            "{fault}"
        );
        let rto = fault["rto_ms"].as_u64().expect("an RTO");
        // 0.9-2.0 s seen (the isolation the slower: silence, then a probe unanswered).
        assert!(rto < 3_000, "{fault}");
        assert!(fault["catch_up_ms"].as_u64().is_some(), "{fault}");
    }
    // The cut-off sites' quoters (cancel-on-disconnect, nothing in flight) moved: told by
    // Logout 16 (cut from the log) or by the silence (isolated), within the switch's timeout;
    // their old sessions' switches fired on the log, on time.
    let quoters_moved: u64 = faults
        .iter()
        .map(|f| f["quoters_moved"].as_u64().unwrap())
        .sum();
    assert!(quoters_moved >= 1, "{report:#}");
    // The market-data subscribers at the cut-off sites were told their data had gone stale
    // (`status` `unavailable`: an isolation cuts the order-entry port, not the WebSocket's),
    // and moved.
    let md = &report["md"];
    assert!(md["stale_notices"].as_u64().unwrap() >= 1, "{md}");
    assert!(md["moves"].as_u64().unwrap() >= 2, "{md}");
    for fault in faults.iter().filter(|f| f["quoters_moved"] != 0) {
        let rto = fault["quote_rto_ms"].as_u64().expect("a quoter's RTO");
        assert!(rto < 5_000, "{fault}");
    }
    assert!(report["cod"]["fired"].as_u64().unwrap() >= 1, "{report:#}");
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(!tables.contains(&format!("drill_{pid}")), "{tables}");
    let cgroups = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let root = cgroups
        .lines()
        .find_map(|l| l.split(' ').nth(1).filter(|_| l.contains(" cgroup2 ")))
        .expect("a cgroup2 mount");
    assert!(!Path::new(root)
        .join(format!("drill-{pid}-cloud-a"))
        .exists());
}

/// A site dark for a minute under load (its node and its broker, the partition's leader at
/// first), then back: it recovers from its last snapshot, replays the minute it missed and
/// converges on the log's hash; nothing acknowledged meanwhile at the other sites is lost.
#[test]
fn a_site_dark_for_a_minute_catches_up_and_converges() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let child = drill(
        &[
            "--duration",
            "175",
            "--kills",
            "1",
            "--rate",
            "100",
            "--down-secs",
            "60,60",
            "--seed",
            "5",
        ],
        &report,
    );
    let report = finish(child, &report);
    assert_sound(&report);
    let kill = &report["kill_log"][0];
    let dark_ms =
        kill["restarted_at_ms"].as_u64().unwrap() - kill["killed_at_ms"].as_u64().unwrap();
    assert!(dark_ms >= 60_000, "{kill}");
    assert!(kill["clients_failed_over"].as_u64().unwrap() >= 1, "{kill}");
    assert!(kill["catch_up_ms"].as_u64().is_some(), "{kill}");
}

/// The audit's `duplicates` can fail: with the sites keeping no memory of finished orders
/// (`--dedup-window-ms 0`), a site cut off from the log for 6 s gets client order ids
/// executed twice. Its producer held what it took in the second before it refused; its
/// members moved and resent those orders elsewhere, where they finished and were forgotten;
/// at the heal the held copies reach the log and are new again (34 in the run that found
/// it). It was a 6 s freeze until the 1 s rule: a thawed node now refuses what its members
/// left in its socket, and its producer held too little for a copy to execute twice. With
/// the default 60 s window the same partition has none.
#[test]
fn a_dedup_window_shorter_than_a_partition_lets_late_copies_execute_twice_and_fails_the_drill() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let args = [
        "--duration",
        "20",
        "--kills",
        "0",
        "--partitions",
        "1",
        "--rate",
        "150",
        "--down-secs",
        "6,6",
        "--dedup-window-ms",
        "0",
    ];
    let child = drill(&args, &report);
    let (passed, output, report) = outcome(child, &report);
    assert!(!passed, "{output}");
    assert!(report["duplicates"].as_u64().unwrap() > 0, "{report:#}");
    assert!(output.contains("accepted twice"), "{output}");
    assert_eq!(report["lost_acked"], 0, "{report:#}");
}

#[test]
fn a_whole_kafka_outage_is_refused_clearly_and_trading_resumes_by_itself() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let child = drill(
        &[
            "--broker",
            "tansu",
            "--duration",
            "30",
            "--kills",
            "0",
            "--kafka-outages",
            "1",
            "--down-secs",
            "8,8",
            "--rate",
            "150",
        ],
        &report,
    );
    let report = finish(child, &report);
    assert_sound(&report);
    // While the log was down, the gateways answered new orders with "unavailable" (the
    // clients sent them again later) instead of holding them.
    assert!(report["refused"].as_u64().unwrap() > 0, "{report:#}");
    let outage = &report["kill_log"][0];
    assert_eq!(outage["fault"], "kafka_outage", "{outage}");
    assert_eq!(outage["site"], "kafka", "{outage}");
    assert!(
        outage["catch_up_ms"].as_u64().is_some(),
        "trading resumed: {outage}"
    );
    // The quoters' switches came due while the log was down: they fired when it was back,
    // before anything else was applied (held, not late).
    assert_eq!(report["cod"]["late"], 0, "{report:#}");
    // Every site refused while the log was down; the clients' moves are paced by their
    // refusals in a row (2,703 moves in such a 30 s drill when a refused status question
    // sent a client on at once, round the sites as fast as they took its logons; 39 since).
    assert!(report["failovers"].as_u64().unwrap() < 300, "{report:#}");
}

#[test]
fn kafka_leader_moves_and_a_broker_goes_down_mid_drill() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const TOPIC: &str = "drill-mock.commands";
    let cluster = MockCluster::new(3).unwrap();
    for (broker, rack) in [(1, "cloud-a"), (2, "cloud-b"), (3, "metal")] {
        cluster.broker_rack(broker, rack).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 1, 3).unwrap();
    cluster.create_topic("drill-mock.hashes", 1, 3).unwrap();
    cluster.partition_leader(TOPIC, 0, Some(1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    // A rolling upgrade's step too: a site stopped cleanly and started on another binary file
    // (a copy of this one, as a newer build that reads its snapshots and log would be).
    let upgraded = dir.path().join("exchange-upgraded");
    std::fs::copy(env!("CARGO_BIN_EXE_exchange"), &upgraded).unwrap();
    let child = drill(
        &[
            "--kafka",
            &bootstrap,
            "--topic",
            TOPIC,
            // The mock cluster does not report topic settings to the durability check.
            "--allow-unsafe-topic",
            "--duration",
            "24",
            "--kills",
            "1",
            "--upgrades",
            "1",
            "--upgrade-binary",
            upgraded.to_str().unwrap(),
            "--rate",
            "150",
        ],
        &report,
    );
    let started = Instant::now();
    let at = |secs| std::thread::sleep(Duration::from_secs(secs).saturating_sub(started.elapsed()));
    // cloud-a's broker loses the leadership to cloud-b's...
    at(8);
    cluster.partition_leader(TOPIC, 0, Some(2)).unwrap();
    // ...then goes dark altogether, and comes back.
    at(13);
    cluster.broker_down(1).unwrap();
    at(19);
    cluster.broker_up(1).unwrap();
    let report = finish(child, &report);
    assert_sound(&report);
    assert_eq!(report["kills"], 2);
    let faults: Vec<&str> = (report["kill_log"].as_array().unwrap().iter())
        .map(|k| k["fault"].as_str().unwrap())
        .collect();
    assert!(faults.contains(&"upgrade"), "{faults:?}");
}
