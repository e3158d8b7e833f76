//! The operator's controls through a node's admin endpoint and `exchange admin`: only with
//! the admin token; cancel-only refuses members' new orders but not their cancels; the kill
//! switch cancels an account's orders and refuses its new ones; the controls come from the
//! log, so they survive a restart.

#[path = "common/binary.rs"]
mod binary;
#[path = "common/orders.rs"]
mod orders;

use binary::{report, runtime};
use orders::buy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use engine::{OrderId, Symbol};
use gateway::binary::{exec_type, reason, ClientMessage};
use gateway::binary_client::BinaryClient;
use gateway::Member;
use node::{AdminSection, Node, NodeConfig};
use serde_json::{json, Value};

const ALICE: &str = "alice-token-00001";
const TOKEN: &str = "operator-secret-0042";

/// A site with an HTTP listener; with `admin`, the token file `dir/admin.token`.
fn config(dir: &Path, admin: bool) -> NodeConfig {
    let alice = Member {
        name: "alice".into(),
        token: ALICE.into(),
        account: 1,
    };
    let mut config = NodeConfig::for_tests("admin", &dir.join("data"), vec![alice]);
    config.listen.http = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    if admin {
        let token_file = dir.join("admin.token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        config.admin = Some(AdminSection { token_file });
    }
    config
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GET or POST (with `body`) `/v1/admin/{path}` with `token`: the status and JSON answer.
fn admin(site: &Node, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let url = format!("http://{}/v1/admin/{path}", site.http_addr().unwrap());
    let agent = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let result = match (body, auth) {
        (None, None) => agent.get(&url).call(),
        (None, Some(auth)) => agent.get(&url).header("Authorization", &auth).call(),
        (Some(body), None) => agent.post(&url).send_json(body),
        (Some(body), Some(auth)) => agent
            .post(&url)
            .header("Authorization", &auth)
            .send_json(body),
    };
    let mut response = result.unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_json().unwrap())
}

fn controls(site: &Node) -> Value {
    let (status, body) = admin(site, "controls", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the node's controls are `expected` (the change applied from the log).
fn wait_controls(site: &Node, expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while controls(site) != expected {
        assert!(
            Instant::now() < deadline,
            "controls {} never became {expected}",
            controls(site)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn state(status: &str, kill_switched: &[u64]) -> Value {
    json!({
        "symbols": [{ "symbol": "BTC-USD", "status": status }],
        "kill_switched": kill_switched,
    })
}

fn post(site: &Node, path: &str, body: Value) {
    let (status, answer) = admin(site, path, Some(TOKEN), Some(body));
    assert_eq!(status, 202, "{answer}");
}

/// Sends alice's order `id`; the (exec type, reason) of its first report.
async fn order(alice: &mut BinaryClient, id: &str) -> (u8, u8) {
    alice.send(&buy(id, "2")).await.unwrap();
    let answer = report(alice).await;
    assert_eq!(answer.cl_ord_id, OrderId::new(id).unwrap());
    (answer.exec_type, answer.reason)
}

#[test]
fn the_admin_endpoint_refuses_requests_without_the_token_and_bad_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path(), true)).unwrap();
    wait_controls(&site, state("open", &[]));
    let cancel_only = json!({ "symbol": "BTC-USD", "status": "cancel_only" });
    for token in [None, Some("operator-secret-004"), Some(ALICE)] {
        let (status, body) = admin(&site, "trading-status", token, Some(cancel_only.clone()));
        assert_eq!(status, 401, "{body}");
        let (status, _) = admin(
            &site,
            "kill-switch",
            token,
            Some(json!({"account": 1, "on": true})),
        );
        assert_eq!(status, 401);
        assert_eq!(admin(&site, "controls", token, None).0, 401);
    }
    for (path, body, why) in [
        (
            "trading-status",
            json!({ "status": "closed" }),
            "unknown variant",
        ),
        (
            "trading-status",
            json!({ "symbol": "XRP-USD", "status": "open" }),
            "not listed",
        ),
        (
            "kill-switch",
            json!({ "account": -1, "on": true }),
            "bad body",
        ),
        ("kill-switch", json!({ "account": 1 }), "missing field `on`"),
    ] {
        let (status, answer) = admin(&site, path, Some(TOKEN), Some(body));
        assert_eq!(status, 400, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(why), "{error}");
    }
    // Nothing reached the log: only the symbol's listing was applied.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(controls(&site), state("open", &[]));
    assert_eq!(site.hub().next_position(0), 1);
    site.shutdown().unwrap();
}

#[test]
fn cancel_only_and_the_kill_switch_reach_members_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path(), true)).unwrap();
    let rt = runtime();
    let (mut alice, _) = rt
        .block_on(BinaryClient::logon(site.binary_addr(), ALICE, false))
        .unwrap();
    assert_eq!(rt.block_on(order(&mut alice, "r-1")), (exec_type::NEW, 0));

    post(
        &site,
        "trading-status",
        json!({ "symbol": "BTC-USD", "status": "cancel_only" }),
    );
    wait_controls(&site, state("cancel_only", &[]));
    let refused = rt.block_on(order(&mut alice, "r-2"));
    assert_eq!(refused, (exec_type::REJECTED, reason::CANCEL_ONLY));
    // A cancel still works.
    rt.block_on(async {
        let cancel = ClientMessage::Cancel {
            cl_ord_id: OrderId::new("r-1").unwrap(),
            symbol: Symbol::new("BTC-USD").unwrap(),
        };
        alice.send(&cancel).await.unwrap();
        let cancelled = report(&mut alice).await;
        assert_eq!(
            (cancelled.exec_type, cancelled.reason),
            (exec_type::CANCELED, reason::USER)
        );
    });
    // Every symbol (no symbol named) back to open.
    post(&site, "trading-status", json!({ "status": "open" }));
    wait_controls(&site, state("open", &[]));
    assert_eq!(rt.block_on(order(&mut alice, "r-3")), (exec_type::NEW, 0));

    post(&site, "kill-switch", json!({ "account": 1, "on": true }));
    let killed = rt.block_on(report(&mut alice));
    assert_eq!(killed.cl_ord_id, OrderId::new("r-3").unwrap());
    assert_eq!(
        (killed.exec_type, killed.reason),
        (exec_type::CANCELED, reason::KILL_SWITCH)
    );
    wait_controls(&site, state("open", &[1]));
    let refused = rt.block_on(order(&mut alice, "r-4"));
    assert_eq!(refused, (exec_type::REJECTED, reason::ACCOUNT_DISABLED));
    post(
        &site,
        "trading-status",
        json!({ "symbol": "BTC-USD", "status": "cancel_only" }),
    );
    wait_controls(&site, state("cancel_only", &[1]));
    drop(alice);
    site.shutdown().unwrap();

    // The controls come back from the log (its final snapshot), and still apply.
    let site = Node::start(config(dir.path(), true)).unwrap();
    assert_eq!(controls(&site), state("cancel_only", &[1]));
    let (mut alice, _) = rt
        .block_on(BinaryClient::logon(site.binary_addr(), ALICE, false))
        .unwrap();
    let refused = rt.block_on(order(&mut alice, "r-5"));
    assert_eq!(refused, (exec_type::REJECTED, reason::ACCOUNT_DISABLED));
    post(&site, "kill-switch", json!({ "account": 1, "on": false }));
    wait_controls(&site, state("cancel_only", &[]));
    let refused = rt.block_on(order(&mut alice, "r-6"));
    assert_eq!(refused, (exec_type::REJECTED, reason::CANCEL_ONLY));
    post(
        &site,
        "trading-status",
        json!({ "symbol": "BTC-USD", "status": "open" }),
    );
    wait_controls(&site, state("open", &[]));
    assert_eq!(rt.block_on(order(&mut alice, "r-7")), (exec_type::NEW, 0));
    drop(alice);
    site.shutdown().unwrap();
}

