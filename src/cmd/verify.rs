//! `exchange verify`: the state hashes replicas published, compared position by position
//! (`replicator::divergence`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use replicator::divergence::{self, HashReport};
use replicator::kafka::KafkaConfig;

/// `exchange verify`'s arguments (its help text is the doc comments).
#[derive(clap::Args)]
pub struct Args {
    /// Hash-report files (JSON lines), e.g. one per site of an embedded deployment.
    #[arg(long, num_args = 1.., required_unless_present = "kafka", conflicts_with = "kafka")]
    pub hashes: Vec<PathBuf>,
    /// Read the reports from this Kafka cluster's hashes topic instead.
    #[arg(long, value_name = "BOOTSTRAP_SERVERS", requires = "topic")]
    pub kafka: Option<String>,
    /// The hashes topic (`<prefix>.hashes`).
    #[arg(long)]
    pub topic: Option<String>,
}

/// Compares the reports and prints every divergence; an error when sites disagree.
pub fn run(args: Args) -> Result<()> {
    let reports = reports(args)?;
    let verdict = divergence::compare(&reports);
    println!(
        "{} reports from {} sites ({}); {} positions compared, {} reported by one site only",
        reports.len(),
        verdict.sites.len(),
        verdict.sites.join(", "),
        verdict.compared,
        verdict.single
    );
    for d in &verdict.divergences {
        let hashes: Vec<String> = d
            .hashes
            .iter()
            .map(|(site, hash)| format!("{site}={hash}"))
            .collect();
        println!(
            "DIVERGED shard {} position {}: {}",
            d.shard,
            d.position,
            hashes.join(" ")
        );
    }
    if verdict.divergences.is_empty() {
        println!("all sites agree");
        Ok(())
    } else {
        bail!(
            "{} positions where sites disagree (first: shard {} position {})",
            verdict.divergences.len(),
            verdict.divergences[0].shard,
            verdict.divergences[0].position
        )
    }
}

/// The reports from the Kafka topic, or from every file.
fn reports(args: Args) -> Result<Vec<HashReport>> {
    Ok(match (args.kafka, args.topic) {
        (Some(bootstrap), Some(topic)) => {
            let config = KafkaConfig::new(&bootstrap, &topic, 0);
            divergence::read_kafka(&config, Duration::from_secs(30))?
        }
        _ => {
            let mut all = Vec::new();
            for path in &args.hashes {
                all.extend(divergence::read_file(path)?);
            }
            all
        }
    })
}
