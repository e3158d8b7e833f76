//! The load generator against a whole site (gateway → embedded journal, fsync per batch →
//! engine → reports) over real sockets: 2 s at 2,000 requests/s on 4 sessions.

use std::time::Duration;

use exchange::demo::{site_config, MATCHER_WAIT};
use flow::FlowConfig;
use loadgen::LoadConfig;
use node::Node;
use replicator::journal::FsyncPolicy;

#[test]
fn two_seconds_at_two_thousand_requests_per_second_on_four_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let members: Vec<(String, u64)> = (1..=4)
        .map(|account| (format!("loadgen-member-{account:04}"), account))
        .collect();
    let flow = FlowConfig {
        symbols: 2,
        book_depth: 200,
        ..FlowConfig::default()
    };
    let config = site_config(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        &members,
        &flow,
        MATCHER_WAIT,
        FsyncPolicy::PerBatch,
    );
    let site = Node::start(config).unwrap();
    let config = LoadConfig {
        connections: 4,
        rate: 2_000.0,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        flow,
        ..LoadConfig::new(vec![site.binary_addr()], members)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(loadgen::run(&config, None)).unwrap();
    eprintln!("{}", loadgen::table(std::slice::from_ref(&result)));
    eprintln!("rejects {:?}", result.rejects);

    assert!(result.orders > 0);
    assert_eq!(result.errors, 0, "{:?}", result.error_counts);
    assert_eq!(result.connections_lost, 0);
    // Paced: never above the target; below it only as far as a starved machine lags (see
    // tests/demo.rs).
    let ratio = result.rate_achieved / result.rate_target;
    assert!(
        ratio <= 1.10 && ratio > 0.5,
        "achieved {} of {}",
        result.rate_achieved,
        result.rate_target
    );
    // Every request of the measured window was answered by the engine.
    assert_eq!(result.acked, result.orders);
    assert_eq!(result.latency_us.count, result.orders);

    let json = serde_json::to_value(&result).unwrap();
    for field in ["rate_target", "rate_achieved", "orders", "errors"] {
        assert!(json[field].is_number(), "{field}: {json}");
    }
    for field in ["p50", "p99", "p999", "max"] {
        assert!(json["latency_us"][field].as_f64().unwrap() > 0.0, "{field}");
    }
    assert!(json["latency_by_type"]["replace"]["p99"].is_number());
    assert!(!json["throughput"]["acked"].as_array().unwrap().is_empty());

    // The clean-up left the books empty.
    let hub = site.hub().clone();
    for (symbol, _, _) in flow.symbol_specs() {
        let book = hub
            .snapshot(&engine::Symbol::new(&symbol).unwrap(), 10)
            .unwrap();
        assert!(book.bids.is_empty() && book.asks.is_empty(), "{book:?}");
    }
    let report = dir.path().join("report.html");
    loadgen::write_html(&report, std::slice::from_ref(&result)).unwrap();
    assert!(std::fs::read_to_string(&report).unwrap().contains("<svg"));
    site.shutdown().unwrap();
}
