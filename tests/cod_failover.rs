//! Cancel-on-disconnect survives its site: three `exchange node` processes (cloud-a, cloud-b,
//! metal) on one Kafka log (tansu, started here). A member logs on at cloud-a with
//! cancel-on-disconnect and rests an order; it also has sessions at the other two sites, and
//! enters an order from cloud-b. cloud-a is SIGKILLed: nobody refreshes its session's
//! dead-man's switch, so it fires on the log and the order is cancelled (reason `expired`) at
//! both surviving sites, within the timeout plus one idle `clock` interval; the order the
//! member entered from its later session at cloud-b stays.
//!
//! A missing `tansu` binary fails this test; it never skips it.

#[path = "common/binary.rs"]
mod common;
#[path = "common/health.rs"]
mod health;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{next, report, runtime};
use drill::sites::{drill_engine, free_port, members, node_config};
use drill::tansu::Tansu;
use engine::{OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif};
use gateway::binary::{
    msg_type, reason, session_reject, ClientMessage, NewOrderMsg, ServerMessage,
};
use gateway::binary_client::BinaryClient;
use gateway::binary_server::logout;
use gateway::switch::COD_TIMEOUT;
use replicator::kafka::KafkaConfig;
use replicator::topic::create_topic;

/// The surviving sites' idle `clock` interval.
const CLOCK_EVERY_MS: u64 = 500;

/// One site: an `exchange node` process and its binary gateway.
struct Site {
    child: Child,
    binary: SocketAddr,
    http: SocketAddr,
}

