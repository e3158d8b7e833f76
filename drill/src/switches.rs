//! The dead-man's switches in the log's history: when each fired against its deadline, and
//! whose orders it cancelled.
//!
//! The engine's clock is the largest `ts` it has seen, and a switch fires before the first
//! command that brings the clock to its deadline. So a switch fires late (in log time) only
//! when the log has a gap after the deadline: either no site stamped anything (not even an
//! idle `clock`), as when the gateways refused their own clocks during a stall, which is
//! `late`; or a site did stamp a command in time and the log held it (the producer and the
//! broker: a whole-Kafka outage, or a broker too busy to append), which is the log's delay,
//! counted apart. A log that takes the broker's append time tells them apart: each record
//! keeps the time its site stamped it with.
//! A switch's cancels (reason `expired`) must hit only the orders its own session entered.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use engine::{AccountId, CancelReason, Command, CommandKind, Event, EventKind, OrderId};
use serde::Serialize;

/// What the audit found about the switches.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CodCheck {
    /// Switches that fired (deadline reached without a refresh).
    pub fired: u64,
    /// Of those, fired more than one clock interval after their deadline (log time): must
    /// be 0.
    pub late: u64,
    /// The latest any fired after its deadline, milliseconds of log time.
    pub late_max_ms: u64,
    /// Fired late because the whole log was down past their deadline: nothing could be
    /// applied meanwhile, and they fired before anything else once it was back. Not `late`.
    pub held_by_outage: u64,
    /// Fired late because the log held a command a site had stamped between the deadline
    /// and the allowed slack (the broker appended nothing meanwhile: the switch fires at the
    /// first record after its deadline): the log's delay, as in an outage. Not `late`.
    pub held_by_log: u64,
    /// Orders a switch cancelled that another session entered: must be 0.
    pub wrong_session: u64,
    /// A few of either, described.
    pub examples: Vec<String>,
}

/// Follows the switches through a replay, one command at a time.
#[derive(Default)]
pub(crate) struct SwitchWatch {
    clock: u64,
    /// Armed switches' deadlines by (account, session).
    armed: BTreeMap<(AccountId, u64), u64>,
    /// The session each order was entered by (amends and replaces keep it).
    sessions: HashMap<(AccountId, OrderId), u64>,
    slack_ns: u64,
    /// The longest the log may hold a command a site stamped (the producers' delivery
    /// timeout): a late switch is judged `late` only once the log is this far past it
    /// without showing a command stamped in time.
    hold_max_ns: u64,
    /// Whole-log outages (log-time nanoseconds, from, to).
    outages: Vec<(u64, u64)>,
    /// Switches that fired past the slack, until the log shows whether it held a command
    /// stamped in time.
    suspects: Vec<Suspect>,
    check: CodCheck,
}

/// A switch that fired late: `late` unless a command appended after it (`fired`), within
/// the log's longest hold, had been stamped by its site between `deadline` and the slack.
#[derive(Clone, Copy, Debug)]
struct Suspect {
    switch: (AccountId, u64),
    deadline: u64,
    fired: u64,
}

impl SwitchWatch {
    /// A switch may fire up to `clock_every` after its deadline, or later if the whole log
    /// was down for part of that time (`outages`), or held a command a site stamped in time
    /// (for up to `hold_max`, the producers' delivery timeout).
    pub(crate) fn new(
        clock_every: Duration,
        hold_max: Duration,
        outages: &[(u64, u64)],
    ) -> SwitchWatch {
        SwitchWatch {
            slack_ns: clock_every.as_nanos() as u64,
            hold_max_ns: hold_max.as_nanos() as u64,
            outages: outages.to_vec(),
            ..SwitchWatch::default()
        }
    }

    /// Takes in `command` (stamped by its site at `stamped`) and the events the engine made
    /// of it.
    pub(crate) fn apply(&mut self, command: &Command, stamped: u64, events: &[Event]) {
        self.clock = self.clock.max(command.ts.0);
        let due = self.fire_due();
        self.judge(command.ts.0, stamped);
        // Whose order it is: the session of the copy the engine accepted (a later session's
        // resend of the same id is refused as a duplicate and changes nothing).
        if let CommandKind::New(new) = &command.kind {
            let order = (new.account, new.order_id);
            let accepted = |e: &Event| {
                matches!(e.kind, EventKind::Accepted { account, order_id, .. }
                    if (account, order_id) == order)
            };
            if events.iter().any(accepted) {
                self.sessions.insert(order, new.session);
            }
        }
        for event in events {
            self.event(&event.kind, &due);
        }
    }

