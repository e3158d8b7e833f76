//! `exchange replay`: applies a command file to a fresh engine and writes its events and final
//! book. All input is parsed before anything is written, and both outputs are written to
//! `.partial` files renamed into place only once both are complete, so a bad line or a failed
//! write leaves no partial output behind.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use engine::{Engine, EngineConfig, Event, EventKind, StateHash};

use crate::contract::{book_json, event_json, parse_commands, Scales};

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
            EventKind::Rejected { .. } | EventKind::SymbolRejected { .. } => self.rejected += 1,
            EventKind::Trade { .. } => self.trades += 1,
            EventKind::Cancelled { .. } => self.cancelled += 1,
            EventKind::Amended { .. } => self.amended += 1,
        }
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

/// Replays the command file `input`, writing `events_out` (JSON lines) and `book_out`.
pub fn run(
    input: &Path,
    events_out: &Path,
    book_out: &Path,
    config: EngineConfig,
) -> Result<ReplaySummary> {
    let text =
        fs::read_to_string(input).with_context(|| format!("cannot read {}", input.display()))?;
    let commands =
        parse_commands(&text).with_context(|| format!("{} is malformed", input.display()))?;
    let mut engine = Engine::new(config).context("invalid engine configuration")?;
    let mut scales = Scales::default();
    let mut summary = ReplaySummary::default();
    let mut events: Vec<Event> = Vec::with_capacity(1024);
    write_partial(events_out, |out| {
        for cmd in &commands {
            events.clear();
            engine.apply(cmd, &mut events);
            if matches!(cmd.kind, engine::CommandKind::AddSymbol(_)) {
                scales.refresh(&engine);
            }
            for event in &events {
                summary.count(event);
                writeln!(out, "{}", event_json(event, &scales))?;
            }
            summary.commands += 1;
        }
        Ok(())
    })?;
    write_partial(book_out, |out| {
        writeln!(out, "{}", book_json(&engine, &scales))?;
        Ok(())
    })
    .inspect_err(|_| {
        let _ = fs::remove_file(partial(events_out));
    })?;
    // Both outputs are complete: only now do they take their names.
    for path in [events_out, book_out] {
        fs::rename(partial(path), path)
            .with_context(|| format!("cannot move {} into place", path.display()))?;
    }
    summary.live_orders = engine.stats().live_orders;
    summary.state_hash = Some(engine.state_hash());
    Ok(summary)
}