impl Site {
    fn start(dir: &Path, name: &str, kafka: &KafkaConfig, token: (&str, &str, u64)) -> Site {
        let site_dir = dir.join(name);
        std::fs::create_dir_all(&site_dir).unwrap();
        let (binary, http) = (free_port().unwrap(), free_port().unwrap());
        let member = [(token.0.to_string(), token.1.to_string(), token.2)];
        let mut config = node_config(
            name,
            kafka,
            &drill_engine(7, Duration::from_secs(60)),
            (binary, http),
            &member,
            1000,
        );
        config.clock_every_ms = CLOCK_EVERY_MS;
        let path: PathBuf = site_dir.join("node.toml");
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        let log = std::fs::File::create(site_dir.join("node.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_exchange"))
            .args(["node", "--config"])
            .arg(&path)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Site {
            child,
            binary,
            http,
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Logs on, retrying while the node starts.
async fn logon(addr: SocketAddr, token: &str, cod: bool) -> BinaryClient {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match BinaryClient::logon(addr, token, cod).await {
            Ok((client, _)) => return client,
            Err(err) if Instant::now() > deadline => panic!("no logon at {addr}: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn order(id: &str, side: Side, price: &str) -> ClientMessage {
    ClientMessage::NewOrder(NewOrderMsg {
        cl_ord_id: OrderId::new(id).unwrap(),
        symbol: Symbol::new("BTC-USD").unwrap(),
        side,
        ord_type: OrdType::Limit,
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::CancelTaker,
        price: Some(Price::parse(price).unwrap()),
        qty: Qty::parse("1").unwrap(),
    })
}

/// Waits for `id`'s report with `exec_type`, skipping others.
async fn report_of(
    client: &mut BinaryClient,
    id: &str,
    exec_type: u8,
) -> gateway::binary::ExecReport {
    loop {
        let r = report(client).await;
        if r.cl_ord_id.as_str() == id && r.exec_type == exec_type {
            return r;
        }
    }
}

#[test]
fn a_dead_site_s_switch_fires_at_every_surviving_site_and_spares_later_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(&dir.path().join("kafka"))
        .expect("tansu 0.6.0 must be installed (run scripts/setup); this test needs a broker");
    let kafka = KafkaConfig {
        allow_unsafe_topic: true,
        ..KafkaConfig::new(&broker.bootstrap(), "cod.commands", 0)
    };
    create_topic(&kafka, 1, 1, Duration::from_secs(20)).unwrap();
    let member = members(1).remove(0);
    let token = (member.0.as_str(), member.1.as_str(), member.2);
    let mut a = Some(Site::start(dir.path(), "cloud-a", &kafka, token));
    let b = Site::start(dir.path(), "cloud-b", &kafka, token);
    let c = Site::start(dir.path(), "metal", &kafka, token);
    // Trade once every site is ready: one still catching up with the others' start (their
    // listings and clocks, on a loaded machine) refuses new orders with `catching_up`.
    for http in [a.as_ref().unwrap().http, b.http, c.http] {
        health::wait_health(http, 200, "ok", Duration::from_secs(60));
    }
    runtime().block_on(async {
        let mut at_a = logon(a.as_ref().unwrap().binary, token.1, true).await;
        let mut at_b = logon(b.binary, token.1, false).await;
        let mut at_c = logon(c.binary, token.1, false).await;
        at_a.send(&order("x1", Side::Buy, "100")).await.unwrap();
        for client in [&mut at_a, &mut at_b, &mut at_c] {
            report_of(client, "x1", b'0').await;
        }
        // The member's later session, at cloud-b: its order must outlive cloud-a's switch.
        at_b.send(&order("y1", Side::Sell, "200")).await.unwrap();
        report_of(&mut at_b, "y1", b'0').await;
        report_of(&mut at_c, "y1", b'0').await;

        drop(a.take()); // SIGKILL: no logout, no cancel-on-disconnect from cloud-a.
        let killed = Instant::now();
        let mut fired = Vec::new();
        for client in [&mut at_b, &mut at_c] {
            let cancel = report_of(client, "x1", b'4').await;
            assert_eq!(cancel.reason, reason::EXPIRED, "{cancel:?}");
            fired.push(killed.elapsed());
        }
        // The switch was last refreshed at most a second before the kill (sooner if cloud-a's
        // last refreshes were still on their way to the log: then it fires sooner), and the
        // surviving sites' clocks move log time every half second; the slack is the log's
        // latency on a loaded machine (tansu on two cores).
        let bound = COD_TIMEOUT + Duration::from_millis(CLOCK_EVERY_MS) + Duration::from_secs(5);
        for elapsed in &fired {
            assert!(
                *elapsed <= bound,
                "fired {elapsed:?} after the kill, expected within {bound:?}"
            );
        }
        eprintln!("dead-man's switch fired {fired:?} after cloud-a was killed");
        at_b.send(&ClientMessage::MassStatus { symbol: None })
            .await
            .unwrap();
        let listed = report(&mut at_b).await;
        assert_eq!((listed.cl_ord_id.as_str(), listed.ord_status), ("x1", b'4'));
        let listed = report(&mut at_b).await;
        assert_eq!(
            (listed.cl_ord_id.as_str(), listed.ord_status),
            ("y1", b'0'),
            "the later session's order is still live"
        );
        assert!(matches!(
            next(&mut at_b).await,
            ServerMessage::MassStatusReport { reports: 2, .. }
        ));
    });
}

/// A site cut off from the log stays up and answers heartbeats, so a quoting member with
/// nothing in flight would never notice while its switch fires at the other sites. Here the
/// log goes away (the broker stops): the cancel-on-disconnect session is logged out with
/// reason 16 within the switch's timeout (plus the broker connection's own timeouts on a
/// loaded machine); a session without cancel-on-disconnect is left alone, but its status
/// questions are refused `unavailable` (the site may be behind without knowing it).
#[test]
fn a_cancel_on_disconnect_session_whose_site_lost_the_log_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Tansu::start(&dir.path().join("kafka"))
        .expect("tansu 0.6.0 must be installed (run scripts/setup); this test needs a broker");
    let kafka = KafkaConfig {
        allow_unsafe_topic: true,
        ..KafkaConfig::new(&broker.bootstrap(), "lost.commands", 0)
    };
    create_topic(&kafka, 1, 1, Duration::from_secs(20)).unwrap();
    let member = members(1).remove(0);
    let token = (member.0.as_str(), member.1.as_str(), member.2);
    let site = Site::start(dir.path(), "cloud-a", &kafka, token);
    runtime().block_on(async {
        let mut quoter = logon(site.binary, token.1, true).await;
        let mut plain = logon(site.binary, token.1, false).await;
        quoter.send(&order("q1", Side::Buy, "100")).await.unwrap();
        report_of(&mut quoter, "q1", b'0').await;

        broker.stop();
        let stopped = Instant::now();
        let reason = loop {
            match next(&mut quoter).await {
                ServerMessage::Logout { reason } => break reason,
                _ => continue,
            }
        };
        assert_eq!(reason, logout::LOG_UNAVAILABLE);
        let told = stopped.elapsed();
        assert!(
            told <= COD_TIMEOUT + Duration::from_secs(3),
            "told {told:?} after the log went away"
        );
        eprintln!("the cancel-on-disconnect session was told {told:?} after the log went away");
        // Cut off, the site may be behind the others without knowing it: it answers no
        // status question, and says why.
        plain
            .send(&ClientMessage::OrderStatus {
                cl_ord_id: OrderId::new("q1").unwrap(),
                symbol: Symbol::new("BTC-USD").unwrap(),
            })
            .await
            .unwrap();
        loop {
            match next(&mut plain).await {
                ServerMessage::SessionReject {
                    code,
                    rejected_type,
                } => {
                    assert_eq!(code, session_reject::UNAVAILABLE);
                    assert_eq!(rejected_type, msg_type::ORDER_STATUS);
                    break;
                }
                ServerMessage::Heartbeat { .. } => continue,
                // The member's own reports (its order from the other session).
                ServerMessage::ExecutionReport(r) if r.exec_type != b'I' => continue,
                other => panic!("a status answer from a site cut off from the log: {other:?}"),
            }
        }
        plain
            .send(&ClientMessage::Heartbeat { test_id: 9 })
            .await
            .unwrap();
        loop {
            match next(&mut plain).await {
                ServerMessage::Heartbeat { test_id: 9 } => break,
                ServerMessage::Logout { reason } => {
                    panic!("the plain session logged out: {reason}")
                }
                _ => continue,
            }
        }
    });
}