    pub(crate) fn finish(mut self) -> CodCheck {
        for suspect in std::mem::take(&mut self.suspects) {
            self.late(suspect);
        }
        self.check
    }

    /// A command the log appended at `ts`, stamped by its site at `stamped`: a suspect it
    /// shows the log held (stamped in time for the switch) was held by the log; one it
    /// comes more than the log's longest hold after was late.
    fn judge(&mut self, ts: u64, stamped: u64) {
        let slack = self.slack_ns;
        for suspect in std::mem::take(&mut self.suspects) {
            if ts > suspect.fired + self.hold_max_ns.max(slack) {
                self.late(suspect);
            } else if (suspect.deadline..=suspect.deadline + slack).contains(&stamped) {
                self.check.held_by_log += 1;
            } else {
                self.suspects.push(suspect);
            }
        }
    }

    fn late(&mut self, suspect: Suspect) {
        let Suspect {
            switch,
            deadline,
            fired,
        } = suspect;
        self.check.late += 1;
        self.example(format!(
            "account {} session {:x}: fired {} ms after its deadline ({} UTC, log time)",
            switch.0 .0,
            switch.1,
            (fired - deadline) / 1_000_000,
            time_of_day(deadline)
        ));
    }

    /// The switches the clock has reached: they fire before the command. Returns them.
    fn fire_due(&mut self) -> BTreeSet<(AccountId, u64)> {
        let due: BTreeSet<(AccountId, u64)> = self
            .armed
            .iter()
            .filter(|(_, deadline)| **deadline <= self.clock)
            .map(|(switch, _)| *switch)
            .collect();
        for switch in &due {
            let deadline = self.armed.remove(switch).unwrap_or(self.clock);
            let late_ns = self.clock - deadline;
            self.check.fired += 1;
            self.check.late_max_ms = self.check.late_max_ms.max(late_ns / 1_000_000);
            let held = |(from, to): &(u64, u64)| *from < self.clock && deadline < *to;
            if late_ns > self.slack_ns && self.outages.iter().any(held) {
                self.check.held_by_outage += 1;
            } else if late_ns > self.slack_ns {
                self.suspects.push(Suspect {
                    switch: *switch,
                    deadline,
                    fired: self.clock,
                });
            }
        }
        due
    }

    fn event(&mut self, event: &EventKind, due: &BTreeSet<(AccountId, u64)>) {
        match *event {
            EventKind::CancelAfter {
                account,
                session,
                deadline,
            } if deadline.0 > 0 => {
                self.armed.insert((account, session), deadline.0);
            }
            EventKind::CancelAfter {
                account, session, ..
            } => {
                self.armed.remove(&(account, session));
            }
            EventKind::Amended {
                account,
                order_id,
                new_order_id: Some(new_id),
                ..
            } => {
                if let Some(session) = self.sessions.get(&(account, order_id)).copied() {
                    self.sessions.insert((account, new_id), session);
                }
            }
            EventKind::Cancelled {
                account,
                order_id,
                reason: CancelReason::Expired,
                ..
            } => {
                let session = self.sessions.get(&(account, order_id)).copied();
                if !session.is_some_and(|s| due.contains(&(account, s))) {
                    self.check.wrong_session += 1;
                    self.example(format!(
                        "account {} order {}: expired, entered by session {session:x?}",
                        account.0,
                        order_id.as_str()
                    ));
                }
            }
            _ => {}
        }
    }

    fn example(&mut self, text: String) {
        if self.check.examples.len() < 10 {
            self.check.examples.push(text);
        }
    }
}

