//! The drill's order-entry members: one task per client (binary, or FIX with the
//! `fix-members` feature), each a [`FailoverClient`] sending its share of the rate, with its
//! amends, replaces, cancels and mass cancels, and what each hands back to the audit
//! ([`ClientResult`]). The quoters are in `quoter`, the market-data subscribers in `market`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use engine::{AccountId, OrdType, OrderId, Price, Qty, Side, Stp, Tif};
use flow::SplitMix64;
use gateway::binary::{ClientMessage, NewOrderMsg};
use gateway::binary_client::BinaryClient;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::failover::{Ack, FailoverClient, FailoverConfig};
use crate::load_end::LoadEnd;
use crate::wire::{self, Wire};
use crate::{quoter, DrillConfig};

/// Mass cancels a client sends every this many orders, so the books stay small.
const MASS_CANCEL_EVERY: u64 = 500;

/// What a client task hands back.
pub(crate) struct ClientResult {
    pub(crate) orders: u64,
    pub(crate) acks: Vec<Ack>,
    pub(crate) unacknowledged: usize,
    pub(crate) failovers: Vec<crate::failover::Failover>,
    pub(crate) counts: crate::failover::ClientCounts,
    pub(crate) account: AccountId,
    /// A quote-only member (`quoter`), not an order-entry client.
    pub(crate) quoter: bool,
    /// The most filled quantity it was told of, per order ([`FailoverClient::told`]).
    pub(crate) told: BTreeMap<OrderId, Qty>,
    /// The report behind each of `told`'s figures ([`FailoverClient::told_by`]).
    pub(crate) told_by: BTreeMap<OrderId, crate::failover::ToldBy>,
    /// Orders it knows it lost track of ([`FailoverClient::lost_track`]).
    pub(crate) lost_track: BTreeSet<OrderId>,
    /// Replaces whose new id it never heard of ([`FailoverClient::replaced`]).
    pub(crate) replaced: BTreeMap<OrderId, OrderId>,
    /// The amends and cancels it sent.
    pub(crate) changes: Changes,
    /// When each mass status after a move was answered ([`FailoverClient::mass_answered`]).
    pub(crate) mass_answered: Vec<Instant>,
    /// The protocol it spoke ([`Wire::PROTOCOL`]).
    pub(crate) protocol: &'static str,
}

/// Starts one task per member in use, spread over the sites: the clients, each sending its
/// share of the rate until `load_end`, then the quoters, then the FIX members (clients too,
/// at the sites' FIX listeners `fixes`).
pub(crate) fn spawn_clients(
    runtime: &Runtime,
    config: &DrillConfig,
    (gateways, fixes): (&[SocketAddr], &[SocketAddr]),
    load_end: &LoadEnd,
) -> Vec<JoinHandle<Result<ClientResult>>> {
    let clients = gateways.len() * config.clients_per_site;
    let quoters = gateways.len() * config.quoters_per_site;
    let fix = fixes.len() * config.fix_members_per_site;
    let per_client = f64::from(config.rate) / (clients + fix) as f64;
    let mut tasks: Vec<_> = (0..clients + quoters)
        .map(|k| {
            let (_, token, _) = config.members[k].clone();
            let failover = FailoverConfig::new(gateways.to_vec(), &token);
            let config = config.clone();
            let first = k % gateways.len();
            let load_end = load_end.clone();
            if k < clients {
                let task =
                    client_task::<BinaryClient>(k, first, failover, config, per_client, load_end);
                runtime.spawn(task)
            } else {
                let q = k - clients;
                runtime.spawn(quoter::quoter_task(q, first, failover, config, load_end))
            }
        })
        .collect();
    for k in clients + quoters..clients + quoters + fix {
        tasks.push(spawn_fix_member(
            runtime,
            config,
            fixes,
            k,
            (per_client, load_end),
        ));
    }
    tasks
}

/// FIX member `k` (of all members), starting at the site `k` names, at `rate` until the end.
#[cfg(feature = "fix-members")]
fn spawn_fix_member(
    runtime: &Runtime,
    config: &DrillConfig,
    fixes: &[SocketAddr],
    k: usize,
    (rate, load_end): (f64, &LoadEnd),
) -> JoinHandle<Result<ClientResult>> {
    let (name, token, account) = config.members[k].clone();
    let mut failover = FailoverConfig::new(fixes.to_vec(), &token);
    failover.login.name = name;
    failover.login.account = AccountId(account);
    // QuickFIX keeps one session per member and site in the process: a FIX member does not
    // probe its first site while logged on at another (it stays where it moved).
    failover.home_every = None;
    let (config, load_end) = (config.clone(), load_end.clone());
    let first = k % fixes.len();
    let task = client_task::<crate::fix_wire::FixWire>(k, first, failover, config, rate, load_end);
    runtime.spawn(task)
}

