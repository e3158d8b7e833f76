//! Market-data subscribers: members that follow the drill symbol's book and trades over a
//! site's WebSocket (`/ws`) and move to the next site when theirs goes dark (the connection
//! fails, or nothing answers their `ping` for [`SILENCE`]) or says it is stale (a `status`
//! other than `ok`: cut off from its log, or catching up with it).
//!
//! Each keeps the book as the protocol says: updates in `seq` order, an old one (at or below
//! the `seq` held, as from a site behind the last one) dropped, a `lagged` followed by resync
//! snapshots. What the audit must never see (`md_gaps`): an update whose `seq` skips ahead
//! without a `lagged` first, a trade whose id skips within one connection, and a book that
//! differs from the log's: every [`SAMPLE_EVERY`]th book it held (and every snapshot) is
//! kept with its log position, and the replay compares it with the engine's depth there.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use engine::{Engine, Price, Qty, Side, Symbol};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::load_end::LoadEnd;

/// The levels a subscriber follows on each side.
pub const DEPTH: usize = 10;
/// One book in this many (besides every snapshot) is kept for the audit.
const SAMPLE_EVERY: u64 = 10;
/// A subscriber sends a `ping` this often...
const PING_EVERY: Duration = Duration::from_millis(250);
/// ...and takes a site that has sent nothing for this long for dark.
const SILENCE: Duration = Duration::from_secs(1);
/// How long a connection and its subscriptions may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One side's levels, best first: (price, quantity).
pub type Levels = Vec<(Price, Qty)>;

/// A book a subscriber held, after the log's first `after` commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookSample {
    pub after: u64,
    pub bids: Levels,
    pub asks: Levels,
    /// Where it was held, for the report's examples.
    pub site: usize,
}

/// What one subscriber saw.
#[derive(Clone, Debug, Default)]
pub struct MdResult {
    /// Book updates applied, snapshots taken (at subscribing, after a move, on a resync).
    pub updates: u64,
    pub snapshots: u64,
    /// Moves to another site, and the `status` messages that caused some of them.
    pub moves: u64,
    pub stale_notices: u64,
    /// `lagged` messages (the server then resyncs every book).
    pub lagged: u64,
    /// Updates and trades dropped as old (at or below what was held).
    pub old_dropped: u64,
    /// Trades no site sent it (between two connections: the trade channel has no replay).
    pub trades_missed_in_moves: u64,
    /// Updates whose `seq` skipped ahead unannounced, and trade ids that skipped within one
    /// connection: must be 0.
    pub gaps: u64,
    pub gap_examples: Vec<String>,
    pub samples: Vec<BookSample>,
}

/// A server message, as far as the subscriber reads it.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Incoming {
    Snapshot {
        seq: u64,
        position: u64,
        bids: Vec<Level>,
        asks: Vec<Level>,
    },
    Book {
        seq: u64,
        position: u64,
        bids: Vec<Level>,
        asks: Vec<Level>,
    },
    Trade {
        id: u64,
    },
    Lagged {},
    Status {
        status: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Level {
    price: String,
    qty: String,
}

/// Why a subscriber left a site.
enum Left {
    /// The load is over.
    Done,
    /// The site went dark or said it is stale: move on.
    Move,
}

/// What to do after a message.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Go,
    /// The site said it is stale.
    Move,
    /// An update skipped: ask for the book again.
    Resync,
}

/// The subscriber's book and numbering, across sites.
struct Follower {
    site: usize,
    seq: Option<u64>,
    trade_id: Option<u64>,
    /// Whether this connection has seen a trade yet (a skip before its first is a move's).
    traded_here: bool,
    bids: Levels,
    asks: Levels,
    result: MdResult,
}

/// Follows the book and trades of `symbol` from `first` round `sites` (their HTTP addresses)
/// until `until`.
pub async fn subscriber_task(
    sites: Vec<SocketAddr>,
    first: usize,
    symbol: Symbol,
    until: LoadEnd,
) -> Result<MdResult> {
    let mut follower = Follower {
        site: first,
        seq: None,
        trade_id: None,
        traded_here: false,
        bids: Vec::new(),
        asks: Vec::new(),
        result: MdResult::default(),
    };
    while !until.reached() {
        match follower.follow(sites[follower.site], symbol, &until).await {
            Ok(Left::Done) => break,
            Ok(Left::Move) | Err(_) => {
                follower.result.moves += 1;
                follower.site = (follower.site + 1) % sites.len();
                tokio::time::sleep(PING_EVERY).await;
            }
        }
    }
    Ok(follower.result)
}

