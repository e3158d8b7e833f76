//! The FIX 4.4 acceptor against a real QuickFIX C++ initiator (the `quickfix` crate) over real
//! sockets, on a [`Node`] (journal → engine → hub): a member's whole order lifecycle, checked
//! on the wire. QuickFIX validates every message the acceptor sends against the FIX 4.4 data
//! dictionary (`tests/fixtures/fix/FIX44.xml`); a message it refuses fails the test.
//!
//! A second test runs two sites on one Kafka log (tansu): a member's client fails over from one
//! to the other with ResetSeqNumFlag and resends its orders and a replace by their ClOrdIDs,
//! and nothing executes twice. (QuickFIX's `Session::send` removes PossDupFlag and
//! OrigSendingTime from an application message, so these resends reach the gateway without
//! them; `tests/fix_session.rs` sends real PossDup resends.)
//!
//! Two members log on through one initiator: alice (orders, replaces, cancels, mass cancel,
//! status, duplicates, malformed messages) and bob (the other side of her trades, with
//! cancel-on-disconnect). Then both log out, the FIX gateway is restarted on the same session
//! store, and they log on again: the sequence numbers resume, and bob's resting order was
//! cancelled when he disconnected.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::fix::{FixConfig, FixGateway};
use gateway::{Hub, Member};
use node::{Node, NodeConfig};
use quickfix::{
    send_to_target, ApplicationCallback, ConnectionHandler, FieldMap, FileMessageStoreFactory,
    FixSocketServerKind, Initiator, LogCallback, LogFactory, Message, SessionId, SessionSettings,
};

const VENUE: &str = "EXCHANGE";
const ALICE: &str = "alice";
const BOB: &str = "bob";
const WAIT: Duration = Duration::from_secs(10);
const LOGON_WAIT: Duration = Duration::from_secs(30);

fn token(member: &str) -> &'static str {
    match member {
        ALICE => "alice-token-0001",
        _ => "bob-token-000002",
    }
}

fn site_config(dir: &Path) -> NodeConfig {
    NodeConfig::for_tests(
        "fix-test",
        dir,
        [(ALICE, 1), (BOB, 2)]
            .into_iter()
            .map(|(name, account)| Member {
                name: name.into(),
                token: token(name).into(),
                account,
            })
            .collect(),
    )
}

/// A FIX gateway serving `hub` on its own runtime until dropped.
struct Gateway {
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::watch::Sender<bool>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    port: u16,
}

impl Gateway {
    fn start(hub: Arc<Hub>, store_dir: &Path) -> Gateway {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = FixConfig {
            sender_comp_id: VENUE.into(),
            store_dir: store_dir.to_path_buf(),
            ..FixConfig::default()
        };
        let gateway = FixGateway::new(hub, config).unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let served = runtime.spawn(async move { gateway.serve(listener, None, stop_rx).await });
        Gateway {
            runtime,
            stop,
            served: Some(served),
            port,
        }
    }

    fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(served) = self.served.take() {
            self.runtime.block_on(served).unwrap().unwrap();
        }
    }
}

/// A message as it crossed the wire.
#[derive(Clone, Debug)]
struct Msg(Vec<(u32, String)>);

impl Msg {
    fn parse(raw: &str) -> Msg {
        Msg(raw
            .split('\x01')
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (tag, value) = f.split_once('=').expect("tag=value");
                (tag.parse().expect("numeric tag"), value.to_string())
            })
            .collect())
    }

    fn get(&self, tag: u32) -> Option<&str> {
        self.0
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }

    fn f(&self, tag: u32) -> &str {
        self.get(tag)
            .unwrap_or_else(|| panic!("tag {tag} missing from {self:?}"))
    }

    fn msg_type(&self) -> &str {
        self.f(35)
    }

    /// Asserts each `(tag, value)`.
    fn check(&self, want: &[(u32, &str)]) -> &Msg {
        for (tag, value) in want {
            assert_eq!(self.get(*tag), Some(*value), "tag {tag} in {self:?}");
        }
        self
    }
}

