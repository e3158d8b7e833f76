//! The market data protocol, sans-IO: the server's limits ([`MdConfig`]), what a client may
//! ask ([`parse_request`]) and the JSON messages the server sends (`gateway/MARKET-DATA.md`).

use axum::extract::ws::Message;
use engine::Symbol;
use serde::{Deserialize, Serialize};

use crate::desk::Level;

/// Limits and timings of the market data server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    pub(super) fn default_depth(&self) -> usize {
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

/// The body of every error, HTTP or WebSocket.
#[derive(Serialize)]
pub(super) struct ErrorBody<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<u64>,
}

pub(super) fn parse_symbol(text: &str) -> Result<Symbol, String> {
    Symbol::new(text).map_err(|err| format!("bad symbol: {err}"))
}

pub(super) fn check_depth(depth: u64, config: &MdConfig) -> Result<usize, String> {
    usize::try_from(depth)
        .ok()
        .filter(|d| (1..=config.max_depth).contains(d))
        .ok_or_else(|| format!("depth must be 1 to {}", config.max_depth))
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
pub(super) enum Out<'a> {
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
    /// The site's state changed (or, on connecting, is not `ok`): `unavailable` (cut off from
    /// the log: what it sends may be behind the other sites without its knowing) or
    /// `catching_up` (behind its log: what it sends is old); `ok` again once it is neither.
    Status { status: &'static str },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
}

pub(super) fn text(value: &impl Serialize) -> Message {
    // Serializing these types cannot fail: strings, numbers and decimal strings only.
    Message::Text(serde_json::to_string(value).unwrap_or_default().into())
}

pub(super) fn channel_and_symbol(
    channel: Option<Channel>,
    symbol: Option<Symbol>,
) -> Result<(Channel, Symbol), String> {
    match (channel, symbol) {
        (Some(channel), Some(symbol)) => Ok((channel, symbol)),
        (None, _) => Err("a channel is needed: book or trades".into()),
        (_, None) => Err("a symbol is needed".into()),
    }
}
