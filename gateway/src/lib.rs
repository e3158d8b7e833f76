//! The trading gateway: FIX 4.4 order entry, a binary protocol, market data over WebSocket.
//!
//! - [`desk`]: sans-IO, what a site knows about orders and books: engine output → execution
//!   reports, order states, L2 books. No lock, no thread, no clock.
//! - [`hub`]: the runtime around the desk that every session shares: the way into each
//!   shard's log, the desk behind one lock, the market data feed, and delivery to sessions.
//! - [`binary`]: the sans-IO codec of the binary order-entry protocol
//!   (`gateway/BINARY-PROTOCOL.md`); [`binary_client`]: a client of it (load generator, drills,
//!   tests); [`binary_server`]: its TCP server (sessions, limits).
//! - [`fix`]: the FIX 4.4 acceptor (`gateway/FIX.md`).
//! - [`md`]: market data over HTTP and WebSocket (`gateway/MARKET-DATA.md`).
//! - [`members`]: who may log on; [`metrics`]: the counters the node exposes.

#![forbid(unsafe_code)]

pub mod binary;
pub mod binary_client;
pub mod binary_server;
pub mod desk;
pub mod fix;
pub mod hub;
pub mod md;
pub mod members;
pub mod metrics;
pub mod switch;
mod throttle;
pub mod tls;

pub use binary_server::BinaryConfig;
pub use desk::{
    BookSnapshot, Controls, Desk, ExecType, GatewayReason, Level, MdMessage, OrdStatus, Outbox,
    Reason, Report, SubmitError, SymbolStatus, ToSession,
};
pub use fix::{FixConfig, FixGateway};
pub use hub::{idle_due, Hub, Sequencer, PUMP_WAIT};
pub use md::{MdConfig, MdServer};
pub use members::{Member, Members, MembersError};
pub use metrics::{now_ns, HubCounters, LatencyHistogram, REJECT_REASONS};
