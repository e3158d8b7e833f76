//! The node's operations endpoints: `GET /health`, `GET /metrics` and `GET /v1/hashes`
//! (market data's routes are merged beside them by the node).

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::routing::get;
use gateway::Hub;

use crate::metrics::NodeMetrics;
use crate::persist::RecentHashes;

/// `/health`, `/metrics` and `/v1/hashes`.
pub fn router(hub: Arc<Hub>, metrics: Arc<NodeMetrics>, hashes: RecentHashes) -> axum::Router {
    let (health_hub, health_metrics) = (hub.clone(), metrics.clone());
    axum::Router::new()
        .route(
            "/health",
            get(move || {
                let (available, body) = health(&health_metrics, &health_hub);
                let code = if available {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                async move { (code, axum::Json(body)) }
            }),
        )
        .route(
            "/v1/hashes",
            get(move || {
                let reports = hashes.list();
                async move { axum::Json(reports) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render(&hub);
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        )
}

/// Why a shard stopped following its log, if one did.
pub fn failure(metrics: &NodeMetrics) -> Option<String> {
    metrics.shards.iter().find_map(|shard| {
        let why = shard.failure()?;
        Some(format!("shard {}: {why}", shard.name))
    })
}

/// The body and status of `GET /health`: `failed` when a shard can no longer read its log,
/// `diverged` when a shard's state hash is the minority's at a log position (its `diverged`
/// names the position, this site's hash, the majority's and who holds it),
/// `unavailable` when a shard's log takes no commands, `catching_up` when a shard is too far
/// behind its log, `clock_skew` when the site's clock runs too far ahead of a shard's log
/// (each refuses orders; 503), else `ok`; each shard's log positions, how long it has been
/// behind (`behind_ms`, null when since it started), how far ahead of the log's time the
/// site's clock runs (`clock_ahead_ms`, null when unchecked), and under
/// `log` the positions' sums.
fn health(metrics: &NodeMetrics, hub: &Hub) -> (bool, serde_json::Value) {
    let failure = failure(metrics);
    let (mut available, mut catching_up, mut skewed) = (failure.is_none(), false, false);
    let mut diverged = false;
    let (mut durable_sum, mut applied_sum) = (0, 0);
    let shards: Vec<serde_json::Value> = metrics
        .shards
        .iter()
        .enumerate()
        .map(|(at, shard)| {
            let (durable, applied) = shard.positions(hub, at);
            durable_sum += durable;
            applied_sum += applied;
            let up = shard.log.available() && shard.failure().is_none();
            available &= up;
            let behind = shard.freshness.catching_up();
            catching_up |= behind;
            let ahead = shard.clock_ahead_ms();
            skewed |= shard.clock_skewed();
            let fenced = shard.diverged.get();
            diverged |= fenced.is_some();
            serde_json::json!({
                "name": shard.name,
                "available": up,
                "catching_up": behind,
                "behind_ms": shard.freshness.behind().map(|d| d.as_millis() as u64),
                "clock_skew": shard.clock_skewed(),
                "clock_ahead_ms": ahead,
                "diverged": fenced,
                "log": {
                    "kind": shard.log.kind(),
                    "durable": durable,
                    "applied": applied,
                    "lag": durable.saturating_sub(applied),
                },
            })
        })
        .collect();
    let status = match (&failure, available, catching_up, skewed) {
        (Some(_), ..) => "failed",
        _ if diverged => "diverged",
        (None, false, ..) => "unavailable",
        (None, true, true, _) => "catching_up",
        (None, true, false, true) => "clock_skew",
        (None, true, false, false) => "ok",
    };
    let body = serde_json::json!({
        "status": status,
        "error": failure,
        "site": metrics.site,
        "binary": env!("CARGO_PKG_VERSION"),
        "rules_implemented": engine::RULES_VERSION,
        "log": {
            "kind": metrics.shards[0].log.kind(),
            "durable": durable_sum,
            "applied": applied_sum,
            "lag": durable_sum.saturating_sub(applied_sum),
        },
        "shards": shards,
    });
    (status == "ok", body)
}