#[test]
fn without_an_admin_section_the_routes_answer_not_configured() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path(), false)).unwrap();
    let (status, body) = admin(&site, "controls", Some(TOKEN), None);
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("admin is not configured"),
        "{body}"
    );
    let body = json!({ "account": 1, "on": true });
    assert_eq!(admin(&site, "kill-switch", Some(TOKEN), Some(body)).0, 404);
    site.shutdown().unwrap();
}

#[test]
fn a_node_does_not_start_without_an_admin_token_or_its_http_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mut with_admin = config(dir.path(), true);
    std::fs::write(dir.path().join("admin.token"), "\n").unwrap();
    let err = Node::start(with_admin.clone()).err().unwrap().to_string();
    assert!(err.contains("holds no token"), "{err}");
    std::fs::remove_file(dir.path().join("admin.token")).unwrap();
    let err = format!("{:#}", Node::start(with_admin.clone()).err().unwrap());
    assert!(err.contains("admin.token_file: reading"), "{err}");
    std::fs::write(dir.path().join("admin.token"), TOKEN).unwrap();
    with_admin.listen.http = None;
    let err = Node::start(with_admin).err().unwrap().to_string();
    assert!(err.contains("set listen.http"), "{err}");
}

/// `exchange admin ARGS` against `node`: whether it succeeded, its stdout and stderr.
fn cli(node: &str, token_file: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["admin", "--node", node, "--token-file"])
        .arg(token_file)
        .args(args)
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.success(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn the_admin_cli_shows_and_sets_the_controls() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path(), true)).unwrap();
    let node = format!("http://{}", site.http_addr().unwrap());
    let token_file: PathBuf = dir.path().join("admin.token");
    let shown = |site: &Node| {
        let (ok, out, err) = cli(&node, &token_file, &["controls"]);
        assert!(ok, "{err}");
        let shown: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(shown, controls(site));
        shown
    };
    // The symbol is listed by a command the node logs at start: applied a moment later (on
    // a loaded machine the CLI once read the controls before it, and the node's after).
    wait_controls(&site, state("open", &[]));
    assert_eq!(shown(&site), state("open", &[]));

    let (ok, out, err) = cli(
        &node,
        &token_file,
        &["trading-status", "--symbol", "BTC-USD", "cancel-only"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("cancel_only"), "{out}");
    wait_controls(&site, state("cancel_only", &[]));
    let (ok, _, err) = cli(&node, &token_file, &["kill-switch", "--account", "7", "on"]);
    assert!(ok, "{err}");
    wait_controls(&site, state("cancel_only", &[7]));
    let (ok, _, err) = cli(&node, &token_file, &["trading-status", "open"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &node,
        &token_file,
        &["kill-switch", "--account", "7", "off"],
    );
    assert!(ok, "{err}");
    wait_controls(&site, state("open", &[]));
    assert_eq!(shown(&site), state("open", &[]));

    // A wrong token, and a symbol the node does not list, are named.
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let (ok, _, err) = cli(&node, &wrong, &["kill-switch", "--account", "7", "on"]);
    assert!(!ok && err.contains("refused the admin token"), "{err}");
    let (ok, _, err) = cli(
        &node,
        &token_file,
        &["trading-status", "--symbol", "XRP", "open"],
    );
    assert!(
        !ok && err.contains("400") && err.contains("not listed"),
        "{err}"
    );
    assert_eq!(controls(&site), state("open", &[]));
    site.shutdown().unwrap();

    // A node without [admin], and no node at all.
    let other = tempfile::tempdir().unwrap();
    let site = Node::start(config(other.path(), false)).unwrap();
    let node = format!("http://{}", site.http_addr().unwrap());
    let (ok, _, err) = cli(&node, &token_file, &["controls"]);
    assert!(!ok && err.contains("admin is not configured"), "{err}");
    site.shutdown().unwrap();
    let (ok, _, err) = cli(&node, &token_file, &["controls"]);
    assert!(!ok && err.contains("cannot reach the node"), "{err}");
}