impl Follower {
    /// One connection to the site at `http`, until it goes dark, says it is stale, or `until`.
    async fn follow(&mut self, http: SocketAddr, symbol: Symbol, until: &LoadEnd) -> Result<Left> {
        let url = format!("ws://{http}/ws");
        let (mut socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect(&url))
            .await
            .map_err(|_| anyhow!("no connection to {url} within {CONNECT_TIMEOUT:?}"))??;
        for channel in ["book", "trades"] {
            let depth = if channel == "book" {
                format!(",\"depth\":{DEPTH}")
            } else {
                String::new()
            };
            let request = format!(
                "{{\"op\":\"subscribe\",\"channel\":\"{channel}\",\"symbol\":\"{}\"{depth}}}",
                symbol.as_str()
            );
            socket.send(Message::text(request)).await?;
        }
        self.traded_here = false;
        let mut heard = Instant::now();
        let mut ping = tokio::time::interval(PING_EVERY);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until.at().into()) => {
                    if until.reached() {
                        return Ok(Left::Done);
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > SILENCE {
                        return Ok(Left::Move);
                    }
                    socket.send(Message::text("{\"op\":\"ping\"}")).await?;
                }
                message = socket.next() => {
                    let Some(Ok(Message::Text(text))) = message else {
                        match message {
                            Some(Ok(_)) => continue,
                            _ => return Ok(Left::Move),
                        }
                    };
                    heard = Instant::now();
                    let incoming: Incoming = serde_json::from_str(text.as_str())
                        .with_context(|| format!("market data from {url}: {text}"))?;
                    match self.take(incoming)? {
                        Next::Go => {}
                        Next::Move => return Ok(Left::Move),
                        Next::Resync => {
                            let resync =
                                format!("{{\"op\":\"resync\",\"symbol\":\"{}\"}}", symbol.as_str());
                            socket.send(Message::text(resync)).await?;
                        }
                    }
                }
            }
        }
    }

    /// Takes in one message; says what to do next.
    fn take(&mut self, incoming: Incoming) -> Result<Next> {
        match incoming {
            Incoming::Snapshot {
                seq,
                position,
                bids,
                asks,
            } => {
                self.result.snapshots += 1;
                self.seq = Some(seq);
                (self.bids, self.asks) = (levels(&bids)?, levels(&asks)?);
                self.sample(position);
            }
            Incoming::Book {
                seq,
                position,
                bids,
                asks,
            } => return self.update(seq, position, &bids, &asks),
            Incoming::Trade { id } => self.trade(id),
            Incoming::Lagged {} => self.result.lagged += 1,
            Incoming::Status { status } if status != "ok" => {
                self.result.stale_notices += 1;
                return Ok(Next::Move);
            }
            Incoming::Status { .. } | Incoming::Other => {}
        }
        Ok(Next::Go)
    }

    /// A book update: applied in `seq` order; old, dropped; ahead of the next, a gap (and a
    /// resync). One before any snapshot cannot come (the snapshot answers the subscription).
    fn update(&mut self, seq: u64, position: u64, bids: &[Level], asks: &[Level]) -> Result<Next> {
        let Some(held) = self.seq else {
            return Ok(Next::Go);
        };
        if seq <= held {
            self.result.old_dropped += 1;
            return Ok(Next::Go);
        }
        if seq > held + 1 {
            self.gap(format!("book seq {seq} after {held} at site {}", self.site));
            return Ok(Next::Resync);
        }
        apply(&mut self.bids, &levels(bids)?, true);
        apply(&mut self.asks, &levels(asks)?, false);
        self.seq = Some(seq);
        self.result.updates += 1;
        if self.result.updates.is_multiple_of(SAMPLE_EVERY) {
            self.sample(position + 1);
        }
        Ok(Next::Go)
    }

    /// A trade: the next id, an old one (dropped), or a skip (a gap within a connection, the
    /// move's loss before its first trade).
    fn trade(&mut self, id: u64) {
        let first_here = !std::mem::replace(&mut self.traded_here, true);
        match self.trade_id {
            Some(held) if id <= held => self.result.old_dropped += 1,
            Some(held) if id > held + 1 && first_here => {
                self.result.trades_missed_in_moves += id - held - 1;
                self.trade_id = Some(id);
            }
            Some(held) if id > held + 1 => {
                self.gap(format!("trade id {id} after {held} at site {}", self.site));
                self.trade_id = Some(id);
            }
            _ => self.trade_id = Some(id),
        }
    }

    fn gap(&mut self, example: String) {
        self.result.gaps += 1;
        if self.result.gap_examples.len() < 10 {
            self.result.gap_examples.push(example);
        }
    }

    fn sample(&mut self, after: u64) {
        self.result.samples.push(BookSample {
            after,
            bids: self.bids.clone(),
            asks: self.asks.clone(),
            site: self.site,
        });
    }
}

