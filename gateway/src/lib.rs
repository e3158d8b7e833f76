//! The trading gateway: FIX 4.4 order entry, a binary protocol, market data over WebSocket.
//!
//! - [`hub`]: what a site's sessions share: the way into the log, and the pump that turns the
//!   matcher's output into reports routed to sessions and into market data.
//! - [`binary`]: the sans-IO codec of the binary order-entry protocol
//!   (`gateway/BINARY-PROTOCOL.md`).
//! - [`binary_client`]: a client of it (load generator, drills, tests).
//! - [`binary_server`]: the binary protocol's TCP server (sessions, limits).
//! - [`fix`]: the FIX 4.4 acceptor (`gateway/FIX.md`).
//! - [`reports`]: engine events → execution reports, for every protocol.
//! - [`market_data`]: L2 books rebuilt from events, with sequence numbers and snapshots.
//! - [`md_server`]: market data over HTTP and WebSocket (`gateway/MARKET-DATA.md`).

#![forbid(unsafe_code)]

pub mod binary;
pub mod binary_client;
pub mod binary_server;
pub mod fix;
pub mod hub;
pub mod market_data;
pub mod md_server;
pub mod reports;
mod throttle;
