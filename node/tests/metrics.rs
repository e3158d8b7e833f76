//! `/metrics` renders every counter the node has: the hub's and each shard's, and market
//! data's and FIX's when those servers run (they once never reached the exposition).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gateway::Member;
use node::{Node, NodeConfig};

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text.split_once("\r\n\r\n").unwrap().1.to_string())
}

/// Waits until the node's exposition has every one of `lines`.
fn wait_for(node: &Node, lines: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = node.metrics();
        if lines.iter().all(|line| metrics.contains(line)) || Instant::now() > deadline {
            return metrics;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn market_data_and_fix_counters_are_rendered_and_move() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member {
        name: "alice".into(),
        token: "alice-token-0001".into(),
        account: 1,
    };
    let mut config = NodeConfig::for_tests("metrics", dir.path(), vec![member]);
    config.listen.http = Some("127.0.0.1:0".parse().unwrap());
    config.listen.fix = Some("127.0.0.1:0".parse().unwrap());
    let node = Node::start(config).unwrap();

    let site = "site=\"metrics\"";
    let listed = format!("exchange_commands_applied_total{{{site}}} 1");
    wait_for(&node, &[&listed]);
    // A market data snapshot over HTTP (the WebSocket counters stay at zero), and two
    // requests answered with an error: a name that cannot be a symbol, and one not listed.
    let http = node.http_addr().unwrap();
    assert_eq!(http_get(http, "/v1/book/BTC-USD").0, 200);
    assert_eq!(http_get(http, "/v1/book/not%20a%20symbol").0, 400);
    assert_eq!(http_get(http, "/v1/book/ETH-USD").0, 404);
    // A FIX connection that never logs on.
    let mut fix = TcpStream::connect(node.fix_addr().unwrap()).unwrap();
    fix.write_all(b"this is not FIX\r\n").unwrap();
    drop(fix);

    let expected = [
        format!("exchange_md_bad_requests_total{{{site}}} 2"),
        format!("exchange_md_websockets_open{{{site}}} 0"),
        format!("exchange_md_websockets_total{{{site},outcome=\"accepted\"}} 0"),
        format!("exchange_md_messages_total{{{site}}} 0"),
        format!("exchange_md_lagged_total{{{site}}} 0"),
        format!("exchange_md_resyncs_total{{{site}}} 0"),
        format!("exchange_fix_connections_total{{{site},outcome=\"accepted\"}} 1"),
        format!("exchange_fix_connections_total{{{site},outcome=\"refused\"}} 0"),
        format!("exchange_fix_handshakes_failed_total{{{site}}} 1"),
        format!("exchange_fix_logons_total{{{site},outcome=\"accepted\"}} 0"),
        format!("exchange_fix_send_errors_total{{{site}}} 0"),
        format!("exchange_fix_cancel_on_disconnect_total{{{site},outcome=\"failed\"}} 0"),
        format!("exchange_log_available{{{site},shard=\"0\",log=\"journal\"}} 1"),
        format!("exchange_commands_applied_total{{{site}}} 1"),
    ];
    let lines: Vec<&str> = expected.iter().map(String::as_str).collect();
    let metrics = wait_for(&node, &lines);
    for line in lines {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    // The same text over HTTP.
    let (status, over_http) = http_get(node.http_addr().unwrap(), "/metrics");
    assert_eq!(status, 200);
    assert!(over_http.contains("# TYPE exchange_fix_app_messages_total counter"));
    assert!(over_http.contains("# TYPE exchange_md_websockets_open gauge"));
    node.shutdown().unwrap();
}

#[test]
fn without_http_or_fix_there_are_no_such_series() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeConfig::for_tests("bare", dir.path(), Vec::new())).unwrap();
    let metrics = node.metrics();
    assert!(
        metrics.contains("exchange_commands_submitted_total"),
        "{metrics}"
    );
    assert!(!metrics.contains("exchange_md_"), "{metrics}");
    assert!(!metrics.contains("exchange_fix_"), "{metrics}");
    node.shutdown().unwrap();
}
