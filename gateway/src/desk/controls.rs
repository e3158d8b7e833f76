//! The operator controls as the log set them: each symbol's trading status and the accounts
//! whose kill switch is on, per shard, seeded from the recovered engine and followed from its
//! `trading_status` and `kill_switch` events. Every site applies the same log, so every site
//! shows the same controls at the same positions.

use std::collections::{BTreeMap, BTreeSet};

use engine::{AccountId, Engine, EventKind, Symbol, TradingStatus};
use serde::Serialize;

/// The controls of every shard at one moment (what `GET /v1/admin/controls` answers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Controls {
    /// Every listed symbol and its status, in name order.
    pub symbols: Vec<SymbolStatus>,
    /// The accounts whose kill switch is on, in id order. On a site of several shards an
    /// account is listed while its switch is on at any of them (each shard applies the
    /// command from its own log, so for a moment some may have and some not).
    pub kill_switched: Vec<AccountId>,
}

/// One symbol's trading status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SymbolStatus {
    pub symbol: Symbol,
    pub status: TradingStatus,
}

impl Controls {
    /// The status of `symbol`, if it is listed.
    pub fn status(&self, symbol: &Symbol) -> Option<TradingStatus> {
        self.symbols
            .iter()
            .find(|s| s.symbol == *symbol)
            .map(|s| s.status)
    }

    /// Whether `account`'s kill switch is on (at any shard).
    pub fn kill_switch_on(&self, account: AccountId) -> bool {
        self.kill_switched.binary_search(&account).is_ok()
    }
}

/// One shard's controls.
#[derive(Debug, Default)]
pub(crate) struct ShardControls {
    status: BTreeMap<Symbol, TradingStatus>,
    kill_switched: BTreeSet<AccountId>,
}

impl ShardControls {
    /// The controls of a recovered `engine`.
    pub(crate) fn seed(engine: &Engine) -> ShardControls {
        ShardControls {
            status: engine
                .symbols()
                .map(|info| {
                    (
                        info.name,
                        engine.trading_status(info.id).unwrap_or_default(),
                    )
                })
                .collect(),
            kill_switched: engine.kill_switched().into_iter().collect(),
        }
    }

    /// A symbol was listed: it starts open.
    pub(crate) fn list(&mut self, symbol: Symbol) {
        self.status.entry(symbol).or_default();
    }

    /// Follows an engine event (only `trading_status` and `kill_switch` change anything).
    pub(crate) fn follow(&mut self, event: &EventKind) {
        match *event {
            EventKind::TradingStatus { symbol, status } => {
                self.status.insert(symbol, status);
            }
            EventKind::KillSwitch { account, on: true } => {
                self.kill_switched.insert(account);
            }
            EventKind::KillSwitch { account, on: false } => {
                self.kill_switched.remove(&account);
            }
            _ => {}
        }
    }
}

/// The controls of all `shards` together.
pub(crate) fn merge<'a>(shards: impl Iterator<Item = &'a ShardControls>) -> Controls {
    let mut status = BTreeMap::new();
    let mut kill_switched = BTreeSet::new();
    for shard in shards {
        status.extend(&shard.status);
        kill_switched.extend(&shard.kill_switched);
    }
    Controls {
        symbols: status
            .into_iter()
            .map(|(symbol, status)| SymbolStatus { symbol, status })
            .collect(),
        kill_switched: kill_switched.into_iter().collect(),
    }
}