/// The replay's side of the check: every subscriber's sampled books, compared with the
/// engine's depth once the replay has applied as many commands as each sample had seen.
pub(crate) struct BookCheck {
    symbol: Symbol,
    samples: Vec<BookSample>,
    next: usize,
    checked: u64,
    mismatches: u64,
    examples: Vec<String>,
}

impl BookCheck {
    pub(crate) fn new(symbol: Symbol, results: &[MdResult]) -> BookCheck {
        let mut samples: Vec<BookSample> = results
            .iter()
            .flat_map(|r| r.samples.iter().cloned())
            .collect();
        samples.sort_by_key(|sample| sample.after);
        BookCheck {
            symbol,
            samples,
            next: 0,
            checked: 0,
            mismatches: 0,
            examples: Vec::new(),
        }
    }

    /// The replay has applied `applied` commands to `engine`: checks the samples taken there.
    pub(crate) fn after(&mut self, applied: u64, engine: &Engine) {
        while self
            .samples
            .get(self.next)
            .is_some_and(|s| s.after < applied)
        {
            self.next += 1; // before the log's start: none such
        }
        while let Some(sample) = self.samples.get(self.next).filter(|s| s.after == applied) {
            let depth = |side| -> Levels {
                engine.symbol_id(&self.symbol).map_or_else(Vec::new, |id| {
                    let levels = engine.depth(id, side).take(DEPTH);
                    levels.map(|level| (level.price, level.qty)).collect()
                })
            };
            let (bids, asks) = (depth(Side::Buy), depth(Side::Sell));
            self.checked += 1;
            if bids != sample.bids || asks != sample.asks {
                self.mismatches += 1;
                if self.examples.len() < 10 {
                    self.examples.push(format!(
                        "after {applied} commands at site {}: bids {:?} asks {:?}, the log's \
                         {bids:?} {asks:?}",
                        sample.site, sample.bids, sample.asks
                    ));
                }
            }
            self.next += 1;
        }
    }

    /// The report: the subscribers' counts and this check's.
    pub(crate) fn finish(self, results: &[MdResult]) -> MdReport {
        let sum = |f: fn(&MdResult) -> u64| results.iter().map(f).sum::<u64>();
        let gaps = sum(|r| r.gaps);
        let mut examples: Vec<String> = results
            .iter()
            .flat_map(|r| r.gap_examples.clone())
            .take(10)
            .collect();
        examples.extend(self.examples);
        MdReport {
            subscribers: results.len(),
            md_gaps: gaps + self.mismatches,
            sequence_gaps: gaps,
            book_mismatches: self.mismatches,
            books_checked: self.checked,
            updates: sum(|r| r.updates),
            snapshots: sum(|r| r.snapshots),
            moves: sum(|r| r.moves),
            stale_notices: sum(|r| r.stale_notices),
            lagged: sum(|r| r.lagged),
            old_dropped: sum(|r| r.old_dropped),
            trades_missed_in_moves: sum(|r| r.trades_missed_in_moves),
            examples,
        }
    }
}

/// The market-data subscribers' figures. `md_gaps` (sequence gaps plus books that differ from
/// the log's) must be 0.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MdReport {
    pub subscribers: usize,
    pub md_gaps: u64,
    pub sequence_gaps: u64,
    pub book_mismatches: u64,
    /// Books held compared with the replay's depth (every snapshot, one update in ten).
    pub books_checked: u64,
    pub updates: u64,
    pub snapshots: u64,
    /// Moves to another site (dark, or stale by its own `status`), and `status` notices.
    pub moves: u64,
    pub stale_notices: u64,
    pub lagged: u64,
    /// Updates and trades at or below what was held (from a site behind the last one).
    pub old_dropped: u64,
    /// Trades sent while a subscriber was between sites (the trade channel has no replay).
    pub trades_missed_in_moves: u64,
    pub examples: Vec<String>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    url: &str,
) -> Result<(
    Socket,
    tokio_tungstenite::tungstenite::handshake::client::Response,
)> {
    Ok(tokio_tungstenite::connect_async(url).await?)
}

fn levels(levels: &[Level]) -> Result<Levels> {
    levels
        .iter()
        .map(|level| {
            let price =
                Price::parse(&level.price).map_err(|e| anyhow!("price {}: {e:?}", level.price))?;
            let qty = Qty::parse(&level.qty).map_err(|e| anyhow!("qty {}: {e:?}", level.qty))?;
            Ok((price, qty))
        })
        .collect()
}

