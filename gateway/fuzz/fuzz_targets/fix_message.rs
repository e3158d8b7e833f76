//! FIX messages as the acceptor takes them: bytes framed by ironfix-transport's `FixCodec`
//! (garbled-frame recovery on, as on a session), each frame decoded by ironfix-tagvalue's
//! `Decoder` into a reusable `FieldIndex` (falling back to a plain decode, as ironfix's reactor
//! does), then the gateway's pure mapping: `fix::mapping::parse`, and the replies built from
//! what it returns (with text taken from the message). Never panics.
//!
//! The first byte chooses how the rest is used:
//! - bit 0 clear: the rest is the raw byte stream; bit 1 set validates checksums (the
//!   session's setting), clear does not (so mutations past the checksum get through).
//! - bit 0 set: the rest is one message body (from MsgType (35) on), framed here with a correct
//!   BodyLength (9) and CheckSum (10), so that mutations reach the mapping.
//! - bit 2 set: the codec that frames a connection before its Logon is routed (every FIX
//!   BeginString an anchor); clear: a FIX.4.4 session's codec.
#![no_main]

use bytes::BytesMut;
use engine::{AccountId, Qty, RejectReason, Request};
use gateway::fix::mapping::{self, business_reject, session_reject, Inbound};
use gateway::{ExecType, GatewayReason, OrdStatus, Reason, Report};
use ironfix_core::error::DecodeError;
use ironfix_core::message::RawMessage;
use ironfix_tagvalue::{Decoder as FixDecoder, FieldIndex};
use ironfix_transport::FixCodec;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder as _;

/// The gateway's default `fix.max_message_size`.
const MAX_MESSAGE_SIZE: usize = 4096;
/// ironfix's default `max_inbound_fields`.
const INBOUND_FIELDS: usize = 256;
/// The session's account.
const ACCOUNT: AccountId = AccountId(7);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut src = if mode & 1 == 0 {
        BytesMut::from(rest)
    } else {
        framed(rest)
    };
    let codec = FixCodec::new()
        .with_max_message_size(MAX_MESSAGE_SIZE)
        .with_checksum_validation(mode & 1 == 1 || mode & 2 == 2)
        .with_garbled_recovery(true);
    let mut codec = if mode & 4 == 0 {
        codec.with_begin_string("FIX.4.4")
    } else {
        codec
    };
    let mut index = FieldIndex::with_capacity(INBOUND_FIELDS);
    // Every call consumes bytes or stops; bounded anyway.
    for _ in 0..=rest.len() + 1 {
        let frame = match codec.decode(&mut src) {
            Ok(Some(frame)) => frame,
            // A fatal framing error closes the connection.
            Ok(None) | Err(_) => break,
        };
        let _ = codec.take_garbled_count();
        let mut refs = Vec::with_capacity(INBOUND_FIELDS);
        let decoded = match FixDecoder::new(&frame)
            .with_checksum_validation(false)
            .decode_into(&mut index)
            .and_then(|indexed| indexed.to_raw_message_in(&mut refs))
        {
            Err(DecodeError::TooManyFields { .. }) => FixDecoder::new(&frame)
                .with_checksum_validation(false)
                .decode(),
            decoded => decoded,
        };
        if let Ok(raw) = decoded {
            application(&raw);
        }
    }
});

/// `body` framed as a FIX.4.4 message, BodyLength and CheckSum computed.
fn framed(body: &[u8]) -> BytesMut {
    let mut out = format!("8=FIX.4.4\x019={}\x01", body.len()).into_bytes();
    out.extend_from_slice(body);
    let sum = out.iter().fold(0u8, |sum, b| sum.wrapping_add(*b));
    out.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
    BytesMut::from(&out[..])
}

