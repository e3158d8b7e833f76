//! What members and sites say to each other in the simulator: the binary protocol's requests
//! and answers, as values (the wire's encoding is tested elsewhere; here what matters is which
//! answer a site gives and when).

use engine::{NewOrder, OrderId, Qty};
use gateway::{GatewayReason, Report, ToSession};

/// A member's request to the site it is logged on at.
#[derive(Clone, Debug)]
pub enum Req {
    /// Opens a session; `cancel_on_disconnect` arms a dead-man's switch on the log.
    Logon {
        cancel_on_disconnect: bool,
    },
    /// A new order (the site puts the session's account and log session on it).
    New(NewOrder),
    /// A new order sent again under its id (the binary protocol's resend flag), first sent
    /// `age_ms` ago by the member's clock.
    Resend {
        new: NewOrder,
        age_ms: u64,
    },
    Cancel(OrderId),
    /// A replace in place: the order's new total quantity.
    Amend {
        id: OrderId,
        qty: Qty,
    },
    /// Cancels every order of the account.
    MassCancel,
    Status(OrderId),
    MassStatus,
    /// A test request: answered at once.
    Heartbeat,
    /// The member closes the connection (it leaves for another site): the site ends the
    /// session cleanly.
    Bye,
}

/// A site's message to one of its sessions.
#[derive(Clone, Debug)]
pub enum Msg {
    LogonOk,
    /// The connection closed (the site's process died, or it ended the session).
    Closed,
    /// What the desk sent the session's account, in log order.
    Session(ToSession),
    /// A new order the site refused before the log (a rejected report with the reason).
    Refused {
        id: OrderId,
        reason: GatewayReason,
    },
    /// A cancel, amend, mass cancel, status or mass status the site refused before the log
    /// (a session reject).
    SessionRefused(GatewayReason),
    /// The answer to a status request: `None` is "unknown order".
    Status {
        id: OrderId,
        report: Option<Report>,
    },
    /// The answer to a mass status request.
    MassStatus(Vec<Report>),
    Heartbeat,
}
