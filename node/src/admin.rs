//! The operator's admin endpoint, on the node's HTTP listener (`exchange admin` is its client):
//!
//! - `GET /v1/admin/controls`: every symbol's trading status and the kill-switched accounts,
//!   as this site's desk follows them from the applied log (the same at every site).
//! - `POST /v1/admin/trading-status` `{"symbol": "BTC-USD", "status": "cancel_only"}` (no
//!   symbol, or `null`: every symbol; `"open"` or `"cancel_only"`).
//! - `POST /v1/admin/kill-switch` `{"account": 7, "on": true}`.
//! - `POST /v1/admin/rules` `{"version": 2}`: every shard's engine switches to that rules
//!   version at one log position (rolling upgrades; refused for a version this site's binary
//!   does not implement).
//! - `GET /v1/admin/snapshots/{shard}`: the shard's newest snapshot, for another site to start
//!   from (`exchange bootstrap`; see [`crate::ship`]).
//!
//! A POST sequences the command into the log and answers `202 Accepted` with what it
//! submitted: it takes effect when the engines apply it from the log, at every site alike, and
//! `GET /v1/admin/controls` shows it from then on (an instant later).
//!
//! Every request carries `Authorization: Bearer <token>`, the token of `[admin] token_file`,
//! compared in constant time (`subtle`; only its length can show). Members never reach this:
//! they trade over FIX and binary sessions whose credentials are theirs alone, and the HTTP
//! listener is the operator's. Answers are JSON; errors are `{"error": "..."}`: 404 when the
//! node has no `[admin]` section, 401 without the right token, 400 for a bad body (with the
//! reason), 503 when the log refuses the command.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use engine::{
    AccountId, CommandKind, KillSwitch, SetRules, SetTradingStatus, Symbol, TradingStatus,
    RULES_VERSION,
};
use gateway::Hub;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ship::{self, ShippedShard};

/// The operator's token, kept as its SHA-256 only: `[admin] token_file` holds the token, or
/// `sha256:` and its digest (64 hex digits), so that the node's disk need not hold a usable
/// secret.
pub struct AdminToken([u8; 32]);

impl AdminToken {
    /// From the token file's content (trimmed): a token, or `sha256:<64 hex digits>`.
    pub fn from_file_content(content: &str) -> anyhow::Result<AdminToken> {
        let Some(hex) = content.strip_prefix("sha256:") else {
            return Ok(AdminToken(Sha256::digest(content.as_bytes()).into()));
        };
        let digest = gateway::members::parse_digest(hex)
            .ok_or_else(|| anyhow::anyhow!("admin.token_file: sha256: needs 64 hex digits"))?;
        Ok(AdminToken(digest))
    }

    /// Whether `presented` is the token: its digest compared in constant time.
    fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        bool::from(self.0.ct_eq(&digest))
    }
}

#[derive(Clone)]
pub(crate) struct Admin {
    hub: Arc<Hub>,
    /// `None`: the node has no `[admin]` section.
    token: Option<Arc<AdminToken>>,
    /// The shards whose snapshots `GET /v1/admin/snapshots/{shard}` serves.
    pub(crate) shipped: Arc<Vec<ShippedShard>>,
}

/// `POST /v1/admin/trading-status`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TradingStatusBody {
    #[serde(default)]
    symbol: Option<String>,
    status: TradingStatus,
}

/// `POST /v1/admin/rules`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesBody {
    version: u32,
}

/// `POST /v1/admin/kill-switch`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillSwitchBody {
    account: u64,
    on: bool,
}

/// The routes under `/v1/admin/`; with no `token` they answer 404, admin not configured.
pub fn router(
    hub: Arc<Hub>,
    token: Option<AdminToken>,
    shipped: Vec<ShippedShard>,
) -> axum::Router {
    let admin = Admin {
        hub,
        token: token.map(Arc::new),
        shipped: Arc::new(shipped),
    };
    axum::Router::new()
        .route("/v1/admin/controls", get(controls))
        .route("/v1/admin/trading-status", post(trading_status))
        .route("/v1/admin/kill-switch", post(kill_switch))
        .route("/v1/admin/rules", post(rules))
        .route("/v1/admin/snapshots/{shard}", get(ship::serve))
        .with_state(admin)
}

/// A refused request: its status and why, answered as `{"error": why}`.
pub(crate) struct Refusal(StatusCode, String);

