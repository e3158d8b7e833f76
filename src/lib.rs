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

use anyhow::{anyhow, Context, Result};
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
            // Neither error quotes the file: it may hold the secret hash seed.
            let invalid =
                |why: String| anyhow!("{} is not a valid engine config: {why}", path.display());
            let table: toml::Table = toml::from_str(&text)
                .map_err(|err| invalid(node::config::toml_error(&text, &err)))?;
            let mut merged = toml::Table::try_from(base).expect("an engine config is a table");
            merged.extend(table);
            merged
                .try_into()
                .map_err(|err: toml::de::Error| invalid(node::config::toml_error("", &err)))?
        }
    };
    config.validate().context("invalid engine configuration")?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine config file may hold the secret hash seed: its errors name the field and
    /// the place, never a value from the file.
    #[test]
    fn an_engine_config_error_quotes_no_value_from_the_file() {
        let path = std::env::temp_dir().join(format!("engine-{}.toml", std::process::id()));
        for text in [
            "hash_seed = \"9187361452\"\n",
            "hash_seed = 9187361452 9\n",
            "dedup_window_ns = -9187361452\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let err = load_engine_config_over(EngineConfig::default(), Some(&path)).unwrap_err();
            // As the command line prints it: with every cause.
            let err = format!("{err:#}");
            assert!(err.contains("is not a valid engine config"), "{err}");
            assert!(!err.contains("9187361452"), "{err}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
