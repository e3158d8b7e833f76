//! Market data over HTTP and WebSocket (`gateway/MARKET-DATA.md`).
//!
//! - `GET /v1/book/{symbol}?depth=N`: a JSON [`BookSnapshot`] of the desk's L2 books.
//! - `GET /ws`: a WebSocket of JSON text frames. A client subscribes to a symbol's `book`
//!   (a snapshot, then incremental updates numbered `seq`, contiguous per symbol) or its
//!   `trades`. Each connection is one tokio task over one receiver of the hub's broadcast feed.
//!
//! A book subscription keeps the best levels of the symbol's book (a bounded reserve beyond
//! the client's `depth`) and sends the client only its window of `depth` levels: an update
//! lists the levels of that window that changed, including levels that enter it when better
//! ones go (and levels pushed out of it, with quantity 0). Every update is sent, possibly with
//! no levels, so `seq` stays contiguous and a client can always tell a gap.
//!
//! Nothing is skipped silently: when the connection's receiver falls behind the feed (a slow
//! client), the server says so (`lagged`) and sends a fresh snapshot (`resync: true`) for every
//! book subscription; a subscription whose reserve runs out (a sweep through more levels than
//! it keeps) is resynced the same way. Bad requests get an `error` message and the connection stays up; a
//! message over the size limit, a client that stops answering pings, or a connection over the
//! limit is closed with a close code and reason.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use engine::{Price, Qty, Side, Symbol};
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, Instant};

use crate::desk::{BookSnapshot, Level, MdMessage};
use crate::hub::Hub;

/// Limits and timings of the market data server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MdConfig {
    /// WebSocket connections served at once; one more is closed with code 1013.
    pub max_connections: usize,
    /// Subscriptions (a channel and a symbol) one connection may hold.
    pub max_subscriptions: usize,
    /// Largest message (and frame) a client may send, in bytes; a larger one closes the
    /// connection with code 1009.
    pub max_message_bytes: usize,
    /// Book depth when a request names none.
    pub default_depth: usize,
    /// Largest book depth a request may ask for.
    pub max_depth: usize,
    /// The server pings every this many milliseconds.
    pub ping_interval_ms: u64,
    /// A connection the server has heard nothing from (not even a pong) for this long is
    /// closed with code 1008.
    pub idle_timeout_ms: u64,
    /// A write the client does not take within this long closes the connection.
    pub write_timeout_ms: u64,
}

impl Default for MdConfig {
    fn default() -> Self {
        MdConfig {
            max_connections: 1024,
            max_subscriptions: 64,
            max_message_bytes: 4096,
            default_depth: 50,
            max_depth: 1000,
            ping_interval_ms: 20_000,
            idle_timeout_ms: 60_000,
            write_timeout_ms: 10_000,
        }
    }
}

impl MdConfig {
    /// The default depth, within the allowed range.
    fn default_depth(&self) -> usize {
        self.default_depth.min(self.max_depth).max(1)
    }
}

/// WebSocket close codes the server uses (RFC 6455).
pub mod close_code {
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The client answered no ping within the idle timeout.
    pub const POLICY: u16 = 1008;
    /// A message over `max_message_bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// The feed stopped (the hub is gone).
    pub const INTERNAL: u16 = 1011;
    /// Over `max_connections`.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Counters the node exposes as metrics.
#[derive(Debug, Default)]
pub struct MdCounters {
    /// WebSocket connections accepted.
    pub connections: AtomicU64,
    /// WebSocket connections refused (over `max_connections`, or shutting down).
    pub refused: AtomicU64,
    /// Messages sent on WebSockets.
    pub messages_out: AtomicU64,
    /// Times a connection's receiver fell behind the feed.
    pub lagged: AtomicU64,
    /// Snapshots sent to repair a book subscription (lagged, or asked for).
    pub resyncs: AtomicU64,
    /// Requests answered with an error.
    pub bad_requests: AtomicU64,
}

/// The market data server: its router, and a handle to close its WebSockets.
#[derive(Clone)]
pub struct MdServer {
    shared: Arc<Shared>,
}

struct Shared {
    hub: Arc<Hub>,
    config: MdConfig,
    slots: Arc<Semaphore>,
    closing: watch::Sender<bool>,
    counters: MdCounters,
}

impl MdServer {
    /// A server over `hub`'s market data.
    pub fn new(hub: Arc<Hub>, config: MdConfig) -> MdServer {
        MdServer {
            shared: Arc::new(Shared {
                hub,
                config,
                slots: Arc::new(Semaphore::new(
                    config.max_connections.min(Semaphore::MAX_PERMITS),
                )),
                closing: watch::channel(false).0,
                counters: MdCounters::default(),
            }),
        }
    }

