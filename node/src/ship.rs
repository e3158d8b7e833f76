//! Snapshot shipping: a site (a returning one past the log's retention, or a brand-new one)
//! starts from another site's newest snapshot and reads the log from its position.
//!
//! ```text
//!  exchange bootstrap ── GET /v1/admin/snapshots/{shard} ──▶ a running site (admin token)
//!        │                 ◀── the snapshot file, as on disk, and its manifest headers
//!        └─ checks, then saves it in this site's snapshot store ──▶ exchange node recovers
//!                                                                    from it + the log after
//! ```
//!
//! The body is the snapshot file itself ([`replicator::snapshots`]: magic, position, the
//! engine's own versioned and checksummed snapshot, CRC-32). The headers are its manifest:
//! [`SHARD`], [`POSITION`], [`VERSION`] (the engine snapshot's format version), [`LOG`] (the
//! log's identity, `kafka:<topic>/<partition>`) and [`SHA256`] of the body. The receiving
//! site refuses, naming what differs and saving nothing: another log, a format version it
//! does not read, a body whose digest or framing is wrong, a snapshot whose engine capacities
//! are not its own. A snapshot no newer than one it has is left. Whether the log still holds
//! every record after the snapshot is checked when the node starts (recovery's
//! `LogStartsLater`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::SNAPSHOT_VERSION;
use gateway::members::hex;
use replicator::recovery::check_capacities;
use replicator::snapshots::{self, SnapshotStore};
use sha2::{Digest, Sha256};

use crate::admin::{Admin, Refusal};
use crate::config::{NodeConfig, ShardPlan};

/// The shard's name, as in the node's config.
pub const SHARD: &str = "x-exchange-shard";
/// The log position the snapshot was taken at: the site reads the log from there.
pub const POSITION: &str = "x-exchange-snapshot-position";
/// The engine snapshot's format version.
pub const VERSION: &str = "x-exchange-snapshot-version";
/// The log the snapshot is of ([`replicator::log::LogConfig::identity`]).
pub const LOG: &str = "x-exchange-log";
/// SHA-256 of the body, lowercase hex.
pub const SHA256: &str = "x-exchange-sha256";

/// How long a snapshot download may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest snapshot a site takes (a full book of 2^20 orders is some 300 MB).
const MAX_SNAPSHOT: u64 = 8 << 30;

/// A shard whose snapshots this site serves.
#[derive(Clone)]
pub struct ShippedShard {
    pub name: String,
    pub log: String,
    pub store: Arc<SnapshotStore>,
}

/// `GET /v1/admin/snapshots/{shard}`: the shard's newest snapshot file and its manifest; 404
/// naming the shards when there is no such shard, or when it has no snapshot yet.
pub(crate) async fn serve(
    State(admin): State<Admin>,
    Path(shard): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    admin.authorize(&headers)?;
    let Some(shipped) = admin.shipped.iter().find(|s| s.name == shard).cloned() else {
        let names: Vec<&str> = admin.shipped.iter().map(|s| s.name.as_str()).collect();
        let why = format!(
            "no shard {shard:?} here (this node's: {})",
            names.join(", ")
        );
        return Err(Refusal::new(StatusCode::NOT_FOUND, why));
    };
    let log = shipped.log.clone();
    let newest = tokio::task::spawn_blocking(move || newest(&shipped))
        .await
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let Some((position, bytes)) = newest else {
        let why = format!("shard {shard} has no snapshot yet: try again after the next one");
        return Err(Refusal::new(StatusCode::NOT_FOUND, why));
    };
    eprintln!("admin: serving shard {shard}'s snapshot at {position}");
    let manifest = [
        (SHARD, shard),
        (POSITION, position.to_string()),
        (
            VERSION,
            snapshots::engine_version(&bytes).unwrap_or(0).to_string(),
        ),
        (LOG, log),
        (SHA256, hex(&Sha256::digest(&bytes))),
    ];
    let mut response = bytes.into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    for (name, value) in manifest {
        let value = HeaderValue::from_str(&value)
            .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        out.insert(HeaderName::from_static(name), value);
    }
    Ok(response)
}

/// The newest snapshot file of `shipped`'s store, read whole.
fn newest(shipped: &ShippedShard) -> Result<Option<(u64, Vec<u8>)>> {
    let Some((position, path)) = shipped.store.list()?.into_iter().next() else {
        return Ok(None);
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some((position, bytes)))
}

