//! A book subscription's window, sans-IO: the best levels of a symbol's book kept per
//! subscription, so the client's window of `depth` levels can be refilled as levels come and
//! go, and the changes of that window an update makes.

use std::collections::BTreeMap;

use axum::extract::ws::Message;
use engine::{Price, Qty, Side, Symbol};

use super::protocol::{text, Out};
use crate::desk::{BookSnapshot, Level};

/// One side of a subscription's book: the best levels of the symbol's book, exactly (a
/// prefix of it), and whether the book has more beyond them.
#[derive(Default)]
struct SideBook {
    levels: BTreeMap<Price, Qty>,
    more: bool,
}

impl SideBook {
    fn new(levels: &[Level], keep: usize) -> SideBook {
        SideBook {
            levels: levels.iter().take(keep).map(|l| (l.price, l.qty)).collect(),
            more: levels.len() > keep,
        }
    }

    /// The best `n` levels, best first.
    fn best(&self, side: Side, n: usize) -> Vec<(Price, Qty)> {
        let level = |(price, qty): (&Price, &Qty)| (*price, *qty);
        match side {
            Side::Buy => self.levels.iter().rev().take(n).map(level).collect(),
            Side::Sell => self.levels.iter().take(n).map(level).collect(),
        }
    }

    /// The `n`-th best price (from 0).
    fn nth(&self, side: Side, n: usize) -> Option<Price> {
        match side {
            Side::Buy => self.levels.keys().rev().nth(n).copied(),
            Side::Sell => self.levels.keys().nth(n).copied(),
        }
    }

    /// The worst price kept.
    fn worst(&self, side: Side) -> Option<Price> {
        match side {
            Side::Buy => self.levels.keys().next().copied(),
            Side::Sell => self.levels.keys().next_back().copied(),
        }
    }

    /// Applies one side of a book update (the new totals of the levels that changed). Returns
    /// the changes of the window of the best `depth` levels, best first, or `None` when the
    /// window can no longer be known (the levels kept ran out): the subscription resyncs.
    fn apply(
        &mut self,
        side: Side,
        changes: &[Level],
        depth: usize,
        keep: usize,
    ) -> Option<Vec<Level>> {
        // `worse(a, b)`: price a is worse than price b on this side.
        let worse = |a: Price, b: Price| match side {
            Side::Buy => a < b,
            Side::Sell => a > b,
        };
        let worst = self.worst(side);
        if self.more && worst.is_none() {
            return None;
        }
        // Beyond the worst level kept (when the book has more), a change is unknown ground
        // and changes nothing kept: what is kept stays an exact prefix of the book.
        let known = |price: Price| !self.more || worst.is_none_or(|w| !worse(price, w));
        let known: Vec<Level> = changes.iter().filter(|l| known(l.price)).copied().collect();
        let apply = |this: &mut SideBook| {
            for level in &known {
                if level.qty.0 > 0 {
                    this.levels.insert(level.price, level.qty);
                } else {
                    this.levels.remove(&level.price);
                }
            }
            while this.levels.len() > keep {
                let worst = match side {
                    Side::Buy => this.levels.pop_first(),
                    Side::Sell => this.levels.pop_last(),
                };
                this.more |= worst.is_some();
            }
        };
        // A full window changes only if something at or better than its last level does.
        if let Some(boundary) = self.nth(side, depth - 1) {
            if known.iter().all(|l| worse(l.price, boundary)) {
                apply(self);
                return Some(Vec::new());
            }
        }
        let before: BTreeMap<Price, Qty> = self.best(side, depth).into_iter().collect();
        apply(self);
        if self.more && self.levels.len() < depth {
            return None;
        }
        let after: BTreeMap<Price, Qty> = self.best(side, depth).into_iter().collect();
        let mut diff: BTreeMap<Price, Qty> = BTreeMap::new();
        for price in before.keys() {
            if !after.contains_key(price) {
                diff.insert(*price, Qty(0));
            }
        }
        for (price, qty) in &after {
            if before.get(price) != Some(qty) {
                diff.insert(*price, *qty);
            }
        }
        let level = |(price, qty): (Price, Qty)| Level { price, qty };
        Some(match side {
            Side::Buy => diff.into_iter().rev().map(level).collect(),
            Side::Sell => diff.into_iter().map(level).collect(),
        })
    }
}