    /// `GET /v1/book/{symbol}` and `GET /ws`; other routes (health, metrics) can be merged in.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/book/{symbol}", get(book))
            .route("/ws", get(websocket))
            .with_state(self.shared.clone())
    }

    pub fn counters(&self) -> &MdCounters {
        &self.shared.counters
    }

    /// WebSocket connections open now.
    pub fn open_connections(&self) -> usize {
        let max = self
            .shared
            .config
            .max_connections
            .min(Semaphore::MAX_PERMITS);
        max - self.shared.slots.available_permits()
    }

    /// Closes every WebSocket (code 1001) and refuses new ones.
    pub fn shutdown(&self) {
        self.shared.closing.send_replace(true);
    }

    /// Waits until no WebSocket is open.
    pub async fn closed(&self) {
        let max = self
            .shared
            .config
            .max_connections
            .min(Semaphore::MAX_PERMITS);
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        // Holding every permit means no connection holds one; they go back at once.
        let _all = self.shared.slots.acquire_many(all).await;
    }
}

/// Serves market data on `listener` until `shutdown` completes; then closes the WebSockets
/// (code 1001) and waits up to five seconds for them to go.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hub: Arc<Hub>,
    config: MdConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    use axum::serve::ListenerExt;
    let server = MdServer::new(hub, config);
    let stop = server.clone();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, server.router())
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop.shutdown();
        })
        .await?;
    let _ = timeout(Duration::from_secs(5), server.closed()).await;
    Ok(())
}

// ----- HTTP ------------------------------------------------------------------------------------

/// The body of every error, HTTP or WebSocket.
#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
}

fn http_error(status: StatusCode, message: &str) -> Response {
    let body = ErrorBody {
        kind: "error",
        message,
        id: None,
    };
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
struct BookQuery {
    depth: Option<String>,
}

fn parse_symbol(text: &str) -> Result<Symbol, String> {
    Symbol::new(text).map_err(|err| format!("bad symbol: {err}"))
}

fn check_depth(depth: u64, config: &MdConfig) -> Result<usize, String> {
    usize::try_from(depth)
        .ok()
        .filter(|d| (1..=config.max_depth).contains(d))
        .ok_or_else(|| format!("depth must be 1 to {}", config.max_depth))
}

async fn book(
    State(shared): State<Arc<Shared>>,
    symbol: Result<Path<String>, PathRejection>,
    query: Result<Query<BookQuery>, QueryRejection>,
) -> Response {
    let symbol = match symbol {
        Ok(Path(symbol)) => match parse_symbol(&symbol) {
            Ok(symbol) => symbol,
            Err(message) => return http_error(StatusCode::BAD_REQUEST, &message),
        },
        Err(rejection) => return http_error(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    let depth = match query {
        Ok(Query(BookQuery { depth: None })) => shared.config.default_depth(),
        Ok(Query(BookQuery { depth: Some(text) })) => {
            // Not a number at all gets the same answer as one out of range.
            let depth = text.parse::<u64>().unwrap_or(0);
            match check_depth(depth, &shared.config) {
                Ok(depth) => depth,
                Err(message) => return http_error(StatusCode::BAD_REQUEST, &message),
            }
        }
        Err(rejection) => return http_error(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    match shared.hub.snapshot(&symbol, depth) {
        Some(snapshot) => Json(snapshot).into_response(),
        None => http_error(
            StatusCode::NOT_FOUND,
            &format!("unknown symbol {}", symbol.as_str()),
        ),
    }
}

// ----- WebSocket: messages ---------------------------------------------------------------------

/// A client request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    op: String,
    channel: Option<String>,
    symbol: Option<String>,
    depth: Option<u64>,
    /// Echoed in the answer.
    id: Option<u64>,
}

/// A WebSocket channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Book,
    Trades,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Book => "book",
            Channel::Trades => "trades",
        }
    }
}

/// A client request, checked: what [`parse_request`] makes of a WebSocket text message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MdRequest {
    Ping {
        id: Option<u64>,
    },
    Subscribe {
        channel: Channel,
        symbol: Symbol,
        /// Within `1..=max_depth` (the default depth when the request names none).
        depth: usize,
        id: Option<u64>,
    },
    Unsubscribe {
        channel: Channel,
        symbol: Symbol,
        id: Option<u64>,
    },
    /// A book's resync.
    Resync {
        symbol: Symbol,
        id: Option<u64>,
    },
}

impl MdRequest {
    /// The request's `id`, echoed in the answer.
    pub fn id(&self) -> Option<u64> {
        match *self {
            MdRequest::Ping { id }
            | MdRequest::Subscribe { id, .. }
            | MdRequest::Unsubscribe { id, .. }
            | MdRequest::Resync { id, .. } => id,
        }
    }
}

