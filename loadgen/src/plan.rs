//! The flow turned into per-session request lists, generated before the run starts so that
//! the sender only paces and writes.
//!
//! Every request is [`Planned`] compactly (40 bytes) and encoded into a [`ClientMessage`] only
//! when it is sent. Each flow account is a member ([`Sessions`]); each of the member's
//! orders stays on one of its sessions (chosen by order number), so a session sees every
//! request about its orders and matches their acknowledgements alone.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{anyhow, bail, Context, Result};
use engine::{CommandKind, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif};
use gateway::binary::{ClientMessage, NewOrderMsg};

use flow::{FlowConfig, FlowGenerator, FlowStats};

/// The request types a run sends, each with its own latency histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    New,
    Cancel,
    Replace,
    MassCancel,
}

impl RequestKind {
    pub const ALL: [RequestKind; 4] = [
        RequestKind::New,
        RequestKind::Cancel,
        RequestKind::Replace,
        RequestKind::MassCancel,
    ];

    /// The name in results: `new`, `cancel`, `replace`, `mass_cancel`.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::New => "new",
            RequestKind::Cancel => "cancel",
            RequestKind::Replace => "replace",
            RequestKind::MassCancel => "mass_cancel",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// `Planned::symbol` of a mass cancel of every symbol.
pub(crate) const ALL_SYMBOLS: u32 = u32::MAX;
/// `Planned::seq` of a setup order (sent before the schedule starts, not measured).
pub(crate) const SETUP: u32 = u32::MAX;

const MARKET: u8 = 1;
const POST_ONLY: u8 = 2;
const HAS_PRICE: u8 = 4;
const HAS_QTY: u8 = 8;

/// One request, compactly.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planned {
    /// The flow's order number (client order id `o<num>`); unused for mass cancels.
    pub num: u64,
    pub price: i64,
    pub qty: i64,
    /// Index into the run's symbols, or [`ALL_SYMBOLS`].
    pub symbol: u32,
    /// Place in the schedule (intended send time `seq / rate`), or [`SETUP`].
    pub seq: u32,
    pub kind: RequestKind,
    pub side: Side,
    pub tif: Tif,
    pub stp: Stp,
    flags: u8,
}

impl Planned {
    /// A request with no price, quantity or flags (side, TIF and STP: buy, GTC, none).
    fn bare(num: u64, symbol: u32, kind: RequestKind, seq: u32) -> Planned {
        Planned {
            num,
            price: 0,
            qty: 0,
            symbol,
            seq,
            kind,
            side: Side::Buy,
            tif: Tif::Gtc,
            stp: Stp::None,
            flags: 0,
        }
    }

    /// The key its acknowledgement is matched by.
    pub fn key(&self) -> (u64, RequestKind) {
        match self.kind {
            RequestKind::MassCancel => (u64::from(self.symbol), self.kind),
            _ => (self.num, self.kind),
        }
    }
}

/// How sessions are assigned: session `k` logs on as member `k % members`; the flow's account
/// `a` (1-based) is member `a - 1`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sessions {
    pub connections: usize,
    /// Members in use: `min(members, connections)`; the flow has this many accounts.
    pub members: usize,
}

impl Sessions {
    /// The member a session logs on as.
    pub fn member_of(&self, session: usize) -> usize {
        session % self.members
    }

    /// The session that carries the requests about order `num` of the flow's `account`.
    fn session(&self, account: u64, num: u64) -> usize {
        let member = (account.saturating_sub(1) % self.members as u64) as usize;
        let sessions = self.sessions_of(member) as u64;
        member + self.members * (num % sessions) as usize
    }

    /// How many sessions a member has.
    fn sessions_of(&self, member: usize) -> usize {
        (self.connections - member).div_ceil(self.members)
    }
}

/// Everything a run sends, per session.
pub(crate) struct Plan {
    /// Per session: its setup orders, then its scheduled requests in schedule order.
    pub sessions: Vec<Vec<Planned>>,
    /// Per session: how many of its requests are setup orders.
    pub setup: Vec<usize>,
    /// By schedule place: the session that sends it.
    pub schedule: Vec<u16>,
    /// Scheduled requests per kind.
    pub kinds: [u64; 4],
    /// What the flow generated (the setup orders and the scheduled commands).
    pub flow: FlowStats,
}

