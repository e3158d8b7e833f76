//! The binary codec: every message round-trips, frames are found in any chunking, arbitrary
//! bytes never panic, each kind of malformed frame gets its session reject code, and the named
//! wire codes are the documented ones.

use engine::{AccountId, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif};
use gateway::binary::{
    check, decode_client, decode_server, encode_client, encode_server, exec_type, msg_type,
    ord_status, reason, session_reject, CancelRequest, Check, ClientMessage, DecodeError,
    ExecReport, NewOrderMsg, ServerMessage,
};
use proptest::prelude::*;

fn order_id() -> impl Strategy<Value = OrderId> {
    "[!-~]{1,40}".prop_map(|s| OrderId::new(&s).unwrap())
}

fn symbol() -> impl Strategy<Value = Symbol> {
    "[A-Z0-9-]{1,16}".prop_map(|s| Symbol::new(&s).unwrap())
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn new_order_msg() -> impl Strategy<Value = NewOrderMsg> {
    (
        order_id(),
        symbol(),
        side(),
        any::<bool>(),
        prop_oneof![Just(Tif::Gtc), Just(Tif::Ioc), Just(Tif::Fok)],
        any::<bool>(),
        prop_oneof![
            Just(Stp::None),
            Just(Stp::CancelTaker),
            Just(Stp::CancelMaker),
            Just(Stp::CancelBoth)
        ],
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(
            |(cl_ord_id, symbol, side, market, tif, post_only, stp, price, qty)| NewOrderMsg {
                cl_ord_id,
                symbol,
                side,
                ord_type: if market {
                    OrdType::Market
                } else {
                    OrdType::Limit
                },
                tif,
                post_only,
                stp,
                price: (!market).then_some(Price(price)),
                qty: Qty(qty),
            },
        )
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    let new_order = new_order_msg().prop_map(ClientMessage::NewOrder);
    prop_oneof![
        (any::<[u8; 32]>(), any::<u16>(), any::<bool>()).prop_map(|(token, heartbeat_secs, c)| {
            ClientMessage::Logon {
                token,
                heartbeat_secs,
                cancel_on_disconnect: c,
            }
        }),
        Just(ClientMessage::Logout),
        any::<u64>().prop_map(|test_id| ClientMessage::Heartbeat { test_id }),
        new_order,
        (order_id(), symbol())
            .prop_map(|(cl_ord_id, symbol)| ClientMessage::Cancel { cl_ord_id, symbol }),
        (
            order_id(),
            symbol(),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i64>())
        )
            .prop_map(|(cl_ord_id, symbol, price, qty)| ClientMessage::Replace {
                cl_ord_id,
                symbol,
                price: price.map(Price),
                qty: qty.map(Qty),
            }),
        proptest::option::of(symbol()).prop_map(|symbol| ClientMessage::MassCancel { symbol }),
        proptest::option::of(symbol()).prop_map(|symbol| ClientMessage::MassStatus { symbol }),
        any::<u32>().prop_map(|timeout_ms| ClientMessage::CancelAfter { timeout_ms }),
        (new_order_msg(), 0..=gateway::binary::RESEND_AGE_MAX_MS)
            .prop_map(|(order, age_ms)| ClientMessage::ResendOrder { order, age_ms }),
        (order_id(), symbol())
            .prop_map(|(cl_ord_id, symbol)| ClientMessage::OrderStatus { cl_ord_id, symbol }),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    let report = (
        (any::<u64>(), any::<u64>(), order_id(), symbol()),
        (any::<u8>(), any::<u8>(), side(), any::<u8>()),
        proptest::array::uniform7(any::<i64>()),
    )
        .prop_map(
            |((seq, ts, cl_ord_id, symbol), (exec_type, ord_status, side, reason), n)| {
                ServerMessage::ExecutionReport(ExecReport {
                    seq,
                    ts,
                    cl_ord_id,
                    symbol,
                    exec_type,
                    ord_status,
                    side,
                    reason,
                    price: Price(n[0]),
                    order_qty: Qty(n[1]),
                    last_px: Price(n[2]),
                    last_qty: Qty(n[3]),
                    cum_qty: Qty(n[4]),
                    leaves_qty: Qty(n[5]),
                    avg_px: Price(n[6]),
                })
            },
        );
    prop_oneof![
        (any::<u64>(), any::<u16>()).prop_map(|(a, h)| ServerMessage::LogonAck {
            account: AccountId(a),
            heartbeat_secs: h
        }),
        any::<u16>().prop_map(|reason| ServerMessage::Logout { reason }),
        any::<u64>().prop_map(|test_id| ServerMessage::Heartbeat { test_id }),
        (any::<u16>(), any::<u8>()).prop_map(|(code, rejected_type)| {
            ServerMessage::SessionReject {
                code,
                rejected_type,
            }
        }),
        report,
        (order_id(), any::<bool>(), any::<u8>()).prop_map(|(cl_ord_id, replace, reason)| {
            ServerMessage::CancelReject {
                cl_ord_id,
                request: if replace {
                    CancelRequest::Replace
                } else {
                    CancelRequest::Cancel
                },
                reason,
            }
        }),
        (proptest::option::of(symbol()), any::<u32>())
            .prop_map(|(symbol, cancelled)| ServerMessage::MassCancelReport { symbol, cancelled }),
        (proptest::option::of(symbol()), any::<u32>(), any::<u8>()).prop_map(
            |(symbol, reports, behind)| ServerMessage::MassStatusReport {
                symbol,
                reports,
                behind,
            }
        ),
        any::<u64>().prop_map(|deadline| ServerMessage::SwitchReport { deadline }),
    ]
}

/// Splits a byte stream into frames, feeding it in chunks of `chunk` bytes.
fn frames_in_chunks(stream: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut frames = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        buffer.extend_from_slice(piece);
        while let Check::Frame(len) = check(&buffer).unwrap() {
            frames.push(buffer.drain(..len).collect());
        }
    }
    assert!(buffer.is_empty(), "bytes left over");
    frames
}

proptest! {
    #[test]
    fn client_messages_round_trip_in_any_chunking(
        messages in proptest::collection::vec(client_message(), 1..20),
        chunk in 1usize..200,
    ) {
        let mut stream = Vec::new();
        for m in &messages {
            encode_client(m, &mut stream);
        }
        let frames = frames_in_chunks(&stream, chunk);
        let decoded: Vec<ClientMessage> =
            frames.iter().map(|f| decode_client(f).unwrap()).collect();
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn server_messages_round_trip(messages in proptest::collection::vec(server_message(), 1..20)) {
        let mut stream = Vec::new();
        for m in &messages {
            encode_server(m, &mut stream);
        }
        let decoded: Vec<ServerMessage> = frames_in_chunks(&stream, 7)
            .iter()
            .map(|f| decode_server(f).unwrap())
            .collect();
        prop_assert_eq!(decoded, messages);
    }

    /// Arbitrary bytes: `check` and both decoders answer, never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = check(&bytes);
        let _ = decode_client(&bytes);
        let _ = decode_server(&bytes);
    }

    /// A valid frame with one byte changed decodes or is refused, never panics, and a refusal
    /// carries a code from the spec.
    #[test]
    fn damaged_frames_are_refused_with_a_code(
        message in client_message(),
        at in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut frame = Vec::new();
        encode_client(&message, &mut frame);
        let at = at.index(frame.len());
        frame[at] = byte;
        if let Err(err) = decode_client(&frame) {
            prop_assert!((1..=6).contains(&err.code()));
        }
    }
}

fn new_order_frame() -> Vec<u8> {
    let mut frame = Vec::new();
    encode_client(
        &ClientMessage::NewOrder(NewOrderMsg {
            cl_ord_id: OrderId::new("o-1").unwrap(),
            symbol: Symbol::new("BTC-USD").unwrap(),
            side: Side::Buy,
            ord_type: OrdType::Limit,
            tif: Tif::Gtc,
            post_only: false,
            stp: Stp::CancelTaker,
            price: Some(Price(100)),
            qty: Qty(1),
        }),
        &mut frame,
    );
    frame
}

#[test]
fn each_kind_of_malformed_frame_gets_its_code() {
    let good = new_order_frame();
    assert_eq!(good.len(), 84);
    assert!(decode_client(&good).is_ok());
    let with = |at: usize, byte: u8| {
        let mut f = good.clone();
        f[at] = byte;
        f
    };
    let cases: [(Vec<u8>, u16); 7] = [
        (vec![2, 0, 1, 0x10], 1),                      // length below the header
        ([&[0xff, 0x0f][..], &good[2..]].concat(), 1), // length above FRAME_MAX
        (with(2, 9), 2),                               // version
        (with(3, 0x7f), 3),                            // unknown type
        (with(4 + 56, 3), 5),                          // side 3
        (with(4 + 59, 4), 5),                          // undefined flag bit
        (with(4 + 2, 0x80), 6),                        // non-ASCII in the order id
    ];
    for (frame, code) in cases {
        let err = check(&frame)
            .err()
            .or_else(|| decode_client(&frame).err())
            .unwrap_or_else(|| panic!("accepted {frame:?}"));
        assert_eq!(err.code(), code, "{err}");
    }
    // A known type with the wrong body length.
    let mut short = Vec::new();
    encode_client(&ClientMessage::Logout, &mut short);
    short[3] = 0x10;
    assert!(matches!(
        decode_client(&short),
        Err(DecodeError::BodyLength {
            kind: 0x10,
            expected: 80,
            got: 0
        })
    ));
    // Text must be zero-padded: a byte after the padding is refused.
    let padded_then_text = with(4 + 39, b'x');
    assert_eq!(decode_client(&padded_then_text).unwrap_err().code(), 6);
}

#[test]
fn a_market_orders_price_field_is_ignored() {
    let mut frame = new_order_frame();
    frame[4 + 57] = 2; // market
    frame[4 + 58] = 2; // IOC
    let ClientMessage::NewOrder(order) = decode_client(&frame).unwrap() else {
        panic!("not a new order")
    };
    assert_eq!((order.ord_type, order.price), (OrdType::Market, None));
}

/// Every named wire code is the one `gateway/BINARY-PROTOCOL.md` documents.
#[test]
fn the_named_codes_are_the_documented_ones() {
    let doc = include_str!("../BINARY-PROTOCOL.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let from = doc
        .find("`exec_type` and `ord_status` use")
        .expect("the codes' paragraph");
    let to = doc[from..].find("## Sessions").expect("its end") + from;
    let codes = &doc[from..to];
    let reasons = [
        (reason::NONE, "none"),
        (reason::UNKNOWN_SYMBOL, "unknown_symbol"),
        (reason::DUPLICATE_ORDER_ID, "duplicate_order_id"),
        (reason::INVALID_QTY, "invalid_qty"),
        (reason::INVALID_PRICE, "invalid_price"),
        (reason::INVALID_TIF, "invalid_tif"),
        (reason::POST_ONLY, "post_only"),
        (reason::UNKNOWN_ORDER, "unknown_order"),
        (reason::CAPACITY, "capacity"),
        (reason::DUPLICATE_SYMBOL, "duplicate_symbol"),
        (reason::INVALID_TICK, "invalid_tick"),
        (reason::INVALID_LOT, "invalid_lot"),
        (reason::ACCOUNT_DISABLED, "account_disabled"),
        (reason::CANCEL_ONLY, "cancel_only"),
        (reason::USER, "user"),
        (reason::MASS, "mass"),
        (reason::IOC, "ioc"),
        (reason::FOK, "fok"),
        (reason::STP, "stp"),
        (reason::EXPIRED, "expired"),
        (reason::KILL_SWITCH, "kill_switch"),
        (reason::BUSY, "busy"),
        (reason::UNAVAILABLE, "unavailable"),
        (reason::THROTTLED, "throttled"),
        (reason::DAY_NOT_SUPPORTED, "day_not_supported"),
    ];
    for (code, name) in reasons {
        let documented = [", ", ": "].iter().any(|before| {
            codes.contains(&format!("{before}{code} {name},"))
                || codes.contains(&format!("{before}{code} {name};"))
                || codes.contains(&format!("{before}{code} {name} ("))
        });
        assert!(documented, "reason {code} {name} in {codes}");
    }
    let letters = [
        (exec_type::NEW, "new"),
        (exec_type::CANCELED, "cancelled"),
        (exec_type::REPLACED, "replaced"),
        (exec_type::REJECTED, "rejected"),
        (exec_type::TRADE, "is a fill"),
        (exec_type::ORDER_STATUS, "an order status"),
        (ord_status::NEW, "new"),
        (ord_status::PARTIALLY_FILLED, "partially filled"),
        (ord_status::FILLED, "filled"),
        (ord_status::CANCELED, "cancelled"),
        (ord_status::REJECTED, "rejected"),
    ];
    for (code, name) in letters {
        let text = format!("`{}` {name}", char::from(code));
        assert!(codes.contains(&text), "{text} in {codes}");
    }
    // An OrderStatus for an unknown order.
    let unknown = format!(
        "`exec_type` `{}`, `ord_status` `{}`, reason {}",
        char::from(exec_type::ORDER_STATUS),
        char::from(ord_status::REJECTED),
        reason::UNKNOWN_ORDER
    );
    assert!(codes.contains(&unknown), "{unknown}");
}

/// The session reject codes and message types clients act on are the documented ones.
#[test]
fn the_session_reject_codes_and_message_types_are_the_documented_ones() {
    let doc = include_str!("../BINARY-PROTOCOL.md");
    for (code, meaning) in [
        (session_reject::LENGTH, "frame length outside"),
        (session_reject::VERSION, "unsupported version"),
        (session_reject::UNKNOWN_TYPE, "unknown message type"),
        (session_reject::BODY_LENGTH, "wrong body length"),
        (
            session_reject::VALUE,
            "a field holds a value outside its encoding",
        ),
        (
            session_reject::TEXT,
            "text that is not zero-padded printable ASCII",
        ),
        (
            session_reject::ALREADY_LOGGED_ON,
            "a Logon on a session already logged on",
        ),
        (session_reject::THROTTLED, "throttled"),
    ] {
        let row = format!("| {code} | {meaning}");
        assert!(doc.contains(&row), "{row}");
    }
    let refused = format!(
        "| {}, {} | a MassCancel the log could not take (busy, unavailable) |",
        session_reject::BUSY,
        session_reject::UNAVAILABLE
    );
    assert!(doc.contains(&refused), "{refused}");
    for (kind, name) in [
        (msg_type::LOGON, "Logon"),
        (msg_type::NEW_ORDER, "NewOrder"),
        (msg_type::CANCEL, "Cancel"),
        (msg_type::REPLACE, "Replace"),
        (msg_type::MASS_CANCEL, "MassCancel"),
        (msg_type::ORDER_STATUS, "OrderStatus"),
        (msg_type::MASS_STATUS, "MassStatus"),
        (msg_type::CANCEL_AFTER, "CancelAfter"),
    ] {
        let row = format!("| 0x{kind:02x} | {name} |");
        assert!(doc.contains(&row), "{row}");
    }
}
