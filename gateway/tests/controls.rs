//! The desk follows the operator controls as the engines apply them: each symbol's trading
//! status and the kill-switched accounts, over shards, and from a recovered engine.

use engine::runner::Emitted;
use engine::{
    AccountId, AddSymbol, Command, CommandKind, Engine, EngineConfig, Event, KillSwitch, Price,
    Qty, SetTradingStatus, Symbol, TradingStatus, FIXED_ONE,
};
use gateway::{Controls, Desk, Outbox, SymbolStatus};
use TradingStatus::{CancelOnly, Open};

fn sym(name: &str) -> Symbol {
    Symbol::new(name).unwrap()
}

/// Shards' engines and the desk that follows them.
struct Site {
    desk: Desk,
    engines: Vec<Engine>,
    position: u64,
}

impl Site {
    fn new(shards: usize) -> Site {
        Site {
            desk: Desk::new(shards, 16),
            engines: (0..shards)
                .map(|_| Engine::new(EngineConfig::default()).unwrap())
                .collect(),
            position: 0,
        }
    }

    /// Applies `kind` on shard `shard`'s engine and feeds the desk its output.
    fn apply(&mut self, shard: usize, kind: CommandKind) {
        let command = Command::new(self.position + 1, kind);
        let mut events: Vec<Event> = Vec::new();
        self.engines[shard].apply(&command, &mut events);
        let mut items: Vec<Emitted> = events.into_iter().map(Emitted::Event).collect();
        items.push(Emitted::Applied {
            position: self.position,
            command,
        });
        self.position += 1;
        self.desk.apply(shard, &items, &mut Outbox::default());
    }

    fn list(&mut self, shard: usize, name: &str) {
        let add = AddSymbol {
            symbol: sym(name),
            tick: Price(FIXED_ONE),
            lot: Qty(FIXED_ONE),
        };
        self.apply(shard, CommandKind::AddSymbol(add));
    }

    fn status(&mut self, shard: usize, symbol: Option<&str>, status: TradingStatus) {
        let symbol = symbol.map(sym);
        self.apply(
            shard,
            CommandKind::TradingStatus(SetTradingStatus { symbol, status }),
        );
    }

    fn kill(&mut self, shard: usize, account: u64, on: bool) {
        let account = AccountId(account);
        self.apply(shard, CommandKind::KillSwitch(KillSwitch { account, on }));
    }
}

fn controls(symbols: &[(&str, TradingStatus)], kill_switched: &[u64]) -> Controls {
    Controls {
        symbols: symbols
            .iter()
            .map(|&(name, status)| SymbolStatus {
                symbol: sym(name),
                status,
            })
            .collect(),
        kill_switched: kill_switched.iter().copied().map(AccountId).collect(),
    }
}

#[test]
fn the_desk_follows_trading_status_and_kill_switches_over_shards() {
    let mut site = Site::new(2);
    site.list(0, "BTC");
    site.list(1, "ETH");
    site.list(1, "ADA");
    assert_eq!(
        site.desk.controls(),
        controls(&[("ADA", Open), ("BTC", Open), ("ETH", Open)], &[])
    );
    site.status(1, Some("ETH"), CancelOnly);
    // An unknown symbol is refused by the engine: nothing changes.
    site.status(0, Some("XRP"), CancelOnly);
    let expected = controls(&[("ADA", Open), ("BTC", Open), ("ETH", CancelOnly)], &[]);
    assert_eq!(site.desk.controls(), expected);
    assert_eq!(expected.status(&sym("ETH")), Some(CancelOnly));
    // Every symbol, as the hub sends it: one command per shard.
    site.status(0, None, CancelOnly);
    site.status(1, None, CancelOnly);
    let all = [
        ("ADA", CancelOnly),
        ("BTC", CancelOnly),
        ("ETH", CancelOnly),
    ];
    assert_eq!(site.desk.controls(), controls(&all, &[]));
    // A symbol listed later starts open.
    site.list(0, "DOT");
    assert_eq!(site.desk.controls().status(&sym("DOT")), Some(Open));

    for shard in [0, 1] {
        site.kill(shard, 9, true);
        site.kill(shard, 3, true);
    }
    assert_eq!(
        site.desk.controls().kill_switched,
        [AccountId(3), AccountId(9)]
    );
    // Off at one shard only: still on at the other, so still listed.
    site.kill(0, 9, false);
    assert!(site.desk.controls().kill_switch_on(AccountId(9)));
    site.kill(1, 9, false);
    let now = site.desk.controls();
    assert_eq!(now.kill_switched, [AccountId(3)]);
    assert!(!now.kill_switch_on(AccountId(9)) && now.kill_switch_on(AccountId(3)));
}

#[test]
fn a_seeded_desk_shows_the_controls_of_the_recovered_engines() {
    let mut site = Site::new(2);
    site.list(0, "BTC");
    site.list(1, "ETH");
    site.status(0, Some("BTC"), CancelOnly);
    site.kill(0, 7, true);
    site.kill(1, 7, true);
    site.kill(1, 5, true);
    let mut seeded = Desk::new(2, 16);
    for (shard, engine) in site.engines.iter().enumerate() {
        seeded.seed(shard, engine, site.position);
    }
    assert_eq!(
        seeded.controls(),
        controls(&[("BTC", CancelOnly), ("ETH", Open)], &[5, 7])
    );
    assert_eq!(seeded.controls(), site.desk.controls());
}
