//! The ten worked examples of `shared/replay-contract.md` version 2 (copied to
//! tests/fixtures/replay) reproduce exactly through `exchange replay` (events, book and
//! orders), and the command refuses bad input cleanly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay")
}

/// Equal as the contract compares: decimal strings by value, objects on the expected keys
/// (extra keys in `actual` are allowed), everything else exactly.
fn same(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(e), Value::String(a)) => {
            let equal = match (Decimal::from_str(e), Decimal::from_str(a)) {
                (Ok(e), Ok(a)) => e == a,
                _ => e == a,
            };
            equal
                .then_some(())
                .ok_or_else(|| format!("{at}: expected {e:?}, got {a:?}"))
        }
        (Value::Object(e), Value::Object(a)) => e.iter().try_for_each(|(key, value)| {
            let got = a
                .get(key)
                .ok_or_else(|| format!("{at}: missing field {key:?}"))?;
            same(value, got, &format!("{at}.{key}"))
        }),
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{at}: expected {} entries, got {}",
                    e.len(),
                    a.len()
                ));
            }
            e.iter()
                .zip(a)
                .enumerate()
                .try_for_each(|(i, (e, a))| same(e, a, &format!("{at}[{i}]")))
        }
        _ => (expected == actual)
            .then_some(())
            .ok_or_else(|| format!("{at}: expected {expected}, got {actual}")),
    }
}

fn json_lines(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    Value::Array(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check_example(name: &str) {
    let dir = tempfile_dir(name);
    let (events, book, orders) = (
        dir.join("events.jsonl"),
        dir.join("book.json"),
        dir.join("orders.json"),
    );
    let input = fixtures().join(format!("{name}.jsonl"));
    let outputs = exchange::replay::Outputs {
        events: &events,
        book: &book,
        orders: Some(&orders),
    };
    let summary = exchange::replay::run(&input, outputs, None).unwrap();
    let expected_events = json_lines(&fixtures().join(format!("{name}.events.expected.jsonl")));
    same(&expected_events, &json_lines(&events), "events")
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected_book = read_json(&fixtures().join(format!("{name}.book.expected.json")));
    let actual_book = read_json(&book);
    // Every symbol must appear, and no other.
    assert_eq!(
        expected_book
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        actual_book.as_object().unwrap().keys().collect::<Vec<_>>(),
        "{name}: book symbols"
    );
    same(&expected_book, &actual_book, "book").unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected_orders = read_json(&fixtures().join(format!("{name}.orders.expected.json")));
    same(&expected_orders, &read_json(&orders), "orders").unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        summary.events as usize,
        expected_events.as_array().unwrap().len()
    );
}

/// Every example in the fixtures directory: the contract's ten, and any added later.
fn examples() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let stem = name.strip_suffix(".jsonl")?;
            (!stem.contains('.')).then(|| stem.to_string())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_reproduces_events_book_and_orders() {
    let names = examples();
    assert_eq!(names.len(), 10, "the contract's ten examples: {names:?}");
    let failures: Vec<String> = names
        .iter()
        .filter_map(|name| {
            let name = name.clone();
            std::panic::catch_unwind(move || check_example(&name))
                .err()
                .map(|panic| {
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "panicked".into())
                })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn tempfile_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "exchange-replay-test-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_comparison_itself_catches_differences() {
    let expected: Value = serde_json::from_str(r#"[{"price":"3000.50","qty":"1"}]"#).unwrap();
    let numeric_equal: Value =
        serde_json::from_str(r#"[{"price":"3000.5","qty":"1.00","extra":1}]"#).unwrap();
    let different: Value = serde_json::from_str(r#"[{"price":"3000.51","qty":"1"}]"#).unwrap();
    assert!(same(&expected, &numeric_equal, "x").is_ok());
    assert!(same(&expected, &different, "x").is_err());
    assert!(same(&expected, &Value::Array(vec![]), "x").is_err());
}

#[test]
fn replay_is_byte_for_byte_repeatable_through_the_binary() {
    let dir = tempfile_dir("repeat");
    let input = fixtures().join("03-self-trade-prevention.jsonl");
    let mut outputs = Vec::new();
    for run in 0..2 {
        let events = dir.join(format!("events{run}.jsonl"));
        let book = dir.join(format!("book{run}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_exchange"))
            .arg("replay")
            .arg("--in")
            .arg(&input)
            .arg("--events-out")
            .arg(&events)
            .arg("--book-out")
            .arg(&book)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            stdout.contains("replayed 13 commands into 21 events"),
            "{stdout}"
        );
        assert!(stdout.contains("state hash "), "{stdout}");
        outputs.push((
            std::fs::read(&events).unwrap(),
            std::fs::read(&book).unwrap(),
        ));
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn a_malformed_line_is_named_and_nothing_is_written() {
    let dir = tempfile_dir("malformed");
    let input = dir.join("bad.jsonl");
    let good = std::fs::read_to_string(fixtures().join("01-price-time.jsonl")).unwrap();
    std::fs::write(
        &input,
        format!("{good}{{\"op\":\"new\",\"ts\":9,\"account\":1}}\n"),
    )
    .unwrap();
    let events = dir.join("events.jsonl");
    let book = dir.join("book.json");
    let out = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["replay", "--in"])
        .arg(&input)
        .arg("--events-out")
        .arg(&events)
        .arg("--book-out")
        .arg(&book)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("line 8: missing field `order_id`"),
        "{stderr}"
    );
    assert!(!events.exists() && !book.exists());
    assert!(
        std::fs::read_dir(&dir).unwrap().count() == 1,
        "no partial files left"
    );
}

#[test]
fn a_bad_engine_config_is_refused_with_the_reason() {
    let dir = tempfile_dir("config");
    let config = dir.join("engine.toml");
    std::fs::write(&config, "orders_max = 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["replay", "--in"])
        .arg(fixtures().join("01-price-time.jsonl"))
        .args([
            "--events-out",
            "/dev/null",
            "--book-out",
            "/dev/null",
            "--engine-config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("orders_max must be between 1"), "{stderr}");
}

#[test]
fn a_failed_book_write_leaves_neither_output() {
    let dir = tempfile_dir("book-fails");
    let events = dir.join("events.jsonl");
    let book = dir.join("no-such-dir").join("book.json");
    let outputs = exchange::replay::Outputs {
        events: &events,
        book: &book,
        orders: None,
    };
    let err =
        exchange::replay::run(&fixtures().join("01-price-time.jsonl"), outputs, None).unwrap_err();
    assert!(format!("{err:#}").contains("book.json.partial"), "{err:#}");
    assert!(!events.exists());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no partial files left"
    );
}
