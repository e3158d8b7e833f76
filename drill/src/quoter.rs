//! Quote-only members: market makers with cancel-on-disconnect that keep a bid and an offer
//! resting and send nothing else. With no order in flight they notice a dead site by its
//! silence (the failover client's test requests), and a site cut off from the log by its
//! Logout (reason 16). At each new site they quote again, with new ids: the orders of the
//! session they left are cancelled by its dead-man's switch on the log, never by hand.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use engine::{OrdType, OrderId, Price, Qty, Side, Stp, Tif};
use gateway::binary::NewOrderMsg;

use crate::failover::{FailoverClient, FailoverConfig};
use crate::load_end::LoadEnd;
use crate::{ClientResult, DrillConfig};

/// How far from the middle (100 ticks) the quotes rest: beyond every drill order's price
/// (at most 5 ticks away), so they never trade and only their switch ends them.
const QUOTE_OFFSET_TICKS: i64 = 10;

/// How often a quoter looks whether it has moved (and must quote again).
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Quoter `k` (of all of them, for its client order ids) on `failover`'s member, starting at
/// `first_site`, until `load_end`.
pub(crate) async fn quoter_task(
    k: usize,
    first_site: usize,
    failover: FailoverConfig,
    config: DrillConfig,
    load_end: LoadEnd,
) -> Result<ClientResult> {
    let mut failover = failover;
    failover.login.cancel_on_disconnect = true;
    let mut client: FailoverClient = FailoverClient::connect(failover, first_site)
        .await
        .with_context(|| format!("quoter {k}: logon"))?;
    let mut orders = 0u64;
    let mut acks = Vec::new();
    let mut quoted_at = None;
    while !load_end.reached() {
        let moves = client.failovers().len() as u64 + client.counts().returns_home;
        if quoted_at != Some(moves) {
            quoted_at = Some(moves);
            for side in [Side::Buy, Side::Sell] {
                orders += 1;
                let id = OrderId::new(&format!("q{k}-{orders}"))
                    .map_err(|e| anyhow!("client order id: {e:?}"))?;
                client.submit(quote(&config, side, id)).await?;
            }
        }
        acks.extend(
            client
                .pump((Instant::now() + LOOK_EVERY).min(load_end.at()))
                .await,
        );
    }
    acks.extend(client.drain(config.drain_timeout).await);
    Ok(ClientResult::of(&client, orders, acks, Default::default()))
}

/// A GTC order of one lot, `QUOTE_OFFSET_TICKS` from the middle on `side`.
fn quote(config: &DrillConfig, side: Side, cl_ord_id: OrderId) -> NewOrderMsg {
    let ticks = match side {
        Side::Buy => 100 - QUOTE_OFFSET_TICKS,
        Side::Sell => 100 + QUOTE_OFFSET_TICKS,
    };
    NewOrderMsg {
        cl_ord_id,
        symbol: config.symbol,
        side,
        ord_type: OrdType::Limit,
        tif: Tif::Gtc,
        post_only: true,
        stp: Stp::CancelTaker,
        price: Some(Price(config.tick.0 * ticks)),
        qty: Qty(config.lot.0),
    }
}
