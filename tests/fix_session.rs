//! The FIX acceptor's session rules and limits, driven by a raw FIX client over real sockets
//! (every byte under the test's control): credentials, HeartBtInt and CompID checks, the
//! throttle, the connection cap, the message-size cap, TestRequest, ResendRequest answered by
//! a gap fill, garbage bytes, cancel-on-disconnect on a dropped connection, and requests the
//! log refuses (answered with rejects, never dropped). Also measures the D → 8 round trip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::{AccountId, Command, OrderId, Symbol};
use gateway::fix::mapping::utc_timestamp;
use gateway::fix::{FixConfig, FixGateway};
use gateway::{Hub, Member, Members, OrdStatus, Sequencer, SubmitError};
use node::{Node, NodeConfig};

const VENUE: &str = "EXCHANGE";
const ALICE: (&str, &str) = ("alice", "alice-token-0001");
const BOB: (&str, &str) = ("bob", "bob-token-000002");

fn members() -> Vec<Member> {
    [(ALICE, 1), (BOB, 2)]
        .into_iter()
        .map(|((name, token), account)| Member {
            name: name.into(),
            token: token.into(),
            account,
        })
        .collect()
}

fn site(dir: &Path) -> Node {
    Node::start(NodeConfig::for_tests("fix-session", dir, members())).unwrap()
}

/// A FIX gateway on its own runtime, stopped when dropped.
struct Gateway {
    _runtime: tokio::runtime::Runtime,
    stop: tokio::sync::watch::Sender<bool>,
    fix: Arc<FixGateway>,
    port: u16,
}

impl Gateway {
    fn start(hub: Arc<Hub>, dir: &Path, tune: impl FnOnce(&mut FixConfig)) -> Gateway {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut config = FixConfig {
            sender_comp_id: VENUE.into(),
            store_dir: dir.join("fix-sessions"),
            ..FixConfig::default()
        };
        tune(&mut config);
        let fix = Arc::new(FixGateway::new(hub, config).unwrap());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let serving = fix.clone();
        runtime.spawn(async move { serving.serve(listener, None, stop_rx).await });
        Gateway {
            _runtime: runtime,
            stop,
            fix,
            port,
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now() -> String {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    utc_timestamp(ns)
}

#[derive(Debug)]
struct Msg(Vec<(u32, String)>);

impl Msg {
    fn get(&self, tag: u32) -> Option<&str> {
        self.0
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }

    fn msg_type(&self) -> &str {
        self.get(35).unwrap_or("")
    }

    fn check(&self, want: &[(u32, &str)]) {
        for (tag, value) in want {
            assert_eq!(self.get(*tag), Some(*value), "tag {tag} in {self:?}");
        }
    }
}

/// A FIX initiator written out by hand.
struct Client {
    stream: TcpStream,
    member: String,
    seq: u64,
    buf: Vec<u8>,
}

impl Client {
    fn connect(port: u16, member: &str) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            member: member.into(),
            seq: 1,
            buf: Vec::new(),
        }
    }

    fn frame(&mut self, msg_type: &str, fields: &[(u32, &str)]) -> Vec<u8> {
        let mut body = format!(
            "35={msg_type}\x0149={}\x0156={VENUE}\x0134={}\x0152={}\x01",
            self.member,
            self.seq,
            now()
        );
        self.seq += 1;
        for (tag, value) in fields {
            body.push_str(&format!("{tag}={value}\x01"));
        }
        let mut out = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
        let sum: u32 = out.iter().map(|b| u32::from(*b)).sum();
        out.extend_from_slice(format!("10={:03}\x01", sum % 256).as_bytes());
        out
    }

    fn send(&mut self, msg_type: &str, fields: &[(u32, &str)]) {
        let frame = self.frame(msg_type, fields);
        self.stream.write_all(&frame).unwrap();
    }

    fn logon(port: u16, (member, token): (&str, &str), extra: &[(u32, &str)]) -> Client {
        let mut client = Client::connect(port, member);
        let mut fields = vec![(98, "0"), (108, "30"), (553, member), (554, token)];
        fields.extend_from_slice(extra);
        client.send("A", &fields);
        let ack = client.recv().expect("a Logon ack");
        assert_eq!(ack.msg_type(), "A", "{ack:?}");
        client
    }

    /// The next message, or `None` when the connection closed.
    fn recv(&mut self) -> Option<Msg> {
        loop {
            if let Some(msg) = self.take() {
                return Some(msg);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(err) => panic!("read: {err}"),
            }
        }
    }

    /// The next message other than a Heartbeat.
    fn next(&mut self) -> Msg {
        loop {
            let msg = self.recv().expect("the connection is open");
            if msg.msg_type() != "0" {
                return msg;
            }
        }
    }

    fn take(&mut self) -> Option<Msg> {
        let text = std::str::from_utf8(&self.buf).ok()?;
        let start = text.find("9=")? + 2;
        let len_end = start + text[start..].find('\x01')?;
        let len: usize = text[start..len_end].parse().ok()?;
        let end = len_end + 1 + len + 7;
        if self.buf.len() < end {
            return None;
        }
        let frame: Vec<u8> = self.buf.drain(..end).collect();
        let fields = String::from_utf8(frame)
            .unwrap()
            .split('\x01')
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (tag, value) = f.split_once('=').unwrap();
                (tag.parse().unwrap(), value.to_string())
            })
            .collect();
        Some(Msg(fields))
    }

    fn closed(&mut self) -> bool {
        self.recv().is_none()
    }
}

