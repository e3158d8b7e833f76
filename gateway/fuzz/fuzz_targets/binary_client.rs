//! Client → gateway frames: arbitrary bytes as a receive buffer, taken frame by frame as the
//! binary server does (`check`, then `decode_client`, stopping at the first error). Never
//! panics; every decoded message re-encodes to its frame (reserved and ignored bytes as zero)
//! and decodes back to itself.
#![no_main]

use gateway::binary::{self, Check, FRAME_MAX, HEADER_LEN};
use gateway_fuzz::canonical;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
        let message = match binary::decode_client(frame) {
            Ok(message) => message,
            Err(err) => {
                assert!((1..=6).contains(&err.code()), "{err:?}");
                let _ = err.to_string();
                break;
            }
        };
        out.clear();
        binary::encode_client(&message, &mut out);
        assert_eq!(
            out,
            canonical(frame),
            "{message:?} re-encodes to another frame"
        );
        assert_eq!(binary::decode_client(&out), Ok(message));
    }
});
