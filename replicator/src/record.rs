//! The journal's record framing.
//!
//! ```text
//! len u32 LE | crc u32 LE | position u64 LE | synced_through u64 LE | payload (len bytes)
//! ```
//!
//! `payload` is the bincode encoding of one `engine::Command`. `crc` (CRC-32) covers `len`,
//! `position`, `synced_through` and the payload. `synced_through` is the journal's durable
//! position when the record was written: every record before it had been fsynced. Recovery uses
//! it to tell a torn tail (never acknowledged, safe to cut) from a damaged record that had been
//! acknowledged (refuse to start).
//!
//! A frame with an empty payload is a *sync mark*, not a command: it takes no position, and says
//! "durable through `position`" (`synced_through == position`). The writer appends one, fsynced,
//! when it closes and after an idle sync, so that every acknowledged record has a witness.

use engine::Command;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 24;
/// Largest payload accepted when reading; a command encodes to about 100 bytes.
pub const PAYLOAD_MAX: usize = 64 * 1024;

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub crc: u32,
    pub position: u64,
    pub synced_through: u64,
}

impl Header {
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        Header {
            len: u32_at(0),
            crc: u32_at(4),
            position: u64_at(8),
            synced_through: u64_at(16),
        }
    }
}

/// CRC of a record's covered fields.
pub fn checksum(len: u32, position: u64, synced_through: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(&position.to_le_bytes());
    hasher.update(&synced_through.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends the framed record of `command` at `position` to `out`.
pub fn encode(out: &mut Vec<u8>, position: u64, synced_through: u64, command: &Command) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    bincode::serialize_into(&mut *out, command).expect("commands always encode");
    let len = (out.len() - start - HEADER_LEN) as u32;
    let crc = checksum(len, position, synced_through, &out[start + HEADER_LEN..]);
    let header = &mut out[start..start + HEADER_LEN];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    header[8..16].copy_from_slice(&position.to_le_bytes());
    header[16..24].copy_from_slice(&synced_through.to_le_bytes());
}

/// Appends a sync mark: durable through `position`.
pub fn encode_mark(out: &mut Vec<u8>, position: u64) {
    let crc = checksum(0, position, position, &[]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
}

/// Why bytes are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Fewer bytes than the header or the declared payload.
    Short,
    /// Declared payload larger than `PAYLOAD_MAX`.
    TooLong(u32),
    Checksum,
    /// A valid record, but not at the position expected there.
    Position {
        expected: u64,
        found: u64,
    },
    /// A valid frame whose payload is not a command.
    Payload(String),
    /// A valid frame holding a kind of command a newer binary wrote.
    Newer(String),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Short => f.write_str("record cut short"),
            Invalid::TooLong(len) => write!(f, "record declares {len} payload bytes"),
            Invalid::Checksum => f.write_str("checksum mismatch"),
            Invalid::Position { expected, found } => {
                write!(
                    f,
                    "record at position {found} where {expected} was expected"
                )
            }
            Invalid::Payload(reason) => write!(f, "payload is not a command: {reason}"),
            Invalid::Newer(reason) => write!(f, "{reason}: this log needs a newer binary"),
        }
    }
}

/// A frame that passed its checksum: header and where its payload is.
pub struct Frame<'a> {
    pub header: Header,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Bytes this record takes.
    pub fn size(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Whether this is a sync mark rather than a command.
    pub fn is_mark(&self) -> bool {
        self.payload.is_empty()
    }
}

/// The frame at the start of `bytes`, if its length and checksum hold.
pub fn frame(bytes: &[u8]) -> Result<Frame<'_>, Invalid> {
    let header: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(Invalid::Short)?;
    let header = Header::parse(header);
    if header.len as usize > PAYLOAD_MAX {
        return Err(Invalid::TooLong(header.len));
    }
    let payload = bytes
        .get(HEADER_LEN..HEADER_LEN + header.len as usize)
        .ok_or(Invalid::Short)?;
    if checksum(header.len, header.position, header.synced_through, payload) != header.crc {
        return Err(Invalid::Checksum);
    }
    Ok(Frame { header, payload })
}

/// Decodes a checked frame's command.
pub fn command(frame: &Frame<'_>) -> Result<Command, Invalid> {
    engine::decode_command(frame.payload).map_err(|err| match err {
        err @ engine::DecodeError::NewerKind(_) => Invalid::Newer(err.to_string()),
        engine::DecodeError::Malformed(reason) => Invalid::Payload(reason),
    })
}
