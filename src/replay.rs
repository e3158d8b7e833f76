//! `exchange replay`: applies a command file to a fresh engine and writes its events, its final
//! book and (optionally) the orders it remembers. All input is parsed before anything is
//! written, and every output is written to a `.partial` file renamed into place only once all
//! are complete, so a bad line or a failed write leaves no partial output behind.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use engine::{Command, CommandKind, Engine, EngineConfig, Event, EventKind, StateHash, COUNT_MAX};

use crate::contract::{book_json, event_json, orders_json, parse_commands, Scales};

/// The replay contract's dedup window: one day.
pub const CONTRACT_DEDUP_WINDOW_NS: u64 = 86_400_000_000_000;

/// Where a replay writes.
#[derive(Clone, Copy, Debug)]
pub struct Outputs<'a> {
    pub events: &'a Path,
    pub book: &'a Path,
    /// `ORDERS.json`, when asked for.
    pub orders: Option<&'a Path>,
}

/// What a replay produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    pub commands: u64,
    pub events: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub trades: u64,
    pub cancelled: u64,
    pub amended: u64,
    pub live_orders: u32,
    pub state_hash: Option<StateHash>,
}

impl ReplaySummary {
    fn count(&mut self, event: &Event) {
        self.events += 1;
        match event.kind {
            EventKind::Accepted { .. } => self.accepted += 1,
            EventKind::Rejected { .. }
            | EventKind::SymbolRejected { .. }
            | EventKind::AccountRejected { .. } => self.rejected += 1,
            EventKind::Trade { .. } => self.trades += 1,
            EventKind::Cancelled { .. } => self.cancelled += 1,
            EventKind::Amended { .. } => self.amended += 1,
            EventKind::CancelAfter { .. }
            | EventKind::TradingStatus { .. }
            | EventKind::KillSwitch { .. } => {}
        }
    }
}

/// The engine configuration the contract describes for `commands`: the default capacities,
/// the contract's one-day dedup window, and room to remember every order the file can finish
/// (at most one per order and per replace), so no `capacity` reject comes from the window.
pub fn contract_config(commands: &[Command]) -> EngineConfig {
    let defaults = EngineConfig::default();
    let orders = commands
        .iter()
        .filter(|c| matches!(c.kind, CommandKind::New(_) | CommandKind::Amend(_)))
        .count() as u64;
    let room = (orders + 1).clamp(u64::from(defaults.retired_ids_max), u64::from(COUNT_MAX));
    EngineConfig {
        dedup_window_ns: CONTRACT_DEDUP_WINDOW_NS,
        retired_ids_max: room as u32,
        ..defaults
    }
}

/// `path` with `.partial` appended: where an output is written before it is complete.
fn partial(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    PathBuf::from(tmp)
}

/// Writes and syncs `partial(path)`; removes it if anything fails.
fn write_partial(path: &Path, fill: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
    let tmp = partial(path);
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut out = BufWriter::new(file);
    let written = fill(&mut out).and_then(|()| {
        out.into_inner()
            .map_err(|err| err.into_error())?
            .sync_all()?;
        Ok(())
    });
    written.map_err(|err| {
        let _ = fs::remove_file(&tmp);
        err.context(format!("cannot write {}", path.display()))
    })
}

/// Replays the command file `input` into `outputs`. The engine configuration is
/// [`contract_config`], with the fields a TOML `config_file` sets on top.
pub fn run(
    input: &Path,
    outputs: Outputs<'_>,
    config_file: Option<&Path>,
) -> Result<ReplaySummary> {
    let text =
        fs::read_to_string(input).with_context(|| format!("cannot read {}", input.display()))?;
    let commands =
        parse_commands(&text).with_context(|| format!("{} is malformed", input.display()))?;
    let config = crate::load_engine_config_over(contract_config(&commands), config_file)?;
    let mut engine = Engine::new(config).context("invalid engine configuration")?;
    let mut scales = Scales::default();
    let mut summary = ReplaySummary::default();
    let written = write_all(&mut engine, &commands, outputs, &mut scales, &mut summary);
    let all = [Some(outputs.events), Some(outputs.book), outputs.orders];
    if let Err(err) = written {
        for path in all.into_iter().flatten() {
            let _ = fs::remove_file(partial(path));
        }
        return Err(err);
    }
    // Every output is complete: only now do they take their names.
    for path in all.into_iter().flatten() {
        fs::rename(partial(path), path)
            .with_context(|| format!("cannot move {} into place", path.display()))?;
    }
    summary.live_orders = engine.stats().live_orders;
    summary.state_hash = Some(engine.state_hash());
    Ok(summary)
}

/// Applies `commands`, writing every output's partial file.
fn write_all(
    engine: &mut Engine,
    commands: &[Command],
    outputs: Outputs<'_>,
    scales: &mut Scales,
    summary: &mut ReplaySummary,
) -> Result<()> {
    let mut events: Vec<Event> = Vec::with_capacity(1024);
    write_partial(outputs.events, |out| {
        for cmd in commands {
            events.clear();
            engine.apply(cmd, &mut events);
            if matches!(cmd.kind, CommandKind::AddSymbol(_)) {
                scales.refresh(engine);
            }
            for event in &events {
                summary.count(event);
                writeln!(out, "{}", event_json(event, scales))?;
            }
            summary.commands += 1;
        }
        Ok(())
    })?;
    write_partial(outputs.book, |out| {
        writeln!(out, "{}", book_json(engine, scales))?;
        Ok(())
    })?;
    if let Some(path) = outputs.orders {
        write_partial(path, |out| {
            writeln!(out, "{}", orders_json(engine, scales))?;
            Ok(())
        })?;
    }
    Ok(())
}
