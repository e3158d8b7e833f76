//! `exchange demo`, the README's main command, as a newcomer runs it (shortened): it starts a
//! site on the embedded journal, runs load, writes results.json and report.html, and stops.

use std::process::Command;

#[test]
fn the_demo_runs_load_against_a_site_and_writes_its_results() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args([
            "demo",
            "--rates",
            "1000,2000",
            "--seconds",
            "1",
            "--connections",
            "2",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("p99 µs"), "the table: {stdout}");
    assert!(stdout.contains("report.html"), "{stdout}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    let runs = results.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for (run, rate) in runs.iter().zip([1000.0, 2000.0]) {
        assert_eq!(run["rate_target"].as_f64(), Some(rate));
        // Paced: never above the target; below it only as far as a starved machine lags (a
        // 2-core machine running a drill beside CI achieved 1,495 of 2,000/s, the generator
        // descheduled for 0.4 s at a time).
        let achieved = run["rate_achieved"].as_f64().unwrap();
        assert!(achieved < rate * 1.1 && achieved > rate * 0.5, "{run}");
        assert!(run["orders"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["errors"].as_u64(), Some(0), "{run}");
        for p in ["p50", "p99", "p999", "max"] {
            assert!(run["latency_us"][p].as_f64().unwrap() > 0.0, "{p}: {run}");
        }
    }
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("<svg"), "the report has its plots");
}