/// Without the `fix-members` feature there are none (`DrillConfig::check` refuses them).
#[cfg(not(feature = "fix-members"))]
fn spawn_fix_member(
    runtime: &Runtime,
    _: &DrillConfig,
    _: &[SocketAddr],
    k: usize,
    _: (f64, &LoadEnd),
) -> JoinHandle<Result<ClientResult>> {
    runtime.spawn(
        async move { anyhow::bail!("FIX member {k}: built without the fix-members feature") },
    )
}

/// Client `k`: logs on at `first_site` and sends new orders at `rate` until `load_end`, with
/// amends or replaces, cancels and mass cancels of its own on schedule; then drains what it
/// is still owed.
async fn client_task<W: Wire>(
    k: usize,
    first_site: usize,
    failover: FailoverConfig,
    config: DrillConfig,
    rate: f64,
    load_end: LoadEnd,
) -> Result<ClientResult> {
    let mut client: FailoverClient<W> = FailoverClient::connect(failover, first_site)
        .await
        .with_context(|| format!("client {k}: logon"))?;
    let mut rng = SplitMix64(config.seed.wrapping_add(k as u64 * 0x9e37_79b9));
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut next_send = Instant::now();
    let mut orders = 0u64;
    let mut acks = Vec::new();
    let mut resting = VecDeque::new();
    let mut changes = Changes::default();
    while !load_end.reached() {
        acks.extend(client.pump(next_send).await);
        if Instant::now() < next_send {
            continue;
        }
        next_send += interval;
        orders += 1;
        let id = OrderId::new(&format!("d{k}-{orders}"))
            .map_err(|e| anyhow!("client order id: {e:?}"))?;
        let new = order(&config, &mut rng, id);
        if new.tif == Tif::Gtc {
            resting.push_back(new);
            if resting.len() > RESTING_KEPT {
                resting.pop_front();
            }
        }
        client.submit(new).await?;
        if let Some(change) = amend_or_cancel(&mut resting, orders, config.tick) {
            let new_id = format!("r{k}-{orders}");
            if send_change(&mut client, change, &mut resting, &new_id).await? {
                changes.count(&change);
            }
        }
        if orders.is_multiple_of(MASS_CANCEL_EVERY) {
            client
                .send(&ClientMessage::MassCancel {
                    symbol: Some(config.symbol),
                })
                .await;
        }
    }
    acks.extend(client.drain(config.drain_timeout).await);
    Ok(ClientResult::of(&client, orders, acks, changes))
}

impl ClientResult {
    /// What `client` sent (`orders` new orders and `changes`) and was told (`acks`); a
    /// quoter's if it logged on with cancel-on-disconnect.
    pub(crate) fn of<W: Wire>(
        client: &FailoverClient<W>,
        orders: u64,
        acks: Vec<Ack>,
        changes: Changes,
    ) -> Self {
        ClientResult {
            orders,
            acks,
            unacknowledged: client.unacknowledged(),
            failovers: client.failovers().to_vec(),
            counts: client.counts(),
            account: client.account(),
            quoter: client.cancel_on_disconnect(),
            told: client.told().clone(),
            told_by: client.told_by().clone(),
            lost_track: client.lost_track().clone(),
            replaced: client.replaced().clone(),
            changes,
            mass_answered: client.mass_answered().to_vec(),
            protocol: W::PROTOCOL,
        }
    }
}

/// Sends `change`; an amend goes as the wire replaces, in place (binary) or as FIX's
/// replace, the order (the oldest `resting`) going by `new_id` from then on. Whether it went.
async fn send_change<W: Wire>(
    client: &mut FailoverClient<W>,
    change: ClientMessage,
    resting: &mut VecDeque<NewOrderMsg>,
    new_id: &str,
) -> Result<bool> {
    let (cl_ord_id, symbol, price, qty) = match change {
        ClientMessage::Replace {
            cl_ord_id,
            symbol,
            price,
            qty,
        } if !W::REPLACES_IN_PLACE => (cl_ord_id, symbol, price, qty),
        _ => return Ok(client.send(&change).await),
    };
    let new_id = OrderId::new(new_id).map_err(|e| anyhow!("client order id: {e:?}"))?;
    if let Some(order) = resting.front_mut() {
        order.cl_ord_id = new_id;
    }
    let replace = wire::ReplaceAs {
        order: cl_ord_id,
        new_id,
        symbol,
        price,
        qty,
    };
    Ok(client.replace_as(replace).await)
}