/// A request refused before it reaches the connection's state: the `error` message's text,
/// and the request's `id` when it could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRequest {
    pub message: String,
    pub id: Option<u64>,
}

/// Parses and checks one WebSocket text message (sans-IO; what depends on the connection's
/// subscriptions is checked when the request is handled).
pub fn parse_request(body: &str, config: &MdConfig) -> Result<MdRequest, BadRequest> {
    let request: Request = serde_json::from_str(body).map_err(|err| BadRequest {
        message: format!("bad request: {err}"),
        id: None,
    })?;
    let id = request.id;
    check_request(request, config).map_err(|message| BadRequest { message, id })
}

fn check_request(request: Request, config: &MdConfig) -> Result<MdRequest, String> {
    let id = request.id;
    let channel = match request.channel.as_deref() {
        None => None,
        Some("book") => Some(Channel::Book),
        Some("trades") => Some(Channel::Trades),
        Some(other) => return Err(format!("unknown channel {other:?}: book or trades")),
    };
    let symbol = match request.symbol.as_deref() {
        None => None,
        Some(text) => Some(parse_symbol(text)?),
    };
    let op = request.op.as_str();
    if request.depth.is_some() && !(op == "subscribe" && channel == Some(Channel::Book)) {
        return Err("depth applies to a book subscription only".into());
    }
    match op {
        "ping" => {
            if channel.is_some() || symbol.is_some() {
                return Err("ping takes no channel or symbol".into());
            }
            Ok(MdRequest::Ping { id })
        }
        "subscribe" => {
            let (channel, symbol) = channel_and_symbol(channel, symbol)?;
            let depth = match request.depth {
                None => config.default_depth(),
                Some(depth) => check_depth(depth, config)?,
            };
            Ok(MdRequest::Subscribe {
                channel,
                symbol,
                depth,
                id,
            })
        }
        "unsubscribe" => {
            let (channel, symbol) = channel_and_symbol(channel, symbol)?;
            Ok(MdRequest::Unsubscribe {
                channel,
                symbol,
                id,
            })
        }
        "resync" => {
            if channel.is_some_and(|c| c != Channel::Book) {
                return Err("resync applies to the book channel".into());
            }
            let symbol = symbol.ok_or("resync needs a symbol")?;
            Ok(MdRequest::Resync { symbol, id })
        }
        other => Err(format!(
            "unknown op {other:?}: subscribe, unsubscribe, resync or ping"
        )),
    }
}

