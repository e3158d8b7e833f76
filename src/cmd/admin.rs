//! `exchange admin`: the operator's controls, through a node's admin endpoint
//! (`node::admin`): show them, set a symbol's (or every symbol's) trading status, turn an
//! account's kill switch on or off. A change is sequenced into the log and applies at every
//! site; `controls` shows it once the node applied it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

/// How long a request may take before the node counts as unreachable.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct Args {
    /// The node's HTTP listener (its `listen.http`), e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    pub node: String,
    /// A file holding the admin token (the node's `[admin] token_file`).
    #[arg(long)]
    pub token_file: PathBuf,
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Subcommand)]
pub enum Action {
    /// Every symbol's trading status and the kill-switched accounts, as the node applied them.
    Controls,
    /// Set the trading status of a symbol, or of every symbol without --symbol.
    TradingStatus {
        #[arg(long)]
        symbol: Option<String>,
        status: Status,
    },
    /// Turn an account's kill switch on (its orders are cancelled, new ones refused) or off.
    KillSwitch {
        #[arg(long)]
        account: u64,
        switch: Switch,
    },
    /// Switch every shard's engine to a rules version at one log position, once every site
    /// runs a binary that implements it (`rules_implemented` in each site's /health).
    Rules { version: u32 },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Status {
    /// Orders, amends and cancels.
    Open,
    /// Cancels only: new orders and amends are rejected `cancel_only`.
    CancelOnly,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Sends the request and prints the node's answer (pretty JSON); an error naming the problem
/// when the node is unreachable, refuses the token, has no admin endpoint or refuses the
/// request.
pub fn run(args: Args) -> Result<()> {
    let token = read_token(&args.token_file)?;
    let base = match args.node.trim_end_matches('/') {
        node if node.contains("://") => node.to_string(),
        node => format!("http://{node}"),
    };
    let (path, body) = match args.action {
        Action::Controls => ("controls", None),
        Action::TradingStatus { symbol, status } => {
            let status = match status {
                Status::Open => "open",
                Status::CancelOnly => "cancel_only",
            };
            let body = json!({ "symbol": symbol, "status": status });
            ("trading-status", Some(body))
        }
        Action::KillSwitch { account, switch } => {
            let on = matches!(switch, Switch::On);
            ("kill-switch", Some(json!({ "account": account, "on": on })))
        }
        Action::Rules { version } => ("rules", Some(json!({ "version": version }))),
    };
    let url = format!("{base}/v1/admin/{path}");
    let answer = request(&url, &token, body.as_ref())?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

pub fn read_token(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file {} holds no token", path.display());
    }
    Ok(token.to_string())
}

/// GET `url` (no body) or POST `body` to it; the answer's JSON if the node took it.
fn request(url: &str, token: &str, body: Option<&Value>) -> Result<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let bearer = format!("Bearer {token}");
    let sent = match body {
        None => agent.get(url).header("Authorization", &bearer).call(),
        Some(body) => agent
            .post(url)
            .header("Authorization", &bearer)
            .send_json(body),
    };
    let mut response = sent.with_context(|| format!("cannot reach the node at {url}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let answer: Option<Value> = serde_json::from_str(&text).ok();
    let error = answer
        .as_ref()
        .and_then(|a| a.get("error"))
        .and_then(Value::as_str)
        .map(str::to_string);
    match (status, error) {
        (200..=299, _) => answer.with_context(|| format!("{url}: not JSON: {text}")),
        (401, why) => bail!(
            "the node refused the admin token ({}): check --token-file against the node's \
             [admin] token_file",
            why.unwrap_or_else(|| "401".into())
        ),
        (404, Some(why)) => bail!("{url}: {why}"),
        (404, None) => bail!("{url}: not found (is this an exchange node's HTTP listener?)"),
        (status, why) => bail!("{url}: the node answered {status}: {}", why.unwrap_or(text)),
    }
}
