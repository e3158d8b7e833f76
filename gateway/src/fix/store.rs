//! The sessions' persistent state: sequence numbers only.
//!
//! [`CountersStore`] is ironfix's [`FileStore`] with its outbound journal left empty: the
//! counters, the owed-reset marker and the inbound watermark are persisted exactly as
//! `FileStore` persists them (so a gateway restart resumes the sequence numbers), but no frame
//! is filed. This gateway never replays an application message (a ResendRequest is answered
//! with a SequenceReset-GapFill, see `Application::to_app_resend` in the parent module), so a
//! filed frame would only be read back to be thrown away, while the journal would grow with
//! every execution report until the next sequence reset.

use async_trait::async_trait;
use ironfix_core::error::StoreError;
use ironfix_core::message::MsgType;
use ironfix_store::{FileStore, MessageStore, StoredMessage};

/// A [`FileStore`] that keeps the counters and files no frame.
pub struct CountersStore(pub FileStore);

#[async_trait]
impl MessageStore for CountersStore {
    async fn store(
        &self,
        _seq_num: u64,
        _msg_type: &MsgType,
        _message: &[u8],
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn get_range(&self, begin: u64, end: u64) -> Result<Vec<StoredMessage>, StoreError> {
        self.0.get_range(begin, end).await
    }

    async fn get_page(
        &self,
        begin: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.0.get_page(begin, end, limit).await
    }

    async fn file_outbound(
        &self,
        _seq_num: u64,
        _msg_type: &MsgType,
        _message: &[u8],
        next_sender: u64,
    ) -> Result<(), StoreError> {
        self.0.set_next_sender_seq(next_sender).await
    }

    fn next_sender_seq(&self) -> u64 {
        self.0.next_sender_seq()
    }

    fn next_target_seq(&self) -> u64 {
        self.0.next_target_seq()
    }

    async fn set_next_sender_seq(&self, seq: u64) -> Result<(), StoreError> {
        self.0.set_next_sender_seq(seq).await
    }

    async fn set_next_target_seq(&self, seq: u64) -> Result<(), StoreError> {
        self.0.set_next_target_seq(seq).await
    }

    async fn reset(&self) -> Result<(), StoreError> {
        self.0.reset().await
    }

    async fn reset_to(&self, next_sender: u64, next_target: u64) -> Result<(), StoreError> {
        self.0.reset_to(next_sender, next_target).await
    }

    fn reset_owed(&self) -> bool {
        self.0.reset_owed()
    }

    async fn set_reset_owed(&self, owed: bool) -> Result<(), StoreError> {
        self.0.set_reset_owed(owed).await
    }

    fn app_watermark(&self) -> u64 {
        self.0.app_watermark()
    }

    async fn set_app_watermark(&self, watermark: u64) -> Result<(), StoreError> {
        self.0.set_app_watermark(watermark).await
    }

    fn creation_time(&self) -> std::time::SystemTime {
        self.0.creation_time()
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        self.0.refresh().await
    }
}