/// What the server sends, besides trades (sent as [`MdMessage::Trade`] serializes).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Out<'a> {
    Snapshot {
        symbol: &'a str,
        seq: u64,
        position: u64,
        depth: usize,
        /// It replaces the book the client holds (the client asked, or missed updates).
        resync: bool,
        bids: &'a [Level],
        asks: &'a [Level],
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    Book {
        symbol: &'a str,
        seq: u64,
        position: u64,
        bids: &'a [Level],
        asks: &'a [Level],
    },
    Subscribed {
        channel: &'static str,
        symbol: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    Unsubscribed {
        channel: &'static str,
        symbol: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// The connection fell behind the feed: trades may be missing; a resync snapshot of every
    /// subscribed book follows.
    Lagged { missed: u64 },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
}

fn text(value: &impl Serialize) -> Message {
    // Serializing these types cannot fail: strings, numbers and decimal strings only.
    Message::Text(serde_json::to_string(value).unwrap_or_default().into())
}

// ----- WebSocket: a book subscription ------------------------------------------------------------

/// One side of a subscription's book: the best levels of the symbol's book, exactly (a
/// prefix of it), and whether the book has more beyond them.
#[derive(Default)]
struct SideBook {
    levels: BTreeMap<Price, Qty>,
    more: bool,
}

impl SideBook {
    fn new(levels: &[Level], keep: usize) -> SideBook {
        SideBook {
            levels: levels.iter().take(keep).map(|l| (l.price, l.qty)).collect(),
            more: levels.len() > keep,
        }
    }

    /// The best `n` levels, best first.
    fn best(&self, side: Side, n: usize) -> Vec<(Price, Qty)> {
        let level = |(price, qty): (&Price, &Qty)| (*price, *qty);
        match side {
            Side::Buy => self.levels.iter().rev().take(n).map(level).collect(),
            Side::Sell => self.levels.iter().take(n).map(level).collect(),
        }
    }

    /// The `n`-th best price (from 0).
    fn nth(&self, side: Side, n: usize) -> Option<Price> {
        match side {
            Side::Buy => self.levels.keys().rev().nth(n).copied(),
            Side::Sell => self.levels.keys().nth(n).copied(),
        }
    }

    /// The worst price kept.
    fn worst(&self, side: Side) -> Option<Price> {
        match side {
            Side::Buy => self.levels.keys().next().copied(),
            Side::Sell => self.levels.keys().next_back().copied(),
        }
    }

    /// Applies one side of a book update (the new totals of the levels that changed). Returns
    /// the changes of the window of the best `depth` levels, best first, or `None` when the
    /// window can no longer be known (the levels kept ran out): the subscription resyncs.
    fn apply(
        &mut self,
        side: Side,
        changes: &[Level],
        depth: usize,
        keep: usize,
    ) -> Option<Vec<Level>> {
        // `worse(a, b)`: price a is worse than price b on this side.
        let worse = |a: Price, b: Price| match side {
            Side::Buy => a < b,
            Side::Sell => a > b,
        };
        let worst = self.worst(side);
        if self.more && worst.is_none() {
            return None;
        }
        // Beyond the worst level kept (when the book has more), a change is unknown ground
        // and changes nothing kept: what is kept stays an exact prefix of the book.
        let known = |price: Price| !self.more || worst.is_none_or(|w| !worse(price, w));
        let known: Vec<Level> = changes.iter().filter(|l| known(l.price)).copied().collect();
        let apply = |this: &mut SideBook| {
            for level in &known {
                if level.qty.0 > 0 {
                    this.levels.insert(level.price, level.qty);
                } else {
                    this.levels.remove(&level.price);
                }
            }
            while this.levels.len() > keep {
                let worst = match side {
                    Side::Buy => this.levels.pop_first(),
                    Side::Sell => this.levels.pop_last(),
                };
                this.more |= worst.is_some();
            }
        };
        // A full window changes only if something at or better than its last level does.
        if let Some(boundary) = self.nth(side, depth - 1) {
            if known.iter().all(|l| worse(l.price, boundary)) {
                apply(self);
                return Some(Vec::new());
            }
        }
        let before: BTreeMap<Price, Qty> = self.best(side, depth).into_iter().collect();
        apply(self);
        if self.more && self.levels.len() < depth {
            return None;
        }
        let after: BTreeMap<Price, Qty> = self.best(side, depth).into_iter().collect();
        let mut diff: BTreeMap<Price, Qty> = BTreeMap::new();
        for price in before.keys() {
            if !after.contains_key(price) {
                diff.insert(*price, Qty(0));
            }
        }
        for (price, qty) in &after {
            if before.get(price) != Some(qty) {
                diff.insert(*price, *qty);
            }
        }
        let level = |(price, qty): (Price, Qty)| Level { price, qty };
        Some(match side {
            Side::Buy => diff.into_iter().rev().map(level).collect(),
            Side::Sell => diff.into_iter().map(level).collect(),
        })
    }
}

/// One book subscription: the best levels of the symbol's book (`depth + max(depth, 32)` per
/// side), so the client's window of `depth` levels can be refilled as levels come and go; when
/// they run out (a sweep took more than the reserve), the subscription resyncs.
struct BookSub {
    depth: usize,
    seq: u64,
    bids: SideBook,
    asks: SideBook,
}

impl BookSub {
    /// Levels kept per side.
    fn keep(depth: usize) -> usize {
        depth.saturating_add(depth.max(32))
    }

    /// The depth of the snapshot a subscription of `depth` starts from: one more than it
    /// keeps, to know whether the book has more.
    fn snapshot_depth(depth: usize) -> usize {
        BookSub::keep(depth).saturating_add(1)
    }

    /// From a snapshot of [`BookSub::snapshot_depth`] levels.
    fn new(snapshot: &BookSnapshot, depth: usize) -> BookSub {
        let keep = BookSub::keep(depth);
        BookSub {
            depth,
            seq: snapshot.seq,
            bids: SideBook::new(&snapshot.bids, keep),
            asks: SideBook::new(&snapshot.asks, keep),
        }
    }

    /// The client's window of one side, best first.
    fn window(&self, side: Side) -> Vec<Level> {
        let book = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        book.best(side, self.depth)
            .into_iter()
            .map(|(price, qty)| Level { price, qty })
            .collect()
    }

    fn snapshot_message(
        &self,
        symbol: &Symbol,
        position: u64,
        resync: bool,
        id: Option<u64>,
    ) -> Message {
        text(&Out::Snapshot {
            symbol: symbol.as_str(),
            seq: self.seq,
            position,
            depth: self.depth,
            resync,
            bids: &self.window(Side::Buy),
            asks: &self.window(Side::Sell),
            id,
        })
    }

    /// Applies an update; returns the window's changes (bids, asks), or `None` when the
    /// subscription must resync.
    fn apply(&mut self, bids: &[Level], asks: &[Level]) -> Option<(Vec<Level>, Vec<Level>)> {
        let keep = BookSub::keep(self.depth);
        let bids = self.bids.apply(Side::Buy, bids, self.depth, keep)?;
        let asks = self.asks.apply(Side::Sell, asks, self.depth, keep)?;
        Some((bids, asks))
    }
}

// ----- WebSocket: a connection ---------------------------------------------------------------------

async fn websocket(
    State(shared): State<Arc<Shared>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return http_error(rejection.status(), &rejection.body_text()),
    };
    let max = shared.config.max_message_bytes;
    let upgrade = upgrade.max_message_size(max).max_frame_size(max);
    let permit = if *shared.closing.borrow() {
        Err((close_code::GOING_AWAY, "server shutting down"))
    } else {
        shared
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| (close_code::TRY_AGAIN_LATER, "too many connections"))
    };
    upgrade.on_upgrade(move |mut socket| async move {
        match permit {
            Ok(permit) => {
                shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                Connection::new(socket, shared, permit).run().await;
            }
            Err((code, reason)) => {
                shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                let error = text(&ErrorBody {
                    kind: "error",
                    message: reason,
                    id: None,
                });
                let write = Duration::from_millis(shared.config.write_timeout_ms);
                if matches!(timeout(write, socket.send(error)).await, Ok(Ok(()))) {
                    close(&mut socket, code, reason, write).await;
                }
            }
        }
    })
}

