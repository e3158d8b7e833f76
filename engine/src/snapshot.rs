//! Snapshots: the canonical state as bytes, and back.
//!
//! Layout: `EXCHSNAP` magic (8 bytes), format version (u32 LE), body length (u64 LE), the body
//! (bincode of [`SnapshotBody`], fixed-width integers), then a CRC-32 (u32 LE) of everything
//! before it. The body is behaviour, not memory: live orders in time-priority order, finished
//! orders oldest first, armed switches sorted, from which `restore` rebuilds every structure and
//! index. Restoring checks
//! everything it reads; a truncated, corrupt or inconsistent snapshot is an error, never a panic.

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, EngineConfig};
use crate::engine::{find_level, side_index, side_key, Engine, IdRef, OrderCold, OrderRec, NIL};
use crate::finished::FinishedRec;
use crate::types::{
    AccountId, Lots, OrdType, OrderId, OrderStatus, Price, Qty, Side, Stp, Symbol, Ticks,
    TimestampNs, TradingStatus,
};

const MAGIC: &[u8; 8] = b"EXCHSNAP";
/// The snapshot format this build writes (and the newest it reads).
/// 2: orders carry their total, notional and session; finished orders with their final state
/// replace retired ids; trading status, kill switches and dead-man's switches.
/// 3: the rules version in force, after everything else (version 2 is still read, as rules 1).
pub const SNAPSHOT_VERSION: u32 = 3;
/// The oldest snapshot format this build reads.
pub const SNAPSHOT_VERSION_OLDEST: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 8;
/// Largest `next_prio` and `next_event_seq` a snapshot may carry.
const COUNTER_MAX: u64 = 1 << 62;
const TRAILER_LEN: usize = 4;

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is truncated: {len} bytes, at least {needed} needed")]
    Truncated { len: usize, needed: usize },
    #[error("not a snapshot (bad magic bytes)")]
    BadMagic,
    #[error("snapshot format version {0} is not supported (this build reads {SNAPSHOT_VERSION})")]
    UnsupportedVersion(u32),
    #[error(
        "snapshot is under rules version {0}, and this build implements 1 to {last}",
        last = crate::command::RULES_VERSION
    )]
    NewerRules(u32),
    #[error("snapshot has {0} bytes after its checksum")]
    TrailingBytes(usize),
    #[error("snapshot checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("snapshot body does not decode: {0}")]
    Decode(#[from] bincode::Error),
    #[error("snapshot holds an unusable configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("snapshot is inconsistent: {0}")]
    Invalid(String),
}

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    config: EngineConfig,
    clock: TimestampNs,
    next_event_seq: u64,
    next_prio: u64,
    next_number: u64,
    symbols: Vec<SnapSymbol>,
    /// Accounts in the order of their records, with their kill switch.
    accounts: Vec<(AccountId, bool)>,
    /// Live orders, oldest time priority first.
    orders: Vec<SnapOrder>,
    /// Finished orders inside their window, oldest first.
    finished: Vec<FinishedRec>,
    /// Armed dead-man's switches (account, session, deadline), by (deadline, account, session).
    switches: Vec<(AccountId, u64, u64)>,
    /// The rules version in force (version 3 on; a version-2 body is read as rules 1).
    rules: u32,
}

#[derive(Serialize, Deserialize)]
struct SnapSymbol {
    name: Symbol,
    tick: Price,
    lot: Qty,
    status: TradingStatus,
    /// Market-data counters: book updates and trades.
    updates: u64,
    trades: u64,
}

#[derive(Serialize, Deserialize)]
struct SnapOrder {
    account: AccountId,
    order_id: OrderId,
    symbol: u32,
    side: Side,
    price: Ticks,
    leaves: Lots,
    total: Lots,
    notional: u128,
    session: u64,
    number: u64,
    prio: u64,
    stp: Stp,
    post_only: bool,
}

fn codec(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(limit)
}

fn invalid(message: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid(message.into())
}

fn duplicate(account: AccountId, order_id: OrderId) -> SnapshotError {
    invalid(format!(
        "order id {order_id} of account {} appears twice",
        account.0
    ))
}

