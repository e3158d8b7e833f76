//! Snapshots: the canonical state as bytes, and back.
//!
//! Layout: `EXCHSNAP` magic (8 bytes), format version (u32 LE), body length (u64 LE), the body
//! (bincode of [`SnapshotBody`], fixed-width integers), then a CRC-32 (u32 LE) of everything
//! before it. The body is behaviour, not memory: live orders in time-priority order and retired
//! ids oldest first, from which `restore` rebuilds every structure and index. Restoring checks
//! everything it reads; a truncated, corrupt or inconsistent snapshot is an error, never a panic.

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, EngineConfig};
use crate::engine::{find_level, side_index, side_key, Engine, OrderRec, NIL};
use crate::retired::RetiredId;
use crate::types::{AccountId, Lots, OrderId, Price, Qty, Side, Stp, Symbol, Ticks, TimestampNs};

const MAGIC: &[u8; 8] = b"EXCHSNAP";
/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
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
    symbols: Vec<SnapSymbol>,
    accounts: Vec<AccountId>,
    /// Live orders, oldest time priority first.
    orders: Vec<SnapOrder>,
    /// Retired ids still remembered, oldest first.
    retired: Vec<(AccountId, OrderId)>,
}

#[derive(Serialize, Deserialize)]
struct SnapSymbol {
    name: Symbol,
    tick: Price,
    lot: Qty,
}

#[derive(Serialize, Deserialize)]
struct SnapOrder {
    account: AccountId,
    order_id: OrderId,
    symbol: u32,
    side: Side,
    price: Ticks,
    leaves: Lots,
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
                        orders.push(SnapOrder {
                            account: o.account,
                            order_id: o.order_id,
                            symbol: symbol as u32,
                            side,
                            price: o.price,
                            leaves: o.leaves,
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
        let retired = self
            .retired
            .iter()
            .map(|(_, id)| (id.account, id.order_id))
            .collect();
        let body = SnapshotBody {
            config: self.config,
            clock: self.clock,
            next_event_seq: self.next_event_seq,
            next_prio: self.next_prio,
            symbols: self
                .books
                .iter()
                .map(|b| SnapSymbol {
                    name: b.name,
                    tick: b.tick,
                    lot: b.lot,
                })
                .collect(),
            accounts: self.accounts.iter().map(|a| a.id).collect(),
            orders,
            retired,
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
        if version != SNAPSHOT_VERSION {
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
        let body: SnapshotBody = codec(body_len).deserialize(&bytes[HEADER_LEN..crc_at])?;
        Engine::rebuild(body)
    }

    fn rebuild(body: SnapshotBody) -> Result<Engine, SnapshotError> {
        // Counters this far from overflow would take 4.6e18 commands to reach; a snapshot
        // claiming more is forged or corrupt, and would wrap time priority or event numbers.
        if body.next_prio > COUNTER_MAX || body.next_event_seq > COUNTER_MAX {
            return Err(invalid("a sequence counter is beyond 2^62"));
        }
        let mut engine = Engine::new(body.config)?;
        let config = body.config;
        if body.symbols.len() > config.symbols_max as usize {
            return Err(invalid("more symbols than symbols_max"));
        }
        for s in &body.symbols {
            if engine.find_book(&s.name).is_some() {
                return Err(invalid(format!("symbol {} listed twice", s.name)));
            }
            if !s.tick.is_positive() || !s.lot.is_positive() {
                return Err(invalid(format!(
                    "symbol {} has a non-positive tick or lot",
                    s.name
                )));
            }
            engine.insert_book(s.name, s.tick, s.lot);
        }
        if body.accounts.len() > config.accounts_max as usize {
            return Err(invalid("more accounts than accounts_max"));
        }
        for &account in &body.accounts {
            if engine.find_account(account).is_some() {
                return Err(invalid(format!("account {} listed twice", account.0)));
            }
            engine.insert_account(account);
        }
        if body.orders.len() > config.orders_max as usize {
            return Err(invalid("more live orders than orders_max"));
        }
        if body.retired.len() > config.retired_ids_max as usize {
            return Err(invalid("more retired ids than retired_ids_max"));
        }
        let mut last_prio = None;
        for o in &body.orders {
            if last_prio.is_some_and(|last| o.prio <= last) || o.prio >= body.next_prio {
                return Err(invalid("live orders are not in strict time-priority order"));
            }
            last_prio = Some(o.prio);
            let book = engine
                .books
                .get(o.symbol as usize)
                .ok_or_else(|| invalid(format!("order on unknown symbol #{}", o.symbol)))?;
            let fits = o.price.0 > 0
                && o.leaves.0 > 0
                && o.price.0.checked_mul(book.tick.0).is_some()
                && i64::try_from(o.leaves.0)
                    .ok()
                    .and_then(|l| l.checked_mul(book.lot.0))
                    .is_some();
            if !fits {
                return Err(invalid("an order's price or quantity is out of range"));
            }
            let account_rec = engine
                .find_account(o.account)
                .ok_or_else(|| invalid(format!("order of unlisted account {}", o.account.0)))?;
            let refs = &engine.books[o.symbol as usize].sides[side_index(o.side)];
            let new_level = find_level(refs, side_key(o.side, o.price)).is_err();
            if new_level
                && (engine.levels_used >= config.levels_max
                    || refs.len() >= config.levels_per_side_max as usize)
            {
                return Err(invalid("more price levels than the configuration allows"));
            }
            let hash = engine.order_hash(o.account, &o.order_id);
            if engine.id_known(hash, o.account, &o.order_id) {
                return Err(duplicate(o.account, o.order_id));
            }
            let rec = engine.insert_live_order(OrderRec {
                account: o.account,
                order_id: o.order_id,
                price: o.price,
                leaves: o.leaves,
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
                stp: o.stp,
                post_only: o.post_only,
                live: true,
            });
            engine.rest(rec);
        }
        for &(account, order_id) in &body.retired {
            let hash = engine.order_hash(account, &order_id);
            if engine.id_known(hash, account, &order_id) {
                return Err(duplicate(account, order_id));
            }
            let (slot, forgotten) = engine.retired.push(RetiredId {
                account,
                order_id,
                hash,
            });
            assert!(forgotten.is_none(), "the ring's capacity was checked");
            engine.retired_index.insert(hash, slot);
        }
        for book in &engine.books {
            if let (Some(bid), Some(ask)) = (book.sides[0].last(), book.sides[1].last()) {
                if engine.levels[bid.level as usize].price
                    >= engine.levels[ask.level as usize].price
                {
                    return Err(invalid(format!("book {} rests crossed", book.name)));
                }
            }
        }
        engine.clock = body.clock;
        engine.next_event_seq = body.next_event_seq;
        engine.next_prio = body.next_prio;
        Ok(engine)
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
}
