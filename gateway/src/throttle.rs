//! The per-session inbound message limit both order-entry protocols enforce.

use std::time::Instant;

/// A token bucket: `rate` per second, one second of burst. The limit is the gateway's own:
/// ironfix's `with_throttle` paces *outbound* messages (and drops a refused plain `send` with a
/// warning), which is not what a member's request rate needs.
pub(crate) struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `rate` per second (at least 1).
    pub(crate) fn new(rate: u32) -> Bucket {
        let rate = f64::from(rate.max(1));
        Bucket {
            rate,
            tokens: rate,
            at: Instant::now(),
        }
    }

    /// Takes one token; `false` when the session is over its rate.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