impl Plan {
    /// Generates `scheduled` commands of `flow` (after its setup) for `sessions`.
    pub fn build(flow: FlowConfig, sessions: Sessions, scheduled: u64) -> Result<Plan> {
        if scheduled >= u64::from(SETUP) {
            bail!("{scheduled} requests in one run is too many");
        }
        if sessions.connections > usize::from(u16::MAX) {
            bail!("at most {} connections", u16::MAX);
        }
        let by_name: HashMap<Symbol, u32> = (0..flow.symbols)
            .map(|i| {
                let name = Symbol::new(&FlowConfig::symbol_name(i)).expect("short ASCII name");
                (name, i)
            })
            .collect();
        let mut generator = FlowGenerator::new(flow);
        let mut plan = Plan {
            sessions: vec![Vec::new(); sessions.connections],
            setup: vec![0; sessions.connections],
            schedule: Vec::with_capacity(scheduled as usize),
            kinds: [0; 4],
            flow: FlowStats::default(),
        };
        for command in generator.setup() {
            if let Some((session, planned)) = plan_one(&command.kind, &by_name, sessions, SETUP)? {
                plan.sessions[session].push(planned);
                plan.setup[session] += 1;
            }
        }
        for seq in 0..scheduled as u32 {
            let command = generator.next_command();
            let Some((session, planned)) = plan_one(&command.kind, &by_name, sessions, seq)? else {
                continue;
            };
            plan.sessions[session].push(planned);
            plan.schedule.push(session as u16);
            plan.kinds[planned.kind.index()] += 1;
        }
        plan.flow = *generator.stats();
        Ok(plan)
    }
}

/// One command as a request on its session; `None` for commands a gateway does not take.
fn plan_one(
    kind: &CommandKind,
    by_name: &HashMap<Symbol, u32>,
    sessions: Sessions,
    seq: u32,
) -> Result<Option<(usize, Planned)>> {
    let symbol = |name: &Symbol| symbol_index(by_name, name);
    Ok(Some(match kind {
        CommandKind::New(order) => {
            let num = flow_number(&order.order_id)?;
            let flags = match order.ord_type {
                OrdType::Market => MARKET,
                OrdType::Limit => 0,
            } | if order.post_only { POST_ONLY } else { 0 };
            let planned = Planned {
                price: order.price.map_or(0, |p| p.0),
                qty: order.qty.0,
                side: order.side,
                tif: order.tif,
                stp: order.stp,
                flags,
                ..Planned::bare(num, symbol(&order.symbol)?, RequestKind::New, seq)
            };
            (sessions.session(order.account.0, num), planned)
        }
        CommandKind::Cancel(cancel) => {
            let num = flow_number(&cancel.order_id)?;
            let planned = Planned::bare(num, symbol(&cancel.symbol)?, RequestKind::Cancel, seq);
            (sessions.session(cancel.account.0, num), planned)
        }
        CommandKind::Amend(amend) => {
            let num = flow_number(&amend.order_id)?;
            let flags = if amend.price.is_some() { HAS_PRICE } else { 0 }
                | if amend.qty.is_some() { HAS_QTY } else { 0 };
            let planned = Planned {
                price: amend.price.map_or(0, |p| p.0),
                qty: amend.qty.map_or(0, |q| q.0),
                flags,
                ..Planned::bare(num, symbol(&amend.symbol)?, RequestKind::Replace, seq)
            };
            (sessions.session(amend.account.0, num), planned)
        }
        CommandKind::MassCancel(mass) => {
            let symbol = match &mass.symbol {
                Some(name) => symbol(name)?,
                None => ALL_SYMBOLS,
            };
            // A mass cancel is the account's: its member's first session sends it.
            let member = (mass.account.0.saturating_sub(1) % sessions.members as u64) as usize;
            (
                member,
                Planned::bare(0, symbol, RequestKind::MassCancel, seq),
            )
        }
        _ => return Ok(None),
    }))
}

/// The run's index of the flow's symbol `name`.
fn symbol_index(by_name: &HashMap<Symbol, u32>, name: &Symbol) -> Result<u32> {
    by_name
        .get(name)
        .copied()
        .ok_or_else(|| anyhow!("the flow named an unknown symbol {name}"))
}

/// The number of a flow order id.
fn flow_number(id: &OrderId) -> Result<u64> {
    order_number(id.as_str()).context("the flow's order id")
}