/// How long a closing connection waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Sends a close frame and waits (at most [`CLOSE_WAIT`]) for the client's, reading and
/// dropping what comes before it, so the frame is not lost to a reset.
async fn close(socket: &mut WebSocket, code: u16, reason: &str, wait: Duration) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if !matches!(
        timeout(wait, socket.send(Message::Close(Some(frame)))).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let drain = async { while let Some(Ok(_)) = socket.recv().await {} };
    let _ = timeout(wait.min(CLOSE_WAIT), drain).await;
}

/// Messages taken from the feed in one go before writing.
const FEED_BATCH: usize = 256;

/// What woke the connection up.
enum Wake {
    Shutdown,
    Incoming(Option<Result<Message, axum::Error>>),
    Feed(Result<Arc<MdMessage>, RecvError>),
    Tick,
}

struct Connection {
    socket: WebSocket,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
    /// The connection's receiver of the feed, while it has subscriptions.
    feed: Option<broadcast::Receiver<Arc<MdMessage>>>,
    books: HashMap<Symbol, BookSub>,
    trades: HashSet<Symbol>,
    /// Written at the end of each turn.
    pending: Vec<Message>,
    last_heard: Instant,
}

/// Why a connection ends.
enum End {
    /// Closed by the client, or the socket failed: nothing more to say.
    Quiet,
    /// The server closes it with this code and reason.
    Close(u16, &'static str),
}

async fn next_feed(
    feed: &mut Option<broadcast::Receiver<Arc<MdMessage>>>,
) -> Result<Arc<MdMessage>, RecvError> {
    match feed {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Connection {
    fn new(socket: WebSocket, shared: Arc<Shared>, permit: OwnedSemaphorePermit) -> Connection {
        Connection {
            socket,
            shared,
            _permit: permit,
            feed: None,
            books: HashMap::new(),
            trades: HashSet::new(),
            pending: Vec::new(),
            last_heard: Instant::now(),
        }
    }

    fn config(&self) -> &MdConfig {
        &self.shared.config
    }

    async fn run(mut self) {
        let wait = Duration::from_millis(self.config().write_timeout_ms);
        match self.serve().await {
            End::Close(code, reason) => close(&mut self.socket, code, reason, wait).await,
            // Sends the reply to a client's close frame, if that is how it ended.
            End::Quiet => {
                let _ = timeout(wait.min(CLOSE_WAIT), self.socket.close()).await;
            }
        }
    }

    async fn serve(&mut self) -> End {
        let mut closing = self.shared.closing.subscribe();
        let period = Duration::from_millis(self.config().ping_interval_ms.max(1));
        let idle = Duration::from_millis(self.config().idle_timeout_ms.max(1));
        let mut ping = tokio::time::interval_at(Instant::now() + period, period);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                biased;
                _ = closing.wait_for(|closing| *closing) => Wake::Shutdown,
                incoming = self.socket.recv() => Wake::Incoming(incoming),
                feed = next_feed(&mut self.feed) => Wake::Feed(feed),
                _ = ping.tick() => Wake::Tick,
            };
            match wake {
                Wake::Shutdown => {
                    return End::Close(close_code::GOING_AWAY, "server shutting down")
                }
                Wake::Incoming(None) => return End::Quiet,
                Wake::Incoming(Some(Err(err))) => {
                    return if is_capacity(&err) {
                        End::Close(close_code::TOO_BIG, "message too big")
                    } else {
                        End::Quiet
                    };
                }
                Wake::Incoming(Some(Ok(message))) => {
                    self.last_heard = Instant::now();
                    match message {
                        Message::Text(request) => self.request(request.as_str()),
                        Message::Binary(_) => {
                            self.error("binary frames are not supported: send JSON text", None)
                        }
                        // Pings are answered by the WebSocket layer; pongs only show liveness.
                        Message::Ping(_) | Message::Pong(_) => {}
                        Message::Close(_) => return End::Quiet,
                    }
                }
                Wake::Feed(first) => {
                    if let Some(end) = self.feed_batch(first) {
                        return end;
                    }
                }
                Wake::Tick => {
                    if self.last_heard.elapsed() >= idle {
                        return End::Close(close_code::POLICY, "no pong within the idle timeout");
                    }
                    self.pending.push(Message::Ping(Default::default()));
                }
            }
            if !self.flush().await {
                return End::Quiet;
            }
        }
    }

    /// Handles `first` and whatever else the feed already holds, up to a batch.
    fn feed_batch(&mut self, first: Result<Arc<MdMessage>, RecvError>) -> Option<End> {
        let mut next = first;
        let mut taken = 0;
        loop {
            taken += 1;
            match next {
                Ok(message) => self.on_feed(&message),
                Err(RecvError::Lagged(missed)) => self.lagged(missed),
                Err(RecvError::Closed) => {
                    return Some(End::Close(close_code::INTERNAL, "market data stopped"));
                }
            }
            if taken == FEED_BATCH {
                return None;
            }
            next = match self.feed.as_mut()?.try_recv() {
                Ok(message) => Ok(message),
                Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
                Err(TryRecvError::Empty) => return None,
            };
        }
    }

    /// Writes what is pending; false if the client did not take it in time (or is gone).
    async fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let count = self.pending.len() as u64;
        let socket = &mut self.socket;
        let pending = &mut self.pending;
        let write = async {
            for message in pending.drain(..) {
                socket.feed(message).await?;
            }
            socket.flush().await
        };
        let wait = Duration::from_millis(self.shared.config.write_timeout_ms);
        let written = matches!(timeout(wait, write).await, Ok(Ok(())));
        if written {
            self.shared
                .counters
                .messages_out
                .fetch_add(count, Ordering::Relaxed);
        }
        written
    }