enum Wire {
    In(String, Msg),
    Out(String, Msg),
}

/// QuickFIX's log: every frame in and out, per session.
struct Tap(Sender<Wire>);

fn member_of(session: Option<&SessionId>) -> String {
    session
        .and_then(|s| s.get_sender_comp_id())
        .unwrap_or_default()
}

impl LogCallback for Tap {
    fn on_incoming(&self, session: Option<&SessionId>, msg: &str) {
        let _ = self.0.send(Wire::In(member_of(session), Msg::parse(msg)));
    }

    fn on_outgoing(&self, session: Option<&SessionId>, msg: &str) {
        let _ = self.0.send(Wire::Out(member_of(session), Msg::parse(msg)));
    }
}

/// The members' side: credentials on the Logon (bob asks for cancel-on-disconnect).
struct Members;

impl ApplicationCallback for Members {
    fn on_msg_to_admin(&self, msg: &mut Message, session: &SessionId) {
        if msg.with_header(|h| h.get_field(35)).as_deref() == Some("A") {
            let member = member_of(Some(session));
            msg.set_field(553, member.as_str()).unwrap();
            msg.set_field(554, token(&member)).unwrap();
            if member == BOB {
                msg.set_field(8013, "Y").unwrap();
            }
        }
    }
}

/// Admin messages that are not worth a test's attention.
fn is_session_chatter(msg_type: &str) -> bool {
    matches!(msg_type, "0" | "1" | "2" | "4" | "A" | "5")
}

/// What the test sees: per member, the acceptor's messages in order.
struct Wires {
    rx: Receiver<Wire>,
    app: HashMap<String, VecDeque<Msg>>,
    admin: HashMap<String, Vec<Msg>>,
    sent: HashMap<String, Vec<Msg>>,
    /// The highest MsgSeqNum the acceptor sent each member.
    max_in: HashMap<String, u64>,
}

impl Wires {
    fn new(rx: Receiver<Wire>) -> Wires {
        Wires {
            rx,
            app: HashMap::new(),
            admin: HashMap::new(),
            sent: HashMap::new(),
            max_in: HashMap::new(),
        }
    }

    /// Routes one frame; false when nothing came within `wait`.
    fn pump(&mut self, wait: Duration) -> bool {
        match self.rx.recv_timeout(wait) {
            Ok(Wire::In(member, msg)) => {
                let seq = msg.f(34).parse().expect("MsgSeqNum");
                let max = self.max_in.entry(member.clone()).or_default();
                *max = (*max).max(seq);
                if is_session_chatter(msg.msg_type()) {
                    self.admin.entry(member).or_default().push(msg);
                } else {
                    self.app.entry(member).or_default().push_back(msg);
                }
                true
            }
            Ok(Wire::Out(member, msg)) => {
                // QuickFIX refusing one of the acceptor's messages is a failure.
                if msg.msg_type() == "3" || msg.msg_type() == "j" {
                    panic!("QuickFIX rejected a message from the acceptor: {msg:?}");
                }
                self.sent.entry(member).or_default().push(msg);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => panic!("QuickFIX's log went away"),
        }
    }

    /// The acceptor's next application message (or session Reject) to `member`.
    fn next(&mut self, member: &str) -> Msg {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(msg) = self.app.get_mut(member).and_then(VecDeque::pop_front) {
                return msg;
            }
            assert!(
                Instant::now() < until,
                "nothing for {member} within {WAIT:?}"
            );
            self.pump(Duration::from_millis(50));
        }
    }

