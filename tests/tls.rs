//! Every member-facing listener over TLS (`[tls]`, `gateway::tls`): a node with a certificate
//! serves binary order entry, FIX and HTTPS, and a member that trusts the certificate trades.
//! Refused cleanly, with nothing applied and the listener still serving: a plaintext client on
//! the TLS port, a client that does not trust the certificate, a wrong token over TLS. A node
//! refuses to start with an expired certificate, a key that is not the certificate's, or
//! neither `[tls]` nor `allow_plaintext`.

#[path = "common/orders.rs"]
mod orders;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gateway::binary::{self, exec_type, Check, ClientMessage, ServerMessage};
use node::{Node, NodeConfig, TlsSection};
use orders::buy;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "tls-member-token-0001";

/// A self-signed certificate for `localhost` valid from `from` to `to` (years), and its key,
/// written as PEM to `dir`; a second key too, that goes with no certificate.
fn certificate(dir: &Path, name: &str, (from, to): (i32, i32)) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(to, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

/// A production-like site: TLS, no plaintext, the member in a hashed members file.
fn config(dir: &Path, tls: Option<(PathBuf, PathBuf)>) -> NodeConfig {
    let members = dir.join("members.toml");
    let digest = gateway::members::token_digest(TOKEN);
    let entry = format!("[[members]]\nname = \"m\"\naccount = 7\ntoken_sha256 = \"{digest}\"\n");
    std::fs::write(&members, entry).unwrap();
    let mut config = NodeConfig::for_tests("tls", &dir.join("data"), Vec::new());
    config.members_file = Some(members);
    config.listen.http = Some(drill::sites::free_port().unwrap());
    config.listen.fix = Some(drill::sites::free_port().unwrap());
    config.allow_plaintext = false;
    config.tls = tls.map(|(cert_file, key_file)| TlsSection {
        cert_file,
        key_file,
    });
    config
}

/// A TLS client that trusts the certificate in `cert_file` (none: trusts nothing).
fn connector(cert_file: Option<&Path>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = cert_file {
        for cert in CertificateDer::pem_file_iter(path).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, message: &ClientMessage) {
    let mut out = Vec::new();
    binary::encode_client(message, &mut out);
    stream.write_all(&out).await.unwrap();
}

/// The next server message, or `None` when the server closed the connection.
async fn recv<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<ServerMessage> {
    loop {
        if let Ok(Check::Frame(len)) = binary::check(buf) {
            let message = binary::decode_server(&buf[..len]).unwrap();
            buf.drain(..len);
            return Some(message);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn logon(token: &str) -> ClientMessage {
    let mut padded = [0u8; 32];
    padded[..token.len()].copy_from_slice(token.as_bytes());
    ClientMessage::Logon {
        token: padded,
        heartbeat_secs: 30,
        cancel_on_disconnect: false,
    }
}

/// Logs on over TLS with `token` and places `id`; the answers.
async fn trade(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    token: &str,
    id: &str,
) -> Vec<ServerMessage> {
    let mut stream = tls_connect(addr, connector).await.unwrap();
    let mut buf = Vec::new();
    send(&mut stream, &logon(token)).await;
    let mut answers = vec![recv(&mut stream, &mut buf).await.unwrap()];
    if matches!(answers[0], ServerMessage::LogonAck { .. }) {
        send(&mut stream, &buy(id, "1")).await;
        answers.extend(recv(&mut stream, &mut buf).await);
    }
    answers
}

/// The member's orders, as a mass status over TLS answers.
async fn open_orders(addr: SocketAddr, connector: &tokio_rustls::TlsConnector) -> Vec<String> {
    let mut stream = tls_connect(addr, connector).await.unwrap();
    let mut buf = Vec::new();
    send(&mut stream, &logon(TOKEN)).await;
    recv(&mut stream, &mut buf).await.unwrap();
    send(&mut stream, &ClientMessage::MassStatus { symbol: None }).await;
    let mut orders = Vec::new();
    loop {
        match recv(&mut stream, &mut buf).await.unwrap() {
            ServerMessage::ExecutionReport(report) => orders.push(report.cl_ord_id.to_string()),
            ServerMessage::MassStatusReport { .. } => return orders,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn members_trade_over_tls_and_what_is_not_tls_or_not_trusted_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "site", (2020, 2100));
    let site = Node::start(config(dir.path(), Some((cert.clone(), key)))).unwrap();
    let trusted = connector(Some(&cert));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let binary = site.binary_addr();
        let answers = trade(binary, &trusted, TOKEN, "o1").await;
        assert!(
            matches!(answers[0], ServerMessage::LogonAck { .. }),
            "{answers:?}"
        );
        let ServerMessage::ExecutionReport(ack) = &answers[1] else {
            panic!("{answers:?}");
        };
        assert_eq!(ack.exec_type, exec_type::NEW);

        // A plaintext client on the TLS port: its logon is not a TLS hello; it is dropped.
        let mut plain = TcpStream::connect(binary).await.unwrap();
        send(&mut plain, &logon(TOKEN)).await;
        send(&mut plain, &buy("o2", "1")).await;
        let mut buf = Vec::new();
        let answer = tokio::time::timeout(Duration::from_secs(15), recv(&mut plain, &mut buf));
        assert_eq!(answer.await.unwrap(), None);

        // A client that does not trust the certificate gives up in the handshake.
        assert!(tls_connect(binary, &connector(None)).await.is_err());
        // A wrong token over TLS is logged out, as in plaintext.
        let answers = trade(binary, &trusted, "not-a-member-token", "o3").await;
        assert!(
            matches!(answers[0], ServerMessage::Logout { .. }),
            "{answers:?}"
        );

        // FIX and HTTP(S) on the same certificate.
        assert!(tls_connect(site.fix_addr().unwrap(), &trusted)
            .await
            .is_ok());
        let mut https = tls_connect(site.http_addr().unwrap(), &trusted)
            .await
            .unwrap();
        https
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        https.read_to_string(&mut answer).await.ok();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let mut plain_http = TcpStream::connect(site.http_addr().unwrap()).await.unwrap();
        plain_http
            .write_all(b"GET /health HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut nothing = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(15),
            plain_http.read_to_end(&mut nothing),
        );
        assert!(read.await.unwrap().is_err() || !nothing.starts_with(b"HTTP/1.1 200"));

        // The listener still serves, and of what was sent only o1 was applied.
        assert_eq!(open_orders(binary, &trusted).await, ["o1"]);
    });
    site.shutdown().unwrap();
}

#[test]
fn a_node_refuses_to_start_on_an_expired_certificate_a_foreign_key_or_no_tls_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let (expired, expired_key) = certificate(dir.path(), "expired", (2020, 2021));
    let err = Node::start(config(dir.path(), Some((expired, expired_key))))
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("the certificate expired"),
        "{err:#}"
    );

    let (cert, _) = certificate(dir.path(), "site", (2020, 2100));
    let (_, other_key) = certificate(dir.path(), "other", (2020, 2100));
    let err = Node::start(config(dir.path(), Some((cert, other_key))))
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("does not go with the certificate"),
        "{err:#}"
    );

    let err = Node::start(config(dir.path(), None)).err().unwrap();
    assert!(
        format!("{err:#}").contains("allow_plaintext = true"),
        "{err:#}"
    );
}
