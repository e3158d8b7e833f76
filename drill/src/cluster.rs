//! The drill's default Kafka cluster: librdkafka's mock cluster in the drill process, one
//! broker per site (racked as the site, broker `k + 1` for site `k`), the commands topic
//! replicated on all three, each broker answering after its site's round-trip time.
//!
//! The drill does the controller's job: when the site holding the partition's leader goes
//! dark, it moves the leadership to the first surviving site's broker (after `election`, the
//! time a real cluster's controller takes to notice: `broker.session.timeout.ms` under KRaft).
//! A site that comes back gets its broker back as a follower.
//!
//! What it cannot model: a round-trip time is the broker's, whoever asks (not per pair of
//! sites), and the mock keeps one copy of each partition, so a follower is never behind.

use std::cell::RefCell;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// The partition the drill trades on.
const PARTITION: i32 = 0;

/// The mock cluster and which of its brokers are up.
pub struct SiteCluster {
    cluster: MockCluster<'static, DefaultProducerContext>,
    topic: String,
    sites: Vec<String>,
    election: Duration,
    state: RefCell<Brokers>,
}

/// Which sites' brokers are up, and which one leads the partition.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Brokers {
    up: Vec<bool>,
    leader: usize,
}

impl Brokers {
    /// The site that should lead once `site` is down: the first surviving one, if any.
    fn successor(&self, site: usize) -> Option<usize> {
        (0..self.up.len()).find(|&s| s != site && self.up[s])
    }
}

impl SiteCluster {
    /// Starts the cluster: a broker per site with its round-trip time, and `topic` with one
    /// partition on all of them, led by the first site's broker.
    pub fn start(
        sites: &[&str],
        rtts: &[Duration],
        topic: &str,
        election: Duration,
    ) -> Result<SiteCluster> {
        if sites.is_empty() || rtts.len() != sites.len() {
            bail!("{} round-trip times for {} sites", rtts.len(), sites.len());
        }
        let count = sites.len() as i32;
        let cluster = MockCluster::new(count).map_err(|e| anyhow!("mock cluster: {e}"))?;
        for (k, (site, rtt)) in sites.iter().zip(rtts).enumerate() {
            let broker = k as i32 + 1;
            cluster
                .broker_rack(broker, site)
                .and_then(|()| cluster.broker_round_trip_time(broker, *rtt))
                .map_err(|e| anyhow!("mock broker {broker}: {e}"))?;
        }
        cluster
            .create_topic(topic, 1, count)
            .and_then(|()| cluster.partition_leader(topic, PARTITION, Some(1)))
            .map_err(|e| anyhow!("mock topic {topic}: {e}"))?;
        // The sites' divergence fences publish and read state hashes there.
        let hashes = replicator::divergence::hashes_topic(topic);
        cluster
            .create_topic(&hashes, 1, count)
            .map_err(|e| anyhow!("mock topic {hashes}: {e}"))?;
        Ok(SiteCluster {
            cluster,
            topic: topic.to_string(),
            sites: sites.iter().map(|s| s.to_string()).collect(),
            election,
            state: RefCell::new(Brokers {
                up: vec![true; sites.len()],
                leader: 0,
            }),
        })
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// The site whose broker leads the partition.
    pub fn leader(&self) -> &str {
        &self.sites[self.state.borrow().leader]
    }

    /// Site `site`'s broker goes dark; if it led the partition, the leadership moves to a
    /// surviving site's broker after the election time. Returns the new leader's site, if the
    /// leadership moved.
    pub fn site_down(&self, site: usize) -> Result<Option<String>> {
        let mut state = self.state.borrow_mut();
        if !state.up[site] {
            return Ok(None);
        }
        self.cluster
            .broker_down(site as i32 + 1)
            .map_err(|e| anyhow!("taking {}'s broker down: {e}", self.sites[site]))?;
        state.up[site] = false;
        if state.leader != site {
            return Ok(None);
        }
        let Some(successor) = state.successor(site) else {
            return Ok(None);
        };
        std::thread::sleep(self.election);
        self.cluster
            .partition_leader(&self.topic, PARTITION, Some(successor as i32 + 1))
            .map_err(|e| anyhow!("moving the leader to {}: {e}", self.sites[successor]))?;
        state.leader = successor;
        Ok(Some(self.sites[successor].clone()))
    }

    /// Site `site`'s broker answers after `rtt` from now on.
    pub fn set_round_trip_time(&self, site: usize, rtt: Duration) -> Result<()> {
        self.cluster
            .broker_round_trip_time(site as i32 + 1, rtt)
            .map_err(|e| anyhow!("{}'s round-trip time: {e}", self.sites[site]))
    }

    /// Site `site`'s broker is back (a follower: the leadership stays where it is).
    pub fn site_up(&self, site: usize) -> Result<()> {
        let mut state = self.state.borrow_mut();
        if state.up[site] {
            return Ok(());
        }
        self.cluster
            .broker_up(site as i32 + 1)
            .map_err(|e| anyhow!("bringing {}'s broker up: {e}", self.sites[site]))?;
        state.up[site] = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leadership_moves_to_the_first_surviving_site() {
        let mut brokers = Brokers {
            up: vec![true, true, true],
            leader: 0,
        };
        assert_eq!(brokers.successor(0), Some(1));
        brokers.up[1] = false;
        assert_eq!(brokers.successor(0), Some(2));
        brokers.up[2] = false;
        assert_eq!(brokers.successor(0), None);
    }

    #[test]
    fn a_dark_leader_site_moves_the_leadership_and_comes_back_a_follower() {
        let sites = ["cloud-a", "cloud-b", "metal"];
        let rtts = [1, 1, 3].map(Duration::from_millis);
        let cluster = SiteCluster::start(&sites, &rtts, "t.commands", Duration::ZERO).unwrap();
        assert!(!cluster.bootstrap().is_empty());
        assert_eq!(cluster.leader(), "cloud-a");
        assert_eq!(cluster.site_down(1).unwrap(), None, "a follower's site");
        assert_eq!(cluster.site_down(0).unwrap().as_deref(), Some("metal"));
        assert_eq!(cluster.leader(), "metal");
        cluster.site_up(0).unwrap();
        cluster.site_up(1).unwrap();
        assert_eq!(cluster.leader(), "metal", "a returning site follows");
        assert_eq!(cluster.site_down(0).unwrap(), None, "no longer the leader");
    }

    #[test]
    fn round_trip_times_must_match_the_sites() {
        let err = SiteCluster::start(&["a", "b"], &[Duration::ZERO], "t", Duration::ZERO)
            .err()
            .unwrap();
        assert!(err.to_string().contains("1 round-trip times for 2 sites"));
    }
}
