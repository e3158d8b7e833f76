//! A local Kafka-protocol broker for development, tests and failover drills: tansu 0.6.0
//! (`scripts/setup` installs it), on a loopback port, with SQLite storage and its log
//! (`tansu.log`) in a directory of its own.
//!
//! tansu does not replicate and reports one broker, so it stands in for the cluster as a
//! whole: stopping it is a whole-Kafka outage. Leader moves and broker failures are exercised
//! with librdkafka's mock cluster instead (`replicator/tests/kafka_mock.rs`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long tansu may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum TansuError {
    #[error("starting tansu (install tansu 0.6.0 with scripts/setup): {0}")]
    Spawn(std::io::Error),
    #[error("tansu did not listen on port {0} within {START_TIMEOUT:?}")]
    NotListening(u16),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A tansu broker this process started; killed when dropped.
pub struct Tansu {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// Where clients are told to connect (a TLS proxy in front): by default the listener.
    advertised: Option<String>,
}

impl Tansu {
    /// Starts a broker on a free loopback port, its database in `dir` (created if missing).
    pub fn start(dir: &Path) -> Result<Tansu, TansuError> {
        Tansu::launch(dir, None)
    }

    /// A broker that tells its clients to connect to `advertised` (`tcp://host:port`: a TLS
    /// proxy in front of it, such as stunnel), listening itself on a loopback port.
    pub fn start_behind(dir: &Path, advertised: &str) -> Result<Tansu, TansuError> {
        Tansu::launch(dir, Some(advertised.to_string()))
    }

    fn launch(dir: &Path, advertised: Option<String>) -> Result<Tansu, TansuError> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        std::fs::create_dir_all(dir)?;
        let mut tansu = Tansu {
            child: None,
            port,
            dir: dir.to_path_buf(),
            advertised,
        };
        tansu.resume()?;
        Ok(tansu)
    }

    /// The loopback port the broker itself listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the broker again after [`Tansu::stop`], on the same port and database.
    pub fn resume(&mut self) -> Result<(), TansuError> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = self.advertised.clone().unwrap_or_else(|| url.clone());
        // Its own log beside its database, to see why it stalls or refuses when it does.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))?;
        let child = Command::new("tansu")
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &advertised])
            // Relative: tansu's SQLite URL is resolved in its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(TansuError::Spawn)?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                self.stop();
                return Err(TansuError::NotListening(self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the broker (its data stays for [`Tansu::resume`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the broker keeps its database.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whole-Kafka outages in drills: the broker killed, then started on its data.
impl crate::LogControl for Tansu {
    fn stop(&mut self) -> anyhow::Result<()> {
        Tansu::stop(self);
        Ok(())
    }

    fn start(&mut self) -> anyhow::Result<()> {
        Ok(self.resume()?)
    }
}