/// Every this many new orders a client amends one of its resting orders (a tick nearer the
/// middle: it may trade), and every `CANCEL_EVERY` it cancels one.
const AMEND_EVERY: u64 = 10;
const CANCEL_EVERY: u64 = 25;
/// The recent GTC orders a client keeps to amend or cancel (some have traded or been mass
/// cancelled meanwhile: the request is then refused, as it would be for a member).
const RESTING_KEPT: usize = 32;

/// Amends and cancels a client sent.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Changes {
    pub amends: u64,
    pub cancels: u64,
}

impl Changes {
    fn count(&mut self, change: &ClientMessage) {
        match change {
            ClientMessage::Replace { .. } => self.amends += 1,
            ClientMessage::Cancel { .. } => self.cancels += 1,
            _ => {}
        }
    }
}

/// After the client's `orders`-th order: the amend or cancel due then, of one of its recent
/// GTC orders (`resting`, oldest first), if any.
fn amend_or_cancel(
    resting: &mut VecDeque<NewOrderMsg>,
    orders: u64,
    tick: Price,
) -> Option<ClientMessage> {
    if orders.is_multiple_of(CANCEL_EVERY) {
        let order = resting.pop_front()?;
        return Some(ClientMessage::Cancel {
            cl_ord_id: order.cl_ord_id,
            symbol: order.symbol,
        });
    }
    if !orders.is_multiple_of(AMEND_EVERY) {
        return None;
    }
    let order = resting.front_mut()?;
    let nearer = match order.side {
        Side::Buy => tick.0,
        Side::Sell => -tick.0,
    };
    let price = Price(order.price?.0 + nearer);
    order.price = Some(price);
    Some(ClientMessage::Replace {
        cl_ord_id: order.cl_ord_id,
        symbol: order.symbol,
        price: Some(price),
        qty: None,
    })
}

/// A limit order near 100 ticks: half GTC resting within 5 ticks of the middle, half IOC
/// crossing up to 3 ticks, so the books trade and stay shallow.
fn order(config: &DrillConfig, rng: &mut SplitMix64, cl_ord_id: OrderId) -> NewOrderMsg {
    let side = if rng.coin() { Side::Buy } else { Side::Sell };
    let ioc = rng.coin();
    let offset = if ioc {
        -(rng.below(4) as i64)
    } else {
        1 + rng.below(5) as i64
    };
    let ticks = match side {
        Side::Buy => 100 - offset,
        Side::Sell => 100 + offset,
    };
    NewOrderMsg {
        cl_ord_id,
        symbol: config.symbol,
        side,
        ord_type: OrdType::Limit,
        tif: if ioc { Tif::Ioc } else { Tif::Gtc },
        post_only: false,
        stp: Stp::CancelTaker,
        price: Some(Price(config.tick.0 * ticks)),
        qty: Qty(config.lot.0 * (1 + rng.below(5) as i64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::config;

    /// The clients' amends and cancels: every 10th order amends the oldest remembered GTC
    /// order a tick nearer the middle, every 25th cancels it; nothing to change, nothing sent.
    #[test]
    fn clients_amend_and_cancel_their_resting_orders_on_schedule() {
        let config = config();
        let mut rng = SplitMix64(3);
        let mut resting: VecDeque<NewOrderMsg> = (1..=3)
            .map(|n| NewOrderMsg {
                side: Side::Buy,
                tif: Tif::Gtc,
                price: Some(Price(97)),
                ..order(&config, &mut rng, OrderId::new(&format!("o{n}")).unwrap())
            })
            .collect();
        assert!(amend_or_cancel(&mut resting, 7, Price(1)).is_none());
        match amend_or_cancel(&mut resting, 10, Price(1)) {
            Some(ClientMessage::Replace {
                cl_ord_id,
                price,
                qty,
                ..
            }) => {
                assert_eq!(
                    (cl_ord_id.as_str(), price, qty),
                    ("o1", Some(Price(98)), None)
                );
            }
            other => panic!("{other:?}"),
        }
        match amend_or_cancel(&mut resting, 25, Price(1)) {
            Some(ClientMessage::Cancel { cl_ord_id, .. }) => assert_eq!(cl_ord_id.as_str(), "o1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(resting.len(), 2);
        resting.clear();
        assert!(amend_or_cancel(&mut resting, 50, Price(1)).is_none());
    }
}