fn order(id: &str, side: &str, qty: &str, price: &str) -> Vec<(u32, String)> {
    [
        (11, id),
        (55, "BTC-USD"),
        (54, side),
        (38, qty),
        (40, "2"),
        (44, price),
    ]
    .into_iter()
    .map(|(t, v)| (t, v.to_string()))
    .collect()
}

fn send_order(client: &mut Client, id: &str, side: &str, qty: &str, price: &str) {
    let fields = order(id, side, qty, price);
    let fields: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
    client.send("D", &fields);
}

#[test]
fn logons_are_checked_and_refused_without_a_reply() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path());
    let gateway = Gateway::start(site.hub().clone(), dir.path(), |_| {});
    let attempts: [(&str, &[(u32, &str)]); 6] = [
        // Wrong password.
        (
            "alice",
            &[
                (98, "0"),
                (108, "30"),
                (553, "alice"),
                (554, "wrong-token-01"),
            ],
        ),
        // Bob's credentials on alice's CompID.
        (
            "alice",
            &[(98, "0"), (108, "30"), (553, BOB.0), (554, BOB.1)],
        ),
        // No credentials.
        ("alice", &[(98, "0"), (108, "30")]),
        // HeartBtInt 0 (no heartbeats) and above the limit.
        (
            "alice",
            &[(98, "0"), (108, "0"), (553, ALICE.0), (554, ALICE.1)],
        ),
        (
            "alice",
            &[(98, "0"), (108, "121"), (553, ALICE.0), (554, ALICE.1)],
        ),
        // Not a member.
        (
            "mallory",
            &[(98, "0"), (108, "30"), (553, "mallory"), (554, "x")],
        ),
    ];
    for (comp_id, fields) in attempts {
        let mut client = Client::connect(gateway.port, comp_id);
        client.send("A", fields);
        assert!(client.closed(), "{comp_id} {fields:?} must be refused");
    }
    // A bad CancelOnDisconnect value is refused too; a good Logon works after all that.
    let mut client = Client::connect(gateway.port, ALICE.0);
    client.send(
        "A",
        &[
            (98, "0"),
            (108, "30"),
            (553, ALICE.0),
            (554, ALICE.1),
            (8013, "maybe"),
        ],
    );
    assert!(client.closed());
    let mut alice = Client::logon(gateway.port, ALICE, &[]);
    // TestRequest → Heartbeat with its id.
    alice.send("1", &[(112, "ping-1")]);
    alice.recv().unwrap().check(&[(35, "0"), (112, "ping-1")]);
    let counters = gateway.fix.counters();
    assert_eq!(counters.logons_refused.load(Ordering::Relaxed), 6);
    assert_eq!(counters.handshakes_failed.load(Ordering::Relaxed), 7);
    assert_eq!(counters.logons.load(Ordering::Relaxed), 1);
    drop(gateway);
    site.shutdown().unwrap();
}

