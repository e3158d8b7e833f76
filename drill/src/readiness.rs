//! How each site spent the drill, as its `/health` said: ready (`ok`), `catching_up`,
//! `clock_skew`, `unavailable` (cut off from its log), `failed`, or not answering (down, frozen, isolated
//! from the drill). A thread asks every site every [`EVERY`]; the report gives each site's
//! seconds in each state and the fraction of the run it was ready to take orders.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How often every site is asked.
const EVERY: Duration = Duration::from_millis(250);
/// How long one answer may take (a frozen site's never comes).
const ANSWER_WITHIN: Duration = Duration::from_millis(200);

/// One site's time by state, in seconds (each sample counts for the time to the next).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SiteReadiness {
    pub site: String,
    pub ok_s: f64,
    pub catching_up_s: f64,
    pub clock_skew_s: f64,
    pub unavailable_s: f64,
    pub failed_s: f64,
    /// No answer within 200 ms: down, frozen, or cut off from the drill.
    pub no_answer_s: f64,
    /// `ok_s` over the whole.
    pub ready_fraction: f64,
    /// One letter a second from the start, the worst status asked in it: `o` ok, `c`
    /// catching up, `s` clock skew, `u` unavailable, `f` failed, `-` no answer (for the
    /// timeline).
    pub by_second: String,
}

/// A status's letter in [`SiteReadiness::by_second`], in order from best to worst.
const LETTERS: [u8; 6] = [b'o', b'c', b's', b'u', b'f', b'-'];

fn letter(status: Option<&str>) -> u8 {
    match status {
        Some("ok") => b'o',
        Some("catching_up") => b'c',
        Some("clock_skew") => b's',
        Some("unavailable") => b'u',
        Some(_) => b'f',
        None => b'-',
    }
}

impl SiteReadiness {
    /// The status asked in second `second` of the run.
    fn mark(&mut self, second: usize, status: Option<&str>) {
        let mut letters = std::mem::take(&mut self.by_second).into_bytes();
        if letters.len() <= second {
            letters.resize(second + 1, b'o');
        }
        let rank = |l: u8| LETTERS.iter().position(|x| *x == l).unwrap_or(0);
        let new = letter(status);
        if rank(new) > rank(letters[second]) {
            letters[second] = new;
        }
        self.by_second = String::from_utf8(letters).unwrap_or_default();
    }

    fn add(&mut self, status: Option<&str>, seconds: f64) {
        let bucket = match status {
            Some("ok") => &mut self.ok_s,
            Some("catching_up") => &mut self.catching_up_s,
            Some("clock_skew") => &mut self.clock_skew_s,
            Some("unavailable") => &mut self.unavailable_s,
            Some(_) => &mut self.failed_s,
            None => &mut self.no_answer_s,
        };
        *bucket += seconds;
    }

    fn finish(mut self) -> SiteReadiness {
        let total = self.ok_s
            + self.catching_up_s
            + self.clock_skew_s
            + self.unavailable_s
            + self.failed_s
            + self.no_answer_s;
        self.ready_fraction = if total > 0.0 { self.ok_s / total } else { 0.0 };
        self
    }
}

/// The thread asking the sites.
pub(crate) struct ReadinessWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<SiteReadiness>>,
}

impl ReadinessWatch {
    pub(crate) fn start(names: &[String], https: &[SocketAddr]) -> std::io::Result<ReadinessWatch> {
        let stop = Arc::new(AtomicBool::new(false));
        let (names, https, stopping) = (names.to_vec(), https.to_vec(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("readiness".into())
            .spawn(move || watch(&names, &https, &stopping))?;
        Ok(ReadinessWatch { stop, thread })
    }

    /// Stops asking; each site's time by state.
    pub(crate) fn finish(self) -> Vec<SiteReadiness> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

fn watch(names: &[String], https: &[SocketAddr], stop: &AtomicBool) -> Vec<SiteReadiness> {
    let agent = crate::http_agent(ANSWER_WITHIN);
    let mut sites: Vec<SiteReadiness> = names
        .iter()
        .map(|name| SiteReadiness {
            site: name.clone(),
            ..SiteReadiness::default()
        })
        .collect();
    let started = Instant::now();
    let mut last: Vec<(Instant, Option<String>)> = https
        .iter()
        .map(|http| (Instant::now(), status(&agent, *http)))
        .collect();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(EVERY);
        for ((site, http), (at, was)) in sites.iter_mut().zip(https).zip(&mut last) {
            let now = Instant::now();
            site.add(was.as_deref(), now.duration_since(*at).as_secs_f64());
            site.mark(
                at.duration_since(started).as_secs() as usize,
                was.as_deref(),
            );
            (*at, *was) = (now, status(&agent, *http));
        }
    }
    sites.into_iter().map(SiteReadiness::finish).collect()
}

/// The `status` of a site's `/health`, if it answers in time.
fn status(agent: &ureq::Agent, http: SocketAddr) -> Option<String> {
    let body = crate::health_body(agent, http)?;
    Some(body.get("status")?.as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_counted_by_state_and_ready_is_ok_over_the_whole() {
        let mut site = SiteReadiness::default();
        site.add(Some("ok"), 6.0);
        site.add(Some("catching_up"), 1.0);
        site.add(Some("unavailable"), 1.0);
        site.add(Some("failed"), 1.0);
        site.add(None, 1.0);
        let site = site.finish();
        assert_eq!(
            (site.ok_s, site.no_answer_s, site.failed_s),
            (6.0, 1.0, 1.0)
        );
        assert!((site.ready_fraction - 0.6).abs() < 1e-9);
    }

    #[test]
    fn each_second_keeps_its_worst_status() {
        let mut site = SiteReadiness::default();
        site.mark(0, Some("ok"));
        site.mark(2, Some("catching_up"));
        site.mark(2, Some("ok"));
        site.mark(3, None);
        site.mark(3, Some("unavailable"));
        assert_eq!(site.by_second, "ooc-");
    }
}