/// Applies `changes` to `side` (bids when `bids`, best first): each replaces the level at its
/// price, a zero quantity removes it.
fn apply(side: &mut Levels, changes: &Levels, bids: bool) {
    for &(price, qty) in changes {
        side.retain(|(p, _)| *p != price);
        if qty.0 > 0 {
            side.push((price, qty));
        }
    }
    side.sort_by_key(|(price, _)| if bids { -price.0 } else { price.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: i64) -> Price {
        Price(v)
    }

    #[test]
    fn updates_replace_levels_and_keep_each_side_best_first() {
        let mut bids = vec![(p(100), Qty(5)), (p(99), Qty(3))];
        apply(&mut bids, &vec![(p(101), Qty(1)), (p(99), Qty(0))], true);
        assert_eq!(bids, [(p(101), Qty(1)), (p(100), Qty(5))]);
        let mut asks = vec![(p(102), Qty(2))];
        apply(&mut asks, &vec![(p(101), Qty(4)), (p(102), Qty(7))], false);
        assert_eq!(asks, [(p(101), Qty(4)), (p(102), Qty(7))]);
    }

    fn follower() -> Follower {
        Follower {
            site: 0,
            seq: Some(5),
            trade_id: Some(10),
            traded_here: true,
            bids: Vec::new(),
            asks: Vec::new(),
            result: MdResult::default(),
        }
    }

    fn level(price: &str, qty: &str) -> Level {
        Level {
            price: price.into(),
            qty: qty.into(),
        }
    }

    #[test]
    fn an_update_that_skips_a_seq_is_a_gap_and_an_old_one_is_dropped() {
        let mut f = follower();
        let bid = [level("100", "2")];
        assert_eq!(f.update(6, 60, &bid, &[]).unwrap(), Next::Go);
        assert_eq!(
            f.bids,
            [(Price::parse("100").unwrap(), Qty::parse("2").unwrap())]
        );
        assert_eq!(f.update(6, 60, &[], &[]).unwrap(), Next::Go);
        assert_eq!((f.result.updates, f.result.old_dropped), (1, 1));
        assert_eq!(f.update(9, 70, &[], &[]).unwrap(), Next::Resync);
        assert_eq!((f.result.gaps, f.seq), (1, Some(6)));
    }

    #[test]
    fn a_stale_site_is_left() {
        let mut f = follower();
        let stale = Incoming::Status {
            status: "catching_up".into(),
        };
        assert_eq!(f.take(stale).unwrap(), Next::Move);
        let ok = Incoming::Status {
            status: "ok".into(),
        };
        assert_eq!(f.take(ok).unwrap(), Next::Go);
        assert_eq!(f.result.stale_notices, 1);
    }

    /// The replay's side can fail: a book held after the log's second command is compared
    /// with the engine's depth there, and a wrong quantity is a mismatch.
    #[test]
    fn a_book_unlike_the_engine_s_depth_is_a_mismatch() {
        use engine::{AccountId, AddSymbol, Command, CommandKind, EngineConfig, NewOrder};
        use engine::{OrdType, OrderId, Stp, Tif};
        let btc = Symbol::new("BTC-USD").unwrap();
        let log = [
            Command::new(
                1,
                CommandKind::AddSymbol(AddSymbol {
                    symbol: btc,
                    tick: Price(1),
                    lot: Qty(1),
                }),
            ),
            Command::new(
                2,
                CommandKind::New(NewOrder {
                    account: AccountId(1),
                    order_id: OrderId::new("b1").unwrap(),
                    symbol: btc,
                    side: Side::Buy,
                    ord_type: OrdType::Limit,
                    price: Some(Price(100)),
                    qty: Qty(3),
                    tif: Tif::Gtc,
                    post_only: false,
                    stp: Stp::CancelTaker,
                    session: 1,
                }),
            ),
        ];
        let sample = |qty| BookSample {
            after: 2,
            bids: vec![(Price(100), Qty(qty))],
            asks: Vec::new(),
            site: 0,
        };
        let held = MdResult {
            samples: vec![sample(3), sample(4)],
            ..MdResult::default()
        };
        let mut engine = Engine::new(EngineConfig::default()).unwrap();
        let mut check = BookCheck::new(btc, std::slice::from_ref(&held));
        let mut events = Vec::new();
        for (at, command) in log.iter().enumerate() {
            engine.apply(command, &mut events);
            check.after(at as u64 + 1, &engine);
        }
        let report = check.finish(&[held]);
        assert_eq!(
            (report.books_checked, report.book_mismatches, report.md_gaps),
            (2, 1, 1)
        );
        assert_eq!(report.examples.len(), 1, "{:?}", report.examples);
    }

    #[test]
    fn a_trade_id_that_skips_within_a_connection_is_a_gap_and_across_a_move_is_not() {
        let mut f = follower();
        f.trade(11);
        f.trade(11);
        assert_eq!((f.result.gaps, f.result.old_dropped), (0, 1));
        f.trade(14);
        assert_eq!(f.result.gaps, 1);
        f.traded_here = false; // a new connection
        f.trade(20);
        assert_eq!((f.result.gaps, f.result.trades_missed_in_moves), (1, 5));
        f.trade(21);
        assert_eq!(f.result.gaps, 1);
    }
}
