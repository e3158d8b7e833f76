//! Capacities, fixed at construction. Every structure the engine fills is bounded by one of
//! these numbers and preallocated (or reserved) up front; when one is full, the command that
//! needs more is rejected with reason `capacity`, never grown on the hot path.
//!
//! Replicas applying the same log must use the same configuration: capacities decide rejects.
//! It is therefore part of the snapshot and of the state hash.

use serde::{Deserialize, Serialize};

/// The engine's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Symbols that can be listed.
    pub symbols_max: u32,
    /// Distinct accounts that ever had an order accepted. Account records are never released
    /// (balances will live there), so this bounds the accounts a shard ever serves.
    pub accounts_max: u32,
    /// Live orders: resting, plus the one incoming order being matched. A new order (of any
    /// kind, even one that would only take liquidity) beyond it is rejected with `capacity`.
    pub orders_max: u32,
    /// Finished orders (filled, cancelled, replaced) remembered with their final state while
    /// inside their dedup window. Never forgotten early: every live order holds a place here
    /// for when it finishes, so a new order (or a replace) is rejected with `capacity` while
    /// finished orders inside their window plus live orders fill it. Size it to at least
    /// `orders_max` plus the peak finishes per second times the window in seconds; each entry
    /// costs about 210 bytes. 0 only with `dedup_window_ns` 0.
    pub retired_ids_max: u32,
    /// How long, in log time, a finished order's id is refused for reuse
    /// (`duplicate_order_id`) and its final state answered: the horizon of a member's resends
    /// and of late deliveries. 0 forgets finished orders at once (no dedup of resends).
    pub dedup_window_ns: u64,
    /// Dead-man's switches armed at once (one per member session that uses one); a
    /// `cancel_after` arming one more is rejected with `capacity`.
    pub switches_max: u32,
    /// Price levels over all books.
    pub levels_max: u32,
    /// Price levels on one side of one book (reserved per symbol when it is added).
    pub levels_per_side_max: u32,
    /// Seed of the id hash tables. It changes only memory layout, never behaviour or the state
    /// hash, so replicas may differ. Set a secret per deployment: with a known seed (such as
    /// the default, which is in this source) a client can craft order ids that collide and
    /// slow every lookup. Snapshots carry it with the rest of the configuration.
    pub hash_seed: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            symbols_max: 1024,
            accounts_max: 1 << 16,
            orders_max: 1 << 20,
            retired_ids_max: 1 << 20,
            dedup_window_ns: DEFAULT_DEDUP_WINDOW_NS,
            switches_max: 4096,
            levels_max: 1 << 16,
            levels_per_side_max: 4096,
            hash_seed: PUBLIC_HASH_SEED,
        }
    }
}

/// The default `hash_seed`: public, since it is in this source. Fine for tests, benchmarks
/// and replays; a node refuses it, as it refuses 0 (and a seed left out, which takes it).
pub const PUBLIC_HASH_SEED: u64 = 0x5eed_0fba_5eba_11ed;

/// The default dedup window: 60 s of log time, twice the longest a producer retries a delivery
/// (30 s), and time for a member to reconnect at another site and resend.
pub const DEFAULT_DEDUP_WINDOW_NS: u64 = 60_000_000_000;

/// Largest accepted value of any count: indexes are `u32` with one value kept as "none", and
/// hash tables are sized at twice the count.
pub const COUNT_MAX: u32 = 1 << 30;

/// A configuration that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field} must be between 1 (0 for retired_ids_max and switches_max) and {COUNT_MAX}, got {value}")]
    OutOfRange { field: &'static str, value: u32 },
    #[error(
        "a dedup window ({window_ns} ns) needs retired_ids_max above 0 to remember finished orders"
    )]
    WindowWithoutMemory { window_ns: u64 },
    #[error("levels_per_side_max ({per_side}) must not exceed levels_max ({total})")]
    PerSideAboveTotal { per_side: u32, total: u32 },
    #[error("cannot reserve {bytes} bytes for these capacities")]
    OutOfMemory { bytes: usize },
}

impl EngineConfig {
    /// Checks every limit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let counts = [
            ("symbols_max", self.symbols_max),
            ("accounts_max", self.accounts_max),
            ("orders_max", self.orders_max),
            ("levels_max", self.levels_max),
            ("levels_per_side_max", self.levels_per_side_max),
        ];
        for (field, value) in counts {
            if value == 0 || value > COUNT_MAX {
                return Err(ConfigError::OutOfRange { field, value });
            }
        }
        for (field, value) in [
            ("retired_ids_max", self.retired_ids_max),
            ("switches_max", self.switches_max),
        ] {
            if value > COUNT_MAX {
                return Err(ConfigError::OutOfRange { field, value });
            }
        }
        if self.retired_ids_max == 0 && self.dedup_window_ns > 0 {
            return Err(ConfigError::WindowWithoutMemory {
                window_ns: self.dedup_window_ns,
            });
        }
        if self.levels_per_side_max > self.levels_max {
            return Err(ConfigError::PerSideAboveTotal {
                per_side: self.levels_per_side_max,
                total: self.levels_max,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_bad_ones_say_why() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
        let zero = EngineConfig {
            orders_max: 0,
            ..EngineConfig::default()
        };
        assert_eq!(
            zero.validate(),
            Err(ConfigError::OutOfRange {
                field: "orders_max",
                value: 0
            })
        );
        let lopsided = EngineConfig {
            levels_max: 10,
            levels_per_side_max: 11,
            ..EngineConfig::default()
        };
        assert!(matches!(
            lopsided.validate(),
            Err(ConfigError::PerSideAboveTotal { .. })
        ));
    }
}