/// A snapshot as it arrived, with its manifest.
pub struct Shipment {
    pub position: u64,
    pub version: u32,
    pub log: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

/// What [`bootstrap`] did for one shard.
#[derive(Debug)]
pub enum Took {
    /// Saved at this path; the node starts from it.
    Saved { position: u64, path: PathBuf },
    /// This site already has a snapshot at least as new.
    Kept { position: u64, newest: u64 },
}

/// Fetches every shard of `config` from the node whose HTTP listener is `from`, with the
/// operator's `token`, checks each and saves it in this site's snapshot store. Stops at the
/// first shard that fails, naming it; what was saved before stays (each is whole and usable).
pub fn bootstrap(config: &NodeConfig, from: &str, token: &str) -> Result<Vec<(String, Took)>> {
    let plan = config.plan()?;
    let base = match from.trim_end_matches('/') {
        from if from.contains("://") => from.to_string(),
        from => format!("http://{from}"),
    };
    let mut took = Vec::new();
    for shard in &plan.shards {
        let url = format!("{base}/v1/admin/snapshots/{}", shard.name);
        let shipment = fetch(&url, token).with_context(|| format!("shard {}", shard.name))?;
        let done = accept(config, shard, &shipment)
            .with_context(|| format!("shard {}: the snapshot from {url}", shard.name))?;
        took.push((shard.name.clone(), done));
    }
    Ok(took)
}

/// GETs `url` and reads the body and manifest; an error naming the problem when the node is
/// unreachable, refuses the token or has no snapshot.
pub fn fetch(url: &str, token: &str) -> Result<Shipment> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status().as_u16();
    if status != 200 {
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let why = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        match status {
            401 => bail!("{url} refused the admin token ({why}): check --token-file"),
            _ => bail!("{url} answered {status}: {why}"),
        }
    }
    let manifest = |name: &str| -> Result<String> {
        let value = response.headers().get(name);
        let text = value.and_then(|v| v.to_str().ok());
        text.map(str::to_string)
            .ok_or_else(|| anyhow!("{url} sent no {name} header: not an exchange node's snapshot"))
    };
    let parse = |name: &str, text: String| -> Result<u64> {
        text.parse()
            .map_err(|_| anyhow!("{url}: {name} {text:?} is not a number"))
    };
    let position = parse(POSITION, manifest(POSITION)?)?;
    let version = u32::try_from(parse(VERSION, manifest(VERSION)?)?)?;
    let (log, sha256) = (manifest(LOG)?, manifest(SHA256)?);
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_SNAPSHOT)
        .read_to_vec()
        .with_context(|| format!("reading the snapshot from {url}"))?;
    Ok(Shipment {
        position,
        version,
        log,
        sha256,
        bytes,
    })
}

/// Checks `shipment` against this site's `shard` and engine, and saves it in the shard's
/// snapshot store unless the store has one at least as new.
pub fn accept(config: &NodeConfig, shard: &ShardPlan, shipment: &Shipment) -> Result<Took> {
    let ours = shard.log.identity();
    if shipment.log != ours {
        bail!(
            "it is of log {}, and this shard's log is {ours}: another configuration",
            shipment.log
        );
    }
    if shipment.version != SNAPSHOT_VERSION {
        bail!(
            "it is in engine snapshot format version {}, and this binary reads version \
             {SNAPSHOT_VERSION}: bootstrap with a binary of the sending site's version",
            shipment.version
        );
    }
    let digest = hex(&Sha256::digest(&shipment.bytes));
    if digest != shipment.sha256 {
        bail!(
            "its SHA-256 is {digest}, the sender's {}: damaged in transit",
            shipment.sha256
        );
    }
    let engine = snapshots::decode(&shipment.bytes, shipment.position)
        .map_err(|e| anyhow!("it does not decode: {e}"))?;
    check_capacities(shipment.position, engine.config(), &config.engine)?;
    let dir = config.data_dir.join(&shard.dir).join("snapshots");
    let store = SnapshotStore::open(&dir, config.snapshots.keep.max(1))
        .context("opening this site's snapshot store")?;
    if let Some((newest, _)) = store.list()?.into_iter().next() {
        if newest >= shipment.position {
            return Ok(Took::Kept {
                position: shipment.position,
                newest,
            });
        }
    }
    let path = store.save_encoded(shipment.position, &shipment.bytes)?;
    Ok(Took::Saved {
        position: shipment.position,
        path,
    })
}
