//! Writes the seed corpora, a few valid messages per target, to `corpus/<target>/`:
//! `cargo run --manifest-path gateway/fuzz/Cargo.toml --example seeds`.

use std::fs;
use std::path::Path;

use engine::{AccountId, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif};
use gateway::binary::{
    encode_client, encode_server, CancelRequest, ClientMessage, ExecReport, NewOrderMsg,
    ServerMessage,
};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    fs::write(dir.join(name), bytes).expect("seed written");
}

fn id(text: &str) -> OrderId {
    OrderId::new(text).expect("order id")
}

fn sym(text: &str) -> Symbol {
    Symbol::new(text).expect("symbol")
}

fn client() {
    let new = NewOrderMsg {
        cl_ord_id: id("ord-1"),
        symbol: sym("BTC-USD"),
        side: Side::Buy,
        ord_type: OrdType::Limit,
        tif: Tif::Gtc,
        post_only: true,
        stp: Stp::CancelTaker,
        price: Some(Price(10_050_000_000)),
        qty: Qty(150_000_000),
    };
    let market = NewOrderMsg {
        ord_type: OrdType::Market,
        side: Side::Sell,
        tif: Tif::Ioc,
        post_only: false,
        stp: Stp::None,
        price: None,
        ..new
    };
    let session = [
        ClientMessage::Logon {
            token: *b"0123456789abcdef0123456789abcdef",
            heartbeat_secs: 30,
            cancel_on_disconnect: true,
        },
        ClientMessage::Heartbeat { test_id: 7 },
        ClientMessage::NewOrder(new),
        ClientMessage::NewOrder(market),
        ClientMessage::Replace {
            cl_ord_id: id("ord-1"),
            symbol: sym("BTC-USD"),
            price: Some(Price(10_000_000_000)),
            qty: None,
        },
        ClientMessage::Cancel {
            cl_ord_id: id("ord-1"),
            symbol: sym("BTC-USD"),
        },
        ClientMessage::OrderStatus {
            cl_ord_id: id("ord-1"),
            symbol: sym("BTC-USD"),
        },
        ClientMessage::MassCancel { symbol: None },
        ClientMessage::MassStatus { symbol: None },
        ClientMessage::MassCancel {
            symbol: Some(sym("ETH-USD")),
        },
        ClientMessage::Logout,
    ];
    let mut all = Vec::new();
    for (i, message) in session.iter().enumerate() {
        let mut one = Vec::new();
        encode_client(message, &mut one);
        write("binary_client", &format!("{i:02}"), &one);
        all.extend_from_slice(&one);
    }
    write("binary_client", "session", &all);
}

fn server() {
    let report = ExecReport {
        seq: 42,
        ts: 1_767_225_600_000_000_000,
        cl_ord_id: id("ord-1"),
        symbol: sym("BTC-USD"),
        exec_type: b'F',
        ord_status: b'1',
        side: Side::Buy,
        reason: 0,
        price: Price(10_050_000_000),
        order_qty: Qty(150_000_000),
        last_px: Price(10_050_000_000),
        last_qty: Qty(50_000_000),
        cum_qty: Qty(50_000_000),
        leaves_qty: Qty(100_000_000),
        avg_px: Price(10_050_000_000),
    };
    let session = [
        ServerMessage::LogonAck {
            account: AccountId(7),
            heartbeat_secs: 30,
        },
        ServerMessage::Heartbeat { test_id: 7 },
        ServerMessage::ExecutionReport(report),
        ServerMessage::CancelReject {
            cl_ord_id: id("ord-2"),
            request: CancelRequest::Replace,
            reason: 1,
        },
        ServerMessage::MassCancelReport {
            symbol: Some(sym("BTC-USD")),
            cancelled: 3,
        },
        ServerMessage::MassStatusReport {
            symbol: None,
            reports: 2,
            behind: 34,
        },
        ServerMessage::SessionReject {
            code: 8,
            rejected_type: 0x13,
        },
        ServerMessage::Logout { reason: 0 },
    ];
    let mut all = Vec::new();
    for (i, message) in session.iter().enumerate() {
        let mut one = Vec::new();
        encode_server(message, &mut one);
        write("binary_server", &format!("{i:02}"), &one);
        all.extend_from_slice(&one);
    }
    write("binary_server", "session", &all);
}