#[test]
fn session_layer_resend_garbage_and_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path());
    let gateway = Gateway::start(site.hub().clone(), dir.path(), |_| {});
    let mut alice = Client::logon(gateway.port, ALICE, &[]);
    send_order(&mut alice, "r1", "1", "1", "10");
    alice.next().check(&[(35, "8"), (150, "0"), (11, "r1")]);
    alice.send("H", &[(11, "r1"), (55, "BTC-USD"), (54, "1")]);
    alice.next().check(&[(35, "8"), (150, "I")]);

    // Everything the acceptor sent is gap-filled, never replayed (its Logon ack was 1).
    alice.send("2", &[(7, "1"), (16, "0")]);
    let fill = alice.next();
    fill.check(&[(35, "4"), (123, "Y"), (34, "1"), (43, "Y")]);
    let new_seq: u64 = fill.get(36).unwrap().parse().unwrap();
    assert!(new_seq >= 4, "{fill:?}");

    // Garbage between messages is skipped; the session goes on.
    alice
        .stream
        .write_all(b"garbage\x01more=junk\x018=FIX.4.4\x019=5\x0135=D\x0110=000\x01")
        .unwrap();
    alice.send("H", &[(11, "r1"), (55, "BTC-USD"), (54, "1")]);
    let status = alice.next();
    status.check(&[(35, "8"), (150, "I"), (11, "r1")]);

    // An application message above the size limit ends the session with a Logout.
    let big = "x".repeat(5000);
    alice.send("H", &[(11, "r1"), (55, "BTC-USD"), (54, "1"), (58, &big)]);
    let logout = alice.recv();
    if let Some(logout) = &logout {
        assert_eq!(logout.msg_type(), "5", "{logout:?}");
    }
    assert!(alice.closed());
    drop(gateway);
    site.shutdown().unwrap();
}

#[test]
fn the_throttle_and_the_connection_cap_answer_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path());
    let gateway = Gateway::start(site.hub().clone(), dir.path(), |config| {
        config.max_msg_per_sec = 5;
        config.max_connections = 2;
    });
    let mut alice = Client::logon(gateway.port, ALICE, &[]);
    for _ in 0..20 {
        alice.send("H", &[(11, "x1"), (55, "BTC-USD"), (54, "1")]);
    }
    let (mut answered, mut throttled) = (0, 0);
    for _ in 0..20 {
        let msg = alice.next();
        match msg.msg_type() {
            "8" => answered += 1,
            "j" => {
                msg.check(&[(372, "H"), (379, "x1"), (380, "0")]);
                assert!(msg.get(58).unwrap().starts_with("throttled"));
                throttled += 1;
            }
            other => panic!("unexpected {other}: {msg:?}"),
        }
    }
    assert_eq!(answered + throttled, 20);
    // The burst (5) and whatever the bucket refilled while they were handled.
    assert!(answered >= 5 && throttled > 0, "{answered} answered");

    // Two connections are open (alice, and bob's); a third is closed at once.
    let _bob = Client::logon(gateway.port, BOB, &[]);
    let mut third = Client::connect(gateway.port, "carol");
    assert!(third.closed());
    drop(gateway);
    site.shutdown().unwrap();
}

#[test]
fn a_dropped_connection_cancels_the_orders_of_a_member_who_asked() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path());
    let hub = site.hub().clone();
    let gateway = Gateway::start(hub.clone(), dir.path(), |_| {});
    let mut bob = Client::logon(gateway.port, BOB, &[(8013, "Y")]);
    let mut alice = Client::logon(gateway.port, ALICE, &[]);
    send_order(&mut bob, "b1", "1", "1", "10");
    bob.next().check(&[(150, "0"), (11, "b1")]);
    send_order(&mut alice, "a1", "1", "1", "10");
    alice.next().check(&[(150, "0"), (11, "a1")]);
    // No Logout: the socket just goes away.
    drop(bob);
    drop(alice);
    let until = Instant::now() + Duration::from_secs(10);
    let btc = Symbol::new("BTC-USD").unwrap();
    let state = |account, id| hub.order_state(&btc, AccountId(account), &OrderId::new(id).unwrap());
    while state(2, "b1").unwrap().ord_status != OrdStatus::Canceled {
        assert!(Instant::now() < until, "bob's order was not cancelled");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Alice did not ask: hers rests.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(state(1, "a1").unwrap().ord_status, OrdStatus::New);
    drop(gateway);
    site.shutdown().unwrap();
}

