//! `exchange verify`: sites that agree pass; a site that disagrees at a position is named and
//! the command exits non-zero.

use std::path::Path;
use std::process::Command;

use engine::{Engine, EngineConfig, Event};
use flow::{FlowConfig, FlowGenerator};
use replicator::divergence::{FileHashSink, HashCadence};

/// Applies `commands` as `site` would, publishing a hash every 500 records to `path`;
/// `skip` drops one command to make the site diverge.
fn run_site(
    site: &str,
    path: &Path,
    commands: &[engine::Command],
    config: EngineConfig,
    skip: Option<usize>,
) {
    let mut engine = Engine::new(config).unwrap();
    let mut sink = FileHashSink::open(path).unwrap();
    let cadence = HashCadence::new(site, 0, 500);
    let mut events: Vec<Event> = Vec::new();
    for (position, cmd) in commands.iter().enumerate() {
        if Some(position) != skip {
            engine.apply(cmd, &mut events);
        }
        cadence
            .maybe_publish(position as u64 + 1, &engine, &mut sink)
            .unwrap();
    }
}

fn verify(files: &[&Path]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .arg("verify")
        .arg("--hashes")
        .args(files)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn agreeing_sites_pass_and_a_diverging_one_is_named() {
    let flow = FlowConfig {
        seed: 3,
        book_depth: 100,
        accounts: 20,
        ..FlowConfig::default()
    };
    let mut generator = FlowGenerator::new(flow);
    let mut commands = generator.setup();
    commands.extend(generator.generate(3_000));
    let dir = tempfile::tempdir().unwrap();
    let (a, b, metal) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("m"),
    );
    run_site("cloud-a", &a, &commands, flow.engine_config(), None);
    run_site("cloud-b", &b, &commands, flow.engine_config(), None);

    let (ok, text) = verify(&[&a, &b]);
    assert!(ok, "{text}");
    assert!(text.contains("from 2 sites (cloud-a, cloud-b)"), "{text}");
    assert!(text.contains("all sites agree"), "{text}");

    // metal misses one command somewhere after position 2,000.
    run_site(
        "metal",
        &metal,
        &commands,
        flow.engine_config(),
        Some(2_100),
    );
    let (ok, text) = verify(&[&a, &b, &metal]);
    assert!(!ok, "{text}");
    assert!(text.contains("DIVERGED shard 0 position 2500"), "{text}");
    assert!(!text.contains("position 2000:"), "{text}");
    assert!(text.contains("metal="), "{text}");
}

#[test]
fn a_malformed_report_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(
        &bad,
        "{\"site\":\"a\",\"shard\":0,\"position\":1,\"hash\":\"ff\"}\nnot json\n",
    )
    .unwrap();
    let (ok, text) = verify(&[&bad]);
    assert!(!ok);
    assert!(text.contains("line 2: not a hash report"), "{text}");
}
