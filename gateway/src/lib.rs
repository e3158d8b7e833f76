//! The trading gateway: FIX 4.4 order entry, a binary protocol, market data over WebSocket.
//!
//! Built so far: [`binary`], the sans-IO codec of the binary order-entry protocol
//! (`gateway/BINARY-PROTOCOL.md`), and [`reports`], which turns engine events into the
//! execution reports every protocol sends. The sessions, the FIX acceptor (see
//! `gateway/FIX-EVALUATION.md`) and market data are issue 5's remaining work.

#![forbid(unsafe_code)]

pub mod binary;
pub mod reports;
