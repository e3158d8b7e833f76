//! Rate sweeps: [`sweep`] runs one rate after another until one does not hold.

use anyhow::{bail, Result};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::result::RunResult;
use crate::run::{run, LoadConfig};

/// A sweep's runs and the highest rate that held.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    /// The p99 bound a rate had to meet, in µs.
    pub p99_bound_us: f64,
    /// Every run, in the order run (the last one is the first that did not hold, if any).
    pub runs: Vec<RunResult>,
    /// The highest target rate that held, if any did.
    pub max_rate: Option<f64>,
    /// Why the sweep stopped early, if it did.
    pub stopped: Option<String>,
}

/// Rates from `start` to `max` (inclusive) by `step`.
pub fn rate_steps(start: f64, step: f64, max: f64) -> Vec<f64> {
    if !(start > 0.0 && step > 0.0 && max >= start) {
        return vec![start].into_iter().filter(|r| *r > 0.0).collect();
    }
    let steps = ((max - start) / step + 1e-9).floor() as usize;
    (0..=steps).map(|i| start + step * i as f64).collect()
}

/// Runs `config` at each of `rates` in turn (each run a fresh flow with its own order ids,
/// starting from the empty books the previous run's clean-up left) and stops at the first rate
/// that does not hold ([`RunResult::shortfall`]: p99 above `p99_bound_us`, less than 95% of
/// the rate sent, or more than 0.1% errors).
pub async fn sweep(
    config: &LoadConfig,
    rates: &[f64],
    p99_bound_us: f64,
    progress: Option<ProgressBar>,
) -> Result<SweepResult> {
    if rates.is_empty() {
        bail!("no rate to sweep");
    }
    let mut result = SweepResult {
        p99_bound_us,
        ..SweepResult::default()
    };
    for (index, &rate) in rates.iter().enumerate() {
        let config = LoadConfig {
            rate,
            // A fixed prefix would reuse the previous run's order ids.
            id_prefix: config
                .id_prefix
                .as_ref()
                .map(|prefix| format!("{prefix}{index}-")),
            ..config.clone()
        };
        let run = run(&config, progress.clone()).await?;
        let shortfall = run.shortfall(p99_bound_us);
        result.runs.push(run);
        match shortfall {
            None => result.max_rate = Some(rate),
            Some(why) => {
                result.stopped = Some(format!("{rate:.0}/s: {why}"));
                break;
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_include_both_ends() {
        assert_eq!(rate_steps(10.0, 10.0, 40.0), vec![10.0, 20.0, 30.0, 40.0]);
        assert_eq!(rate_steps(10.0, 25.0, 40.0), vec![10.0, 35.0]);
        assert_eq!(rate_steps(5.0, 0.0, 40.0), vec![5.0]);
        assert!(rate_steps(0.0, 1.0, 4.0).is_empty());
    }
}
