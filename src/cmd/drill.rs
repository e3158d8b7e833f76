//! `exchange drill`: the failover drill on three local sites or a running deployment. Its
//! arguments are the drill crate's ([`Args`]), defined once.

use anyhow::{bail, Result};
pub use drill::Args;

/// Runs the drill (the local sites run this binary), prints its summary, writes the report
/// if asked; an error when the audit failed.
pub fn run(args: Args) -> Result<()> {
    let result = drill::drill(&args, &std::env::current_exe()?)?;
    print!("{}", result.summary());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
        println!("report: {}", path.display());
    }
    if let Some(path) = &args.timeline {
        std::fs::write(path, drill::timeline::html(&result))?;
        println!("timeline: {}", path.display());
    }
    if !result.passed() {
        bail!("the drill failed: {}", result.problems.join("; "));
    }
    Ok(())
}
