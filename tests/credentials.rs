//! Members' credentials kept hashed and reloaded without a restart (`node::credentials`): a
//! node whose members are in a members file (each token's SHA-256 only) lets them log on;
//! a member added to the file can log on a moment later, one removed cannot, and a file
//! broken mid-edit leaves the table in force.

use std::path::Path;
use std::time::{Duration, Instant};

use gateway::binary_client::BinaryClient;
use gateway::members::token_digest;
use node::{Node, NodeConfig};

const ALICE: &str = "alice-random-token-0001";
const BOB: &str = "bob-random-token-00002";

fn write_members(path: &Path, members: &[(&str, &str, u64)]) {
    let mut text = String::new();
    for (name, token, account) in members {
        text += &format!(
            "[[members]]\nname = \"{name}\"\naccount = {account}\ntoken_sha256 = \"{}\"\n\n",
            token_digest(token)
        );
    }
    // Written whole, then renamed: a reader never sees half a file.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

fn logs_on(site: &Node, token: &str) -> bool {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(BinaryClient::logon(site.binary_addr(), token, false))
        .is_ok()
}

/// Waits (up to 10 s) until `token` logs on or not, as `expected`.
fn until_logs_on(site: &Node, token: &str, expected: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while logs_on(site, token) != expected {
        assert!(Instant::now() < deadline, "{token}: never {expected}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn members_from_a_hashed_file_log_on_and_changes_apply_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("members.toml");
    write_members(&file, &[("alice", ALICE, 1)]);
    let mut config = NodeConfig::for_tests("creds", &dir.path().join("data"), Vec::new());
    config.members_file = Some(file.clone());
    let site = Node::start(config).unwrap();
    assert!(logs_on(&site, ALICE));
    assert!(!logs_on(&site, BOB));
    // The file holds no token.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(ALICE), "{text}");

    write_members(&file, &[("alice", ALICE, 1), ("bob", BOB, 2)]);
    until_logs_on(&site, BOB, true);
    // A file broken mid-edit: the table in force stays.
    std::fs::write(
        &file,
        "[[members]]\nname = \"alice\"\ntoken_sha256 = \"nope\"\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(logs_on(&site, ALICE) && logs_on(&site, BOB));
    // Alice removed: refused from the next logon.
    write_members(&file, &[("bob", BOB, 2)]);
    until_logs_on(&site, ALICE, false);
    assert!(logs_on(&site, BOB));
    site.shutdown().unwrap();
}