/// `ns` after the epoch as a time of day, `HH:MM:SS.mmm` (to find a late switch in a drill's
/// timeline and logs).
fn time_of_day(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let (s, ms) = (ms / 1000, ms % 1000);
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use engine::{
        AddSymbol, CancelAfter, Engine, EngineConfig, NewOrder, OrdType, Price, Qty, Side, Stp,
        Symbol, Tif, TimestampNs,
    };

    use super::*;

    #[test]
    fn a_late_switch_says_when_its_deadline_was() {
        // 2026-12-07 05:29:03.250 UTC.
        let ns = (1_796_621_343_250u64) * 1_000_000;
        assert_eq!(time_of_day(ns), "05:29:03.250");
    }

    const SECOND: u64 = 1_000_000_000;
    const ACCOUNT: AccountId = AccountId(5);

    fn at(ts: u64, kind: CommandKind) -> Command {
        Command {
            ts: TimestampNs(ts),
            kind,
        }
    }

    fn quote(id: &str, session: u64) -> CommandKind {
        CommandKind::New(NewOrder {
            account: ACCOUNT,
            order_id: OrderId::new(id).unwrap(),
            symbol: Symbol::new("BTC-USD").unwrap(),
            side: Side::Buy,
            ord_type: OrdType::Limit,
            price: Some(Price(100)),
            qty: Qty(1),
            tif: Tif::Gtc,
            post_only: false,
            stp: Stp::CancelTaker,
            session,
        })
    }

    fn arm(session: u64, timeout_s: u64) -> CommandKind {
        CommandKind::CancelAfter(CancelAfter {
            account: ACCOUNT,
            session,
            timeout_ns: timeout_s * SECOND,
        })
    }

    /// Replays `log` through a real engine, watching its switches (clock interval 500 ms).
    fn watch(log: &[Command]) -> CodCheck {
        let mut engine = Engine::new(EngineConfig::default()).unwrap();
        let mut watch = SwitchWatch::new(Duration::from_millis(500), Duration::ZERO, &[]);
        let mut events = Vec::new();
        for command in log {
            events.clear();
            engine.apply(command, &mut events);
            watch.apply(command, command.ts.0, &events);
        }
        watch.finish()
    }

    fn listing() -> Command {
        at(
            0,
            CommandKind::AddSymbol(AddSymbol {
                symbol: Symbol::new("BTC-USD").unwrap(),
                tick: Price(1),
                lot: Qty(1),
            }),
        )
    }

    /// A switch armed for 3 s fires at the first command at or past its deadline: on time
    /// while the sites' clocks keep log time moving, late when the log has a gap after the
    /// deadline (the check must be able to fail).
    #[test]
    fn a_switch_is_late_only_when_the_log_has_a_gap_after_its_deadline() {
        let mut log = vec![listing(), at(SECOND, arm(1, 3)), at(SECOND, quote("a", 1))];
        log.extend((3..=8).map(|half| at(half * SECOND / 2, CommandKind::Clock)));
        let check = watch(&log);
        assert_eq!((check.fired, check.late, check.wrong_session), (1, 0, 0));
        assert_eq!(
            check.late_max_ms, 0,
            "fired at the clock tick on its deadline"
        );

        log.push(at(5 * SECOND, arm(2, 3)));
        log.push(at(5 * SECOND, quote("b", 2)));
        log.push(at(9 * SECOND, CommandKind::Clock)); // nothing from 5 s to 9 s
        let check = watch(&log);
        assert_eq!((check.fired, check.late, check.late_max_ms), (2, 1, 1000));
        assert_eq!(check.examples.len(), 1, "{:?}", check.examples);

        // The same gap while the whole log was down (6 s to 8.5 s): held, not late.
        let mut engine = Engine::new(EngineConfig::default()).unwrap();
        let mut watch = SwitchWatch::new(
            Duration::from_millis(500),
            Duration::ZERO,
            &[(6 * SECOND, 17 * SECOND / 2)],
        );
        let mut events = Vec::new();
        for command in &log {
            events.clear();
            engine.apply(command, &mut events);
            watch.apply(command, command.ts.0, &events);
        }
        let check = watch.finish();
        assert_eq!((check.fired, check.late, check.held_by_outage), (2, 0, 1));
    }

    /// Replays `log` (each command with the time its site stamped it) through a real
    /// engine, watching its switches (clock interval 500 ms).
    /// The switches of `log` (each command with its site's stamp) on a log that holds a
    /// command for up to `hold_max`.
    fn watch_stamped(log: &[(Command, u64)], hold_max: Duration) -> CodCheck {
        let mut engine = Engine::new(EngineConfig::default()).unwrap();
        let mut watch = SwitchWatch::new(Duration::from_millis(500), hold_max, &[]);
        let mut events = Vec::new();
        for (command, stamped) in log {
            events.clear();
            engine.apply(command, &mut events);
            watch.apply(command, *stamped, &events);
        }
        watch.finish()
    }

    /// Seen in the seed scenario on tansu: while the broker served a returning site's
    /// backlog it appended nothing for 0.56 s, and two switches fired that late in log time
    /// although the sites had stamped commands past their deadlines in time. A command the
    /// log held, stamped between the deadline and the slack and appended within the log's
    /// longest hold after the switch fired, makes it the log's delay; anything else is late.
    /// (The simulator's slow log held such commands 0.5-3 s: judged within the slack only,
    /// those switches were called late.)
    #[test]
    fn a_switch_late_because_the_log_held_a_command_stamped_in_time_is_the_logs_delay() {
        let ms = SECOND / 1_000;
        // Armed at 1 s for 3 s (deadline 4 s); log time moves every 500 ms until 3.5 s.
        let mut before: Vec<(Command, u64)> =
            [listing(), at(SECOND, arm(1, 3)), at(SECOND, quote("a", 1))]
                .into_iter()
                .chain((3..=7).map(|half| at(half * SECOND / 2, CommandKind::Clock)))
                .map(|c| (c, c.ts.0))
                .collect();
        let clock = |ts: u64, stamped: u64| (at(ts, CommandKind::Clock), stamped);
        let cases = [
            // Appended at 5 s, stamped at 4.2 s: held by the log.
            (vec![clock(5_000 * ms, 4_200 * ms)], (0, 1)),
            // Stamped at 4.8 s, past the slack: nobody stamped in time.
            (vec![clock(5_000 * ms, 4_800 * ms)], (1, 0)),
            // The first after the gap was stamped before the deadline; the next, appended
            // within the slack, at 4.3 s: held.
            (
                vec![clock(5_000 * ms, 3_900 * ms), clock(5_200 * ms, 4_300 * ms)],
                (0, 1),
            ),
            // The same, appended 2.6 s after the switch fired: within the log's hold.
            (
                vec![clock(5_000 * ms, 3_900 * ms), clock(7_600 * ms, 4_300 * ms)],
                (0, 1),
            ),
            // Appended 5.6 s after: longer than the log can hold a command.
            (
                vec![
                    clock(5_000 * ms, 3_900 * ms),
                    clock(10_600 * ms, 4_300 * ms),
                ],
                (1, 0),
            ),
        ];
        for (after, (late, held)) in cases {
            let len = before.len();
            before.extend(after.iter().copied());
            let check = watch_stamped(&before, Duration::from_secs(5));
            before.truncate(len);
            assert_eq!(check.fired, 1);
            assert_eq!((check.late, check.held_by_log), (late, held), "{after:?}");
        }
    }

    /// A refreshed or disarmed switch does not fire, and a switch's cancels of orders another
    /// session entered are counted (here two sessions of the member share an id, which the
    /// gateways' random session ids make all but impossible).
    #[test]
    fn refreshes_and_disarms_hold_a_switch_and_another_sessions_orders_are_flagged() {
        let log = vec![
            listing(),
            at(SECOND, arm(1, 3)),
            at(SECOND, quote("a", 1)),
            at(3 * SECOND, arm(1, 3)),
            at(5 * SECOND, arm(1, 0)),
            at(9 * SECOND, CommandKind::Clock),
        ];
        let check = watch(&log);
        assert_eq!((check.fired, check.late), (0, 0));

        let mut watch = SwitchWatch::new(Duration::from_millis(500), Duration::ZERO, &[]);
        let accepted = Event {
            seq: 0,
            ts: TimestampNs(SECOND),
            kind: EventKind::Accepted {
                account: ACCOUNT,
                order_id: OrderId::new("mine").unwrap(),
                symbol: Symbol::new("BTC-USD").unwrap(),
                side: Side::Buy,
                price: Some(Price(100)),
                qty: Qty(1),
                number: 0,
            },
        };
        watch.apply(&at(SECOND, quote("mine", 7)), SECOND, &[accepted]);
        let expired = Event {
            seq: 0,
            ts: TimestampNs(4 * SECOND),
            kind: EventKind::Cancelled {
                account: ACCOUNT,
                order_id: OrderId::new("mine").unwrap(),
                symbol: Symbol::new("BTC-USD").unwrap(),
                reason: CancelReason::Expired,
                qty: Qty(1),
            },
        };
        watch.apply(&at(4 * SECOND, CommandKind::Clock), 4 * SECOND, &[expired]);
        assert_eq!(watch.finish().wrong_session, 1);
    }

    /// Seen in a 300 s mixed drill: a quoter's order, resent after a move by its new session
    /// with the same id, was refused as a duplicate (it stays the first session's), but the
    /// check took the refused copy's session for the order's; when the first session's
    /// switch cancelled it, the check counted 2 orders cancelled by another session's switch.
    #[test]
    fn a_duplicate_copy_from_a_later_session_does_not_change_whose_order_it_is() {
        let log = vec![
            listing(),
            at(SECOND, arm(1, 3)),
            at(SECOND, quote("a", 1)),
            at(2 * SECOND, arm(2, 3)),
            at(2 * SECOND, quote("a", 2)), // refused: duplicate_order_id
            at(9 * SECOND / 2, arm(2, 3)),
            at(9 * SECOND / 2, CommandKind::Clock),
        ];
        let check = watch(&log);
        assert_eq!((check.fired, check.late), (1, 0), "session 1's switch");
        assert_eq!(check.wrong_session, 0, "{:?}", check.examples);
    }
}