    fn error(&mut self, message: &str, id: Option<u64>) {
        self.shared
            .counters
            .bad_requests
            .fetch_add(1, Ordering::Relaxed);
        self.pending.push(text(&ErrorBody {
            kind: "error",
            message,
            id,
        }));
    }

    fn request(&mut self, body: &str) {
        let request = match parse_request(body, self.config()) {
            Ok(request) => request,
            Err(bad) => return self.error(&bad.message, bad.id),
        };
        let id = request.id();
        if let Err(message) = self.handle(request) {
            self.error(&message, id);
        }
    }

    fn handle(&mut self, request: MdRequest) -> Result<(), String> {
        match request {
            MdRequest::Ping { id } => {
                self.pending.push(text(&Out::Pong { id }));
                Ok(())
            }
            MdRequest::Subscribe {
                channel,
                symbol,
                depth,
                id,
            } => self.subscribe(channel, symbol, depth, id),
            MdRequest::Unsubscribe {
                channel,
                symbol,
                id,
            } => {
                let removed = match channel {
                    Channel::Book => self.books.remove(&symbol).is_some(),
                    Channel::Trades => self.trades.remove(&symbol),
                };
                if !removed {
                    return Err(format!(
                        "not subscribed to {} {}",
                        channel.as_str(),
                        symbol.as_str()
                    ));
                }
                if self.books.is_empty() && self.trades.is_empty() {
                    self.feed = None;
                }
                self.pending.push(text(&Out::Unsubscribed {
                    channel: channel.as_str(),
                    symbol: symbol.as_str(),
                    id,
                }));
                Ok(())
            }
            MdRequest::Resync { symbol, id } => {
                if !self.books.contains_key(&symbol) {
                    return Err(format!("not subscribed to book {}", symbol.as_str()));
                }
                self.resync(symbol, id);
                Ok(())
            }
        }
    }

