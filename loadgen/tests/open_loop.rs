//! The load generator against a scripted fake gateway: the schedule and latency accounting
//! (a stall is charged to every request scheduled during it), answers matched by client order
//! id and type, errors counted by cause, and a run that always ends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::{AccountId, Price, Qty, Side, Symbol};
use flow::FlowConfig;
use gateway::binary::{self, Check, ClientMessage, ExecReport, ServerMessage};
use loadgen::{LoadConfig, RunResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fake gateway misbehaves.
#[derive(Clone, Copy, Default)]
struct Script {
    /// After this many requests (all connections), stop answering (and reading) for this long.
    stall: Option<(usize, Duration)>,
    /// Refuse every n-th new order as busy (reason 30).
    busy_every: Option<usize>,
    /// Never answer every n-th cancel or replace.
    silent_every: Option<usize>,
    /// Close connection 0 after this many requests on it.
    drop_after: Option<usize>,
    /// Refuse every logon.
    refuse_logon: bool,
}

struct Fake {
    script: Script,
    requests: AtomicUsize,
    news: AtomicUsize,
    amends: AtomicUsize,
    connections: AtomicUsize,
    stalled_until: Mutex<Option<Instant>>,
}

async fn start(script: Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Arc::new(Fake {
        script,
        requests: AtomicUsize::new(0),
        news: AtomicUsize::new(0),
        amends: AtomicUsize::new(0),
        connections: AtomicUsize::new(0),
        stalled_until: Mutex::new(None),
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let fake = fake.clone();
            let id = fake.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move { serve(stream, fake, id).await });
        }
    });
    addr
}

fn report(cl_ord_id: engine::OrderId, symbol: Symbol, exec_type: u8, reason: u8) -> ServerMessage {
    ServerMessage::ExecutionReport(ExecReport {
        seq: 0,
        ts: 0,
        cl_ord_id,
        symbol,
        exec_type,
        ord_status: exec_type,
        side: Side::Buy,
        reason,
        price: Price(0),
        order_qty: Qty(0),
        last_px: Price(0),
        last_qty: Qty(0),
        cum_qty: Qty(0),
        leaves_qty: Qty(0),
        avg_px: Price(0),
    })
}

