//! One truth at every site: three sites apply one log, each an engine and a desk; the third
//! restarts mid-log from a snapshot of its engine, its desk seeded from the restored engine.
//! After every command, every site answers every status question (every id ever used, by
//! every account) and every mass status identically, down to the encoded bytes of the
//! binary and FIX answers. The log has fills, amends by total, replace chains, resends,
//! cancels, IOC rests and the dedup window expiring (a short window on log time). The
//! restarted site's market data (book updates, trades and snapshots) is numbered exactly as
//! the others'.

use engine::runner::Emitted;
use engine::{
    AccountId, AddSymbol, AmendOrder, CancelOrder, Command, CommandKind, Engine, EngineConfig,
    Event, NewOrder, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif, FIXED_ONE,
};
use flow::SplitMix64;
use gateway::binary::{encode_server, ServerMessage};
use gateway::binary_server::exec_report;
use gateway::fix::mapping;
use gateway::{Desk, OrdStatus, Outbox, Report};

const WINDOW_NS: u64 = 400;
const ACCOUNTS: u64 = 3;
const IDS: u64 = 12;

fn sym() -> Symbol {
    Symbol::new("BTC").unwrap()
}

fn oid(id: &str) -> OrderId {
    OrderId::new(id).unwrap()
}

fn config() -> EngineConfig {
    EngineConfig {
        dedup_window_ns: WINDOW_NS,
        ..EngineConfig::default()
    }
}

/// One site: an engine and a desk fed its output, one command per batch.
struct Site {
    engine: Engine,
    desk: Desk,
    outbox: Outbox,
}

impl Site {
    fn new() -> Site {
        Site {
            engine: Engine::new(config()).unwrap(),
            desk: Desk::new(1, WINDOW_NS),
            outbox: Outbox::default(),
        }
    }

    /// A site restarted from a snapshot of `engine`, whose next command is at `position`.
    fn restarted(engine: &Engine, position: u64) -> Site {
        let engine = Engine::restore(&engine.snapshot()).unwrap();
        let mut desk = Desk::new(1, WINDOW_NS);
        desk.seed(0, &engine, position);
        Site {
            engine,
            desk,
            outbox: Outbox::default(),
        }
    }

    fn apply(&mut self, position: u64, command: &Command) {
        let mut events: Vec<Event> = Vec::new();
        self.engine.apply(command, &mut events);
        let mut batch: Vec<Emitted> = events.into_iter().map(Emitted::Event).collect();
        batch.push(Emitted::Applied {
            position,
            command: *command,
        });
        self.desk.apply(0, &batch, &mut self.outbox);
    }

    /// Every answer a member could get, encoded as the binary and FIX gateways send them.
    fn answers(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for account in 1..=ACCOUNTS {
            let account = AccountId(account);
            for n in 0..IDS {
                for id in [format!("o{n}"), format!("o{n}r"), format!("o{n}rr")] {
                    let state = self.desk.order_state(0, account, &oid(&id));
                    out.push(encode(state.as_ref()));
                }
            }
            out.extend(
                self.desk
                    .mass_status(account)
                    .iter()
                    .map(|r| encode(Some(r))),
            );
        }
        out
    }
}

/// A status answer as the binary gateway's bytes and the FIX gateway's message.
fn encode(state: Option<&Report>) -> Vec<u8> {
    let Some(state) = state else {
        return b"unknown".to_vec();
    };
    let mut bytes = Vec::new();
    encode_server(
        &ServerMessage::ExecutionReport(exec_report(state)),
        &mut bytes,
    );
    bytes.extend_from_slice(format!("{:?}", mapping::order_status(state)).as_bytes());
    bytes
}

fn limit(account: u64, id: &str, side: Side, price: i64, qty: i64, tif: Tif) -> CommandKind {
    CommandKind::New(NewOrder {
        account: AccountId(account),
        order_id: oid(id),
        symbol: sym(),
        side,
        ord_type: OrdType::Limit,
        price: Some(Price(price * FIXED_ONE)),
        qty: Qty(qty * FIXED_ONE),
        tif,
        post_only: false,
        stp: Stp::None,
        session: account,
    })
}

/// A random command of the log: orders (some resent), replaces by total with a new id (some
/// resent), cancels by any id of a chain, and idle time.
fn random_command(rng: &mut SplitMix64) -> CommandKind {
    let account = 1 + rng.below(ACCOUNTS);
    let n = rng.below(IDS);
    let side = if rng.below(2) == 0 {
        Side::Buy
    } else {
        Side::Sell
    };
    let price = 100 + rng.below(5) as i64;
    let chain = ["", "r", "rr"][rng.below(3) as usize];
    match rng.below(10) {
        0..=3 => limit(
            account,
            &format!("o{n}"),
            side,
            price,
            1 + rng.below(9) as i64,
            Tif::Gtc,
        ),
        4 => limit(account, &format!("o{n}"), side, price, 3, Tif::Ioc),
        5 | 6 => CommandKind::Amend(AmendOrder {
            account: AccountId(account),
            symbol: sym(),
            order_id: oid(&format!("o{n}{chain}")),
            price: (rng.below(2) == 0).then(|| Price(price * FIXED_ONE)),
            qty: Some(Qty((1 + rng.below(12) as i64) * FIXED_ONE)),
            new_order_id: (chain != "rr").then(|| oid(&format!("o{n}{chain}r"))),
        }),
        7 => CommandKind::Cancel(CancelOrder {
            account: AccountId(account),
            symbol: sym(),
            order_id: oid(&format!("o{n}{chain}")),
        }),
        _ => CommandKind::Clock,
    }
}

