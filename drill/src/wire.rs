//! A member's session at one site, whatever protocol it speaks. The failover client
//! ([`crate::failover::FailoverClient`]) decides when to move, what to ask and what to resend;
//! a wire only logs on, sends and receives, in the binary protocol's terms (a FIX wire
//! translates both ways), so members of either protocol fail over by the same rules and are
//! audited the same way.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use engine::{AccountId, OrderId, Price, Qty, Symbol};
use gateway::binary::{ClientMessage, ServerMessage};
use gateway::binary_client::BinaryClient;

/// Who logs on: the member's name (FIX SenderCompID), its token, its account, and whether the
/// session cancels its orders when it ends.
#[derive(Clone, Debug)]
pub struct Login {
    pub name: String,
    pub token: String,
    pub account: AccountId,
    pub cancel_on_disconnect: bool,
}

/// FIX's replace: the order `order` goes by `new_id` from then on, at the new price or
/// total quantity.
#[derive(Clone, Copy, Debug)]
pub struct ReplaceAs {
    pub order: OrderId,
    pub new_id: OrderId,
    pub symbol: Symbol,
    pub price: Option<Price>,
    pub qty: Option<Qty>,
}

/// One logged-on session at one site.
pub trait Wire: Sized + Send {
    /// Whether the protocol replaces an order in place, keeping its id
    /// ([`ClientMessage::Replace`], the binary protocol's), or gives it a new one
    /// ([`Wire::replace_as`], FIX's).
    const REPLACES_IN_PLACE: bool;
    /// The protocol's name in the drill's report.
    const PROTOCOL: &'static str;

    /// Connects to the site's listener at `addr` and logs on; the session and its account.
    fn logon(
        addr: SocketAddr,
        login: &Login,
    ) -> impl Future<Output = io::Result<(Self, AccountId)>> + Send;

    /// Sends one request.
    fn send(&mut self, message: &ClientMessage) -> impl Future<Output = io::Result<()>> + Send;

    /// Sends FIX's replace (refused where the protocol replaces in place).
    fn replace_as(&mut self, replace: &ReplaceAs) -> impl Future<Output = io::Result<()>> + Send;

    /// The next message from the site, `None` once it closed the session. Cancel-safe: a call
    /// dropped while it waits loses nothing.
    fn recv(&mut self) -> impl Future<Output = io::Result<Option<ServerMessage>>> + Send;
}

impl Wire for BinaryClient {
    const REPLACES_IN_PLACE: bool = true;
    const PROTOCOL: &'static str = "binary";

    async fn logon(addr: SocketAddr, login: &Login) -> io::Result<(BinaryClient, AccountId)> {
        BinaryClient::logon(addr, &login.token, login.cancel_on_disconnect).await
    }

    async fn send(&mut self, message: &ClientMessage) -> io::Result<()> {
        BinaryClient::send(self, message).await
    }

    async fn replace_as(&mut self, replace: &ReplaceAs) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "the binary protocol replaces {} in place",
                replace.order.as_str()
            ),
        ))
    }

    async fn recv(&mut self) -> io::Result<Option<ServerMessage>> {
        BinaryClient::recv(self).await
    }
}
