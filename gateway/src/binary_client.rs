//! A binary order-entry client: what the load generator, the drills and the tests speak.

use std::io;
use std::net::SocketAddr;

use engine::AccountId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::binary::{self, Check, ClientMessage, ServerMessage};

/// The sending half of a connection.
pub struct ClientWriter {
    write: OwnedWriteHalf,
    out: Vec<u8>,
}

/// The receiving half of a connection.
pub struct ClientReader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
    at: usize,
}

/// A connected binary session.
pub struct BinaryClient {
    pub writer: ClientWriter,
    pub reader: ClientReader,
}

fn invalid(err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}

impl BinaryClient {
    /// Connects (without logging on).
    pub async fn connect(addr: SocketAddr) -> io::Result<BinaryClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        Ok(BinaryClient {
            writer: ClientWriter {
                write,
                out: Vec::with_capacity(64 * 1024),
            },
            reader: ClientReader {
                read,
                buf: Vec::with_capacity(64 * 1024),
                at: 0,
            },
        })
    }

    /// Connects and logs on with `token`; returns the session and its account.
    pub async fn logon(
        addr: SocketAddr,
        token: &str,
        cancel_on_disconnect: bool,
    ) -> io::Result<(BinaryClient, AccountId)> {
        let mut client = BinaryClient::connect(addr).await?;
        let mut padded = [0u8; 32];
        let len = token.len().min(32);
        padded[..len].copy_from_slice(&token.as_bytes()[..len]);
        client
            .writer
            .send(&ClientMessage::Logon {
                token: padded,
                heartbeat_secs: 30,
                cancel_on_disconnect,
            })
            .await?;
        match client.reader.recv().await? {
            Some(ServerMessage::LogonAck { account, .. }) => Ok((client, account)),
            other => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("logon refused: {other:?}"),
            )),
        }
    }

    pub async fn send(&mut self, message: &ClientMessage) -> io::Result<()> {
        self.writer.send(message).await
    }

    pub async fn recv(&mut self) -> io::Result<Option<ServerMessage>> {
        self.reader.recv().await
    }
}

impl ClientWriter {
    /// Sends one message.
    pub async fn send(&mut self, message: &ClientMessage) -> io::Result<()> {
        self.queue(message);
        self.flush().await
    }

    /// Queues a message for the next [`ClientWriter::flush`].
    pub fn queue(&mut self, message: &ClientMessage) {
        binary::encode_client(message, &mut self.out);
    }

    /// Sends what is queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.write.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Sends raw bytes (tests of bad input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write.write_all(bytes).await
    }
}

impl ClientReader {
    /// The next message, or `None` when the server closed the connection.
    ///
    /// Cancel-safe: a call dropped while waiting (a `select!` or a timeout) loses nothing;
    /// bytes already read stay buffered for the next call.
    pub async fn recv(&mut self) -> io::Result<Option<ServerMessage>> {
        loop {
            match binary::check(&self.buf[self.at..]).map_err(invalid)? {
                Check::Frame(len) => {
                    let frame = &self.buf[self.at..self.at + len];
                    self.at += len;
                    return binary::decode_server(frame).map(Some).map_err(invalid);
                }
                Check::Incomplete => {
                    self.buf.drain(..self.at);
                    self.at = 0;
                    self.buf.reserve(64 * 1024);
                    // `read_buf` fills spare capacity and grows the length only by what it
                    // read, in the poll that read it: nothing to undo if this is dropped.
                    let n = self.read.read_buf(&mut self.buf).await?;
                    if n == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A `recv` cancelled while half a frame has arrived loses nothing: the next `recv`
    /// returns the whole frame (the failover client reads under timeouts).
    #[tokio::test]
    async fn a_cancelled_recv_keeps_the_bytes_it_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = BinaryClient::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let message = ServerMessage::Heartbeat { test_id: 42 };
        let mut frame = Vec::new();
        binary::encode_server(&message, &mut frame);
        let (head, tail) = frame.split_at(5);

        server.write_all(head).await.unwrap();
        let cancelled =
            tokio::time::timeout(std::time::Duration::from_millis(50), client.recv()).await;
        assert!(cancelled.is_err(), "half a frame is not a message");
        server.write_all(tail).await.unwrap();
        let got = client.recv().await.unwrap();
        assert_eq!(got, Some(message));
    }
}