/// One book subscription: the best levels of the symbol's book (`depth + max(depth, 32)` per
/// side), so the client's window of `depth` levels can be refilled as levels come and go; when
/// they run out (a sweep took more than the reserve), the subscription resyncs.
pub(super) struct BookSub {
    pub(super) depth: usize,
    pub(super) seq: u64,
    bids: SideBook,
    asks: SideBook,
}

impl BookSub {
    /// Levels kept per side.
    fn keep(depth: usize) -> usize {
        depth.saturating_add(depth.max(32))
    }

    /// The depth of the snapshot a subscription of `depth` starts from: one more than it
    /// keeps, to know whether the book has more.
    pub(super) fn snapshot_depth(depth: usize) -> usize {
        BookSub::keep(depth).saturating_add(1)
    }

    /// From a snapshot of [`BookSub::snapshot_depth`] levels.
    pub(super) fn new(snapshot: &BookSnapshot, depth: usize) -> BookSub {
        let keep = BookSub::keep(depth);
        BookSub {
            depth,
            seq: snapshot.seq,
            bids: SideBook::new(&snapshot.bids, keep),
            asks: SideBook::new(&snapshot.asks, keep),
        }
    }

    /// The client's window of one side, best first.
    fn window(&self, side: Side) -> Vec<Level> {
        let book = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        book.best(side, self.depth)
            .into_iter()
            .map(|(price, qty)| Level { price, qty })
            .collect()
    }

    pub(super) fn snapshot_message(
        &self,
        symbol: &Symbol,
        position: u64,
        resync: bool,
        id: Option<u64>,
    ) -> Message {
        text(&Out::Snapshot {
            symbol: symbol.as_str(),
            seq: self.seq,
            position,
            depth: self.depth,
            resync,
            bids: &self.window(Side::Buy),
            asks: &self.window(Side::Sell),
            id,
        })
    }

