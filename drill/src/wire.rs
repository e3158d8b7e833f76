//! A member's session at one site, whatever protocol it speaks. The failover client
//! ([`crate::failover::FailoverClient`]) decides when to move, what to ask and what to resend;
//! a wire only logs on, sends and receives, in the binary protocol's terms (a FIX wire
//! translates both ways), so members of either protocol fail over by the same rules and are
//! audited the same way.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use engine::AccountId;
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

/// One logged-on session at one site.
pub trait Wire: Sized + Send {
    /// Whether it sends the failover client's amends (a replace that keeps the order's id,
    /// as the binary protocol's does; FIX gives the order a new ClOrdID).
    const AMENDS: bool;
    /// The protocol's name in the drill's report.
    const PROTOCOL: &'static str;

    /// Connects to the site's listener at `addr` and logs on; the session and its account.
    fn logon(
        addr: SocketAddr,
        login: &Login,
    ) -> impl Future<Output = io::Result<(Self, AccountId)>> + Send;

    /// Sends one request.
    fn send(&mut self, message: &ClientMessage) -> impl Future<Output = io::Result<()>> + Send;

    /// The next message from the site, `None` once it closed the session. Cancel-safe: a call
    /// dropped while it waits loses nothing.
    fn recv(&mut self) -> impl Future<Output = io::Result<Option<ServerMessage>>> + Send;
}

impl Wire for BinaryClient {
    const AMENDS: bool = true;
    const PROTOCOL: &'static str = "binary";

    async fn logon(addr: SocketAddr, login: &Login) -> io::Result<(BinaryClient, AccountId)> {
        BinaryClient::logon(addr, &login.token, login.cancel_on_disconnect).await
    }

    async fn send(&mut self, message: &ClientMessage) -> io::Result<()> {
        BinaryClient::send(self, message).await
    }

    async fn recv(&mut self) -> io::Result<Option<ServerMessage>> {
        BinaryClient::recv(self).await
    }
}