#[test]
fn every_site_answers_every_status_question_identically() {
    let mut rng = SplitMix64(0x1d1e);
    let mut log = vec![Command::new(
        1,
        CommandKind::AddSymbol(AddSymbol {
            symbol: sym(),
            tick: Price(FIXED_ONE),
            lot: Qty(FIXED_ONE),
        }),
    )];
    for ts in 2..1500u64 {
        log.push(Command::new(ts * 3, random_command(&mut rng)));
    }
    let restart_at = 700;
    let (mut a, mut b) = (Site::new(), Site::new());
    let mut c = None;
    let (mut compared, mut remembered, mut replaced) = (0, 0, 0);
    for (position, command) in log.iter().enumerate() {
        let position = position as u64;
        if position == restart_at {
            c = Some(Site::restarted(&b.engine, position));
        }
        for site in [&mut a, &mut b].into_iter().chain(c.as_mut()) {
            site.apply(position, command);
        }
        let answers = a.answers();
        assert_eq!(answers, b.answers(), "sites a and b differ at {position}");
        if let Some(c) = &c {
            assert_eq!(
                answers,
                c.answers(),
                "the restarted site differs at {position}"
            );
            // Market data too: the same updates, numbered alike, and the same snapshot, so a
            // subscriber can switch sites and continue from its last number.
            assert_eq!(
                a.outbox.market_data, c.outbox.market_data,
                "market data at {position}"
            );
            assert_eq!(
                a.desk.snapshot(&sym(), usize::MAX),
                c.desk.snapshot(&sym(), usize::MAX)
            );
            compared += 1;
        }
        remembered += answers
            .iter()
            .filter(|x| x.as_slice() != b"unknown")
            .count();
        replaced += a
            .engine
            .orders()
            .iter()
            .filter(|o| o.replaced_by.is_some())
            .count();
    }
    // The log exercised what the test is about.
    assert!(
        compared > 700 && remembered > 10_000 && replaced > 100,
        "{compared} {remembered} {replaced}"
    );
}

/// A replace with OrderQty 10 after 7 of 10 filled leaves 3 open, also at a site that
/// restarted between the fill and the replace: OrderQty is the total, on the log.
#[test]
fn a_replace_to_the_same_total_after_a_restart_leaves_what_is_open() {
    let mut site = Site::new();
    let commands = [
        CommandKind::AddSymbol(AddSymbol {
            symbol: sym(),
            tick: Price(FIXED_ONE),
            lot: Qty(FIXED_ONE),
        }),
        limit(1, "a", Side::Buy, 100, 10, Tif::Gtc),
        limit(2, "b", Side::Sell, 100, 7, Tif::Gtc),
    ];
    for (position, kind) in commands.into_iter().enumerate() {
        site.apply(position as u64, &Command::new(position as u64 + 1, kind));
    }
    let mut restarted = Site::restarted(&site.engine, 3);
    let replace = CommandKind::Amend(AmendOrder {
        account: AccountId(1),
        symbol: sym(),
        order_id: oid("a"),
        price: None,
        qty: Some(Qty(10 * FIXED_ONE)),
        new_order_id: Some(oid("a2")),
    });
    restarted.apply(3, &Command::new(4, replace));
    let state = restarted
        .desk
        .order_state(0, AccountId(1), &oid("a"))
        .unwrap();
    assert_eq!(
        (
            state.cl_ord_id,
            state.ord_status,
            state.order_qty,
            state.cum_qty,
            state.leaves_qty
        ),
        (
            oid("a2"),
            OrdStatus::PartiallyFilled,
            Qty(10 * FIXED_ONE),
            Qty(7 * FIXED_ONE),
            Qty(3 * FIXED_ONE)
        )
    );
    let live = restarted.engine.order(AccountId(1), &oid("a2")).unwrap();
    assert_eq!(live.leaves, Qty(3 * FIXED_ONE));
}

/// A member's order fills while it fails over (its site dark, the fills applied elsewhere): a
/// mass status at the site it reaches next lists the order with those fills, live and
/// finished, as every site would.
#[test]
fn mass_status_after_failover_shows_the_fills_that_happened_during_it() {
    let (mut dark, mut next) = (Site::new(), Site::new());
    let setup = [
        CommandKind::AddSymbol(AddSymbol {
            symbol: sym(),
            tick: Price(FIXED_ONE),
            lot: Qty(FIXED_ONE),
        }),
        limit(1, "m1", Side::Buy, 100, 10, Tif::Gtc),
        limit(1, "m2", Side::Buy, 99, 2, Tif::Gtc),
    ];
    let during = [
        limit(2, "t1", Side::Sell, 100, 4, Tif::Ioc),
        limit(2, "t2", Side::Sell, 99, 8, Tif::Ioc),
    ];
    let mut position = 0;
    for kind in setup {
        let command = Command::new(position + 1, kind);
        dark.apply(position, &command);
        next.apply(position, &command);
        position += 1;
    }
    // The member's site goes dark; the log goes on at the others.
    for kind in during {
        next.apply(position, &Command::new(position + 1, kind));
        position += 1;
    }
    let status = next.desk.mass_status(AccountId(1));
    let seen: Vec<_> = status
        .iter()
        .map(|r| (r.cl_ord_id, r.ord_status, r.cum_qty, r.leaves_qty))
        .collect();
    assert_eq!(
        seen,
        [
            (oid("m1"), OrdStatus::Filled, Qty(10 * FIXED_ONE), Qty(0)),
            (oid("m2"), OrdStatus::Filled, Qty(2 * FIXED_ONE), Qty(0)),
        ]
    );
    // The dark site, had it answered, would have said something else: the answer is the log's.
    assert_ne!(dark.desk.mass_status(AccountId(1)), status);
}