/// A log that refuses everything: busy (the site still reaches it), unavailable (cut off) or
/// catching up (far behind it).
struct Refusing(SubmitError);

impl Sequencer for Refusing {
    fn submit(&self, _command: Command) -> Result<(), SubmitError> {
        Err(self.0)
    }

    fn ready(&self) -> Result<(), SubmitError> {
        match self.0 {
            SubmitError::Busy => Ok(()),
            refused => Err(refused),
        }
    }
}

#[test]
fn requests_the_log_refuses_are_rejected_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    for (error, text) in [
        (SubmitError::Busy, "busy"),
        (SubmitError::Unavailable, "unavailable"),
        (SubmitError::CatchingUp, "catching_up"),
    ] {
        let hub = Hub::new(
            Arc::new(Refusing(error)),
            Members::new(members()).unwrap(),
            16,
        );
        // A fresh session store: the client starts at MsgSeqNum 1.
        let gateway = Gateway::start(hub, &dir.path().join(text), |_| {});
        let mut alice = Client::logon(gateway.port, ALICE, &[]);
        send_order(&mut alice, "o1", "1", "1", "10");
        alice
            .next()
            .check(&[(35, "8"), (150, "8"), (39, "8"), (11, "o1"), (58, text)]);
        alice.send("F", &[(11, "c1"), (41, "o1"), (55, "BTC-USD"), (54, "1")]);
        alice.next().check(&[
            (35, "9"),
            (11, "c1"),
            (41, "o1"),
            (434, "1"),
            (102, "2"),
            (58, text),
        ]);
        alice.send("q", &[(11, "m1"), (530, "7")]);
        alice
            .next()
            .check(&[(35, "r"), (11, "m1"), (531, "0"), (58, text)]);
        // A status question: a busy site answers from its state; a site cut off from the log
        // may be behind without knowing it, and one catching up knows it is: both say so.
        alice.send("H", &[(11, "o1"), (55, "BTC-USD"), (54, "1")]);
        let answer = alice.next();
        if error != SubmitError::Busy {
            answer.check(&[(35, "j"), (372, "H")]);
            assert!(answer.get(58).unwrap().starts_with(text), "{answer:?}");
        } else {
            answer.check(&[(35, "8"), (150, "I")]);
        }
        // A mass status is answered anyway (the state at the site's position, how a member
        // learns what happened between its sessions), saying why it may be behind.
        alice.send("AF", &[(584, "s1"), (585, "7")]);
        let answer = alice.next();
        answer.check(&[(35, "8"), (150, "I"), (912, "Y")]);
        if error != SubmitError::Busy {
            assert!(answer.get(58).unwrap().contains(text), "{answer:?}");
        }
        alice.send("5", &[]);
        alice.next().check(&[(35, "5")]);
    }
}

#[test]
fn round_trip_new_order_to_execution_report() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path());
    let gateway = Gateway::start(site.hub().clone(), dir.path(), |_| {});
    let mut alice = Client::logon(gateway.port, ALICE, &[]);
    let mut micros = Vec::new();
    for i in 0..500 {
        let id = format!("rt{i}");
        let start = Instant::now();
        send_order(&mut alice, &id, "1", "1", "10");
        alice.next().check(&[(150, "0"), (11, &id)]);
        micros.push(start.elapsed().as_micros() as u64);
    }
    micros.sort_unstable();
    let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
    eprintln!(
        "FIX D -> 8 round trip over loopback (journal fsync per batch, session store fsync per \
         write): p50 {} us, p99 {} us, max {} us",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    drop(gateway);
    site.shutdown().unwrap();
}

