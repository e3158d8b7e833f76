//! The gateway's idle clock keeps log time moving while its members' commands are refused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::{AccountId, Command, CommandKind, MassCancel};
use gateway::{Hub, Members, Sequencer, SubmitError};

/// A log cut off for members (every command refused as unavailable) that still takes the
/// site's idle clocks, as a Kafka log does while its leader is slow to answer; it counts them.
struct TakesOnlyClocks(Mutex<u64>);

impl Sequencer for TakesOnlyClocks {
    fn submit(&self, command: Command) -> Result<(), SubmitError> {
        match command.kind {
            CommandKind::Clock => {
                *self.0.lock().unwrap() += 1;
                Ok(())
            }
            _ => Err(SubmitError::Unavailable),
        }
    }
}

/// Seen in the seed scenario's re-run: while a loaded broker was slow, members kept sending
/// and being refused, every refusal counted as the gateway's last submission, so it never
/// sent its idle clock; no site stamped anything for up to 2 s and dead-man's switches fired
/// that late in log time. A refused command is not a submission: the clock goes on.
#[test]
fn refused_commands_do_not_hold_back_the_idle_clock() {
    let log = Arc::new(TakesOnlyClocks(Mutex::new(0)));
    let hub = Hub::new(log.clone(), Members::new(Vec::new()).unwrap(), 0);
    let mass_cancel = CommandKind::MassCancel(MassCancel {
        account: AccountId(1),
        symbol: None,
        session: None,
    });
    let idle = Duration::from_millis(100);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(350) {
        assert_eq!(hub.submit(mass_cancel), Err(SubmitError::Unavailable));
        hub.tick_if_idle(idle);
        std::thread::sleep(Duration::from_millis(5));
    }
    let clocks = *log.0.lock().unwrap();
    assert!((2..=5).contains(&clocks), "{clocks} idle clocks in 350 ms");
}
