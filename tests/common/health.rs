//! Asking a node's `/health` over plain HTTP/1.0, for the tests that start nodes. Included
//! with `#[path]`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `GET path` on `http`: the status code and body.
pub fn http_get(http: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(http).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// Waits up to `within` for `/health` to answer `code` with `status`; the last body. A node
/// still starting (not listening yet) is asked again.
pub fn wait_health(http: SocketAddr, code: u16, status: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if TcpStream::connect(http).is_ok() {
            let (got, body) = http_get(http, "/health");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            if got == code && json["status"] == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "no {code} {status} within {within:?}: {body}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "no answer on {http} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
