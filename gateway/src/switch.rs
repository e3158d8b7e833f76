//! Cancel-on-disconnect that survives the site: each session's dead-man's switch lives on the
//! log, where every site's engine keeps it.
//!
//! A session that opted into cancel-on-disconnect arms the engine's switch of its (account,
//! session) at logon with [`COD_TIMEOUT`] and refreshes it every [`COD_REFRESH`] while it lives.
//! A clean end (logout, disconnect, gateway shutdown) cancels the session's orders at once, by
//! session, and disarms the switch. If the site dies or loses the log instead, nobody refreshes:
//! the switch fires at every site that still applies the log, within the timeout plus one
//! `clock` interval (idle gateways send `clock`, see [`crate::hub::Hub::tick_if_idle`]), and
//! it cancels only the orders that session entered, never those of the member's next session
//! (the session id is part of each order).

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{AccountId, CancelAfter, CommandKind, MassCancel};
use tokio::sync::watch;

use crate::desk::SubmitError;
use crate::hub::Hub;

/// How long a session's orders outlive its last refresh when its site goes dark.
pub const COD_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a live session refreshes its switch: a third of the timeout, so two refreshes in a
/// row may be lost (a busy log, a slow broker) before it fires.
pub const COD_REFRESH: Duration = Duration::from_secs(1);

/// A session id for the log: random and non-zero, so unique across sites and restarts (two
/// sessions share one with probability 2^-64 per pair). Session 0 is left to commands that
/// no session entered (replays, operators).
pub fn new_session_id() -> u64 {
    loop {
        let id = getrandom::u64().expect("the operating system's random source");
        if id != 0 {
            return id;
        }
    }
}

fn cancel_after(account: AccountId, session: u64, timeout: Duration) -> CommandKind {
    CommandKind::CancelAfter(CancelAfter {
        account,
        session,
        timeout_ns: u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX),
    })
}

/// A session's armed switch, refreshed by a task on the current tokio runtime until it ends.
pub struct DeadMan {
    hub: Arc<Hub>,
    account: AccountId,
    session: u64,
    stop: watch::Sender<bool>,
    lost: watch::Receiver<bool>,
}

/// How long the log may refuse a session's refreshes before the session is told its switch is
/// about to fire (or has fired) on the log: the timeout less one refresh interval, so the
/// member hears of it by the time the other sites cancel its orders, and can move.
pub const COD_LOST_AFTER: Duration = COD_TIMEOUT.saturating_sub(COD_REFRESH);

impl DeadMan {
    /// Arms the switch of (`account`, `session`) and starts refreshing it. A refresh the log
    /// refuses is retried at the next tick; the switch fires if none gets through in time,
    /// and [`DeadMan::lost`] turns true once refreshes have been refused for
    /// [`COD_LOST_AFTER`] (the site has lost the log).
    pub fn arm(hub: Arc<Hub>, account: AccountId, session: u64) -> DeadMan {
        let (stop, mut stopped) = watch::channel(false);
        let (lost_tx, lost) = watch::channel(false);
        let refresher = hub.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(COD_REFRESH);
            let mut refreshed = Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        match refresher.submit(cancel_after(account, session, COD_TIMEOUT)) {
                            Ok(()) => refreshed = Instant::now(),
                            Err(_) if refreshed.elapsed() >= COD_LOST_AFTER => {
                                let _ = lost_tx.send(true);
                                return;
                            }
                            Err(_) => {}
                        }
                    }
                    _ = stopped.changed() => return,
                }
            }
        });
        DeadMan {
            hub,
            account,
            session,
            stop,
            lost,
        }
    }

    /// Turns true when the log has refused the session's refreshes for [`COD_LOST_AFTER`]:
    /// the switch fires on the log (or already has) while this site cannot say so.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Stops refreshing (the member manages the switch itself from now on, or the session
    /// ends). The switch stays armed until it fires or is disarmed.
    pub fn stop_refreshing(&self) {
        let _ = self.stop.send(true);
    }

    /// A clean end: stops refreshing, cancels the session's orders at once and disarms the
    /// switch. If the log refuses the cancel, the switch, no longer refreshed, fires within
    /// [`COD_TIMEOUT`] anyway.
    pub fn end(self) -> Result<(), SubmitError> {
        self.stop_refreshing();
        let cancelled = self.hub.submit(CommandKind::MassCancel(MassCancel {
            account: self.account,
            symbol: None,
            session: Some(self.session),
        }));
        if cancelled.is_ok() {
            let _ = self
                .hub
                .submit(cancel_after(self.account, self.session, Duration::ZERO));
        }
        cancelled
    }
}
