//! Market data WebSocket requests: arbitrary bytes as a text message (a WebSocket text message
//! is UTF-8, checked by the WebSocket layer before the server sees it) through the server's
//! request parser, `md::parse_request`. Never panics; what it accepts is within the
//! configured limits, and every refusal has a message.
#![no_main]

use gateway::md::{parse_request, Channel, MdConfig, MdRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = MdConfig::default();
    match parse_request(text, &config) {
        Ok(MdRequest::Subscribe {
            channel,
            symbol,
            depth,
            ..
        }) => {
            assert!((1..=config.max_depth).contains(&depth), "depth {depth}");
            assert!(!symbol.as_str().is_empty());
            let _ = channel == Channel::Book;
        }
        Ok(request) => {
            let _ = request.id();
        }
        Err(bad) => assert!(!bad.message.is_empty()),
    }
});
