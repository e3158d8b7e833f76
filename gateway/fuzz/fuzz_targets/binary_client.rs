//! Client → gateway frames: arbitrary bytes as a receive buffer, taken frame by frame as the
//! binary server does (`check`, then `decode_client`, stopping at the first error). Never
//! panics; every decoded message re-encodes to its frame (reserved and ignored bytes as zero)
//! and decodes back to itself.
#![no_main]

use gateway::binary;
use gateway_fuzz::frames_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    frames_round_trip(data, binary::decode_client, binary::encode_client);
});