    /// Waits until an admin message of `msg_type` from the acceptor to `member` has arrived,
    /// and returns the last one.
    fn admin(&mut self, member: &str, msg_type: &str) -> Msg {
        // A Logon can take longer than a report on a loaded machine: QuickFIX reconnects once a
        // second, and a site on Kafka may still be starting.
        let until = Instant::now() + LOGON_WAIT;
        loop {
            if let Some(msg) = self
                .admin
                .get(member)
                .and_then(|list| list.iter().rev().find(|m| m.msg_type() == msg_type))
            {
                return msg.clone();
            }
            assert!(
                Instant::now() < until,
                "no 35={msg_type} for {member} within {LOGON_WAIT:?}"
            );
            self.pump(Duration::from_millis(50));
        }
    }

    /// Takes everything pending, then checks nothing more came for `member`.
    fn quiet(&mut self, member: &str) {
        while self.pump(Duration::from_millis(300)) {}
        let left = self.app.get(member).map_or(0, VecDeque::len);
        assert_eq!(
            left, 0,
            "unexpected messages for {member}: {:?}",
            self.app[member]
        );
    }
}

fn send(member: &str, msg_type: &str, fields: &[(i32, &str)]) {
    let mut msg = Message::new();
    msg.with_header_mut(|h| h.set_field(35, msg_type).unwrap());
    for (tag, value) in fields {
        msg.set_field(*tag, *value).unwrap();
    }
    let session = SessionId::try_new("FIX.4.4", member, VENUE, "").unwrap();
    send_to_target(msg, &session).unwrap();
}

const NOW: &str = "20260101-00:00:00.000";

fn limit(member: &str, id: &str, side: &str, qty: &str, price: &str, extra: &[(i32, &str)]) {
    let mut fields = vec![
        (11, id),
        (55, "BTC-USD"),
        (54, side),
        (60, NOW),
        (38, qty),
        (40, "2"),
        (44, price),
    ];
    fields.extend_from_slice(extra);
    send(member, "D", &fields);
}

fn settings(dir: &Path, port: u16, reset_on_logon: bool) -> SessionSettings {
    let dictionary = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fix/FIX44.xml");
    let mut text = format!(
        "[DEFAULT]\nConnectionType=initiator\nReconnectInterval=1\nFileStorePath={}\n\
         StartTime=00:00:00\nEndTime=00:00:00\nHeartBtInt=1\nUseDataDictionary=Y\n\
         DataDictionary={}\nSocketConnectHost=127.0.0.1\nSocketConnectPort={port}\n\
         ResetOnLogon={}\n",
        dir.join("quickfix-store").display(),
        dictionary.display(),
        if reset_on_logon { "Y" } else { "N" },
    );
    for member in [ALICE, BOB] {
        text.push_str(&format!(
            "\n[SESSION]\nBeginString=FIX.4.4\nSenderCompID={member}\nTargetCompID={VENUE}\n"
        ));
    }
    let path = dir.join(format!("quickfix-{port}.cfg"));
    std::fs::write(&path, text).unwrap();
    SessionSettings::try_from_path(&path).unwrap()
}

/// Starts a QuickFIX initiator for both members, runs `body`, then logs both out. Returns
/// the highest MsgSeqNum the acceptor sent each member.
fn with_initiator(dir: &Path, port: u16, body: impl FnOnce(&mut Wires)) -> HashMap<String, u64> {
    with_initiator_reset(dir, port, false, body)
}

/// [`with_initiator`], the Logons asking for a sequence reset (141=Y) when `reset`.
fn with_initiator_reset(
    dir: &Path,
    port: u16,
    reset: bool,
    body: impl FnOnce(&mut Wires),
) -> HashMap<String, u64> {
    let settings = settings(dir, port, reset);
    let store = FileMessageStoreFactory::try_new(&settings).unwrap();
    let (tx, rx) = channel();
    let tap = Tap(tx);
    let log = LogFactory::try_new(&tap).unwrap();
    let members = Members;
    let app = quickfix::Application::try_new(&members).unwrap();
    let mut initiator = Initiator::try_new(
        &settings,
        &app,
        &store,
        &log,
        FixSocketServerKind::SingleThreaded,
    )
    .unwrap();
    initiator.start().unwrap();
    let mut wires = Wires::new(rx);
    wires.admin(ALICE, "A");
    wires.admin(BOB, "A");
    body(&mut wires);
    initiator.stop().unwrap();
    // Both Logouts were acknowledged by the acceptor.
    wires.admin(ALICE, "5");
    wires.admin(BOB, "5");
    wires.max_in
}