    fn subscribe(
        &mut self,
        channel: Channel,
        symbol: Symbol,
        depth: usize,
        id: Option<u64>,
    ) -> Result<(), String> {
        let held = match channel {
            Channel::Book => self.books.contains_key(&symbol),
            Channel::Trades => self.trades.contains(&symbol),
        };
        if !held && self.books.len() + self.trades.len() >= self.config().max_subscriptions {
            return Err(format!(
                "too many subscriptions: at most {} per connection",
                self.config().max_subscriptions
            ));
        }
        let hub = &self.shared.hub;
        let levels = match channel {
            Channel::Book => BookSub::snapshot_depth(depth),
            Channel::Trades => 0,
        };
        let snapshot = match &self.feed {
            Some(_) => hub.snapshot(&symbol, levels),
            None => {
                let (snapshot, feed) = hub.subscribe(&symbol, levels);
                if snapshot.is_some() {
                    self.feed = Some(feed);
                }
                snapshot
            }
        };
        let snapshot = snapshot.ok_or_else(|| format!("unknown symbol {}", symbol.as_str()))?;
        match channel {
            Channel::Book => {
                let book = BookSub::new(&snapshot, depth);
                self.pending
                    .push(book.snapshot_message(&symbol, snapshot.position, false, id));
                self.books.insert(symbol, book);
            }
            Channel::Trades => {
                self.trades.insert(symbol);
                self.pending.push(text(&Out::Subscribed {
                    channel: channel.as_str(),
                    symbol: symbol.as_str(),
                    id,
                }));
            }
        }
        Ok(())
    }

    /// Replaces a book subscription's book with a fresh snapshot and sends it.
    fn resync(&mut self, symbol: Symbol, id: Option<u64>) {
        let Some(depth) = self.books.get(&symbol).map(|b| b.depth) else {
            return;
        };
        // A listed symbol never leaves the books.
        let levels = BookSub::snapshot_depth(depth);
        let Some(snapshot) = self.shared.hub.snapshot(&symbol, levels) else {
            return;
        };
        self.shared.counters.resyncs.fetch_add(1, Ordering::Relaxed);
        let book = BookSub::new(&snapshot, depth);
        self.pending
            .push(book.snapshot_message(&symbol, snapshot.position, true, id));
        self.books.insert(symbol, book);
    }

    fn lagged(&mut self, missed: u64) {
        self.shared.counters.lagged.fetch_add(1, Ordering::Relaxed);
        self.pending.push(text(&Out::Lagged { missed }));
        let symbols: Vec<Symbol> = self.books.keys().copied().collect();
        for symbol in symbols {
            self.resync(symbol, None);
        }
    }

    fn on_feed(&mut self, message: &MdMessage) {
        match message {
            MdMessage::Trade { symbol, .. } => {
                if self.trades.contains(symbol) {
                    self.pending.push(text(message));
                }
            }
            MdMessage::Book {
                symbol,
                seq,
                position,
                bids,
                asks,
            } => {
                let Some(book) = self.books.get_mut(symbol) else {
                    return;
                };
                if *seq <= book.seq {
                    // Already in the subscription's snapshot.
                    return;
                }
                if *seq != book.seq + 1 {
                    // A gap the feed did not report: never skip, resync.
                    return self.resync(*symbol, None);
                }
                let Some((bids, asks)) = book.apply(bids, asks) else {
                    // The levels kept ran out: the window cannot be refilled exactly.
                    return self.resync(*symbol, None);
                };
                book.seq = *seq;
                self.pending.push(text(&Out::Book {
                    symbol: symbol.as_str(),
                    seq: *seq,
                    position: *position,
                    bids: &bids,
                    asks: &asks,
                }));
            }
        }
    }
}

fn channel_and_symbol(
    channel: Option<Channel>,
    symbol: Option<Symbol>,
) -> Result<(Channel, Symbol), String> {
    match (channel, symbol) {
        (Some(channel), Some(symbol)) => Ok((channel, symbol)),
        (None, _) => Err("a channel is needed: book or trades".into()),
        (_, None) => Err("a symbol is needed".into()),
    }
}

