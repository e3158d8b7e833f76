//! Orders the end-to-end tests send. Included with `#[path]`.

use engine::{OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif};
use gateway::binary::{ClientMessage, NewOrderMsg};

/// A GTC limit buy of `qty` BTC-USD at 100, client order id `id`.
pub fn buy(id: &str, qty: &str) -> ClientMessage {
    ClientMessage::NewOrder(NewOrderMsg {
        cl_ord_id: OrderId::new(id).unwrap(),
        symbol: Symbol::new("BTC-USD").unwrap(),
        side: Side::Buy,
        ord_type: OrdType::Limit,
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::CancelTaker,
        price: Some(Price::parse("100").unwrap()),
        qty: Qty::parse(qty).unwrap(),
    })
}
