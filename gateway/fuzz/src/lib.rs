//! What the fuzz targets share: the binary protocol's receive loop and canonical frames.

use std::fmt::Debug;

use gateway::binary::{self, Check, DecodeError, FRAME_MAX, HEADER_LEN};

/// Takes `data` as a receive buffer, frame by frame as a session does (`check`, then `decode`,
/// stopping at the first error). Never panics; every decoded message re-encodes to its
/// [`canonical`] frame and decodes back to itself.
pub fn frames_round_trip<M: PartialEq + Debug>(
    data: &[u8],
    decode: fn(&[u8]) -> Result<M, DecodeError>,
    encode: fn(&M, &mut Vec<u8>),
) {
    let mut at = 0;
    let mut out = Vec::new();
    loop {
        let len = match binary::check(&data[at..]) {
            Ok(Check::Incomplete) => break,
            Err(err) => {
                assert!((1..=6).contains(&err.code()), "{err:?}");
                break;
            }
            Ok(Check::Frame(len)) => len,
        };
        assert!((HEADER_LEN..=FRAME_MAX).contains(&len) && at + len <= data.len());
        let frame = &data[at..at + len];
        at += len;
        let message = match decode(frame) {
            Ok(message) => message,
            Err(err) => {
                assert!((1..=6).contains(&err.code()), "{err:?}");
                let _ = err.to_string();
                break;
            }
        };
        out.clear();
        encode(&message, &mut out);
        assert_eq!(
            out,
            canonical(frame),
            "{message:?} re-encodes to another frame"
        );
        assert_eq!(decode(&out), Ok(message));
    }
}

/// `frame` (one whole frame that decoded) with the bytes its decoder reads nothing from set to
/// zero: what encoding the decoded message must give back, byte for byte. Those bytes are the
/// reserved ones and the fields a message ignores (a market order's price, a replace's price or
/// quantity without its `has` bit), at these body offsets (BINARY-PROTOCOL.md).
pub fn canonical(frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    let kind = out[3];
    let body = &mut out[HEADER_LEN..];
    let ord_type = body.get(57).copied();
    let has = body.get(56).copied().unwrap_or(0);
    let flags = body.get(59).copied().unwrap_or(0);
    let mut zero = |range: std::ops::Range<usize>| {
        if let Some(bytes) = body.get_mut(range) {
            bytes.fill(0);
        }
    };
    match kind {
        // Logon: 35 reserved. CancelAfter: 4 reserved x4.
        0x01 => zero(35..36),
        0x16 => zero(4..8),
        // NewOrder: 61 the resend age, ignored without flag bit 1; 64 price, ignored for a
        // market order (ord_type 2).
        0x10 => {
            if flags & 2 == 0 {
                zero(61..64);
            }
            if ord_type == Some(2) {
                zero(64..72);
            }
        }
        // Replace: 57 reserved x7; 64 price without bit 0 of `has`; 72 qty without bit 1.
        0x12 => {
            zero(57..64);
            if has & 1 == 0 {
                zero(64..72);
            }
            if has & 2 == 0 {
                zero(72..80);
            }
        }
        // LogonAck: 10 reserved x6. Logout: 2 x6. SessionReject: 3 x5.
        0x81 => zero(10..16),
        0x82 => zero(2..8),
        0x84 => zero(3..8),
        // ExecutionReport: 76 reserved x4. CancelReject: 42 x6. MassCancelReport: 20 x4.
        // MassStatusReport: 21 x3.
        0x90 => zero(76..80),
        0x91 => zero(42..48),
        0x92 => zero(20..24),
        0x93 => zero(21..24),
        _ => {}
    }
    out
}
