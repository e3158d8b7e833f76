//! The market data server over real sockets: orders go through a hub → engine runner → pump,
//! so the feed is real; clients are tokio-tungstenite WebSockets and raw HTTP/1.1 requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use engine::runner::{drain, Runner, RunnerConfig, WaitStrategy, Waiter};
use engine::{
    AccountId, AddSymbol, CancelOrder, Command, CommandKind, Engine, EngineConfig, NewOrder,
    OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif,
};
use futures_util::{SinkExt, StreamExt};
use gateway::md::{self, close_code, MdConfig};
use gateway::{Hub, Members, Sequencer, SubmitError, PUMP_WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

// ----- the exchange under test -------------------------------------------------------------------

/// A sequencer that hands commands to the feeder thread; closing it stops the pipeline. Its
/// readiness is set by the test (as a site cut off from its log, or catching up with it).
struct ChannelSequencer(
    Mutex<Option<mpsc::Sender<Command>>>,
    Mutex<Result<(), SubmitError>>,
);

impl Sequencer for ChannelSequencer {
    fn submit(&self, command: Command) -> Result<(), SubmitError> {
        let sender = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match sender.as_ref().map(|tx| tx.send(command).is_ok()) {
            Some(true) => Ok(()),
            _ => Err(SubmitError::Unavailable),
        }
    }

    fn ready(&self) -> Result<(), SubmitError> {
        *self.1.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const WAIT: WaitStrategy = WaitStrategy::Park {
    spins: 100,
    yields: 10,
    park_us: 200,
};

/// Hub, engine runner, pump and market data server on an ephemeral port.
struct Exchange {
    hub: Arc<Hub>,
    sequencer: Arc<ChannelSequencer>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    submitted: u64,
}

impl Exchange {
    async fn start(config: MdConfig) -> Exchange {
        let (tx, rx) = mpsc::channel::<Command>();
        let sequencer = Arc::new(ChannelSequencer(Mutex::new(Some(tx)), Mutex::new(Ok(()))));
        let hub = Hub::new(
            sequencer.clone(),
            Members::new(Vec::new()).expect("an empty member table"),
            1 << 12,
        );
        let engine_config = EngineConfig {
            symbols_max: 4,
            orders_max: 1 << 16,
            retired_ids_max: 1 << 16,
            levels_max: 1 << 12,
            levels_per_side_max: 1 << 11,
            ..EngineConfig::default()
        };
        let engine = Engine::new(engine_config).expect("valid config");
        hub.seed(0, &engine, 0);
        let runner = RunnerConfig {
            wait: WAIT,
            ..RunnerConfig::default()
        };
        let (mut input, output, _runner) =
            Runner::spawn::<1024, 4096>(engine, runner, 0, ()).expect("matcher thread");
        let pump_hub = hub.clone();
        std::thread::spawn(move || {
            drain(output, 4096, PUMP_WAIT, |batch| pump_hub.apply(0, batch));
        });
        std::thread::spawn(move || {
            let mut waiter = Waiter::new(WAIT);
            for command in rx {
                let mut command = command;
                while let Err(back) = input.try_push(command) {
                    command = back;
                    waiter.wait();
                }
                waiter.reset();
            }
            // Dropping the producer stops the matcher, which stops the pump.
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(md::serve(listener, hub.clone(), config, async {
            let _ = stopped.await;
        }));
        let mut exchange = Exchange {
            hub,
            sequencer,
            addr,
            stop: Some(stop),
            server,
            submitted: 0,
        };
        for (name, tick, lot) in [("BTC-USD", "0.5", "0.01"), ("ETH-USD", "0.01", "0.1")] {
            exchange.submit(CommandKind::AddSymbol(AddSymbol {
                symbol: sym(name),
                tick: Price::parse(tick).expect("a price"),
                lot: Qty::parse(lot).expect("a quantity"),
            }));
        }
        exchange.settle().await;
        exchange
    }

    fn submit(&mut self, kind: CommandKind) {
        self.hub.submit(kind).expect("submitted");
        self.submitted += 1;
    }

    /// Waits until the engine applied, and the pump published, everything submitted.
    async fn settle(&self) {
        let applied = || {
            self.hub
                .counters()
                .applied
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while applied() < self.submitted {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the pipeline stalled"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn limit(&mut self, account: u64, id: &str, symbol: &str, side: Side, price: &str, qty: &str) {
        self.order(account, id, symbol, side, price, qty, Tif::Gtc);
    }

    #[allow(clippy::too_many_arguments)]
    fn order(
        &mut self,
        account: u64,
        id: &str,
        symbol: &str,
        side: Side,
        price: &str,
        qty: &str,
        tif: Tif,
    ) {
        self.submit(CommandKind::New(NewOrder {
            account: AccountId(account),
            order_id: OrderId::new(id).expect("an order id"),
            symbol: sym(symbol),
            side,
            ord_type: OrdType::Limit,
            price: Some(Price::parse(price).expect("a price")),
            qty: Qty::parse(qty).expect("a quantity"),
            tif,
            post_only: false,
            stp: Stp::None,
            session: 0,
        }));
    }

    fn cancel(&mut self, account: u64, id: &str, symbol: &str) {
        self.submit(CommandKind::Cancel(CancelOrder {
            account: AccountId(account),
            symbol: sym(symbol),
            order_id: OrderId::new(id).expect("an order id"),
        }));
    }

    async fn ws(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", self.addr))
            .await
            .expect("WebSocket connect");
        Client { ws }
    }

    /// A GET of `path`: the status and the JSON body.
    async fn get(&self, path: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("response");
        let response = String::from_utf8(response).expect("UTF-8");
        let (head, body) = response.split_once("\r\n\r\n").expect("a response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        (status, serde_json::from_str(body).expect("a JSON body"))
    }

    /// Stops the server. Drop clients first: it waits (up to five seconds) for every open
    /// WebSocket's reply to its close frame.
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = tokio::time::timeout(Duration::from_secs(10), &mut self.server)
            .await
            .expect("the server stops");
        served.expect("no panic").expect("served");
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // Closing the sequencer stops the feeder, the matcher and the pump.
        self.sequencer
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

fn sym(name: &str) -> Symbol {
    Symbol::new(name).expect("a symbol")
}

// ----- the client side -----------------------------------------------------------------------------

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

const PATIENCE: Duration = Duration::from_secs(30);

impl Client {
    async fn send(&mut self, request: Value) {
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .expect("send");
    }

    /// The next frame, whatever it is.
    async fn frame(&mut self) -> Message {
        tokio::time::timeout(PATIENCE, self.ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a frame")
    }

    /// The next JSON message (pings and pongs skipped).
    async fn recv(&mut self) -> Value {
        loop {
            match self.frame().await {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The close frame's code and reason (text messages before it are skipped).
    async fn closed(&mut self) -> (u16, String) {
        loop {
            match self.frame().await {
                Message::Close(Some(frame)) => {
                    return (u16::from(frame.code), frame.reason.to_string())
                }
                Message::Close(None) => panic!("a close frame without a code"),
                _ => continue,
            }
        }
    }

    /// Sends a ping op and returns everything received before its pong.
    async fn round_trip(&mut self) -> Vec<Value> {
        self.send(json!({"op": "ping", "id": 424242})).await;
        let mut before = Vec::new();
        loop {
            let message = self.recv().await;
            if message["type"] == "pong" && message["id"] == 424242 {
                return before;
            }
            before.push(message);
        }
    }
}

/// A client's copy of one book, from a snapshot and the updates that follow.
#[derive(Debug, Default, PartialEq)]
struct ClientBook {
    seq: u64,
    bids: BTreeMap<Price, Qty>,
    asks: BTreeMap<Price, Qty>,
}

fn levels(value: &Value) -> Vec<(Price, Qty)> {
    value
        .as_array()
        .expect("a list of levels")
        .iter()
        .map(|level| {
            let price = Price::parse(level["price"].as_str().expect("a price")).expect("decimal");
            let qty = Qty::parse(level["qty"].as_str().expect("a qty")).expect("decimal");
            (price, qty)
        })
        .collect()
}

impl ClientBook {
    fn from_snapshot(snapshot: &Value) -> ClientBook {
        assert!(
            snapshot["type"] == "snapshot" || snapshot.get("type").is_none(),
            "{snapshot}"
        );
        ClientBook {
            seq: snapshot["seq"].as_u64().expect("seq"),
            bids: levels(&snapshot["bids"]).into_iter().collect(),
            asks: levels(&snapshot["asks"]).into_iter().collect(),
        }
    }

    /// Applies one `book` update; its seq must be the next one.
    fn apply(&mut self, update: &Value) {
        assert_eq!(update["type"], "book", "{update}");
        let seq = update["seq"].as_u64().expect("seq");
        assert_eq!(seq, self.seq + 1, "contiguous seq: {update}");
        self.seq = seq;
        for (side, book) in [("bids", &mut self.bids), ("asks", &mut self.asks)] {
            for (price, qty) in levels(&update[side]) {
                if qty.0 == 0 {
                    assert!(book.remove(&price).is_some(), "removed a level it had");
                } else {
                    book.insert(price, qty);
                }
            }
        }
    }

    /// Follows `client` until it holds `seq`; other symbols' and channels' messages are
    /// returned.
    async fn follow_to(&mut self, client: &mut Client, symbol: &str, seq: u64) -> Vec<Value> {
        let mut others = Vec::new();
        while self.seq < seq {
            let message = client.recv().await;
            if message["type"] == "book" && message["symbol"] == symbol {
                self.apply(&message);
            } else if message["type"] == "snapshot" && message["symbol"] == symbol {
                assert_eq!(message["resync"], true, "{message}");
                *self = ClientBook::from_snapshot(&message);
            } else {
                others.push(message);
            }
        }
        assert_eq!(self.seq, seq);
        others
    }
}

async fn http_book(exchange: &Exchange, symbol: &str, depth: usize) -> ClientBook {
    let (status, body) = exchange
        .get(&format!("/v1/book/{symbol}?depth={depth}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["symbol"], symbol);
    ClientBook::from_snapshot(&body)
}

fn quick() -> MdConfig {
    MdConfig {
        write_timeout_ms: 60_000,
        ..MdConfig::default()
    }
}

// ----- tests ------------------------------------------------------------------------------------------

/// A book subscription: a snapshot, then updates numbered from its seq + 1 that keep a
/// depth-limited copy equal to the HTTP snapshot of the same depth, as levels come and go at
/// the edge of the window, orders trade, and other symbols move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_subscription_is_a_snapshot_then_contiguous_updates() {
    let mut exchange = Exchange::start(quick()).await;
    for n in 0..8 {
        let bid = format!("{}", 100 - n);
        let ask = format!("{}", 101 + n);
        exchange.limit(1, &format!("b{n}"), "BTC-USD", Side::Buy, &bid, "1");
        exchange.limit(2, &format!("a{n}"), "BTC-USD", Side::Sell, &ask, "2");
    }
    exchange.settle().await;

    let mut top = exchange.ws().await;
    top.send(
        json!({"op": "subscribe", "channel": "book", "symbol": "BTC-USD", "depth": 3, "id": 1}),
    )
    .await;
    let snapshot = top.recv().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["symbol"], "BTC-USD");
    assert_eq!(snapshot["depth"], 3);
    assert_eq!(snapshot["resync"], false);
    assert_eq!(snapshot["id"], 1);
    assert_eq!(
        snapshot["bids"],
        json!([{"price": "100", "qty": "1"}, {"price": "99", "qty": "1"}, {"price": "98", "qty": "1"}])
    );
    assert_eq!(snapshot["asks"][0], json!({"price": "101", "qty": "2"}));
    let mut book = ClientBook::from_snapshot(&snapshot);
    assert_eq!(book, http_book(&exchange, "BTC-USD", 3).await);

    let mut full = exchange.ws().await;
    full.send(json!({"op": "subscribe", "channel": "book", "symbol": "BTC-USD", "depth": 1000}))
        .await;
    let mut whole = ClientBook::from_snapshot(&full.recv().await);

    // Levels leave the window (cancels, trades that sweep), enter it from below, and change
    // beyond it; another symbol moves too.
    exchange.cancel(1, "b0", "BTC-USD");
    exchange.limit(1, "b8", "BTC-USD", Side::Buy, "99.5", "3");
    exchange.limit(1, "b9", "BTC-USD", Side::Buy, "90", "1");
    exchange.limit(3, "x0", "BTC-USD", Side::Buy, "102", "5");
    exchange.limit(3, "x1", "ETH-USD", Side::Buy, "10", "1");
    exchange.order(3, "x2", "BTC-USD", Side::Sell, "98", "4.5", Tif::Ioc);
    exchange.cancel(2, "a7", "BTC-USD");
    for n in 0..40 {
        let side = if n % 2 == 0 { Side::Buy } else { Side::Sell };
        let price = format!(
            "{}",
            if side == Side::Buy {
                95 + n % 7
            } else {
                100 + n % 9
            }
        );
        exchange.limit(4 + n % 3, &format!("r{n}"), "BTC-USD", side, &price, "0.5");
    }
    exchange.settle().await;

    for depth in [3, 1000] {
        let expected = http_book(&exchange, "BTC-USD", depth).await;
        let client = if depth == 3 { &mut book } else { &mut whole };
        let ws = if depth == 3 { &mut top } else { &mut full };
        let others = client.follow_to(ws, "BTC-USD", expected.seq).await;
        assert!(others.is_empty(), "nothing else was subscribed: {others:?}");
        assert_eq!(*client, expected, "depth {depth}");
    }
    assert!(book.bids.len() <= 3 && book.asks.len() <= 3);
    assert!(whole.bids.len() > 3);
    drop((top, full));
    exchange.shutdown().await;
}

/// Trades of a subscribed symbol only, until unsubscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_are_sent_to_their_subscribers() {
    let mut exchange = Exchange::start(quick()).await;
    let mut client = exchange.ws().await;
    client
        .send(json!({"op": "subscribe", "channel": "trades", "symbol": "BTC-USD", "id": 9}))
        .await;
    assert_eq!(
        client.recv().await,
        json!({"type": "subscribed", "channel": "trades", "symbol": "BTC-USD", "id": 9})
    );
    exchange.limit(1, "m1", "BTC-USD", Side::Sell, "100.5", "1.25");
    exchange.limit(1, "m2", "BTC-USD", Side::Sell, "101", "2");
    exchange.limit(1, "e1", "ETH-USD", Side::Sell, "3", "1");
    exchange.order(2, "e2", "ETH-USD", Side::Buy, "3", "1", Tif::Ioc);
    exchange.order(2, "t1", "BTC-USD", Side::Buy, "101", "2", Tif::Ioc);
    exchange.settle().await;
    let first = client.recv().await;
    let second = client.recv().await;
    for (trade, price, qty) in [(&first, "100.5", "1.25"), (&second, "101", "0.75")] {
        assert_eq!(trade["type"], "trade", "{trade}");
        assert_eq!(trade["symbol"], "BTC-USD");
        assert_eq!(trade["price"], price);
        assert_eq!(trade["qty"], qty);
        assert_eq!(trade["taker_side"], "buy");
        assert!(trade["ts"].as_u64().is_some() && trade["id"].as_u64().is_some());
    }
    assert!(second["id"].as_u64() > first["id"].as_u64());
    assert!(client.round_trip().await.is_empty(), "no ETH-USD trades");

    client
        .send(json!({"op": "unsubscribe", "channel": "trades", "symbol": "BTC-USD"}))
        .await;
    assert_eq!(
        client.recv().await,
        json!({"type": "unsubscribed", "channel": "trades", "symbol": "BTC-USD"})
    );
    exchange.order(2, "t2", "BTC-USD", Side::Buy, "101", "1", Tif::Ioc);
    exchange.settle().await;
    assert!(client.round_trip().await.is_empty(), "unsubscribed");
    drop(client);
    exchange.shutdown().await;
}

/// A resync request answers a fresh snapshot, and the updates continue from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_request_sends_a_fresh_snapshot() {
    let mut exchange = Exchange::start(quick()).await;
    exchange.limit(1, "b1", "ETH-USD", Side::Buy, "10", "1");
    exchange.settle().await;
    let mut client = exchange.ws().await;
    client
        .send(json!({"op": "subscribe", "channel": "book", "symbol": "ETH-USD", "depth": 5}))
        .await;
    let first = ClientBook::from_snapshot(&client.recv().await);
    exchange.limit(1, "b2", "ETH-USD", Side::Buy, "10.01", "1");
    exchange.limit(1, "b3", "ETH-USD", Side::Buy, "10.02", "1");
    exchange.settle().await;
    // A client that believes it missed something asks again.
    client
        .send(json!({"op": "resync", "channel": "book", "symbol": "ETH-USD", "id": 5}))
        .await;
    let mut snapshot = client.recv().await;
    while snapshot["type"] == "book" {
        snapshot = client.recv().await;
    }
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["resync"], true);
    assert_eq!(snapshot["id"], 5);
    let mut book = ClientBook::from_snapshot(&snapshot);
    assert_eq!(book.seq, first.seq + 2);
    assert_eq!(book, http_book(&exchange, "ETH-USD", 5).await);
    exchange.cancel(1, "b1", "ETH-USD");
    exchange.settle().await;
    let expected = http_book(&exchange, "ETH-USD", 5).await;
    book.follow_to(&mut client, "ETH-USD", expected.seq).await;
    assert_eq!(book, expected);
    drop(client);
    exchange.shutdown().await;
}

/// Every bad request is answered with an error (echoing its id when it could be read) and the
/// connection stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors_and_the_connection_stays_up() {
    let exchange = Exchange::start(quick()).await;
    let mut client = exchange.ws().await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("not json"), "bad request"),
        (Message::text("[1,2]"), "bad request"),
        (
            Message::text(r#"{"op":"subscribe","chanel":"book"}"#),
            "unknown field",
        ),
        (Message::text(r#"{"op":"dance","id":3}"#), "unknown op"),
        (
            Message::text(r#"{"op":"subscribe","channel":"candles","symbol":"BTC-USD"}"#),
            "unknown channel",
        ),
        (
            Message::text(r#"{"op":"subscribe","symbol":"BTC-USD"}"#),
            "channel",
        ),
        (
            Message::text(r#"{"op":"subscribe","channel":"book"}"#),
            "symbol",
        ),
        (
            Message::text(
                r#"{"op":"subscribe","channel":"book","symbol":"THIS-IS-TOO-LONG-A-NAME"}"#,
            ),
            "bad symbol",
        ),
        (
            Message::text(r#"{"op":"subscribe","channel":"book","symbol":"bad name"}"#),
            "bad symbol",
        ),
        (
            Message::text(r#"{"op":"subscribe","channel":"book","symbol":"DOGE-USD"}"#),
            "unknown symbol",
        ),
        (
            Message::text(r#"{"op":"subscribe","channel":"book","symbol":"BTC-USD","depth":0}"#),
            "depth must be 1 to 1000",
        ),
        (
            Message::text(r#"{"op":"subscribe","channel":"book","symbol":"BTC-USD","depth":1001}"#),
            "depth must be 1 to 1000",
        ),
        (
            Message::text(r#"{"op":"subscribe","channel":"book","symbol":"BTC-USD","depth":-1}"#),
            "bad request",
        ),
        (
            Message::text(r#"{"op":"subscribe","channel":"trades","symbol":"BTC-USD","depth":5}"#),
            "depth applies",
        ),
        (
            Message::text(r#"{"op":"unsubscribe","channel":"book","symbol":"BTC-USD"}"#),
            "not subscribed",
        ),
        (
            Message::text(r#"{"op":"resync","symbol":"BTC-USD"}"#),
            "not subscribed",
        ),
        (Message::text(r#"{"op":"resync"}"#), "needs a symbol"),
        (Message::binary(vec![1u8, 2, 3]), "binary frames"),
    ];
    for (request, expected) in cases {
        let shown = format!("{request:?}");
        client.ws.send(request).await.expect("send");
        let answer = client.recv().await;
        assert_eq!(answer["type"], "error", "{shown}: {answer}");
        let message = answer["message"].as_str().expect("a message");
        assert!(message.contains(expected), "{shown}: {message}");
    }
    client.send(json!({"op": "dance", "id": 77})).await;
    assert_eq!(client.recv().await["id"], 77);
    // Still up and serving.
    client
        .send(json!({"op": "subscribe", "channel": "book", "symbol": "BTC-USD"}))
        .await;
    let snapshot = client.recv().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["depth"], 50, "the default depth");
    drop(client);
    exchange.shutdown().await;
}

/// The HTTP snapshot: depth default and limit, JSON errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_snapshot() {
    let mut exchange = Exchange::start(quick()).await;
    for n in 0..60 {
        exchange.limit(
            1,
            &format!("b{n}"),
            "BTC-USD",
            Side::Buy,
            &format!("{}", 200 - n),
            "1",
        );
    }
    exchange.limit(2, "a", "BTC-USD", Side::Sell, "300.5", "0.01");
    exchange.settle().await;

    let (status, body) = exchange.get("/v1/book/BTC-USD").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["bids"].as_array().map(Vec::len),
        Some(50),
        "default depth"
    );
    assert_eq!(body["bids"][0], json!({"price": "200", "qty": "1"}));
    assert_eq!(body["asks"], json!([{"price": "300.5", "qty": "0.01"}]));
    assert_eq!(body["position"], exchange.submitted);
    let (status, body) = exchange.get("/v1/book/BTC-USD?depth=2").await;
    assert_eq!(status, 200);
    assert_eq!(body["bids"].as_array().map(Vec::len), Some(2));
    let (status, body) = exchange.get("/v1/book/BTC-USD?depth=1000").await;
    assert_eq!(status, 200);
    assert_eq!(body["bids"].as_array().map(Vec::len), Some(60));
    // The WebSocket snapshot is the same book.
    let mut client = exchange.ws().await;
    client
        .send(json!({"op": "subscribe", "channel": "book", "symbol": "BTC-USD", "depth": 1000}))
        .await;
    let ws = client.recv().await;
    assert_eq!(ws["seq"], body["seq"]);
    assert_eq!(ws["bids"], body["bids"]);
    assert_eq!(ws["asks"], body["asks"]);

    let (status, body) = exchange.get("/v1/book/ETH-USD").await;
    assert_eq!(status, 200, "a listed symbol without orders");
    assert_eq!(body["bids"], json!([]));
    assert_eq!(body["seq"], 0);
    for (path, code, expected) in [
        ("/v1/book/DOGE-USD", 404, "unknown symbol DOGE-USD"),
        ("/v1/book/THIS-IS-TOO-LONG-A-NAME", 400, "bad symbol"),
        ("/v1/book/BTC%20USD", 400, "bad symbol"),
        ("/v1/book/BTC-USD?depth=0", 400, "depth must be 1 to 1000"),
        (
            "/v1/book/BTC-USD?depth=1001",
            400,
            "depth must be 1 to 1000",
        ),
        ("/v1/book/BTC-USD?depth=abc", 400, "depth must be 1 to 1000"),
        ("/v1/book/BTC-USD?depth=-3", 400, "depth must be 1 to 1000"),
        (
            "/v1/book/BTC-USD?depth=99999999999999999999999",
            400,
            "depth must be",
        ),
        ("/ws", 400, "upgrade"),
    ] {
        let (status, body) = exchange.get(path).await;
        assert_eq!(status, code, "{path}: {body}");
        assert_eq!(body["type"], "error");
        let message = body["message"].as_str().expect("a message");
        assert!(message.contains(expected), "{path}: {message}");
    }
    drop(client);
    exchange.shutdown().await;
}

/// Subscriptions, message size and connections are limited, each refused clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_refused_clearly() {
    let config = MdConfig {
        max_subscriptions: 2,
        max_connections: 2,
        ..quick()
    };
    let exchange = Exchange::start(config).await;
    let mut client = exchange.ws().await;
    for (channel, symbol) in [("book", "BTC-USD"), ("trades", "BTC-USD")] {
        client
            .send(json!({"op": "subscribe", "channel": channel, "symbol": symbol}))
            .await;
        assert_ne!(client.recv().await["type"], "error");
    }
    // Subscribing again to what it holds is not a new subscription.
    client
        .send(json!({"op": "subscribe", "channel": "book", "symbol": "BTC-USD", "depth": 10}))
        .await;
    assert_eq!(client.recv().await["type"], "snapshot");
    client
        .send(json!({"op": "subscribe", "channel": "book", "symbol": "ETH-USD"}))
        .await;
    let refused = client.recv().await;
    assert_eq!(refused["type"], "error");
    assert!(refused["message"]
        .as_str()
        .is_some_and(|m| m.contains("too many subscriptions")));
    client
        .send(json!({"op": "unsubscribe", "channel": "trades", "symbol": "BTC-USD"}))
        .await;
    assert_eq!(client.recv().await["type"], "unsubscribed");
    client
        .send(json!({"op": "subscribe", "channel": "book", "symbol": "ETH-USD"}))
        .await;
    assert_eq!(client.recv().await["type"], "snapshot");

    // A second connection is allowed, a third is refused.
    let mut second = exchange.ws().await;
    let mut third = exchange.ws().await;
    let error = third.recv().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["message"], "too many connections");
    assert_eq!(
        third.closed().await,
        (close_code::TRY_AGAIN_LATER, "too many connections".into())
    );

    // A message over 4 KiB closes the connection with 1009.
    let big = json!({"op": "ping", "pad": "x".repeat(5000)}).to_string();
    second.ws.send(Message::text(big)).await.expect("send");
    assert_eq!(
        second.closed().await,
        (close_code::TOO_BIG, "message too big".into())
    );
    // Its slot is free again.
    drop(second);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = exchange.ws().await;
        again.send(json!({"op": "ping"})).await;
        if again.recv().await["type"] == "pong" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first connection was not disturbed.
    assert!(client
        .round_trip()
        .await
        .iter()
        .all(|m| m["type"] == "book"));
    drop((client, third));
    exchange.shutdown().await;
}

/// WebSocket pings are answered; the server pings, and closes a connection that stays silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_and_idle_connections() {
    let config = MdConfig {
        ping_interval_ms: 100,
        idle_timeout_ms: 1000,
        ..quick()
    };
    let exchange = Exchange::start(config).await;
    let mut client = exchange.ws().await;
    client
        .ws
        .send(Message::Ping(b"hello"[..].into()))
        .await
        .expect("send");
    let mut pinged = false;
    loop {
        match client.frame().await {
            Message::Pong(payload) => {
                assert_eq!(&payload[..], b"hello");
                break;
            }
            Message::Ping(_) => pinged = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    // A client that reads (and so answers pings) stays connected well past the idle timeout.
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < until {
        if let Ok(frame) = tokio::time::timeout(Duration::from_millis(100), client.ws.next()).await
        {
            match frame.expect("open").expect("a frame") {
                Message::Ping(_) => pinged = true,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(pinged, "the server pings");
    client.send(json!({"op": "ping"})).await;
    assert_eq!(client.recv().await, json!({"type": "pong"}));
    // A client's close is answered.
    client.ws.close(None).await.expect("close");
    loop {
        match client.frame().await {
            Message::Close(_) => break,
            Message::Ping(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }

    // One that does not read never answers: it is closed.
    let mut silent = exchange.ws().await;
    // (Past the idle timeout, within the server's wait for the close reply.)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(silent.closed().await.0, close_code::POLICY);
    drop((client, silent));
    exchange.shutdown().await;
}

/// A site that stops being ready (cut off from its log, or catching up with it) tells its
/// market-data connections, which may be holding old data; and again when it is ready.
/// A connection opened while it is not ready is told at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_told_when_their_site_goes_stale_and_when_it_is_fresh_again() {
    let exchange = Exchange::start(quick()).await;
    let mut client = exchange.ws().await;
    assert!(client.round_trip().await.is_empty(), "nothing while ready");
    let set = |ready| *exchange.sequencer.1.lock().unwrap() = ready;
    set(Err(SubmitError::CatchingUp));
    assert_eq!(
        client.recv().await,
        json!({"type": "status", "status": "catching_up"})
    );
    set(Err(SubmitError::Unavailable));
    assert_eq!(
        client.recv().await,
        json!({"type": "status", "status": "unavailable"})
    );
    let mut late = exchange.ws().await;
    assert_eq!(
        late.recv().await,
        json!({"type": "status", "status": "unavailable"})
    );
    set(Ok(()));
    for connection in [&mut client, &mut late] {
        assert_eq!(
            connection.recv().await,
            json!({"type": "status", "status": "ok"})
        );
    }
    drop((client, late));
    exchange.shutdown().await;
}

/// A client too slow for the feed is told it lagged and gets a resync snapshot of its book,
/// after which its updates are contiguous again and its book right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_connection_is_resynced_never_skipped() {
    let mut exchange = Exchange::start(quick()).await;
    // A small receive window, so the server's writes back up soon.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket.connect(exchange.addr).await.expect("connect");
    let url = format!("ws://{}/ws", exchange.addr);
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .expect("WebSocket handshake");
    let mut client = Client { ws };
    client
        .send(json!({"op": "subscribe", "channel": "book", "symbol": "BTC-USD", "depth": 20}))
        .await;
    let mut book = ClientBook::from_snapshot(&client.recv().await);
    client
        .send(json!({"op": "subscribe", "channel": "trades", "symbol": "BTC-USD"}))
        .await;
    assert_eq!(client.recv().await["type"], "subscribed");

    // Far more updates than the feed buffer holds, while the client reads nothing.
    // (About 3,000 messages fit in the socket buffers before the feed buffer starts filling.)
    let flood = gateway::hub::FEED_BUFFER * 2;
    for n in 0..flood {
        let id = format!("f{n}");
        let price = format!("{}", 1000 + n % 50);
        exchange.limit(1, &id, "BTC-USD", Side::Sell, &price, "1");
        if n % 2 == 1 {
            exchange.cancel(1, &id, "BTC-USD");
        }
    }
    exchange.settle().await;
    let expected = http_book(&exchange, "BTC-USD", 20).await;

    let (mut lagged, mut resynced) = (0, 0);
    while book.seq < expected.seq {
        let message = client.recv().await;
        match message["type"].as_str() {
            Some("book") => book.apply(&message),
            Some("lagged") => {
                assert!(message["missed"].as_u64() > Some(0));
                lagged += 1;
            }
            Some("snapshot") => {
                resynced += 1;
                assert_eq!(resynced, lagged, "one resync per lag notice, after it");
                assert_eq!(message["resync"], true);
                book = ClientBook::from_snapshot(&message);
            }
            Some("trade") => {}
            _ => panic!("unexpected {message}"),
        }
    }
    assert!(lagged > 0, "the flood made the connection lag");
    assert_eq!(resynced, lagged);
    assert_eq!(book, expected);
    assert!(exchange.hub.snapshot(&sym("BTC-USD"), 1).is_some());
    drop(client);
    exchange.shutdown().await;
}

/// Shutting the server down closes WebSockets with 1001 and `serve` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets() {
    let exchange = Exchange::start(quick()).await;
    let mut client = exchange.ws().await;
    client
        .send(json!({"op": "subscribe", "channel": "book", "symbol": "BTC-USD"}))
        .await;
    assert_eq!(client.recv().await["type"], "snapshot");
    let closed = tokio::spawn(async move { client.closed().await });
    exchange.shutdown().await;
    assert_eq!(
        closed.await.expect("no panic"),
        (close_code::GOING_AWAY, "server shutting down".into())
    );
}

#[test]
fn close_codes_are_the_rfc_ones() {
    assert_eq!(CloseCode::from(close_code::GOING_AWAY), CloseCode::Away);
    assert_eq!(CloseCode::from(close_code::POLICY), CloseCode::Policy);
    assert_eq!(CloseCode::from(close_code::TOO_BIG), CloseCode::Size);
    assert_eq!(CloseCode::from(close_code::INTERNAL), CloseCode::Error);
    assert_eq!(
        CloseCode::from(close_code::TRY_AGAIN_LATER),
        CloseCode::Again
    );
}