    /// Applies an update; returns the window's changes (bids, asks), or `None` when the
    /// subscription must resync.
    pub(super) fn apply(
        &mut self,
        bids: &[Level],
        asks: &[Level],
    ) -> Option<(Vec<Level>, Vec<Level>)> {
        let keep = BookSub::keep(self.depth);
        let bids = self.bids.apply(Side::Buy, bids, self.depth, keep)?;
        let asks = self.asks.apply(Side::Sell, asks, self.depth, keep)?;
        Some((bids, asks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The best `depth` levels of a side of the whole book.
    fn top(book: &BTreeMap<Price, Qty>, side: Side, depth: usize) -> Vec<Level> {
        let level = |(price, qty): (&Price, &Qty)| Level {
            price: *price,
            qty: *qty,
        };
        match side {
            Side::Buy => book.iter().rev().take(depth).map(level).collect(),
            Side::Sell => book.iter().take(depth).map(level).collect(),
        }
    }

    /// What a subscription of `depth` starts from, as the mirror would give it.
    fn subscription(book: &BTreeMap<Price, Qty>, side: Side, depth: usize, seq: u64) -> BookSub {
        let levels = top(book, side, BookSub::snapshot_depth(depth));
        let (bids, asks) = match side {
            Side::Buy => (levels, Vec::new()),
            Side::Sell => (Vec::new(), levels),
        };
        let snapshot = BookSnapshot {
            symbol: Symbol::new("S").expect("a symbol"),
            seq,
            position: 0,
            bids,
            asks,
        };
        BookSub::new(&snapshot, depth)
    }

    #[derive(Clone, Debug)]
    enum Change {
        /// New totals at prices (0: the level goes).
        Levels(Vec<(i64, i64)>),
        /// The best `n` levels go at once.
        Sweep(usize),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            8 => prop::collection::vec((0i64..90, 0i64..4), 1..12).prop_map(Change::Levels),
            1 => (1usize..50).prop_map(Change::Sweep),
        ]
    }

    /// Runs `changes` on one side; returns how many times the subscription resynced.
    fn follow(depth: usize, side: Side, changes: Vec<Change>) -> Result<usize, TestCaseError> {
        let mut book: BTreeMap<Price, Qty> = BTreeMap::new();
        let mut sub = subscription(&book, side, depth, 0);
        let mut client: Vec<Level> = Vec::new();
        let mut resyncs = 0;
        for (seq, change) in changes.into_iter().enumerate() {
            // As the mirror sends them: one entry per price, the level's new total.
            let update: BTreeMap<Price, Qty> = match change {
                Change::Levels(levels) => levels
                    .into_iter()
                    .map(|(p, q)| (Price(p), Qty(q)))
                    .filter(|(p, q)| q.0 > 0 || book.contains_key(p))
                    .collect(),
                Change::Sweep(n) => top(&book, side, n)
                    .into_iter()
                    .map(|l| (l.price, Qty(0)))
                    .collect(),
            };
            for (price, qty) in &update {
                if qty.0 > 0 {
                    book.insert(*price, *qty);
                } else {
                    book.remove(price);
                }
            }
            let mut update: Vec<Level> = update
                .into_iter()
                .map(|(price, qty)| Level { price, qty })
                .collect();
            if side == Side::Buy {
                update.reverse();
            }
            let none: &[Level] = &[];
            let applied = match side {
                Side::Buy => sub.apply(&update, none),
                Side::Sell => sub.apply(none, &update),
            };
            match applied {
                Some((bids, asks)) => {
                    let (sent, other) = match side {
                        Side::Buy => (bids, asks),
                        Side::Sell => (asks, bids),
                    };
                    prop_assert!(other.is_empty());
                    for pair in sent.windows(2) {
                        let best_first = match side {
                            Side::Buy => pair[0].price > pair[1].price,
                            Side::Sell => pair[0].price < pair[1].price,
                        };
                        prop_assert!(best_first, "{sent:?}");
                    }
                    for level in sent {
                        let at = client.iter().position(|l| l.price == level.price);
                        let held = at.map_or(Qty(0), |at| client[at].qty);
                        prop_assert_ne!(held, level.qty, "a change that changes nothing");
                        client.retain(|l| l.price != level.price);
                        if level.qty.0 > 0 {
                            client.push(level);
                        }
                    }
                    match side {
                        Side::Buy => client.sort_by_key(|l| std::cmp::Reverse(l.price)),
                        Side::Sell => client.sort_by_key(|l| l.price),
                    }
                }
                None => {
                    resyncs += 1;
                    sub = subscription(&book, side, depth, seq as u64);
                    client = sub.window(side);
                }
            }
            prop_assert_eq!(&client, &top(&book, side, depth));
            prop_assert_eq!(&sub.window(side), &client);
            let kept = match side {
                Side::Buy => sub.bids.levels.len(),
                Side::Sell => sub.asks.levels.len(),
            };
            prop_assert!(kept <= BookSub::keep(depth));
        }
        Ok(resyncs)
    }

    fn side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Buy), Just(Side::Sell)]
    }

    proptest! {
        /// A client applying a subscription's updates (and its resyncs) holds exactly the
        /// best `depth` levels of the whole book, whatever changes where; the subscription
        /// keeps a bounded number of levels.
        #[test]
        fn the_window_follows_the_book(
            depth in prop_oneof![1usize..6, 20usize..40],
            side in side(),
            changes in prop::collection::vec(change(), 0..120),
        ) {
            follow(depth, side, changes)?;
        }
    }

    /// Sweeping more levels than a subscription keeps makes it resync; one that keeps enough
    /// follows without.
    #[test]
    fn a_sweep_beyond_the_reserve_resyncs() {
        let fill = Change::Levels((1..=80).map(|p| (p, 1)).collect());
        for side in [Side::Buy, Side::Sell] {
            let resyncs = follow(5, side, vec![fill.clone(), Change::Sweep(36)]).expect("follows");
            assert_eq!(resyncs, 1, "keeps 37: a sweep of 36 leaves 1 of the 5");
            let resyncs = follow(5, side, vec![fill.clone(), Change::Sweep(32)]).expect("follows");
            assert_eq!(resyncs, 0, "a sweep of 32 leaves 5");
        }
    }
}
