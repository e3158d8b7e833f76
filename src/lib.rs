//! The `exchange` command's library: the edges around the engine that the binary wires up.
//!
//! - [`cmd`]: the subcommands, each its arguments and its `run`.
//! - [`contract`]: the replay contract's JSON (commands in; events, book and orders out).
//! - [`replay`]: `exchange replay`.
//! - [`demo`]: `exchange demo` (and `exchange loadgen`'s site).

#![forbid(unsafe_code)]

pub mod cmd;
pub mod contract;
pub mod demo;
pub mod replay;

use std::path::Path;

use anyhow::{Context, Result};
use engine::EngineConfig;

/// The engine capacities from a TOML file (fields of `EngineConfig`; absent ones keep their
/// defaults), or the defaults when no file is given. The result is validated.
pub fn load_engine_config(path: Option<&Path>) -> Result<EngineConfig> {
    load_engine_config_over(EngineConfig::default(), path)
}

/// [`load_engine_config`] with `base` in place of the defaults: the file's fields set on it.
pub fn load_engine_config_over(base: EngineConfig, path: Option<&Path>) -> Result<EngineConfig> {
    let config = match path {
        None => base,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("{} is not a valid engine config", path.display()))?;
            let mut merged = toml::Table::try_from(base).expect("an engine config is a table");
            merged.extend(table);
            merged
                .try_into()
                .with_context(|| format!("{} is not a valid engine config", path.display()))?
        }
    };
    config.validate().context("invalid engine configuration")?;
    Ok(config)
}