/// The first session: everything a member does in a day.
fn lifecycle(w: &mut Wires) {
    // A resting order, then a crossing one: partial fill, then fill.
    limit(ALICE, "a1", "2", "10", "100", &[]);
    w.next(ALICE).check(&[
        (35, "8"),
        (150, "0"),
        (39, "0"),
        (11, "a1"),
        (37, "0-0"),
        (1, "1"),
        (38, "10"),
        (44, "100"),
        (151, "10"),
        (14, "0"),
        (6, "0"),
    ]);
    limit(BOB, "b1", "1", "4", "101", &[]);
    w.next(BOB).check(&[(150, "0"), (11, "b1"), (151, "4")]);
    w.next(BOB).check(&[
        (150, "F"),
        (39, "2"),
        (31, "100"),
        (32, "4"),
        (14, "4"),
        (151, "0"),
        (6, "100"),
    ]);
    let fill = w.next(ALICE);
    fill.check(&[
        (150, "F"),
        (39, "1"),
        (11, "a1"),
        (31, "100"),
        (32, "4"),
        (14, "4"),
        (151, "6"),
        (6, "100"),
    ]);
    limit(BOB, "b2", "1", "6", "100", &[]);
    w.next(BOB).check(&[(150, "0"), (11, "b2")]);
    w.next(BOB).check(&[(150, "F"), (39, "2"), (14, "6")]);
    let last = w.next(ALICE);
    last.check(&[(150, "F"), (39, "2"), (14, "10"), (151, "0"), (6, "100")]);
    assert_ne!(fill.f(17), last.f(17), "ExecIDs are unique");

    // Fills at two prices: AvgPx.
    limit(ALICE, "a2", "2", "2", "100", &[]);
    w.next(ALICE).check(&[(150, "0"), (11, "a2")]);
    limit(ALICE, "a3", "2", "2", "102", &[]);
    w.next(ALICE).check(&[(150, "0"), (11, "a3")]);
    limit(BOB, "b3", "1", "4", "102", &[]);
    w.next(BOB).check(&[(150, "0"), (11, "b3")]);
    w.next(BOB).check(&[
        (150, "F"),
        (39, "1"),
        (31, "100"),
        (14, "2"),
        (151, "2"),
        (6, "100"),
    ]);
    w.next(BOB).check(&[
        (150, "F"),
        (39, "2"),
        (31, "102"),
        (14, "4"),
        (151, "0"),
        (6, "101"),
    ]);
    w.next(ALICE).check(&[(150, "F"), (11, "a2"), (39, "2")]);
    w.next(ALICE).check(&[(150, "F"), (11, "a3"), (39, "2")]);

    // IOC: what does not trade is cancelled.
    limit(BOB, "b5", "1", "1", "50", &[(59, "3")]);
    w.next(BOB).check(&[(150, "0"), (11, "b5")]);
    w.next(BOB)
        .check(&[(150, "4"), (39, "4"), (11, "b5"), (58, "ioc"), (151, "0")]);

    // Cancel/replace, as FIX chains them: a replace's ClOrdID (11) becomes the order's name,
    // 41 names the one it replaces, and OrderID (37) stays the order's through the chain.
    limit(ALICE, "a4", "2", "5", "110", &[]);
    let order_id = w
        .next(ALICE)
        .check(&[(150, "0"), (11, "a4")])
        .f(37)
        .to_string();
    let replace = |id: &str, orig: &str, qty: &str| {
        send(
            ALICE,
            "G",
            &[
                (11, id),
                (41, orig),
                (55, "BTC-USD"),
                (54, "2"),
                (60, NOW),
                (38, qty),
                (40, "2"),
                (44, "111"),
            ],
        )
    };
    replace("a4r1", "a4", "8");
    w.next(ALICE).check(&[
        (150, "5"),
        (39, "0"),
        (11, "a4r1"),
        (41, "a4"),
        (37, &order_id),
        (38, "8"),
        (44, "111"),
        (151, "8"),
    ]);
    limit(BOB, "b4", "1", "3", "111", &[]);
    w.next(BOB).check(&[(150, "0"), (11, "b4")]);
    w.next(BOB).check(&[(150, "F"), (39, "2"), (31, "111")]);
    w.next(ALICE).check(&[
        (150, "F"),
        (11, "a4r1"),
        (37, &order_id),
        (39, "1"),
        (38, "8"),
        (14, "3"),
        (151, "5"),
    ]);
    // OrderQty 6 is the total: 3 filled, so 3 stay open.
    replace("a4r2", "a4r1", "6");
    w.next(ALICE).check(&[
        (150, "5"),
        (39, "1"),
        (11, "a4r2"),
        (41, "a4r1"),
        (37, &order_id),
        (38, "6"),
        (14, "3"),
        (151, "3"),
    ]);
    // The first replace again (a resend): a4 is no longer live, so nothing is applied twice;
    // the reject carries the order's current state.
    replace("a4r1", "a4", "8");
    w.next(ALICE).check(&[
        (35, "9"),
        (11, "a4r1"),
        (41, "a4"),
        (37, &order_id),
        (39, "1"),
        (434, "2"),
    ]);
    // Any id of the chain answers a status request with the order as it is now.
    send(ALICE, "H", &[(11, "a4"), (55, "BTC-USD"), (54, "2")]);
    w.next(ALICE).check(&[
        (150, "I"),
        (11, "a4r2"),
        (37, &order_id),
        (38, "6"),
        (14, "3"),
        (151, "3"),
    ]);
    let cancel = |id: &str, orig: &str| {
        send(
            ALICE,
            "F",
            &[
                (11, id),
                (41, orig),
                (55, "BTC-USD"),
                (54, "2"),
                (60, NOW),
                (38, "6"),
            ],
        )
    };
    cancel("a4c", "a4r2");
    w.next(ALICE).check(&[
        (150, "4"),
        (39, "4"),
        (11, "a4c"),
        (41, "a4r2"),
        (14, "3"),
        (151, "0"),
    ]);
    // Too late: the order is done.
    cancel("a4c2", "a4r2");
    w.next(ALICE).check(&[
        (35, "9"),
        (11, "a4c2"),
        (41, "a4r2"),
        (39, "4"),
        (434, "1"),
        (102, "1"),
        (58, "unknown_order"),
    ]);
    send(
        ALICE,
        "G",
        &[
            (11, "zr"),
            (41, "never"),
            (55, "BTC-USD"),
            (54, "2"),
            (60, NOW),
            (38, "1"),
            (40, "2"),
            (44, "1"),
        ],
    );
    w.next(ALICE).check(&[
        (35, "9"),
        (11, "zr"),
        (41, "never"),
        (39, "8"),
        (434, "2"),
        (102, "1"),
    ]);

    // Mass cancel: every order of the account, then a report.
    limit(ALICE, "a5", "2", "1", "120", &[]);
    w.next(ALICE).check(&[(150, "0"), (11, "a5")]);
    limit(ALICE, "a6", "2", "1", "121", &[]);
    w.next(ALICE).check(&[(150, "0"), (11, "a6")]);
    send(ALICE, "q", &[(11, "m1"), (530, "7"), (60, NOW)]);
    w.next(ALICE).check(&[(150, "4"), (11, "a5"), (58, "mass")]);
    w.next(ALICE).check(&[(150, "4"), (11, "a6"), (58, "mass")]);
    w.next(ALICE)
        .check(&[(35, "r"), (11, "m1"), (530, "7"), (531, "7"), (533, "2")]);
    send(
        ALICE,
        "q",
        &[(11, "m2"), (530, "1"), (55, "BTC-USD"), (60, NOW)],
    );
    w.next(ALICE)
        .check(&[(35, "r"), (11, "m2"), (530, "1"), (531, "1"), (533, "0")]);

    // Order status: known (from the hub's last state) and unknown.
    send(ALICE, "H", &[(11, "a1"), (55, "BTC-USD"), (54, "2")]);
    w.next(ALICE).check(&[
        (150, "I"),
        (17, "0"),
        (11, "a1"),
        (39, "2"),
        (14, "10"),
        (151, "0"),
        (6, "100"),
    ]);
    send(ALICE, "H", &[(11, "nope"), (55, "BTC-USD"), (54, "1")]);
    w.next(ALICE)
        .check(&[(150, "I"), (39, "8"), (11, "nope"), (58, "unknown order")]);

    // A resent ClOrdID gets the order's state, never a second order.
    limit(ALICE, "a7", "2", "1", "130", &[]);
    w.next(ALICE).check(&[(150, "0"), (11, "a7")]);
    limit(ALICE, "a7", "2", "1", "130", &[(97, "Y")]);
    w.next(ALICE)
        .check(&[(150, "I"), (39, "0"), (11, "a7"), (151, "1")]);
    limit(ALICE, "a1", "2", "10", "100", &[]);
    w.next(ALICE)
        .check(&[(150, "I"), (39, "2"), (11, "a1"), (14, "10")]);

    // Post-only that would cross is rejected; STP none lets the account trade with itself.
    limit(ALICE, "a8", "1", "1", "130", &[(18, "6")]);
    w.next(ALICE).check(&[
        (150, "8"),
        (39, "8"),
        (11, "a8"),
        (58, "post_only"),
        (103, "99"),
    ]);
    limit(ALICE, "a9", "1", "1", "130", &[(7928, "N")]);
    w.next(ALICE).check(&[(150, "0"), (11, "a9")]);
    let maker = w.next(ALICE);
    maker.check(&[(150, "F"), (11, "a7"), (39, "2")]);
    let taker = w.next(ALICE);
    taker.check(&[(150, "F"), (11, "a9"), (39, "2")]);
    assert_ne!(maker.f(17), taker.f(17));

    // Malformed messages get a session Reject naming the tag; the session stays up.
    send(
        ALICE,
        "D",
        &[
            (11, "bad1"),
            (55, "BTC-USD"),
            (54, "1"),
            (60, NOW),
            (40, "2"),
            (44, "1"),
        ],
    );
    w.next(ALICE)
        .check(&[(35, "3"), (371, "38"), (373, "1"), (372, "D")]);
    limit(ALICE, "bad2", "1", "1", "1.5.5", &[]);
    w.next(ALICE).check(&[(35, "3"), (371, "44"), (373, "6")]);
    limit(ALICE, "bad3", "1", "1", "1", &[(1, "2")]);
    w.next(ALICE).check(&[(35, "3"), (371, "1"), (373, "5")]);
    send(ALICE, "V", &[(262, "md1"), (263, "0"), (264, "1")]);
    w.next(ALICE).check(&[(35, "j"), (372, "V"), (380, "3")]);
    send(ALICE, "H", &[(11, "a9"), (55, "BTC-USD"), (54, "1")]);
    w.next(ALICE).check(&[(150, "I"), (11, "a9"), (39, "2")]);

    // Bob leaves an order resting; he asked for cancel-on-disconnect.
    limit(BOB, "b9", "1", "1", "50", &[]);
    w.next(BOB).check(&[(150, "0"), (11, "b9")]);

    // Heartbeats flow (HeartBtInt=1).
    w.admin(ALICE, "0");
    w.quiet(ALICE);
    w.quiet(BOB);
}

