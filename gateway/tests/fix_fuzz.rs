//! Bounded fuzzing of the FIX edge: ironfix's decoder, then the gateway's mapping
//! (`gateway::fix::mapping`), on arbitrary bytes and on valid messages with one field replaced
//! or bytes mutated. Nothing may panic; a decoded message with a bad field is refused naming
//! that field, and whatever is accepted is well-formed for the engine.

use engine::{AccountId, OrderId, Price, Qty, Symbol};
use gateway::fix::mapping::{self, Inbound};
use gateway::{ExecType, OrdStatus, Reason, Report};
use ironfix_tagvalue::Decoder;
use proptest::prelude::*;

const ACCOUNT: AccountId = AccountId(1);

/// A framed FIX 4.4 message (BodyLength and CheckSum computed) from body fields.
fn frame(fields: &[(u32, String)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (tag, value) in fields {
        body.extend_from_slice(format!("{tag}=").as_bytes());
        body.extend_from_slice(value.as_bytes());
        body.push(1);
    }
    let mut out = format!("8=FIX.4.4\x019={}\x01", body.len()).into_bytes();
    out.extend_from_slice(&body);
    let sum: u32 = out.iter().map(|b| u32::from(*b)).sum();
    out.extend_from_slice(format!("10={:03}\x01", sum % 256).as_bytes());
    out
}

fn new_order_fields() -> Vec<(u32, String)> {
    [
        (35, "D"),
        (49, "alice"),
        (56, "EXCHANGE"),
        (34, "2"),
        (52, "20260101-00:00:00.000"),
        (11, "a1"),
        (1, "1"),
        (55, "BTC-USD"),
        (54, "1"),
        (60, "20260101-00:00:00.000"),
        (38, "1.5"),
        (40, "2"),
        (44, "100.25"),
        (59, "3"),
        (18, "6"),
        (7928, "B"),
    ]
    .into_iter()
    .map(|(tag, value)| (tag, value.to_string()))
    .collect()
}

/// Whether `value` is acceptable in `tag` of the NewOrderSingle above.
fn valid(tag: u32, value: &str) -> bool {
    match tag {
        11 => OrderId::new(value).is_ok(),
        1 => value == "1",
        55 => Symbol::new(value).is_ok(),
        54 | 40 => matches!(value, "1" | "2"),
        38 => Qty::parse(value).is_ok(),
        44 => Price::parse(value).is_ok(),
        59 => matches!(value, "1" | "3" | "4"),
        18 => value.split(' ').all(|inst| inst == "6"),
        7928 => matches!(value, "N" | "T" | "M" | "B"),
        _ => true,
    }
}

/// Maps the decoded message, and maps an accepted new order back out as reports.
fn map(bytes: &[u8]) -> Option<Result<Inbound, mapping::Malformed>> {
    let raw = Decoder::new(bytes).decode().ok()?;
    let result = mapping::parse(&raw, ACCOUNT);
    if let Ok(Inbound::New(new)) = &result {
        assert_eq!(new.account, ACCOUNT, "the account is the session's");
        let report = Report {
            seq: 1,
            ts: 1,
            account: new.account,
            cl_ord_id: new.order_id,
            orig_cl_ord_id: None,
            order_id: None,
            symbol: new.symbol,
            side: new.side,
            exec_type: ExecType::Rejected,
            ord_status: OrdStatus::Rejected,
            price: new.price,
            order_qty: new.qty,
            last_px: Price(0),
            last_qty: Qty(0),
            cum_qty: Qty(0),
            leaves_qty: new.qty,
            avg_px: Price(0),
            why: Some(Reason::Rejected(engine::RejectReason::InvalidQty)),
        };
        let _ = mapping::execution_report(&report, None);
        let _ = mapping::order_status(&report);
    }
    Some(result)
}

/// Field values: mostly printable ASCII (what a counterparty can put in a field), sometimes
/// any byte but SOH.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ -~]{1,24}",
        1 => "[0-9.-]{1,30}",
        1 => proptest::collection::vec(2u8..=255, 1..24)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).replace('\x01', "x")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = map(&bytes);
        // Behind a valid header too, so the mapping sees the garbage.
        let mut framed = b"8=FIX.4.4\x019=".to_vec();
        framed.extend_from_slice(bytes.len().to_string().as_bytes());
        framed.push(1);
        framed.extend_from_slice(&bytes);
        let sum: u32 = framed.iter().map(|b| u32::from(*b)).sum();
        framed.extend_from_slice(format!("10={:03}\x01", sum % 256).as_bytes());
        let _ = map(&framed);
    }

    #[test]
    fn a_bad_field_is_refused_by_name(at in 5usize..16, value in value()) {
        let mut fields = new_order_fields();
        let tag = fields[at].0;
        fields[at].1 = value.clone();
        let Some(result) = map(&frame(&fields)) else {
            // The decoder refused it (a value it cannot frame): never reaches the mapping.
            return Ok(());
        };
        if tag == 59 && value == "0" {
            // Day: a well-formed order this market refuses as an order, not a malformed one.
            prop_assert!(matches!(result, Ok(Inbound::Refused { .. })), "{result:?}");
        } else if valid(tag, &value) {
            prop_assert!(matches!(result, Ok(Inbound::New(_))), "{tag}={value:?}: {result:?}");
        } else {
            let err = result.expect_err("a bad field is refused");
            prop_assert_eq!(err.tag, tag, "{}", err.text);
            prop_assert!(matches!(err.reason, 5 | 6), "{err:?}");
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        msg_type in prop::sample::select(vec!["D", "F", "G", "H", "q", "AE", "8"]),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        drop_field in any::<prop::sample::Index>(),
        dup_field in any::<prop::sample::Index>(),
    ) {
        let mut fields = new_order_fields();
        fields[0].1 = msg_type.to_string();
        fields.extend([(41, "a0".to_string()), (530, "7".to_string())]);
        // Drop one body field, repeat another: missing and repeated tags.
        let dropped = fields.remove(5 + drop_field.index(fields.len() - 5)).0;
        let dup = fields[5 + dup_field.index(fields.len() - 5)].clone();
        fields.push(dup.clone());
        let clean = frame(&fields);
        if let Some(result) = map(&clean) {
            let read = [11, 1, 55, 54, 38, 40, 44, 59, 18, 7928];
            let required = [11, 55, 54, 38, 40, 44];
            if msg_type == "D" && (read.contains(&dup.0) || required.contains(&dropped)) {
                let err = result.expect_err("missing or repeated tags are refused");
                prop_assert!(err.tag == dup.0 || err.tag == dropped, "{err:?}");
            }
        }
        let mut mutated = clean;
        for (at, byte) in flips {
            let i = at.index(mutated.len());
            mutated[i] = byte;
        }
        let _ = map(&mutated);
    }
}
