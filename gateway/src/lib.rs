//! The trading gateway (FIX 4.4, binary order entry, market data over WebSocket). Not built
//! yet: see issue 5 and ARCHITECTURE.md.

#![forbid(unsafe_code)]