/// QuickFIX keeps its sessions in process-wide state (`send_to_target` finds a session by id):
/// two initiators at once in one process crash it, so the tests here take turns.
static QUICKFIX: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_initiator_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    QUICKFIX.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn quickfix_initiator_full_lifecycle() {
    let _turn = one_initiator_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(site_config(&dir.path().join("site"))).unwrap();
    let store_dir = dir.path().join("fix-sessions");

    let gateway = Gateway::start(site.hub().clone(), &store_dir);
    let last_seq = with_initiator(dir.path(), gateway.port, lifecycle);
    // A restarted gateway resumes from its session store.
    gateway.stop();
    let gateway = Gateway::start(site.hub().clone(), &store_dir);
    with_initiator(dir.path(), gateway.port, |w| {
        for member in [ALICE, BOB] {
            let ack = w.admin(member, "A");
            assert_eq!(ack.get(141), None, "no sequence reset");
            let seq: u64 = ack.f(34).parse().unwrap();
            assert_eq!(seq, last_seq[member] + 1, "{member}: the numbers resume");
        }
        // Bob's order was cancelled when he disconnected.
        send(BOB, "H", &[(11, "b9"), (55, "BTC-USD"), (54, "1")]);
        w.next(BOB)
            .check(&[(150, "I"), (11, "b9"), (39, "4"), (151, "0")]);
        send(ALICE, "H", &[(11, "a1"), (55, "BTC-USD"), (54, "2")]);
        w.next(ALICE).check(&[(150, "I"), (39, "2")]);
    });
    gateway.stop();
    site.shutdown().unwrap();
}

