//! The matching core: a deterministic, single-threaded, allocation-free state machine.
//!
//! [`Engine::apply`] takes one [`Command`] and writes the [`Event`]s it causes to an
//! [`EventSink`]. It does no I/O, reads no clock (time is the command's `ts`), has no
//! randomness and never iterates in an order that depends on memory layout, so every replica
//! that applies the same log produces the same events and the same [`Engine::state_hash`].
//! The exact semantics are those of `shared/replay-contract.md`; `ARCHITECTURE.md` lists the
//! invariants and where this engine extends the contract (capacities, extra event fields).
//!
//! Around it: [`ring`], a bounded lock-free SPSC ring (model-checked with loom; with the
//! `prefetch` cache hint, the crate's only `unsafe`), and [`runner`], the matcher thread between
//! an input and an output ring.

// `unsafe` is allowed in `ring` and in `prefetch` (a cache hint), each block saying why it is
// sound.
#![deny(unsafe_code)]

mod alloc;
mod command;
mod config;
mod engine;
mod event;
mod finished;
mod index;
mod invariants;
mod prefetch;
pub mod ring;
pub mod runner;
mod snapshot;
mod state_hash;
mod switches;
mod sync;
mod types;
mod units;

pub use command::{
    decode as decode_command, AddSymbol, AmendOrder, CancelAfter, CancelOrder, Command,
    CommandKind, DecodeError, KillSwitch, MassCancel, NewOrder, SetRules, SetTradingStatus,
    RULES_VERSION,
};
pub use config::{ConfigError, EngineConfig, COUNT_MAX, DEFAULT_DEDUP_WINDOW_NS, PUBLIC_HASH_SEED};
pub use engine::{DepthLevel, Engine, EngineStats, OrderView, RestingOrder, SymbolInfo};
pub use event::{CancelReason, Event, EventKind, EventSink, RejectReason, Request};
pub use snapshot::{SnapshotError, SNAPSHOT_VERSION, SNAPSHOT_VERSION_OLDEST};
pub use state_hash::StateHash;
pub use types::{
    AccountId, Lots, NameError, NotADecimal, OrdType, OrderId, OrderStatus, Price, Qty, Side, Stp,
    Symbol, SymbolId, Ticks, Tif, TimestampNs, TradingStatus, FIXED_ONE, FIXED_SCALE_DIGITS,
};
