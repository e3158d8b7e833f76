//! `exchange node` as an operator runs it: from a config file, with health and metrics, and a
//! clean stop on SIGTERM that loses nothing acknowledged.

#[path = "common/orders.rs"]
mod orders;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway::binary::ServerMessage;
use gateway::binary_client::BinaryClient;
use orders::buy;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, binary: u16, http: u16, hash_seed: u64) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            r#"
site = "cloud-a"
data_dir = "data"
hash_every = 1
allow_plaintext = true

[listen]
binary = "127.0.0.1:{binary}"
http = "127.0.0.1:{http}"

[engine]
hash_seed = {hash_seed}
orders_max = 4096
retired_ids_max = 4096
levels_max = 1024
levels_per_side_max = 512

[[members]]
name = "alice"
token = "alice-secret-token-1"
account = 1

[[symbols]]
symbol = "BTC-USD"
tick = "0.01"
lot = "1"
"#
        ),
    )
    .unwrap();
    path
}

/// The node's process, killed if the test fails before it stops it.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &Path) -> Node {
    Node(
        Command::new(env!("CARGO_BIN_EXE_exchange"))
            .args(["node", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Waits until the node answers `/health`.
fn wait_healthy(http: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, body)) = http_get(http, "/health") {
            return body;
        }
        assert!(Instant::now() < deadline, "the node never became healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_node_serves_from_its_config_reports_health_and_metrics_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (binary_port, http_port) = (free_port(), free_port());
    let config = write_config(dir.path(), binary_port, http_port, 0x5eed_1234_abcd);
    let binary: SocketAddr = format!("127.0.0.1:{binary_port}").parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();

    let mut node = start(&config);
    let health = wait_healthy(http);
    assert!(health.contains("\"status\":\"ok\""), "{health}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (mut alice, _) = BinaryClient::logon(binary, "alice-secret-token-1", false)
            .await
            .unwrap();
        for n in 0..10 {
            alice.send(&buy(&format!("n-{n}"), "3")).await.unwrap();
            match alice.recv().await.unwrap() {
                Some(ServerMessage::ExecutionReport(r)) => assert_eq!(r.exec_type, b'0'),
                other => panic!("expected an acknowledgement, got {other:?}"),
            }
        }
    });

    let (status, metrics) = http_get(http, "/metrics").unwrap();
    assert_eq!(status, 200);
    for expected in [
        // The symbol listing and ten orders.
        "exchange_commands_submitted_total{site=\"cloud-a\",outcome=\"queued\"} 11",
        "exchange_rejects_total{site=\"cloud-a\",reason=\"capacity\"} 0",
        "exchange_ring_depth{site=\"cloud-a\",shard=\"0\",ring=\"output\"}",
        "exchange_consumer_lag{site=\"cloud-a\",shard=\"0\"}",
        "exchange_stage_latency_applied_microseconds_count{site=\"cloud-a\"} 11",
        "exchange_stage_latency_sequenced_microseconds_count{site=\"cloud-a\",shard=\"0\"} 11",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
    // The symbol listing plus ten orders.
    assert!(
        metrics.contains("exchange_commands_applied_total{site=\"cloud-a\"} 11"),
        "{metrics}"
    );
    let (status, book) = http_get(http, "/v1/book/BTC-USD").unwrap();
    assert_eq!(status, 200, "{book}");
    assert!(book.contains("\"qty\":\"30\""), "{book}");

    sigterm(&node.0);
    let status = node.0.wait().unwrap();
    let mut stderr = String::new();
    node.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("shard 0 stopped cleanly at log position 11"),
        "{stderr}"
    );

    // Restart: everything acknowledged is there, from the final snapshot, nothing replayed.
    let mut node = start(&config);
    let mut lines = BufReader::new(node.0.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.contains("recovered at log position 11 (snapshot Some(11), 0 records replayed"),
        "{first}"
    );
    wait_healthy(http);
    let (_, book) = http_get(http, "/v1/book/BTC-USD").unwrap();
    assert!(book.contains("\"qty\":\"30\""), "{book}");
    sigterm(&node.0);
    assert!(node.0.wait().unwrap().success());
    // Hash reports were written, one per record.
    let hashes = std::fs::read_to_string(dir.path().join("data/hashes.jsonl")).unwrap();
    assert!(hashes.lines().count() >= 11, "{hashes}");
}

/// A node refuses a hash seed of 0, the public default, and none at all (which takes the
/// default), naming the problem and not the value.
#[test]
fn a_node_refuses_a_missing_or_public_hash_seed_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port(), free_port(), 0);
    let text = std::fs::read_to_string(&config).unwrap();
    let public = engine::PUBLIC_HASH_SEED.to_string();
    let missing = text.replace("hash_seed = 0\n", "");
    for text in [
        text.clone(),
        text.replace("hash_seed = 0", &format!("hash_seed = {public}")),
        missing,
    ] {
        std::fs::write(&config, &text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_exchange"))
            .args(["node", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("hash_seed is missing, 0 or the public default"),
            "{stderr}"
        );
        assert!(!stderr.contains(&public), "{stderr}");
    }
}
