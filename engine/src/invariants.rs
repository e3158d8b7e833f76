//! `check_invariants()`: a full consistency check of every structure, for tests and debugging.
//! O(state); the property tests call it after every command.

use crate::engine::{side_index, side_key, Engine, NIL};
use crate::types::Side;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

impl Engine {
    /// Checks that books are sorted and uncrossed, level totals and counts match their orders,
    /// every index agrees with the records it points to, account lists hold exactly the
    /// account's live orders in time priority, and every record is counted once.
    /// Finished orders are in finishing order, inside their window, indexed and not live, and
    /// with live orders within `retired_ids_max`; switches are a valid heap, all in the future.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_indexes()?;
        self.check_books()?;
        self.check_accounts()?;
        self.check_records()?;
        self.check_finished()?;
        self.switches.check()?;
        // `u64::MAX` is also "none armed" (and a saturated deadline), which the clock can reach.
        ensure!(
            self.switches.next_deadline() > self.clock.0
                || self.switches.next_deadline() == u64::MAX,
            "a due switch did not fire"
        );
        ensure!(
            self.switches.len() <= self.config.switches_max,
            "switches over capacity"
        );
        Ok(())
    }

    fn check_indexes(&self) -> Result<(), String> {
        ensure!(
            self.books.len() == self.book_index.len(),
            "symbol index size"
        );
        for (id, book) in self.books.iter().enumerate() {
            ensure!(
                self.find_book(&book.name) == Some(id as u32),
                "symbol {} not indexed",
                book.name
            );
        }
        ensure!(
            self.accounts.len() == self.account_index.len(),
            "account index size"
        );
        for (rec, account) in self.accounts.iter().enumerate() {
            ensure!(
                self.find_account(account.id) == Some(rec as u32),
                "account {} not indexed",
                account.id.0
            );
        }
        let disabled = self.accounts.iter().filter(|a| a.disabled).count();
        ensure!(
            disabled == self.disabled_accounts as usize,
            "disabled account count"
        );
        Ok(())
    }

    fn check_books(&self) -> Result<(), String> {
        let mut resting = 0u32;
        let mut levels = 0u32;
        for (id, book) in self.books.iter().enumerate() {
            for side in [Side::Buy, Side::Sell] {
                let refs = &book.sides[side_index(side)];
                ensure!(
                    refs.len() <= self.config.levels_per_side_max as usize,
                    "{} side over capacity",
                    book.name
                );
                for pair in refs.windows(2) {
                    ensure!(pair[0].key < pair[1].key, "{} levels not sorted", book.name);
                }
                for r in refs {
                    levels += 1;
                    let level = &self.levels[r.level as usize];
                    ensure!(r.key == side_key(side, level.price), "level key mismatch");
                    ensure!(level.count > 0, "empty level on the book");
                    let (mut count, mut total, mut prev, mut last_prio) = (0u32, 0u128, NIL, None);
                    let mut rec = level.head;
                    while rec != NIL {
                        let o = &self.orders[rec as usize];
                        ensure!(o.live, "retired order on the book");
                        ensure!(o.level == r.level && o.prev == prev, "level links broken");
                        ensure!(
                            o.symbol == id as u32 && o.side == side,
                            "order on wrong side"
                        );
                        ensure!(o.price == level.price && o.leaves.0 > 0, "order price/qty");
                        ensure!(o.total >= o.leaves, "open above total");
                        ensure!(last_prio < Some(o.prio), "level FIFO not in time priority");
                        last_prio = Some(o.prio);
                        count += 1;
                        total += u128::from(o.leaves.0);
                        prev = rec;
                        rec = o.next;
                    }
                    ensure!(level.tail == prev, "level tail");
                    ensure!(count == level.count && total == level.total, "level totals");
                    resting += count;
                }
            }
            if let (Some(bid), Some(ask)) = (book.sides[0].last(), book.sides[1].last()) {
                let (bid, ask) = (
                    self.levels[bid.level as usize].price,
                    self.levels[ask.level as usize].price,
                );
                ensure!(
                    bid < ask,
                    "{} rests crossed: bid {bid:?} >= ask {ask:?}",
                    book.name
                );
            }
        }
        ensure!(
            levels == self.levels_used,
            "levels in use: {levels} vs {}",
            self.levels_used
        );
        let mut free = 0;
        let mut rec = self.free_level;
        while rec != NIL {
            free += 1;
            rec = self.levels[rec as usize].head;
        }
        ensure!(free + levels == self.levels.len() as u32, "level free list");
        ensure!(resting == self.live_orders, "live orders not all resting");
        Ok(())
    }

    fn check_accounts(&self) -> Result<(), String> {
        let mut in_accounts = 0u32;
        for (a, account) in self.accounts.iter().enumerate() {
            let (mut count, mut prev) = (0u32, NIL);
            let mut rec = account.head;
            while rec != NIL {
                let o = &self.orders[rec as usize];
                ensure!(o.live && o.account_rec == a as u32, "account list member");
                ensure!(o.acct_prev == prev, "account links broken");
                count += 1;
                prev = rec;
                rec = o.acct_next;
            }
            ensure!(
                account.tail == prev && account.live == count,
                "account list totals"
            );
            in_accounts += count;
        }
        ensure!(
            in_accounts == self.live_orders,
            "account lists miss live orders"
        );
        Ok(())
    }

    fn check_records(&self) -> Result<(), String> {
        let mut free = 0u32;
        let mut rec = self.free_order;
        while rec != NIL {
            ensure!(
                !self.orders[rec as usize].live,
                "live order in the free list"
            );
            free += 1;
            rec = self.orders[rec as usize].next;
        }
        ensure!(
            (self.live_orders + free) as usize == self.orders.len(),
            "order records: {} live + {free} free != {}",
            self.live_orders,
            self.orders.len()
        );
        ensure!(
            self.live_orders <= self.config.orders_max,
            "live orders over capacity"
        );
        ensure!(
            self.ids.len() == (self.live_orders + self.finished.len()) as usize,
            "id index size: not one entry per live and per finished order"
        );
        for (rec, o) in self.orders.iter().enumerate().filter(|(_, o)| o.live) {
            ensure!(
                self.find_order(o.account, &o.order_id) == Some(rec as u32),
                "order {} of account {} not indexed",
                o.order_id,
                o.account.0
            );
        }
        Ok(())
    }

    fn check_finished(&self) -> Result<(), String> {
        let window = self.config.dedup_window_ns;
        ensure!(
            self.finished.due_agrees(),
            "the due ring disagrees with the finished records"
        );
        ensure!(
            window == 0 || self.finished.len() + self.live_orders <= self.config.retired_ids_max,
            "finished plus live orders over retired_ids_max"
        );
        let mut last = None;
        for (slot, f) in self.finished.iter() {
            ensure!(
                self.find_finished(f.hash, f.account, &f.order_id) == Some(slot),
                "finished id {} of account {} not indexed",
                f.order_id,
                f.account.0
            );
            ensure!(
                self.find_order(f.account, &f.order_id).is_none(),
                "id {} of account {} is both live and finished",
                f.order_id,
                f.account.0
            );
            ensure!(last <= Some(f.finished_at), "finished orders out of order");
            ensure!(
                f.finished_at
                    .0
                    .checked_add(window)
                    .is_none_or(|expiry| expiry > self.clock.0),
                "finished order {} kept past its window",
                f.order_id
            );
            last = Some(f.finished_at);
        }
        let expiry = self
            .finished
            .oldest()
            .map_or(u64::MAX, |due| due.finished_at.saturating_add(window));
        ensure!(expiry == self.next_expiry, "cached next expiry is stale");
        Ok(())
    }
}
