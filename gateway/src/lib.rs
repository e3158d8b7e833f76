//! The trading gateway: FIX 4.4 order entry, a binary protocol, market data over WebSocket.
//!
//! Built so far: [`binary`], the sans-IO codec of the binary order-entry protocol
//! (`gateway/BINARY-PROTOCOL.md`). The sessions, the FIX acceptor and market data are issue 5's
//! remaining work (see ARCHITECTURE.md).

#![forbid(unsafe_code)]

pub mod binary;