/// Whether a receive failed because the message was over the size limit.
fn is_capacity(err: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut source = err.source();
    while let Some(err) = source {
        if let Some(tungstenite) = err.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
            return matches!(
                tungstenite,
                tokio_tungstenite::tungstenite::Error::Capacity(_)
            );
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The best `depth` levels of a side of the whole book.
    fn top(book: &BTreeMap<Price, Qty>, side: Side, depth: usize) -> Vec<Level> {
        let level = |(price, qty): (&Price, &Qty)| Level {
            price: *price,
            qty: *qty,
        };
        match side {
            Side::Buy => book.iter().rev().take(depth).map(level).collect(),
            Side::Sell => book.iter().take(depth).map(level).collect(),
        }
    }

    /// What a subscription of `depth` starts from, as the mirror would give it.
    fn subscription(book: &BTreeMap<Price, Qty>, side: Side, depth: usize, seq: u64) -> BookSub {
        let levels = top(book, side, BookSub::snapshot_depth(depth));
        let (bids, asks) = match side {
            Side::Buy => (levels, Vec::new()),
            Side::Sell => (Vec::new(), levels),
        };
        let snapshot = BookSnapshot {
            symbol: Symbol::new("S").expect("a symbol"),
            seq,
            position: 0,
            bids,
            asks,
        };
        BookSub::new(&snapshot, depth)
    }

    #[derive(Clone, Debug)]
    enum Change {
        /// New totals at prices (0: the level goes).
        Levels(Vec<(i64, i64)>),
        /// The best `n` levels go at once.
        Sweep(usize),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            8 => prop::collection::vec((0i64..90, 0i64..4), 1..12).prop_map(Change::Levels),
            1 => (1usize..50).prop_map(Change::Sweep),
        ]
    }

    /// Runs `changes` on one side; returns how many times the subscription resynced.
    fn follow(depth: usize, side: Side, changes: Vec<Change>) -> Result<usize, TestCaseError> {
        let mut book: BTreeMap<Price, Qty> = BTreeMap::new();
        let mut sub = subscription(&book, side, depth, 0);
        let mut client: Vec<Level> = Vec::new();
        let mut resyncs = 0;
        for (seq, change) in changes.into_iter().enumerate() {
            // As the mirror sends them: one entry per price, the level's new total.
            let update: BTreeMap<Price, Qty> = match change {
                Change::Levels(levels) => levels
                    .into_iter()
                    .map(|(p, q)| (Price(p), Qty(q)))
                    .filter(|(p, q)| q.0 > 0 || book.contains_key(p))
                    .collect(),
                Change::Sweep(n) => top(&book, side, n)
                    .into_iter()
                    .map(|l| (l.price, Qty(0)))
                    .collect(),
            };
            for (price, qty) in &update {
                if qty.0 > 0 {
                    book.insert(*price, *qty);
                } else {
                    book.remove(price);
                }
            }
            let mut update: Vec<Level> = update
                .into_iter()
                .map(|(price, qty)| Level { price, qty })
                .collect();
            if side == Side::Buy {
                update.reverse();
            }
            let none: &[Level] = &[];
            let applied = match side {
                Side::Buy => sub.apply(&update, none),
                Side::Sell => sub.apply(none, &update),
            };
            match applied {
                Some((bids, asks)) => {
                    let (sent, other) = match side {
                        Side::Buy => (bids, asks),
                        Side::Sell => (asks, bids),
                    };
                    prop_assert!(other.is_empty());
                    for pair in sent.windows(2) {
                        let best_first = match side {
                            Side::Buy => pair[0].price > pair[1].price,
                            Side::Sell => pair[0].price < pair[1].price,
                        };
                        prop_assert!(best_first, "{sent:?}");
                    }
                    for level in sent {
                        let at = client.iter().position(|l| l.price == level.price);
                        let held = at.map_or(Qty(0), |at| client[at].qty);
                        prop_assert_ne!(held, level.qty, "a change that changes nothing");
                        client.retain(|l| l.price != level.price);
                        if level.qty.0 > 0 {
                            client.push(level);
                        }
                    }
                    match side {
                        Side::Buy => client.sort_by_key(|l| std::cmp::Reverse(l.price)),
                        Side::Sell => client.sort_by_key(|l| l.price),
                    }
                }
                None => {
                    resyncs += 1;
                    sub = subscription(&book, side, depth, seq as u64);
                    client = sub.window(side);
                }
            }
            prop_assert_eq!(&client, &top(&book, side, depth));
            prop_assert_eq!(&sub.window(side), &client);
            let kept = match side {
                Side::Buy => sub.bids.levels.len(),
                Side::Sell => sub.asks.levels.len(),
            };
            prop_assert!(kept <= BookSub::keep(depth));
        }
        Ok(resyncs)
    }

    fn side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Buy), Just(Side::Sell)]
    }

    proptest! {
        /// A client applying a subscription's updates (and its resyncs) holds exactly the
        /// best `depth` levels of the whole book, whatever changes where; the subscription
        /// keeps a bounded number of levels.
        #[test]
        fn the_window_follows_the_book(
            depth in prop_oneof![1usize..6, 20usize..40],
            side in side(),
            changes in prop::collection::vec(change(), 0..120),
        ) {
            follow(depth, side, changes)?;
        }
    }

    /// Sweeping more levels than a subscription keeps makes it resync; one that keeps enough
    /// follows without.
    #[test]
    fn a_sweep_beyond_the_reserve_resyncs() {
        let fill = Change::Levels((1..=80).map(|p| (p, 1)).collect());
        for side in [Side::Buy, Side::Sell] {
            let resyncs = follow(5, side, vec![fill.clone(), Change::Sweep(36)]).expect("follows");
            assert_eq!(resyncs, 1, "keeps 37: a sweep of 36 leaves 1 of the 5");
            let resyncs = follow(5, side, vec![fill.clone(), Change::Sweep(32)]).expect("follows");
            assert_eq!(resyncs, 0, "a sweep of 32 leaves 5");
        }
    }
}
