//! Our `Command` stream in the terms the peer order books speak, translated once, before any
//! clock starts.
//!
//! The peers keep one book per symbol, so a command becomes (book index, [`Op`]); prices become
//! whole ticks and quantities whole lots (both peers take integers); client order ids, unique
//! per account in our engine, become one number each. A move (our amend of the price, keeping
//! the open quantity) needs the order's open quantity for a peer that re-enters it by cancel +
//! new: our engine, replaying the stream alongside, supplies it.

use std::collections::HashMap;

use engine::{AccountId, Command, CommandKind, Engine, Event, OrdType, OrderId, Side, Tif};

/// One peer operation.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// A limit order; `ioc` cancels what does not trade at once.
    Limit {
        id: u64,
        account: u64,
        side: Side,
        price: u64,
        qty: u64,
        ioc: bool,
    },
    /// A market order: trades what it can, the rest is cancelled.
    Market {
        id: u64,
        account: u64,
        side: Side,
        qty: u64,
    },
    Cancel {
        id: u64,
    },
    /// A new price for a resting order that keeps its open quantity `qty` (which our engine
    /// had when the move was applied).
    Move {
        id: u64,
        side: Side,
        price: u64,
        qty: u64,
    },
}

/// A command for one book.
#[derive(Clone, Copy, Debug)]
pub struct PeerCommand {
    pub book: u32,
    pub op: Op,
}

/// The setup and the stream, translated.
pub struct Translated {
    pub books: u32,
    pub setup: Vec<PeerCommand>,
    pub stream: Vec<PeerCommand>,
}

/// Translates `setup` (listing symbols, then orders) and `stream`. Panics on a command the
/// benchmark's generators never make (mass cancel, FOK, post-only, an amend of the quantity):
/// a new generator must extend this first.
pub fn translate(
    engine_config: engine::EngineConfig,
    setup: &[Command],
    stream: &[Command],
) -> Translated {
    let mut state = State {
        engine: Engine::new(engine_config).expect("the workload's config is valid"),
        events: Vec::with_capacity(1 << 12),
        ids: HashMap::new(),
        units: Vec::new(),
    };
    let setup = setup.iter().filter_map(|cmd| state.next(cmd)).collect();
    let stream = stream
        .iter()
        .map(|cmd| state.next(cmd).expect("only orders after the setup"))
        .collect();
    Translated {
        books: state.units.len() as u32,
        setup,
        stream,
    }
}

struct State {
    engine: Engine,
    events: Vec<Event>,
    ids: HashMap<(AccountId, OrderId), u64>,
    /// (tick, lot) of each listed symbol.
    units: Vec<(i64, i64)>,
}

impl State {
    /// Translates `cmd`, then applies it to our engine. `None` for `add_symbol`, which only
    /// makes a book.
    fn next(&mut self, cmd: &Command) -> Option<PeerCommand> {
        let translated = self.translate(cmd);
        self.events.clear();
        self.engine.apply(cmd, &mut self.events);
        if let CommandKind::AddSymbol(add) = &cmd.kind {
            self.units.push((add.tick.0, add.lot.0));
        }
        translated
    }

    fn book(&self, symbol: &engine::Symbol) -> u32 {
        self.engine.symbol_id(symbol).expect("a listed symbol").0
    }

    fn id(&mut self, account: AccountId, order_id: OrderId) -> u64 {
        let next = self.ids.len() as u64 + 1;
        *self.ids.entry((account, order_id)).or_insert(next)
    }

    fn translate(&mut self, cmd: &Command) -> Option<PeerCommand> {
        let (book, op) = match &cmd.kind {
            CommandKind::AddSymbol(_) => return None,
            CommandKind::New(order) => {
                assert!(!order.post_only && order.tif != Tif::Fok, "not generated");
                let book = self.book(&order.symbol);
                let (tick, lot) = self.units[book as usize];
                let id = self.id(order.account, order.order_id);
                let qty = (order.qty.0 / lot) as u64;
                let op = match (order.ord_type, order.price) {
                    (OrdType::Limit, Some(price)) => Op::Limit {
                        id,
                        account: order.account.0,
                        side: order.side,
                        price: (price.0 / tick) as u64,
                        qty,
                        ioc: order.tif == Tif::Ioc,
                    },
                    _ => Op::Market {
                        id,
                        account: order.account.0,
                        side: order.side,
                        qty,
                    },
                };
                (book, op)
            }
            CommandKind::Cancel(cancel) => {
                let id = self.id(cancel.account, cancel.order_id);
                (self.book(&cancel.symbol), Op::Cancel { id })
            }
            CommandKind::Amend(amend) => {
                assert!(amend.qty.is_none(), "the generators only move prices");
                let book = self.book(&amend.symbol);
                let (tick, lot) = self.units[book as usize];
                let id = self.id(amend.account, amend.order_id);
                let price = amend.price.expect("the generators only move prices");
                let op = match self.engine.live_order(amend.account, &amend.order_id) {
                    Some(order) => Op::Move {
                        id,
                        side: order.side,
                        price: (price.0 / tick) as u64,
                        qty: (order.qty.0 / lot) as u64,
                    },
                    // Not live here (nor, normally, at a peer): the peer's own miss.
                    None => Op::Cancel { id },
                };
                (book, op)
            }
            CommandKind::MassCancel(_)
            | CommandKind::CancelAfter(_)
            | CommandKind::Clock
            | CommandKind::TradingStatus(_)
            | CommandKind::KillSwitch(_)
            | CommandKind::Rules(_) => panic!("not generated"),
        };
        Some(PeerCommand { book, op })
    }
}
