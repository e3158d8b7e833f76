//! Market data over HTTP and WebSocket (`gateway/MARKET-DATA.md`).
//!
//! - `GET /v1/book/{symbol}?depth=N`: a JSON [`crate::desk::BookSnapshot`] of the desk's L2
//!   books.
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

//!
//! - `protocol`: the limits, the requests and the messages (sans-IO);
//! - `window`: a book subscription's window over the symbol's book (sans-IO);
//! - `server`: the HTTP endpoint and the WebSocket connections.

mod protocol;
mod server;
mod window;

pub use protocol::{close_code, parse_request, BadRequest, Channel, MdConfig, MdRequest};
pub use server::{serve, MdCounters, MdServer};