impl Refusal {
    pub(crate) fn new(code: StatusCode, why: impl std::fmt::Display) -> Refusal {
        Refusal(code, why.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            let challenge = header::HeaderValue::from_static("Bearer");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

impl Admin {
    /// `Ok` when the request carries the operator's token.
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(token) = &self.token else {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "admin is not configured on this node (no [admin] section with a token_file)",
            ));
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
        match presented {
            Some(presented) if token.matches(presented) => Ok(()),
            Some(_) => Err(Refusal::new(StatusCode::UNAUTHORIZED, "wrong admin token")),
            None => Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer <admin token>",
            )),
        }
    }

    /// Sequences `kind` into the log: 202 with `submitted`, or 503 with why not.
    fn submit(&self, kind: CommandKind, submitted: serde_json::Value) -> Result<Response, Refusal> {
        self.hub.submit(kind).map_err(|err| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format_args!("not submitted: {err}"),
            )
        })?;
        eprintln!("admin: submitted {submitted}");
        let body = json!({
            "submitted": submitted,
            "applied": "when the log has it: see GET /v1/admin/controls",
        });
        Ok((StatusCode::ACCEPTED, Json(body)).into_response())
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format_args!("bad body: {e}")))
}

async fn controls(State(admin): State<Admin>, headers: HeaderMap) -> Result<Response, Refusal> {
    admin.authorize(&headers)?;
    Ok(Json(admin.hub.controls()).into_response())
}

async fn trading_status(
    State(admin): State<Admin>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    admin.authorize(&headers)?;
    let body: TradingStatusBody = parse(&body)?;
    let symbol = (body.symbol.as_deref().map(Symbol::new).transpose())
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format_args!("bad symbol: {e}")))?;
    if let Some(symbol) = symbol {
        if admin.hub.controls().status(&symbol).is_none() {
            let why = format_args!("symbol {} is not listed", symbol.as_str());
            return Err(Refusal::new(StatusCode::BAD_REQUEST, why));
        }
    }
    let submitted = json!({
        "trading_status": { "symbol": symbol, "status": body.status },
    });
    let kind = CommandKind::TradingStatus(SetTradingStatus {
        symbol,
        status: body.status,
    });
    admin.submit(kind, submitted)
}

async fn kill_switch(
    State(admin): State<Admin>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    admin.authorize(&headers)?;
    let body: KillSwitchBody = parse(&body)?;
    let submitted = json!({ "kill_switch": { "account": body.account, "on": body.on } });
    let kind = CommandKind::KillSwitch(KillSwitch {
        account: AccountId(body.account),
        on: body.on,
    });
    admin.submit(kind, submitted)
}

/// Switches every shard's rules at one log position. Refused (400) for a version this site's
/// binary does not implement: every site must run one that does before the switch (each
/// says which in `/health`'s `rules_implemented`).
async fn rules(
    State(admin): State<Admin>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    admin.authorize(&headers)?;
    let body: RulesBody = parse(&body)?;
    if !(1..=RULES_VERSION).contains(&body.version) {
        let why = format_args!(
            "rules version {}: this site implements 1 to {RULES_VERSION}",
            body.version
        );
        return Err(Refusal::new(StatusCode::BAD_REQUEST, why));
    }
    let submitted = json!({ "rules": { "version": body.version } });
    let kind = CommandKind::Rules(SetRules {
        version: body.version,
    });
    admin.submit(kind, submitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the exact token matches: not a prefix, an extension, another case or nothing;
    /// whether the file holds it or its digest.
    #[test]
    fn only_the_exact_token_matches() {
        let digest = gateway::members::token_digest("s3cret-operator");
        for content in ["s3cret-operator".to_string(), format!("sha256:{digest}")] {
            let token = AdminToken::from_file_content(&content).unwrap();
            assert!(token.matches(b"s3cret-operator"));
            for other in [
                &b"s3cret-operato"[..],
                b"s3cret-operator2",
                b"S3cret-operator",
                b"",
            ] {
                assert!(!token.matches(other), "{other:?}");
            }
        }
        assert!(AdminToken::from_file_content("sha256:abc").is_err());
        // Bad input is refused, never a panic: 64 bytes that are not all ASCII hex digits.
        let wide = format!("sha256:{}é0", "0".repeat(61));
        assert!(AdminToken::from_file_content(&wide).is_err());
    }
}