/// The number in a flow order id `o<num>`.
fn order_number(id: &str) -> Option<u64> {
    id.strip_prefix('o')?.parse().ok()
}

/// Client order ids on the wire: a per-run prefix, then the flow's id (`o<num>`).
#[derive(Clone, Debug)]
pub(crate) struct Ids {
    prefix: String,
    buf: String,
}

impl Ids {
    pub fn new(prefix: &str) -> Ids {
        Ids {
            prefix: prefix.to_string(),
            buf: String::with_capacity(64),
        }
    }

    /// The wire id of order `num`.
    pub fn id(&mut self, num: u64) -> OrderId {
        self.buf.clear();
        let _ = write!(self.buf, "{}o{num}", self.prefix);
        OrderId::new(&self.buf).expect("the prefix was checked: a short printable id")
    }

    /// The order number of a wire id of this run, if it is one.
    pub fn number(&self, id: &OrderId) -> Option<u64> {
        order_number(id.as_str().strip_prefix(self.prefix.as_str())?)
    }

    /// The message that sends `planned`.
    pub fn message(&mut self, planned: &Planned, symbols: &[Symbol]) -> ClientMessage {
        let symbol = symbols.get(planned.symbol as usize).copied();
        match planned.kind {
            RequestKind::New => ClientMessage::NewOrder(NewOrderMsg {
                cl_ord_id: self.id(planned.num),
                symbol: symbol.expect("planned symbols are in range"),
                side: planned.side,
                ord_type: if planned.flags & MARKET != 0 {
                    OrdType::Market
                } else {
                    OrdType::Limit
                },
                tif: planned.tif,
                post_only: planned.flags & POST_ONLY != 0,
                stp: planned.stp,
                price: (planned.flags & MARKET == 0).then_some(Price(planned.price)),
                qty: Qty(planned.qty),
            }),
            RequestKind::Cancel => ClientMessage::Cancel {
                cl_ord_id: self.id(planned.num),
                symbol: symbol.expect("planned symbols are in range"),
            },
            RequestKind::Replace => ClientMessage::Replace {
                cl_ord_id: self.id(planned.num),
                symbol: symbol.expect("planned symbols are in range"),
                price: (planned.flags & HAS_PRICE != 0).then_some(Price(planned.price)),
                qty: (planned.flags & HAS_QTY != 0).then_some(Qty(planned.qty)),
            },
            RequestKind::MassCancel => ClientMessage::MassCancel { symbol },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_order_stays_on_one_session_of_its_member() {
        let flow = FlowConfig {
            symbols: 2,
            book_depth: 50,
            ..FlowConfig::default()
        };
        let sessions = Sessions {
            connections: 5,
            members: 2,
        };
        let flow = FlowConfig {
            accounts: sessions.members as u32,
            ..flow
        };
        let plan = Plan::build(flow, sessions, 5_000).unwrap();
        assert_eq!(plan.schedule.len(), 5_000);
        assert_eq!(plan.setup.iter().sum::<usize>(), 100);
        assert_eq!(plan.kinds.iter().sum::<u64>(), 5_000);
        let mut owner = HashMap::new();
        for (session, requests) in plan.sessions.iter().enumerate() {
            let mut last = None;
            for (i, planned) in requests.iter().enumerate() {
                if i < plan.setup[session] {
                    assert_eq!(planned.seq, SETUP);
                } else {
                    assert!(last < Some(planned.seq), "schedule order");
                    last = Some(planned.seq);
                    assert_eq!(plan.schedule[planned.seq as usize] as usize, session);
                }
                let previous = owner.insert(planned.num, session);
                assert!(
                    previous.is_none_or(|s| s == session),
                    "order {}",
                    planned.num
                );
            }
        }
        // Members 0 and 1 have sessions {0, 2, 4} and {1, 3}.
        assert_eq!(sessions.sessions_of(0), 3);
        assert_eq!(sessions.sessions_of(1), 2);
        assert!(plan.sessions.iter().all(|s| !s.is_empty()));
    }

    #[test]
    fn wire_ids_round_trip() {
        let mut ids = Ids::new("r7-");
        let id = ids.id(12_345);
        assert_eq!(id.as_str(), "r7-o12345");
        assert_eq!(ids.number(&id), Some(12_345));
        assert_eq!(ids.number(&OrderId::new("x-o1").unwrap()), None);
        assert_eq!(ids.number(&OrderId::new("r7-oops").unwrap()), None);
    }
}