/// `send`, marked as a possible duplicate (43=Y, with 122 OrigSendingTime as FIX requires) as
/// a member's application would; QuickFIX's `Session::send` removes both before it sends
/// (`Session.cpp` in quickfix-ffi 0.2.2), so the gateway sees a plain resend by ClOrdID.
fn send_poss_dup(member: &str, msg_type: &str, fields: &[(i32, &str)]) {
    let mut msg = Message::new();
    msg.with_header_mut(|h| {
        h.set_field(35, msg_type).unwrap();
        h.set_field(43, "Y").unwrap();
        h.set_field(122, NOW).unwrap();
    });
    for (tag, value) in fields {
        msg.set_field(*tag, *value).unwrap();
    }
    let session = SessionId::try_new("FIX.4.4", member, VENUE, "").unwrap();
    send_to_target(msg, &session).unwrap();
}

/// A site of two on one Kafka log (tansu), on its own port, with its own FIX session store.
fn kafka_site(dir: &Path, name: &str, bootstrap: &str) -> Node {
    let mut config = site_config(&dir.join(name));
    config.site = name.into();
    config.log = replicator::log::LogConfig::Kafka {
        bootstrap_servers: bootstrap.into(),
        topic: "fix-failover.commands".into(),
        partition: Some(0),
        delivery_timeout_ms: 30_000,
        request_timeout_ms: replicator::kafka::DEFAULT_REQUEST_TIMEOUT_MS,
        allow_unsafe_topic: true,
        security: Default::default(),
    };
    Node::start(config).unwrap()
}