async fn serve(mut stream: TcpStream, fake: Arc<Fake>, id: usize) {
    let script = fake.script;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut on_this = 0;
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let mut at = 0;
        while let Ok(Check::Frame(len)) = binary::check(&buf[at..]) {
            let message = binary::decode_client(&buf[at..at + len]).unwrap();
            at += len;
            let stall = *fake.stalled_until.lock().unwrap();
            if let Some(until) = stall {
                if Instant::now() < until {
                    tokio::time::sleep_until(until.into()).await;
                }
            }
            let answer = match message {
                ClientMessage::Logon { .. } if script.refuse_logon => {
                    ServerMessage::Logout { reason: 10 }
                }
                ClientMessage::Logon { token, .. } => {
                    // Tokens are "member-<account>".
                    let text = std::str::from_utf8(&token).unwrap().trim_end_matches('\0');
                    let account = text.strip_prefix("member-").unwrap().parse().unwrap();
                    ServerMessage::LogonAck {
                        account: AccountId(account),
                        heartbeat_secs: 30,
                    }
                }
                ClientMessage::Logout => {
                    binary::encode_server(&ServerMessage::Logout { reason: 0 }, &mut out);
                    let _ = stream.write_all(&out).await;
                    return;
                }
                ClientMessage::Heartbeat { .. } | ClientMessage::OrderStatus { .. } => continue,
                request => {
                    let count = fake.requests.fetch_add(1, Ordering::SeqCst) + 1;
                    on_this += 1;
                    if id == 0 && script.drop_after == Some(on_this) {
                        let _ = stream.write_all(&out).await;
                        return;
                    }
                    if let Some((after, pause)) = script.stall {
                        if count == after {
                            *fake.stalled_until.lock().unwrap() = Some(Instant::now() + pause);
                            // Answer what came before, then go silent.
                            let _ = stream.write_all(&out).await;
                            out.clear();
                            tokio::time::sleep(pause).await;
                        }
                    }
                    match request {
                        ClientMessage::NewOrder(order) => {
                            let n = fake.news.fetch_add(1, Ordering::SeqCst) + 1;
                            if script
                                .busy_every
                                .is_some_and(|every| n.is_multiple_of(every))
                            {
                                report(order.cl_ord_id, order.symbol, b'8', 30)
                            } else {
                                report(order.cl_ord_id, order.symbol, b'0', 0)
                            }
                        }
                        ClientMessage::Cancel { cl_ord_id, symbol }
                        | ClientMessage::Replace {
                            cl_ord_id, symbol, ..
                        } => {
                            let n = fake.amends.fetch_add(1, Ordering::SeqCst) + 1;
                            if script
                                .silent_every
                                .is_some_and(|every| n.is_multiple_of(every))
                            {
                                continue;
                            }
                            if matches!(request, ClientMessage::Cancel { .. }) {
                                report(cl_ord_id, symbol, b'4', 20)
                            } else {
                                report(cl_ord_id, symbol, b'5', 0)
                            }
                        }
                        ClientMessage::MassCancel { symbol } => ServerMessage::MassCancelReport {
                            symbol,
                            cancelled: 0,
                        },
                        _ => continue,
                    }
                }
            };
            binary::encode_server(&answer, &mut out);
        }
        buf.drain(..at);
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn config(addr: SocketAddr, connections: usize, rate: f64) -> LoadConfig {
    let members = (1..=connections as u64)
        .map(|account| (format!("member-{account}"), account))
        .collect();
    LoadConfig {
        connections,
        rate,
        duration: Duration::from_secs(1),
        warmup: Duration::ZERO,
        flow: FlowConfig {
            book_depth: 10,
            ..FlowConfig::default()
        },
        timeout: Duration::from_millis(500),
        ..LoadConfig::new(vec![addr], members)
    }
}

fn assert_on_schedule(result: &RunResult) {
    let expected = result.rate_target * result.duration_s;
    assert!(
        (result.orders as f64 - expected).abs() <= 2.0,
        "{} sent of {expected}",
        result.orders
    );
    assert!(
        (result.rate_achieved / result.rate_target - 1.0).abs() < 0.05,
        "achieved {} of {}",
        result.rate_achieved,
        result.rate_target
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_server_gives_every_request_a_short_latency() {
    let addr = start(Script::default()).await;
    let result = loadgen::run(&config(addr, 3, 2000.0), None).await.unwrap();
    assert_on_schedule(&result);
    assert_eq!(result.errors, 0, "{:?}", result.error_counts);
    assert_eq!(result.acked, result.orders);
    assert_eq!(result.latency_us.count, result.orders);
    assert!(result.latency_us.p50 < 20_000.0, "{:?}", result.latency_us);
    // The flow's mix: mostly replaces, every type answered.
    let replaces = result.latency_by_type["replace"].count as f64;
    assert!(
        replaces > 0.7 * result.orders as f64,
        "{:?}",
        result.requests
    );
    assert!(result.latency_by_type.contains_key("new"));
    assert!(result.latency_by_type.contains_key("cancel"));
    assert_eq!(result.throughput.bucket_ms, 100);
    let acked: u64 = result.throughput.acked.iter().sum();
    assert_eq!(acked, result.orders);
    let json = serde_json::to_value(&result).unwrap();
    for field in ["rate_target", "rate_achieved", "orders", "errors"] {
        assert!(json[field].is_number(), "{field}");
    }
    for field in ["p50", "p99", "p999", "max"] {
        assert!(json["latency_us"][field].is_number(), "{field}");
    }
}

/// Coordinated omission: the server stops for 200 ms. A closed-loop client would wait and
/// record one slow request; here every request scheduled during the stall is charged the rest
/// of the stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_is_charged_to_every_request_scheduled_during_it() {
    let stall = Duration::from_millis(200);
    let rate = 1000.0;
    // 10 setup orders, then the stall 300 requests into the schedule.
    let addr = start(Script {
        stall: Some((310, stall)),
        ..Script::default()
    })
    .await;
    let result = loadgen::run(&config(addr, 2, rate), None).await.unwrap();
    assert_on_schedule(&result);
    assert_eq!(result.errors, 0, "{:?}", result.error_counts);
    let latency = &result.latency_us;
    assert!(latency.max >= 200_000.0, "max {} µs", latency.max);
    // About 200 requests fall in the stall, half of them at least 100 ms before its end: more
    // than 9% of the run waited over 100 ms, so the p90 is over 100 ms.
    assert!(latency.p90 >= 100_000.0, "{latency:?}");
    assert!(latency.p50 < 50_000.0, "{latency:?}");
    // The sender never waited for the server: whatever lag it had (a busy machine delays its
    // wake-ups) is far below the stall.
    assert!(
        result.max_send_lag_us < 100_000.0,
        "{}",
        result.max_send_lag_us
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_silence_and_a_lost_connection_are_counted_and_the_run_ends() {
    let addr = start(Script {
        busy_every: Some(10),
        silent_every: Some(50),
        drop_after: Some(300),
        ..Script::default()
    })
    .await;
    let begun = Instant::now();
    let result = loadgen::run(&config(addr, 4, 2000.0), None).await.unwrap();
    // 1 s of schedule, at most 0.5 s of drain, the clean-up and logouts bounded too.
    assert!(
        begun.elapsed() < Duration::from_secs(6),
        "{:?}",
        begun.elapsed()
    );
    let errors = &result.error_counts;
    assert!(errors.busy > 0, "{errors:?}");
    assert!(errors.timeout > 0, "{errors:?}");
    assert!(errors.disconnected > 0, "{errors:?}");
    assert_eq!(result.connections_lost, 1);
    assert_eq!(result.errors, errors.total());
    // Refused requests are not acknowledgements: they are not in the latency figures.
    assert!(result.acked < result.orders);
    assert_eq!(result.latency_us.count, result.acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_logon_fails_the_run() {
    let addr = start(Script {
        refuse_logon: true,
        ..Script::default()
    })
    .await;
    let err = loadgen::run(&config(addr, 2, 100.0), None)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("logon"), "{err:#}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_sweep_stops_at_the_first_rate_that_misses_its_bound() {
    let addr = start(Script {
        stall: Some((1600, Duration::from_millis(300))),
        ..Script::default()
    })
    .await;
    let config = LoadConfig {
        duration: Duration::from_millis(500),
        ..config(addr, 2, 1.0)
    };
    // Each run sends 10 setup orders, its schedule and 2 clean-up mass cancels: the first two
    // runs (512 and 1012 requests) stay clear of the stall, the third meets it early.
    let sweep = loadgen::sweep(&config, &[1000.0, 2000.0, 3000.0, 4000.0], 50_000.0, None)
        .await
        .unwrap();
    assert_eq!(sweep.max_rate, Some(2000.0), "{:?}", sweep.stopped);
    assert_eq!(sweep.runs.len(), 3);
    assert!(sweep.stopped.as_deref().unwrap().contains("p99"));
    let text = loadgen::table(&sweep.runs);
    assert_eq!(text.lines().count(), 4);
}
