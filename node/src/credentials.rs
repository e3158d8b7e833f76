//! The members' credentials: the config's inline `[[members]]` (tokens in clear: only with
//! `allow_plaintext`, a development machine) and the members file (`members_file`: each
//! token's SHA-256 only), which the node reads again whenever it changes, without a restart.
//!
//! ```toml
//! # members.toml (exchange member-token --name alice --account 1 prints an entry)
//! [[members]]
//! name = "alice"
//! account = 1
//! token_sha256 = "5d41402abc4b2a76b9719d911017c592..."
//! ```
//!
//! A reload that fails (a file that does not parse, a bad digest, a name or account twice)
//! keeps the table in force and says why; one that succeeds takes effect at the next logon,
//! and says how many members it holds. Sessions already logged on stay.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use gateway::members::{HashedMember, Members};
use gateway::Hub;
use serde::Deserialize;
use tokio::sync::watch;

use crate::config::NodeConfig;

/// How often the members file is looked at for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersFile {
    #[serde(default)]
    members: Vec<HashedMember>,
}

/// The inline members and the members file's, as one table; an error naming the problem
/// when the file cannot be read or the table is refused, or when the config holds tokens
/// in clear outside development.
pub fn load(config: &NodeConfig) -> anyhow::Result<Members> {
    if !config.members.is_empty() && !config.allow_plaintext {
        bail!(
            "{} member(s) with tokens in clear in the config: keep them in members_file as \
             token_sha256 (exchange member-token), or set allow_plaintext = true (development)",
            config.members.len()
        );
    }
    let inline = Members::new(config.members.clone()).context("members")?;
    match &config.members_file {
        None => Ok(inline),
        Some(path) => Ok(inline
            .with(read(path)?)
            .context("members and members_file")?),
    }
}

/// The members `path` lists.
fn read(path: &Path) -> anyhow::Result<Members> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the members file {}", path.display()))?;
    let file: MembersFile = toml::from_str(&text).map_err(|err| {
        anyhow::anyhow!(
            "the members file {}: {}",
            path.display(),
            crate::config::toml_error(&text, &err)
        )
    })?;
    Members::hashed(file.members).with_context(|| format!("the members file {}", path.display()))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads the members file again whenever its modification time changes, until `stop`, and
/// puts the new table (with the inline members) in `hub`.
pub async fn reload(config: Arc<NodeConfig>, hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    let Some(path) = config.members_file.clone() else {
        return;
    };
    let mut seen = modified(&path);
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        reload_once(&config, &hub, &path);
    }
}

fn reload_once(config: &NodeConfig, hub: &Hub, path: &Path) {
    match load(config) {
        Ok(members) => {
            eprintln!(
                "node {}: members reloaded from {}: {} members",
                config.site,
                path.display(),
                members.len()
            );
            hub.replace_members(members);
        }
        Err(err) => eprintln!(
            "node {}: members file {} not reloaded, the table in force stays: {err:#}",
            config.site,
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_clear_in_the_config_are_refused_outside_development() {
        let alice = gateway::Member {
            name: "alice".into(),
            token: "alice-token-0001".into(),
            account: 1,
        };
        let mut config = NodeConfig::for_tests("c", Path::new("data"), vec![alice]);
        assert_eq!(load(&config).unwrap().len(), 1);
        config.allow_plaintext = false;
        let err = format!("{:#}", load(&config).unwrap_err());
        assert!(
            err.contains("tokens in clear") && err.contains("members_file"),
            "{err}"
        );
        assert!(!err.contains("alice-token-0001"), "{err}");
    }
}
