//! Network partitions of local sites, cut for real: each node runs in a cgroup (v2) of its
//! own, and nftables rules drop the packets between that cgroup's sockets and the Kafka
//! brokers' ports (and, when its members are cut off too, every packet to or from the node's
//! order-entry port). The node stays up and keeps its connections open; nothing it sends
//! arrives, until the rules are removed.
//!
//! Needs root, nftables (`nft`, installed by `scripts/setup`) and cgroup v2 (mounted under
//! `/sys/fs/cgroup`, where `nft` resolves cgroup paths). A drill without partitions needs
//! none of it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

/// Where `nft` looks up a `socket cgroupv2` path.
const NFT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// This drill's nftables table and the sites' cgroups; both removed when dropped.
pub struct Firewall {
    table: String,
    /// The cgroup v2 hierarchy's mount point.
    root: PathBuf,
    cgroups: Vec<PathBuf>,
}

/// A site's cgroup: its node is started in it, and its cut matches its sockets.
#[derive(Clone, Debug)]
pub struct SiteCgroup {
    /// The site's name, also its chains' names.
    site: String,
    /// The cgroup's `cgroup.procs`, which the node's starter writes its pid to.
    pub procs: PathBuf,
    /// The cgroup as `nft` names it (relative to `/sys/fs/cgroup`).
    nft_path: String,
}

/// What a partition cuts a site off from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The Kafka brokers only: its members still reach the node.
    Log,
    /// The brokers and its members (its order-entry port); its HTTP stays reachable for the
    /// drill's own checks, as an operator's out-of-band monitoring would.
    LogAndMembers,
}

impl Firewall {
    /// Creates this process's table (`inet drill_PID`); fails with what is missing when the
    /// machine cannot cut traffic.
    pub fn new() -> Result<Firewall> {
        let root = cgroup2_root()?;
        let table = format!("drill_{}", std::process::id());
        nft(&format!("add table inet {table}")).context(
            "creating the partitions' nftables table (partitions need root and nftables: \
             scripts/setup installs it)",
        )?;
        Ok(Firewall {
            table,
            root,
            cgroups: Vec::new(),
        })
    }

    /// Creates `site`'s cgroup and its (empty) input and output chains.
    pub fn site(&mut self, site: &str) -> Result<SiteCgroup> {
        let name = format!("drill-{}-{site}", std::process::id());
        let dir = self.root.join(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.cgroups.push(dir.clone());
        let relative = dir
            .strip_prefix(NFT_CGROUP_ROOT)
            .map_err(|_| anyhow!("{} is not under {NFT_CGROUP_ROOT}", dir.display()))?;
        for (hook, chain) in [("output", "out"), ("input", "in")] {
            nft(&format!(
                "add chain inet {} {site}_{chain} {{ type filter hook {hook} priority 0; }}",
                self.table
            ))?;
        }
        Ok(SiteCgroup {
            site: site.to_string(),
            procs: dir.join("cgroup.procs"),
            nft_path: relative.display().to_string(),
        })
    }

    /// Cuts `site` off from the brokers at `brokers` (and from its members at `members`, its
    /// order-entry ports, for [`Cut::LogAndMembers`]; none for [`Cut::Log`]).
    pub fn cut(&self, site: &SiteCgroup, brokers: &[u16], members: &[u16]) -> Result<()> {
        let list = |ports: &[u16]| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ports = list(brokers);
        let socket = format!("socket cgroupv2 level 1 \"{}\"", site.nft_path);
        let (table, name) = (&self.table, &site.site);
        let mut rules = vec![
            format!("add rule inet {table} {name}_out {socket} tcp dport {{ {ports} }} drop"),
            format!("add rule inet {table} {name}_in {socket} tcp sport {{ {ports} }} drop"),
        ];
        if !members.is_empty() {
            let members = list(members);
            rules.push(format!(
                "add rule inet {table} {name}_in tcp dport {{ {members} }} drop"
            ));
            rules.push(format!(
                "add rule inet {table} {name}_out tcp sport {{ {members} }} drop"
            ));
        }
        for rule in rules {
            nft(&rule)?;
        }
        Ok(())
    }

    /// Removes `site`'s cut: its packets flow again.
    pub fn heal(&self, site: &SiteCgroup) -> Result<()> {
        for chain in ["out", "in"] {
            nft(&format!(
                "flush chain inet {} {}_{chain}",
                self.table, site.site
            ))?;
        }
        Ok(())
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        let _ = nft(&format!("delete table inet {}", self.table));
        for dir in &self.cgroups {
            // Empty once its node has exited; a leftover empty cgroup is harmless.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The cgroup v2 hierarchy's mount point, which must be under `/sys/fs/cgroup` (itself, or
/// `/sys/fs/cgroup/unified` on a hybrid systemd machine).
fn cgroup2_root() -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("reading mounts")?;
    cgroup2_mount(&mounts).ok_or_else(|| {
        anyhow!("partitions need cgroup v2 mounted under {NFT_CGROUP_ROOT} (none is)")
    })
}

/// The first cgroup2 mount under `/sys/fs/cgroup` in a `/proc/self/mounts` text.
fn cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, point, "cgroup2", ..] if Path::new(point).starts_with(NFT_CGROUP_ROOT) => {
                Some(PathBuf::from(point))
            }
            _ => None,
        }
    })
}

/// Runs one `nft` command.
fn nft(command: &str) -> Result<()> {
    let output = Command::new("nft")
        .args(command.split_whitespace())
        .output()
        .map_err(|e| anyhow!("running nft ({e}): partitions need nftables"))?;
    if !output.status.success() {
        bail!(
            "`nft {command}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pure cgroup v2 machine mounts it at `/sys/fs/cgroup`; a hybrid one at
    /// `/sys/fs/cgroup/unified`; a v1-only one has none to use.
    #[test]
    fn the_cgroup2_mount_is_found_on_pure_and_hybrid_machines() {
        let pure = "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_mount(pure), Some(PathBuf::from("/sys/fs/cgroup")));
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let v1 = "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
        assert_eq!(cgroup2_mount(v1), None);
    }
}