/// A whole FIX.4.4 frame from `|`-separated body fields.
fn frame(body: &str) -> Vec<u8> {
    let body = body.replace('|', "\x01");
    let mut out = format!("8=FIX.4.4\x019={}\x01{}", body.len(), body).into_bytes();
    let sum = out.iter().fold(0u8, |sum, b| sum.wrapping_add(*b));
    out.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
    out
}

fn fix() {
    const HEAD: &str = "49=M1|56=EXCH|34=2|52=20260101-00:00:00.000|";
    let bodies = [
        ("logon", "35=A|49=M1|56=EXCH|34=1|52=20260101-00:00:00.000|98=0|108=30|553=M1|554=token|8013=Y|"),
        ("new_limit", "35=D|{HEAD}11=ord-1|55=BTC-USD|54=1|40=2|44=100.5|38=1.5|59=1|18=6|7928=T|60=20260101-00:00:00|"),
        ("new_market", "35=D|{HEAD}1=7|11=ord-2|55=BTC-USD|54=2|40=1|38=2|59=3|"),
        ("cancel", "35=F|{HEAD}11=c-1|41=ord-1|55=BTC-USD|54=1|"),
        ("replace", "35=G|{HEAD}11=r-1|41=ord-1|55=BTC-USD|54=1|40=2|44=101|38=3|"),
        ("mass_cancel", "35=q|{HEAD}11=m-1|530=7|"),
        ("mass_cancel_symbol", "35=q|{HEAD}11=m-2|530=1|55=ETH-USD|"),
        ("status", "35=H|{HEAD}11=ord-1|55=BTC-USD|54=1|"),
        ("unsupported", "35=R|{HEAD}131=q-1|"),
        ("heartbeat", "35=0|{HEAD}"),
    ];
    let mut all = Vec::new();
    for (name, body) in bodies {
        let body = body.replace("{HEAD}", HEAD);
        // Mode 0: the raw stream, checksums not validated; mode 2: validated.
        let whole = frame(&body);
        write(
            "fix_message",
            &format!("raw_{name}"),
            &[&[2u8][..], &whole].concat(),
        );
        // Mode 1: a body framed by the target.
        let framed_body = body.replace('|', "\x01");
        write(
            "fix_message",
            &format!("body_{name}"),
            &[&[1u8][..], framed_body.as_bytes()].concat(),
        );
        all.extend_from_slice(&whole);
    }
    write("fix_message", "raw_session", &[&[0u8][..], &all].concat());
}

fn md() {
    let requests = [
        ("ping", r#"{"op":"ping","id":1}"#),
        (
            "subscribe_book",
            r#"{"op":"subscribe","channel":"book","symbol":"BTC-USD","depth":10,"id":2}"#,
        ),
        (
            "subscribe_trades",
            r#"{"op":"subscribe","channel":"trades","symbol":"BTC-USD"}"#,
        ),
        (
            "unsubscribe",
            r#"{"op":"unsubscribe","channel":"book","symbol":"BTC-USD","id":3}"#,
        ),
        (
            "resync",
            r#"{"op":"resync","channel":"book","symbol":"BTC-USD","id":4}"#,
        ),
        (
            "bad_depth",
            r#"{"op":"subscribe","channel":"book","symbol":"BTC-USD","depth":1001}"#,
        ),
        ("unknown_field", r#"{"op":"ping","extra":true}"#),
    ];
    for (name, text) in requests {
        write("md_request", name, text.as_bytes());
    }
}

fn main() {
    client();
    server();
    fix();
    md();
}
