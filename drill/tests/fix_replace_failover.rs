//! The failover client over a scripted wire that speaks as the FIX wire does: a replace gives
//! an order a new id, and a status question about the order's first id is answered under the
//! id it goes by now (FIX's ExecutionReport names the current ClOrdID in 11, the one asked
//! about in 41, and the wire reports it by 11).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use drill::failover::{FailoverClient, FailoverConfig, Outcome};
use drill::wire::{Login, ReplaceAs, Wire};
use engine::{AccountId, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif};
use gateway::binary::{
    exec_type, ord_status, ClientMessage, ExecReport, NewOrderMsg, ServerMessage,
};

/// The one site's memory: the replaces it took (first id, new id), what each session sent,
/// and whether the current session is to close at its next read.
struct Site {
    replaced: Vec<(OrderId, OrderId)>,
    sent: Vec<ClientMessage>,
    close_next: bool,
}

static SITE: Mutex<Site> = Mutex::new(Site {
    replaced: Vec::new(),
    sent: Vec::new(),
    close_next: false,
});

/// A session at the scripted site: it answers test requests, and status questions under the
/// id the order goes by now, as the FIX wire reports them; nothing else.
struct ScriptedFix {
    answers: VecDeque<ServerMessage>,
}

impl Wire for ScriptedFix {
    const REPLACES_IN_PLACE: bool = false;
    const PROTOCOL: &'static str = "fix";

    async fn logon(_addr: SocketAddr, _login: &Login) -> io::Result<(ScriptedFix, AccountId)> {
        let answers = VecDeque::new();
        Ok((ScriptedFix { answers }, AccountId(1)))
    }

    async fn send(&mut self, message: &ClientMessage) -> io::Result<()> {
        let mut site = SITE.lock().unwrap();
        match *message {
            ClientMessage::OrderStatus { cl_ord_id, symbol } => {
                let now = site
                    .replaced
                    .iter()
                    .find(|(first, _)| *first == cl_ord_id)
                    .map_or(cl_ord_id, |(_, new)| *new);
                self.answers
                    .push_back(ServerMessage::ExecutionReport(status(now, symbol)));
            }
            ClientMessage::Heartbeat { test_id } if test_id != 0 => {
                self.answers.push_back(ServerMessage::Heartbeat { test_id });
            }
            _ => {}
        }
        site.sent.push(*message);
        Ok(())
    }

    async fn replace_as(&mut self, replace: &ReplaceAs) -> io::Result<()> {
        let mut site = SITE.lock().unwrap();
        site.replaced.push((replace.order, replace.new_id));
        // Its site goes dark before it answers either the order or the replace.
        site.close_next = true;
        Ok(())
    }

    async fn recv(&mut self) -> io::Result<Option<ServerMessage>> {
        if std::mem::take(&mut SITE.lock().unwrap().close_next) {
            return Ok(None);
        }
        match self.answers.pop_front() {
            Some(answer) => Ok(Some(answer)),
            None => std::future::pending().await,
        }
    }
}

/// A status answer: the order `id` goes by rests on the book, unfilled.
fn status(id: OrderId, symbol: Symbol) -> ExecReport {
    ExecReport {
        seq: 0,
        ts: 0,
        cl_ord_id: id,
        symbol,
        exec_type: exec_type::ORDER_STATUS,
        ord_status: ord_status::NEW,
        side: Side::Buy,
        reason: 0,
        price: Price(100),
        order_qty: Qty(1),
        last_px: Price(0),
        last_qty: Qty(0),
        cum_qty: Qty(0),
        leaves_qty: Qty(1),
        avg_px: Price(0),
    }
}

/// Seen in the 100-fault drill with FIX members (91 ids accepted twice, acknowledgements
/// after 62-72 s): a FIX member replaced a GTC order it had sent but not yet heard back about,
/// its site went dark, and at the next site the status answer about the order came under the
/// replace's id. The client waited for an answer under the first id, asked again at every
/// move, and resent the order once the sites had forgotten it (the dedup window after it
/// finished): it executed twice. A replace that took means the order it replaced is in the
/// log: that answer acknowledges it.
#[test]
fn a_status_answer_under_the_replace_id_acknowledges_the_order_it_replaced() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let site: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let config = FailoverConfig::new(vec![site, site], "token");
        let mut client: FailoverClient<ScriptedFix> =
            FailoverClient::connect(config, 0).await.unwrap();
        let (first, new) = (id("d9-1"), id("r9-1"));
        let symbol = Symbol::new("BTC-USD").unwrap();
        client.submit(gtc(first, symbol)).await.unwrap();
        let replace = ReplaceAs {
            order: first,
            new_id: new,
            symbol,
            price: Some(Price(101)),
            qty: None,
        };
        assert!(client.replace_as(replace).await);
        let acks = client.drain(Duration::from_secs(2)).await;
        assert_eq!(client.failovers().len(), 1, "its site went dark");
        assert_eq!(acks.len(), 1, "{acks:?}");
        assert_eq!(
            (acks[0].cl_ord_id, acks[0].outcome),
            (first, Outcome::Accepted)
        );
        assert_eq!(client.unacknowledged(), 0);
        let resent = SITE
            .lock()
            .unwrap()
            .sent
            .iter()
            .filter(|m| matches!(m, ClientMessage::NewOrder(o) if o.cl_ord_id == first))
            .count();
        assert_eq!(resent, 1, "sent once, never again");
    });
}

fn id(text: &str) -> OrderId {
    OrderId::new(text).unwrap()
}

fn gtc(cl_ord_id: OrderId, symbol: Symbol) -> NewOrderMsg {
    NewOrderMsg {
        cl_ord_id,
        symbol,
        side: Side::Buy,
        ord_type: OrdType::Limit,
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::None,
        price: Some(Price(100)),
        qty: Qty(1),
    }
}
