//! The `exchange` command's library: the edges around the engine that the binary wires up.
//!
//! - [`cmd`]: the subcommands, each its arguments and its `run`.
//! - [`contract`]: the replay contract's JSON (commands in; events and book out).
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
    let config = match path {
        None => EngineConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{} is not a valid engine config", path.display()))?
        }
    };
    config.validate().context("invalid engine configuration")?;
    Ok(config)
}