/// A member sets its session's dead-man's switch with the custom CancelAfterRequest (U1,
/// 8014 milliseconds): the CancelAfterReport (U2) gives the deadline on log time; past it, the
/// next command on the log fires it and the session's orders are cancelled (58 `expired`);
/// 0 disarms. A bad value is a session Reject on 8014.
#[test]
fn a_fix_member_sets_its_sessions_dead_mans_switch() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path());
    let gateway = Gateway::start(site.hub().clone(), dir.path(), |_| {});
    let mut alice = Client::logon(gateway.port, ALICE, &[]);
    send_order(&mut alice, "s1", "1", "1", "10");
    alice.next().check(&[(150, "0"), (11, "s1")]);
    alice.send("U1", &[(8014, "50")]);
    let report = alice.next();
    report.check(&[(35, "U2")]);
    assert!(
        report.get(8015).unwrap().parse::<u64>().unwrap() > 0,
        "{report:?}"
    );
    std::thread::sleep(Duration::from_millis(100));
    send_order(&mut alice, "s2", "1", "1", "9");
    alice
        .next()
        .check(&[(150, "4"), (11, "s1"), (58, "expired")]);
    alice.next().check(&[(150, "0"), (11, "s2")]);
    alice.send("U1", &[(8014, "0")]);
    alice.next().check(&[(35, "U2"), (8015, "0")]);
    alice.send("U1", &[(8014, "-1")]);
    alice.next().check(&[(35, "3"), (371, "8014")]);
    drop(gateway);
    site.shutdown().unwrap();
}

/// A member that keeps its sequence numbers across a reconnect resends, with PossDupFlag,
/// whatever the venue did not receive, however old. A new order first sent longer ago than
/// the engines remember client order ids (60 s here, less a 5 s margin), or whose first
/// sending cannot be told, under a ClOrdID the venue does not know, is refused as
/// `stale_resend`: it may have executed and been forgotten. An old resend of an order the
/// venue knows is answered with that order; a recent resend goes on.
#[test]
fn orders_resent_from_longer_ago_than_the_dedup_window_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path());
    let gateway = Gateway::start(site.hub().clone(), dir.path(), |_| {});
    let mut alice = Client::logon(gateway.port, ALICE, &[]);
    let ago = |secs: u64| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        utc_timestamp((now - Duration::from_secs(secs)).as_nanos() as u64)
    };
    let (old, recent) = (ago(120), ago(1));
    let resend = |client: &mut Client, id: &str, first: Option<&str>| {
        let mut fields: Vec<(u32, &str)> = vec![(43, "Y")];
        fields.extend(first.map(|first| (122, first)));
        fields.extend([(11, id), (55, "BTC-USD"), (54, "1"), (38, "1"), (40, "2")]);
        fields.push((44, "10"));
        client.send("D", &fields);
        client.next()
    };
    let stale = [(35, "8"), (150, "8"), (39, "8"), (58, "stale_resend")];
    let refused = resend(&mut alice, "p1", Some(&old));
    refused.check(&stale);
    refused.check(&[(11, "p1")]);
    resend(&mut alice, "p2", None).check(&stale);

    // The venue knows p3 (it rests): an old resend of it is answered with it.
    send_order(&mut alice, "p3", "1", "1", "10");
    alice.next().check(&[(35, "8"), (150, "0"), (11, "p3")]);
    let known = resend(&mut alice, "p3", Some(&old));
    known.check(&[(35, "8"), (11, "p3"), (39, "0")]);
    assert_ne!(known.get(150), Some("8"), "{known:?}");
    // A recent resend of an order it never got is a new order.
    resend(&mut alice, "p4", Some(&recent)).check(&[(150, "0"), (11, "p4")]);

    let counters = gateway.fix.counters();
    assert_eq!(counters.stale_resends.load(Ordering::Relaxed), 2);
    let btc = Symbol::new("BTC-USD").unwrap();
    let state = |id| {
        site.hub()
            .order_state(&btc, AccountId(1), &OrderId::new(id).unwrap())
    };
    assert!(state("p1").is_none() && state("p2").is_none());
    drop(gateway);
    site.shutdown().unwrap();
}