/// What the acceptor's `from_app` does with a decoded message, less the hub.
fn application(raw: &RawMessage<'_>) {
    let ref_seq = raw.get_field_str(34).and_then(|s| s.parse::<u64>().ok());
    let msg_type = raw.msg_type().as_str();
    // A Logon's fields, as `from_admin` reads them.
    let _ = raw.get_field_str(mapping::TAG_CANCEL_ON_DISCONNECT);
    // The throttled answer echoes MsgType and ClOrdID from the message.
    let _ = mapping::business_message_reject(
        ref_seq,
        msg_type,
        raw.get_field_str(11),
        business_reject::OTHER,
        "throttled",
    );
    let inbound = match mapping::parse(raw, ACCOUNT) {
        Ok(inbound) => inbound,
        Err(malformed) => {
            assert!(
                [
                    session_reject::REQUIRED_TAG_MISSING,
                    session_reject::VALUE_INCORRECT,
                    session_reject::INCORRECT_DATA_FORMAT,
                    session_reject::TAG_REPEATED,
                ]
                .contains(&malformed.reason),
                "{malformed:?}"
            );
            assert!(
                malformed.tag > 0 && !malformed.text.is_empty(),
                "{malformed:?}"
            );
            return;
        }
    };
    match inbound {
        Inbound::Refused { new, why } => {
            assert_eq!(new.account, ACCOUNT);
            let report = gateway::desk::gateway_reject(ACCOUNT, &new, why);
            let _ = mapping::execution_report(&report, None);
        }
        Inbound::New(new) => {
            assert_eq!(new.account, ACCOUNT);
            let report = gateway::desk::gateway_reject(ACCOUNT, &new, GatewayReason::Busy);
            let _ = mapping::execution_report(&report, None);
        }
        Inbound::Cancel { request, cancel } => {
            assert_eq!(cancel.account, ACCOUNT);
            let _ = mapping::cancel_reject(
                &request,
                &cancel.order_id,
                ACCOUNT,
                Request::Cancel,
                None,
                Reason::Gateway(GatewayReason::Unavailable),
            );
        }
        Inbound::Replace {
            request,
            orig,
            symbol,
            price,
            order_qty: _,
        } => {
            // The order's last known state: 10 ordered, 4 filled.
            let state = Report {
                seq: 1,
                ts: 1,
                account: ACCOUNT,
                cl_ord_id: request,
                orig_cl_ord_id: Some(orig),
                order_id: None,
                symbol,
                side: engine::Side::Buy,
                exec_type: ExecType::Trade,
                ord_status: OrdStatus::PartiallyFilled,
                price: price.or(Some(engine::Price(100_000_000))),
                order_qty: Qty(1_000_000_000),
                last_px: engine::Price(100_000_000),
                last_qty: Qty(400_000_000),
                cum_qty: Qty(400_000_000),
                leaves_qty: Qty(600_000_000),
                avg_px: engine::Price(100_000_000),
                why: None,
            };
            let _ = mapping::execution_report(&state, Some(&request));
            let _ = mapping::cancel_reject(
                &request,
                &orig,
                ACCOUNT,
                Request::Amend,
                Some(&state),
                Reason::Rejected(RejectReason::UnknownOrder),
            );
        }
        Inbound::MassCancel { request, symbol } => {
            let _ =
                mapping::mass_cancel_report(&request, symbol.as_ref(), Err(GatewayReason::Busy));
            let _ = mapping::mass_cancel_report(&request, symbol.as_ref(), Ok(3));
        }
        Inbound::Status {
            order,
            symbol,
            side,
        } => {
            let _ = mapping::unknown_order_status(ACCOUNT, &order, &symbol, side);
        }
        Inbound::CancelAfter { timeout_ms } => {
            let _ = mapping::cancel_after_report(u64::from(timeout_ms));
        }
        Inbound::MassStatus { request, symbol } => {
            let _ = mapping::mass_status_reports(&[], &request, symbol.as_ref(), ACCOUNT, None);
        }
        Inbound::Unsupported => {
            let _ = mapping::business_message_reject(
                ref_seq,
                msg_type,
                None,
                business_reject::UNSUPPORTED_MESSAGE_TYPE,
                "unsupported message type",
            );
        }
    }
}
