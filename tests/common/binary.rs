//! What the binary-protocol end-to-end tests share: reading the next message or report, and a
//! runtime to drive the client on. Included with `#[path]` by the tests that speak binary.

use std::time::Duration;

use gateway::binary::{ExecReport, ServerMessage};
use gateway::binary_client::BinaryClient;

/// The next message, failing the test after 10 s.
pub async fn next(client: &mut BinaryClient) -> ServerMessage {
    tokio::time::timeout(Duration::from_secs(10), client.recv())
        .await
        .expect("a message within 10 s")
        .expect("read")
        .expect("the connection is open")
}

/// The next message, which must be an execution report.
pub async fn report(client: &mut BinaryClient) -> ExecReport {
    match next(client).await {
        ServerMessage::ExecutionReport(report) => report,
        other => panic!("expected an execution report, got {other:?}"),
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
