//! What the end-to-end tests share: a small site to run them on.

use std::path::Path;

use engine::runner::RunnerConfig;
use engine::EngineConfig;
use exchange::site::{LogBackend, ShardConfig, SiteConfig, SymbolSpec};
use gateway::binary_server::BinaryConfig;
use gateway::Member;
use replicator::journal::FsyncPolicy;
use replicator::recovery::SnapshotPolicy;

/// A site named `name` in `dir` for `members`, with small engine capacities and one symbol,
/// BTC-USD (tick 0.5, lot 1), fsync per batch, the binary server on a free loopback port, and
/// no HTTP, FIX listener, snapshots beyond the defaults or hash reports.
pub fn small_site(name: &str, dir: &Path, members: Vec<Member>) -> SiteConfig {
    SiteConfig {
        name: name.into(),
        data_dir: dir.to_path_buf(),
        engine: EngineConfig {
            orders_max: 1 << 12,
            retired_ids_max: 1 << 12,
            levels_max: 1 << 10,
            levels_per_side_max: 1 << 9,
            ..EngineConfig::default()
        },
        runner: RunnerConfig::default(),
        snapshots: SnapshotPolicy::default(),
        snapshots_keep: 2,
        hash_every: 0,
        members,
        shards: vec![ShardConfig::only(
            LogBackend::Journal {
                fsync: FsyncPolicy::PerBatch,
            },
            vec![SymbolSpec {
                symbol: "BTC-USD".into(),
                tick: "0.5".into(),
                lot: "1".into(),
            }],
        )],
        binary_listen: "127.0.0.1:0".parse().unwrap(),
        binary: BinaryConfig::default(),
        http_listen: None,
        market_data: Default::default(),
        fix_listen: None,
        fix: Default::default(),
    }
}
