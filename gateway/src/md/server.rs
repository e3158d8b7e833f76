//! The market data server: the HTTP `book` endpoint and the WebSocket connections, each one
//! tokio task over one receiver of the hub's broadcast feed.

use std::collections::{HashMap, HashSet};
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
use engine::Symbol;
use futures_util::SinkExt;
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, Instant};

use super::protocol::{
    check_depth, close_code, parse_request, parse_symbol, text, Channel, ErrorBody, MdConfig,
    MdRequest, Out,
};
use super::window::BookSub;
use crate::desk::{GatewayReason, MdMessage};
use crate::hub::Hub;
use crate::SubmitError;

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
    /// Requests answered with an error: over HTTP (a bad symbol or depth, an unknown symbol,
    /// a refused upgrade) or on a WebSocket.
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

/// An HTTP error answer, counted as a bad request.
fn http_error(shared: &Shared, status: StatusCode, message: &str) -> Response {
    shared.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
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

async fn book(
    State(shared): State<Arc<Shared>>,
    symbol: Result<Path<String>, PathRejection>,
    query: Result<Query<BookQuery>, QueryRejection>,
) -> Response {
    let symbol = match symbol {
        Ok(Path(symbol)) => match parse_symbol(&symbol) {
            Ok(symbol) => symbol,
            Err(message) => return http_error(&shared, StatusCode::BAD_REQUEST, &message),
        },
        Err(rejection) => {
            return http_error(&shared, StatusCode::BAD_REQUEST, &rejection.body_text())
        }
    };
    let depth = match query {
        Ok(Query(BookQuery { depth: None })) => shared.config.default_depth(),
        Ok(Query(BookQuery { depth: Some(text) })) => {
            // Not a number at all gets the same answer as one out of range.
            let depth = text.parse::<u64>().unwrap_or(0);
            match check_depth(depth, &shared.config) {
                Ok(depth) => depth,
                Err(message) => return http_error(&shared, StatusCode::BAD_REQUEST, &message),
            }
        }
        Err(rejection) => {
            return http_error(&shared, StatusCode::BAD_REQUEST, &rejection.body_text())
        }
    };
    match shared.hub.snapshot(&symbol, depth) {
        Some(snapshot) => Json(snapshot).into_response(),
        None => http_error(
            &shared,
            StatusCode::NOT_FOUND,
            &format!("unknown symbol {}", symbol.as_str()),
        ),
    }
}

// ----- WebSocket: a connection ---------------------------------------------------------------------

async fn websocket(
    State(shared): State<Arc<Shared>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return http_error(&shared, rejection.status(), &rejection.body_text()),
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

/// How often a connection looks whether its site is ready (see [`Out::Status`]).
const STATUS_EVERY: Duration = Duration::from_millis(250);

/// What woke the connection up.
enum Wake {
    Shutdown,
    Incoming(Option<Result<Message, axum::Error>>),
    Feed(Result<Arc<MdMessage>, RecvError>),
    Tick,
    Status,
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
    /// The site's state as the client was last told it (`ok` until told otherwise).
    told: &'static str,
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
            told: "ok",
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
        let mut status = tokio::time::interval(STATUS_EVERY);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                biased;
                _ = closing.wait_for(|closing| *closing) => Wake::Shutdown,
                incoming = self.socket.recv() => Wake::Incoming(incoming),
                feed = next_feed(&mut self.feed) => Wake::Feed(feed),
                _ = ping.tick() => Wake::Tick,
                _ = status.tick() => Wake::Status,
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
                Wake::Status => self.tell_status(),
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

    /// Tells the client when its site stops or starts being ready: a site cut off from its
    /// log, or catching up with it, sends market data that may be old (a site whose clock is
    /// wrong does not: market data carries the log's time).
    fn tell_status(&mut self) {
        let status = match self.shared.hub.log_ready(None) {
            Ok(()) | Err(SubmitError::ClockSkew) => "ok",
            Err(refused) => GatewayReason::from(refused).as_str(),
        };
        if status != self.told {
            self.told = status;
            self.pending.push(text(&Out::Status { status }));
        }
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