/// A member's FIX client fails over: it enters orders at one site, loses it (the second order's
/// answer never arrives), logs on at another site of the same log with ResetSeqNumFlag, and
/// resends both orders and a replace with PossDupFlag. Nothing executes twice: the resent
/// orders are answered with their current state (ExecType I, the same OrderID), the resent
/// replace with its current state, and a mass status lists each order once.
#[test]
fn a_quickfix_client_fails_over_to_another_site_and_resends_without_double_execution() {
    let _turn = one_initiator_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let broker = drill::tansu::Tansu::start(&dir.path().join("kafka"))
        .expect("tansu 0.6.0 must be installed (run scripts/setup); this test needs a broker");
    let kafka = replicator::kafka::KafkaConfig {
        allow_unsafe_topic: true,
        ..replicator::kafka::KafkaConfig::new(&broker.bootstrap(), "fix-failover.commands", 0)
    };
    replicator::topic::create_topic(&kafka, 1, 1, Duration::from_secs(20)).unwrap();
    let (a, b) = (
        kafka_site(dir.path(), "cloud-a", &broker.bootstrap()),
        kafka_site(dir.path(), "cloud-b", &broker.bootstrap()),
    );
    // Trade once both sites are ready: one still catching up with the other's start (its
    // listing and clocks, on a loaded machine) refuses new orders with `catching_up`.
    let ready_by = Instant::now() + Duration::from_secs(60);
    while [&a, &b]
        .iter()
        .any(|site| site.hub().log_ready(None).is_err())
    {
        assert!(
            Instant::now() < ready_by,
            "the sites were not ready within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gateway_a = Gateway::start(a.hub().clone(), &dir.path().join("fix-a"));
    let gateway_b = Gateway::start(b.hub().clone(), &dir.path().join("fix-b"));
    let mut order_id = String::new();
    with_initiator(dir.path(), gateway_a.port, |w| {
        limit(ALICE, "f1", "1", "5", "100", &[]);
        order_id = w
            .next(ALICE)
            .check(&[(150, "0"), (11, "f1")])
            .f(37)
            .to_string();
        send(
            ALICE,
            "G",
            &[
                (11, "f1r"),
                (41, "f1"),
                (55, "BTC-USD"),
                (54, "1"),
                (60, NOW),
                (38, "4"),
                (40, "2"),
                (44, "100"),
            ],
        );
        w.next(ALICE).check(&[(150, "5"), (11, "f1r"), (41, "f1")]);
        // The last order's answer is lost with the site.
        limit(ALICE, "f2", "1", "1", "99", &[]);
    });
    gateway_a.stop();
    with_initiator_reset(dir.path(), gateway_b.port, true, |w| {
        let ack = w.admin(ALICE, "A");
        assert_eq!(
            (ack.get(141), ack.get(34)),
            (Some("Y"), Some("1")),
            "{ack:?}"
        );
        // Both orders again, as possible duplicates: their state, never a second order.
        send_poss_dup(
            ALICE,
            "D",
            &[
                (11, "f1"),
                (55, "BTC-USD"),
                (54, "1"),
                (60, NOW),
                (38, "5"),
                (40, "2"),
                (44, "100"),
            ],
        );
        w.next(ALICE).check(&[
            (150, "I"),
            (11, "f1r"),
            (37, &order_id),
            (38, "4"),
            (39, "0"),
        ]);
        send_poss_dup(
            ALICE,
            "D",
            &[
                (11, "f2"),
                (55, "BTC-USD"),
                (54, "1"),
                (60, NOW),
                (38, "1"),
                (40, "2"),
                (44, "99"),
            ],
        );
        let f2 = w.next(ALICE);
        assert_eq!((f2.f(11), f2.f(39)), ("f2", "0"), "{f2:?}");
        assert!(matches!(f2.f(150), "I" | "0"), "{f2:?}");
        // The replace again: f1 is no longer live under that id; nothing is applied twice.
        send_poss_dup(
            ALICE,
            "G",
            &[
                (11, "f1r"),
                (41, "f1"),
                (55, "BTC-USD"),
                (54, "1"),
                (60, NOW),
                (38, "4"),
                (40, "2"),
                (44, "100"),
            ],
        );
        w.next(ALICE).check(&[
            (35, "9"),
            (11, "f1r"),
            (41, "f1"),
            (37, &order_id),
            (39, "0"),
        ]);
        send(ALICE, "AF", &[(584, "ms1"), (585, "7")]);
        let first = w.next(ALICE);
        let second = w.next(ALICE);
        let listed: Vec<(&str, &str)> = [&first, &second]
            .iter()
            .map(|m| (m.f(11), m.f(911)))
            .collect();
        assert_eq!(listed, [("f1r", "2"), ("f2", "2")]);
        assert_eq!(second.get(912), Some("Y"));
    });
    gateway_b.stop();
    for site in [a, b] {
        site.shutdown().unwrap();
    }
}