impl Engine {
    /// The state as snapshot bytes (see the module docs).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut orders: Vec<SnapOrder> = Vec::with_capacity(self.live_orders as usize);
        for (symbol, book) in self.books.iter().enumerate() {
            for (side, refs) in [Side::Buy, Side::Sell].into_iter().zip(&book.sides) {
                for r in refs {
                    let mut rec = self.levels[r.level as usize].head;
                    while rec != NIL {
                        let o = &self.orders[rec as usize];
                        let cold = &self.order_cold[rec as usize];
                        orders.push(SnapOrder {
                            account: o.account,
                            order_id: o.order_id,
                            symbol: symbol as u32,
                            side,
                            price: o.price,
                            leaves: o.leaves,
                            total: o.total,
                            notional: cold.notional,
                            session: cold.session,
                            number: cold.number,
                            prio: o.prio,
                            stp: o.stp,
                            post_only: o.post_only,
                        });
                        rec = o.next;
                    }
                }
            }
        }
        orders.sort_unstable_by_key(|o| o.prio);
        let finished = self.finished.iter().map(|(_, f)| *f).collect();
        let switches = self
            .switches
            .sorted()
            .iter()
            .map(|s| (s.account, s.session, s.deadline))
            .collect();
        let body = SnapshotBody {
            config: self.config,
            clock: self.clock,
            next_event_seq: self.next_event_seq,
            next_prio: self.next_prio,
            next_number: self.next_number,
            symbols: self
                .books
                .iter()
                .map(|b| SnapSymbol {
                    name: b.name,
                    tick: b.tick,
                    lot: b.lot,
                    status: b.status,
                    updates: b.updates,
                    trades: b.trades,
                })
                .collect(),
            accounts: self.accounts.iter().map(|a| (a.id, a.disabled)).collect(),
            orders,
            finished,
            switches,
            rules: self.rules,
        };
        let body = codec(u64::MAX)
            .serialize(&body)
            .expect("snapshot bodies always serialize");
        let mut bytes = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER_LEN);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&body);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Rebuilds an engine from snapshot bytes, with the configuration stored in them.
    pub fn restore(bytes: &[u8]) -> Result<Engine, SnapshotError> {
        let truncated = |needed| SnapshotError::Truncated {
            len: bytes.len(),
            needed,
        };
        if bytes.len() < HEADER_LEN + TRAILER_LEN {
            return Err(truncated(HEADER_LEN + TRAILER_LEN));
        }
        if &bytes[..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if !(SNAPSHOT_VERSION_OLDEST..=SNAPSHOT_VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let body_len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let total = usize::try_from(body_len)
            .ok()
            .and_then(|len| len.checked_add(HEADER_LEN + TRAILER_LEN))
            .ok_or_else(|| truncated(usize::MAX))?;
        if bytes.len() < total {
            return Err(truncated(total));
        }
        if bytes.len() > total {
            return Err(SnapshotError::TrailingBytes(bytes.len() - total));
        }
        let crc_at = total - TRAILER_LEN;
        let stored = u32::from_le_bytes(bytes[crc_at..].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&bytes[..crc_at]);
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        let body: SnapshotBody = if version == 2 {
            // Version 2 is version 3 without the rules at the end: rules 1.
            let mut v2 = bytes[HEADER_LEN..crc_at].to_vec();
            v2.extend_from_slice(&1u32.to_le_bytes());
            codec(body_len + 4).deserialize(&v2)?
        } else {
            codec(body_len).deserialize(&bytes[HEADER_LEN..crc_at])?
        };
        Engine::rebuild(body)
    }

    fn rebuild(body: SnapshotBody) -> Result<Engine, SnapshotError> {
        // Counters this far from overflow would take 4.6e18 commands to reach; a snapshot
        // claiming more is forged or corrupt, and would wrap time priority or event numbers.
        let counters = [body.next_prio, body.next_event_seq, body.next_number];
        if counters.iter().any(|&counter| counter > COUNTER_MAX) {
            return Err(invalid("a sequence counter is beyond 2^62"));
        }
        let mut engine = Engine::new(body.config)?;
        engine.clock = body.clock;
        engine.next_number = body.next_number;
        engine.rebuild_symbols(&body.symbols)?;
        engine.rebuild_accounts(&body.accounts)?;
        engine.rebuild_orders(&body.orders, body.next_prio)?;
        engine.rebuild_finished(&body.finished)?;
        engine.rebuild_switches(&body.switches)?;
        engine.next_event_seq = body.next_event_seq;
        engine.next_prio = body.next_prio;
        engine.next_number = body.next_number;
        if body.rules > crate::command::RULES_VERSION {
            return Err(SnapshotError::NewerRules(body.rules));
        }
        if body.rules == 0 {
            return Err(invalid("rules version 0"));
        }
        engine.rules = body.rules;
        Ok(engine)
    }

    fn rebuild_symbols(&mut self, symbols: &[SnapSymbol]) -> Result<(), SnapshotError> {
        if symbols.len() > self.config.symbols_max as usize {
            return Err(invalid("more symbols than symbols_max"));
        }
        for s in symbols {
            if self.find_book(&s.name).is_some() {
                return Err(invalid(format!("symbol {} listed twice", s.name)));
            }
            if !s.tick.is_positive() || !s.lot.is_positive() {
                return Err(invalid(format!(
                    "symbol {} has a non-positive tick or lot",
                    s.name
                )));
            }
            self.insert_book(s.name, s.tick, s.lot);
            let book = self.books.last_mut().expect("just listed");
            book.status = s.status;
            book.updates = s.updates;
            book.trades = s.trades;
        }
        Ok(())
    }

    fn rebuild_accounts(&mut self, accounts: &[(AccountId, bool)]) -> Result<(), SnapshotError> {
        if accounts.len() > self.config.accounts_max as usize {
            return Err(invalid("more accounts than accounts_max"));
        }
        for &(account, disabled) in accounts {
            if self.find_account(account).is_some() {
                return Err(invalid(format!("account {} listed twice", account.0)));
            }
            let rec = self.insert_account(account);
            self.accounts[rec as usize].disabled = disabled;
            self.disabled_accounts += u32::from(disabled);
        }
        Ok(())
    }

    /// Whether `price` ticks, `lots` lots and a `notional` in ticks × lots of `symbol` fit
    /// the fixed-8 and fixed-16 numbers they are shown as.
    fn fits(
        &self,
        symbol: u32,
        price: Ticks,
        lots: Lots,
        notional: u128,
    ) -> Result<(), SnapshotError> {
        let book = self
            .books
            .get(symbol as usize)
            .ok_or_else(|| invalid(format!("order on unknown symbol #{symbol}")))?;
        let fits = price.0 >= 0
            && price.0.checked_mul(book.tick.0).is_some()
            && i64::try_from(lots.0)
                .ok()
                .and_then(|l| l.checked_mul(book.lot.0))
                .is_some()
            && notional
                .checked_mul(book.tick.0 as u128)
                .and_then(|n| n.checked_mul(book.lot.0 as u128))
                .is_some();
        if fits {
            Ok(())
        } else {
            Err(invalid(
                "an order's price, quantity or notional is out of range",
            ))
        }
    }

    fn rebuild_orders(
        &mut self,
        orders: &[SnapOrder],
        next_prio: u64,
    ) -> Result<(), SnapshotError> {
        if orders.len() > self.config.orders_max as usize {
            return Err(invalid("more live orders than orders_max"));
        }
        let mut last_prio = None;
        for o in orders {
            if last_prio.is_some_and(|last| o.prio <= last) || o.prio >= next_prio {
                return Err(invalid("live orders are not in strict time-priority order"));
            }
            last_prio = Some(o.prio);
            self.fits(o.symbol, o.price, o.total, o.notional)?;
            if o.price.0 == 0
                || o.leaves.0 == 0
                || o.leaves > o.total
                || o.number >= self.next_number
            {
                return Err(invalid(
                    "a resting order's price or quantity is out of range",
                ));
            }
            let account_rec = self
                .find_account(o.account)
                .ok_or_else(|| invalid(format!("order of unlisted account {}", o.account.0)))?;
            let refs = &self.books[o.symbol as usize].sides[side_index(o.side)];
            let new_level = find_level(refs, side_key(o.side, o.price)).is_err();
            if new_level
                && (self.levels_used >= self.config.levels_max
                    || refs.len() >= self.config.levels_per_side_max as usize)
            {
                return Err(invalid("more price levels than the configuration allows"));
            }
            let hash = self.order_hash(o.account, &o.order_id);
            if self.id_known(hash, o.account, &o.order_id) {
                return Err(duplicate(o.account, o.order_id));
            }
            let cold = OrderCold {
                notional: o.notional,
                session: o.session,
                number: o.number,
            };
            let rec = self.insert_live_order(
                OrderRec {
                    account: o.account,
                    order_id: o.order_id,
                    price: o.price,
                    leaves: o.leaves,
                    total: o.total,
                    prio: o.prio,
                    hash,
                    level: NIL,
                    prev: NIL,
                    next: NIL,
                    acct_prev: NIL,
                    acct_next: NIL,
                    account_rec,
                    symbol: o.symbol,
                    side: o.side,
                    ord_type: OrdType::Limit,
                    stp: o.stp,
                    post_only: o.post_only,
                    live: true,
                },
                cold,
            );
            self.rest(rec);
        }
        self.check_uncrossed()
    }

    fn check_uncrossed(&self) -> Result<(), SnapshotError> {
        for book in &self.books {
            if let (Some(bid), Some(ask)) = (book.sides[0].last(), book.sides[1].last()) {
                if self.levels[bid.level as usize].price >= self.levels[ask.level as usize].price {
                    return Err(invalid(format!("book {} rests crossed", book.name)));
                }
            }
        }
        Ok(())
    }

    fn rebuild_finished(&mut self, finished: &[FinishedRec]) -> Result<(), SnapshotError> {
        let window = self.config.dedup_window_ns;
        let reserved = finished.len() + self.live_orders as usize;
        if !finished.is_empty() && (window == 0 || reserved > self.config.retired_ids_max as usize)
        {
            return Err(invalid(
                "more finished orders than retired_ids_max leaves room for",
            ));
        }
        let mut last = TimestampNs(0);
        for f in finished {
            if f.number >= self.next_number {
                return Err(invalid("a finished order's number is not yet given"));
            }
            if f.finished_at < last
                || f.finished_at > self.clock
                || f.finished_at
                    .0
                    .checked_add(window)
                    .is_some_and(|expiry| expiry <= self.clock.0)
            {
                return Err(invalid(
                    "finished orders out of order or outside their window",
                ));
            }
            last = f.finished_at;
            self.fits(f.symbol, f.price, f.total.max(f.filled), f.notional)?;
            let consistent = match f.status {
                OrderStatus::Filled => f.reason.is_none() && f.replaced_by.is_none(),
                OrderStatus::Cancelled => f.reason.is_some() && f.replaced_by.is_none(),
                OrderStatus::Replaced => f.reason.is_none() && f.replaced_by.is_some(),
                OrderStatus::New | OrderStatus::PartiallyFilled => false,
            };
            if !consistent {
                return Err(invalid(
                    "a finished order's status, reason and successor disagree",
                ));
            }
            let hash = self.order_hash(f.account, &f.order_id);
            if self.id_known(hash, f.account, &f.order_id) {
                return Err(duplicate(f.account, f.order_id));
            }
            if let Some(slot) = self.push_finished(FinishedRec { hash, ..*f }) {
                self.ids.insert(hash, IdRef::Finished(slot).value());
            }
        }
        Ok(())
    }

    fn rebuild_switches(
        &mut self,
        switches: &[(AccountId, u64, u64)],
    ) -> Result<(), SnapshotError> {
        if switches.len() > self.config.switches_max as usize {
            return Err(invalid("more switches than switches_max"));
        }
        let mut last = None;
        for &(account, session, deadline) in switches {
            // Canonical order, as `snapshot` writes it: anything else would restore to an
            // engine that snapshots to other bytes.
            if last.is_some_and(|last| (deadline, account, session) <= last) {
                return Err(invalid(
                    "switches are not in (deadline, account, session) order",
                ));
            }
            last = Some((deadline, account, session));
            if self.switches.deadline(account, session).is_some() {
                return Err(invalid(format!(
                    "switch {}/{session} armed twice",
                    account.0
                )));
            }
            // A deadline at the end of time is one that saturated (armed at the last
            // nanosecond); it fires at the next command.
            if deadline <= self.clock.0 && deadline != u64::MAX {
                return Err(invalid("a switch past its deadline did not fire"));
            }
            self.switches.arm(account, session, deadline);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rewrites the body of `bytes` and fixes the checksum, as a forger would.
    fn forge(bytes: &[u8], edit: impl FnOnce(&mut SnapshotBody)) -> Vec<u8> {
        let crc_at = bytes.len() - TRAILER_LEN;
        let mut body: SnapshotBody = codec(u64::MAX)
            .deserialize(&bytes[HEADER_LEN..crc_at])
            .unwrap();
        edit(&mut body);
        let body = codec(u64::MAX).serialize(&body).unwrap();
        let mut out = bytes[..12].to_vec();
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn a_checksummed_snapshot_with_counters_near_overflow_is_refused() {
        let bytes = Engine::new(EngineConfig::default()).unwrap().snapshot();
        assert!(Engine::restore(&forge(&bytes, |_| {})).is_ok());
        for edit in [
            (|b: &mut SnapshotBody| b.next_prio = u64::MAX) as fn(&mut SnapshotBody),
            |b| b.next_event_seq = u64::MAX,
        ] {
            assert!(matches!(
                Engine::restore(&forge(&bytes, edit)),
                Err(SnapshotError::Invalid(_))
            ));
        }
    }

    /// Switches are stored in (deadline, account, session) order; any other order would
    /// restore to an engine that snapshots to different bytes, so it is refused.
    #[test]
    fn a_checksummed_snapshot_with_switches_out_of_order_is_refused() {
        let bytes = Engine::new(EngineConfig::default()).unwrap().snapshot();
        let switches = [(AccountId(2), 4, 1014), (AccountId(3), 1, 2015)];
        assert!(Engine::restore(&forge(&bytes, |b| b.switches = switches.to_vec())).is_ok());
        let mut swapped = switches;
        swapped.swap(0, 1);
        assert!(matches!(
            Engine::restore(&forge(&bytes, |b| b.switches = swapped.to_vec())),
            Err(SnapshotError::Invalid(_))
        ));
    }

    /// A snapshot whose checksum is right but whose capacities no machine can hold (a foreign
    /// or crafted file) is an error, not an abort.
    #[test]
    fn a_checksummed_snapshot_with_absurd_capacities_is_refused() {
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let mut bytes = engine.snapshot();
        // The body starts with the config: symbols_max, accounts_max, orders_max (u32 LE).
        let orders_max_at = HEADER_LEN + 8;
        bytes[orders_max_at..orders_max_at + 4]
            .copy_from_slice(&crate::config::COUNT_MAX.to_le_bytes());
        let crc_at = bytes.len() - TRAILER_LEN;
        let crc = crc32fast::hash(&bytes[..crc_at]);
        bytes[crc_at..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            Engine::restore(&bytes),
            Err(SnapshotError::Config(ConfigError::OutOfMemory { .. }))
        ));
    }

    /// A version-2 snapshot (a version-3 body without the rules at its end) is still read,
    /// as rules 1; a snapshot under rules this build does not implement is its own error,
    /// so that recovery stops on it instead of falling back past it.
    #[test]
    fn version_2_reads_as_rules_1_and_newer_rules_are_refused_by_name() {
        let mut engine = Engine::new(EngineConfig::default()).unwrap();
        let cmd = crate::Command::new(7, crate::CommandKind::Clock);
        engine.apply(&cmd, &mut Vec::new());
        let v3 = engine.snapshot();
        let crc_at = v3.len() - TRAILER_LEN;
        let body = &v3[HEADER_LEN..crc_at - 4];
        let mut v2 = Vec::from(&v3[..8]);
        v2.extend_from_slice(&2u32.to_le_bytes());
        v2.extend_from_slice(&(body.len() as u64).to_le_bytes());
        v2.extend_from_slice(body);
        let crc = crc32fast::hash(&v2);
        v2.extend_from_slice(&crc.to_le_bytes());
        let restored = Engine::restore(&v2).unwrap();
        assert_eq!(restored.rules(), 1);
        assert_eq!(restored.state_hash(), engine.state_hash());
        assert_eq!(restored.snapshot(), v3);

        let newer = crate::command::RULES_VERSION + 1;
        assert!(matches!(
            Engine::restore(&forge(&v3, |b| b.rules = newer)),
            Err(SnapshotError::NewerRules(found)) if found == newer
        ));
        assert!(matches!(
            Engine::restore(&forge(&v3, |b| b.rules = 0)),
            Err(SnapshotError::Invalid(_))
        ));
        let mut v1 = v3.clone();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            Engine::restore(&v1),
            Err(SnapshotError::UnsupportedVersion(1))
        ));
    }
}
