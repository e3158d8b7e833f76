//! The Kafka log over mutual TLS (`replicator::security`): a broker reachable only through
//! stunnel (Debian's stunnel4, installed by `scripts/setup`), which requires a client
//! certificate signed by the test's CA, in front of tansu, which advertises the TLS port. A
//! site's clients with the CA and their certificate create the topic, append and read back;
//! a client without a certificate, one that does not trust the broker, and one in plaintext
//! are refused. A missing `stunnel4` fails this test; it never skips it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drill::tansu::Tansu;
use engine::{Command as EngineCommand, CommandKind};
use replicator::kafka::{KafkaAppender, KafkaConfig, KafkaReader};
use replicator::security::{KafkaProtocol, KafkaSecurity};
use replicator::topic::{check_topic, create_topic};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A CA, and certificates it signed for the broker (`localhost`) and a site's client.
struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

fn write_pair(
    dir: &Path,
    name: &str,
    cert: &rcgen::Certificate,
    key: &rcgen::KeyPair,
) -> (PathBuf, PathBuf) {
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Names of their own: a certificate whose subject is its issuer's reads as self-signed.
    let cn = |name: String| {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, name);
        dn
    };
    ca_params.distinguished_name = cn(format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let (ca_file, _) = write_pair(dir, &format!("{name}-ca"), &ca, &ca_key);
    let signed = |names: Vec<String>, file: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.distinguished_name = cn(format!("{name} {file}"));
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        write_pair(dir, &format!("{name}-{file}"), &cert, &key)
    };
    Pki {
        ca: ca_file,
        server: signed(vec!["localhost".into()], "server"),
        client: signed(vec!["cloud-a".into()], "client"),
    }
}

/// stunnel accepting TLS on `accept` (a client certificate from `pki`'s CA required) and
/// forwarding to the broker on `broker`.
struct Stunnel(Child);

impl Stunnel {
    fn start(dir: &Path, pki: &Pki, accept: u16, broker: u16) -> Stunnel {
        let config = dir.join("stunnel.conf");
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\noutput = {log}\n\n[kafka]\naccept = 127.0.0.1:{accept}\n\
                 connect = 127.0.0.1:{broker}\ncert = {cert}\nkey = {key}\nCAfile = {ca}\n\
                 requireCert = yes\nverifyChain = yes\n",
                log = dir.join("stunnel.log").display(),
                cert = pki.server.0.display(),
                key = pki.server.1.display(),
                ca = pki.ca.display(),
            ),
        )
        .unwrap();
        let child = Command::new("stunnel4")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel4 must be installed (scripts/setup); this test needs it");
        let deadline = Instant::now() + TIMEOUT;
        while TcpStream::connect(("127.0.0.1", accept)).is_err() {
            assert!(Instant::now() < deadline, "stunnel never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Stunnel(child)
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(port: u16, security: KafkaSecurity) -> KafkaConfig {
    KafkaConfig {
        allow_unsafe_topic: true,
        request_timeout_ms: 5_000,
        delivery_timeout_ms: 10_000,
        security,
        ..KafkaConfig::new(&format!("localhost:{port}"), "tls.commands", 0)
    }
}

#[test]
fn the_log_works_over_mutual_tls_and_refuses_clients_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "site");
    let accept = drill::sites::free_port().unwrap().port();
    let tansu = Tansu::start_behind(
        &dir.path().join("tansu"),
        &format!("tcp://localhost:{accept}"),
    )
    .unwrap();
    let _stunnel = Stunnel::start(dir.path(), &pki, accept, tansu.port());
    let mutual = KafkaSecurity {
        protocol: KafkaProtocol::Ssl,
        ca_file: Some(pki.ca.clone()),
        cert_file: Some(pki.client.0.clone()),
        key_file: Some(pki.client.1.clone()),
        ..KafkaSecurity::default()
    };
    assert_eq!(mutual.check(), Ok(()));
    let kafka = config(accept, mutual.clone());
    let logs = || {
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap_or_default();
        format!(
            "stunnel:\n{}\ntansu:\n{}",
            read("stunnel.log"),
            read("tansu/tansu.log")
        )
    };
    if let Err(err) = create_topic(&kafka, 1, 1, TIMEOUT) {
        panic!("{err}\n{}", logs());
    }
    let appender = KafkaAppender::new(&kafka).unwrap();
    let sent: Vec<EngineCommand> = (1..=5)
        .map(|n| EngineCommand::new(n, CommandKind::Clock))
        .collect();
    for command in &sent {
        appender.append(command).unwrap();
    }
    appender.flush(TIMEOUT).unwrap();
    let mut reader = KafkaReader::new(&kafka, 0).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut read = Vec::new();
    while read.len() < sent.len() {
        assert!(Instant::now() < deadline, "read {read:?}");
        if let Some((_, command)) = reader.poll(Duration::from_millis(200)).unwrap() {
            read.push(command.kind);
        }
    }
    assert_eq!(read, vec![CommandKind::Clock; 5]);

    // Refused: no client certificate; a CA that did not sign the broker's; plaintext.
    let other = make_pki(dir.path(), "other");
    let refused = [
        KafkaSecurity {
            cert_file: None,
            key_file: None,
            ..mutual.clone()
        },
        KafkaSecurity {
            ca_file: Some(other.ca.clone()),
            ..mutual.clone()
        },
        KafkaSecurity::default(),
    ];
    for security in refused {
        let described = format!("{security:?}");
        let err = check_topic(&config(accept, security), Duration::from_secs(3));
        assert!(err.is_err(), "{described}: {err:?}");
    }
}
