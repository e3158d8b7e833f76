//! Engine snapshots on disk, each tied to the log position it was taken at.
//!
//! Recovery is "latest snapshot + the log after it": a [`SnapshotStore`] is a directory of
//! snapshot files, [`SnapshotStore::save`] adds one durably and prunes old ones, and
//! [`SnapshotStore::load_latest`] restores the newest one that is intact, skipping (and
//! reporting) any that are not. Falling back to an older snapshot is always correct, only
//! slower: the engine is deterministic, so replaying the longer tail of the log reaches the
//! same state.
//!
//! # Position
//!
//! A snapshot at position `p` is the engine state after applying every log entry *before*
//! `p`, i.e. the caller resumes by applying the log from position `p` on. The store does not
//! interpret the number beyond ordering by it; it is whatever the caller's log calls a
//! position (a journal index, a Kafka offset).
//!
//! # Files
//!
//! One file per snapshot, named `snapshot-{position:020}.snap` (20 decimal digits, zero
//! padded, so names sort like positions). Anything else in the directory is ignored, except
//! `snapshot-{position:020}.snap.partial`: the temporary file of a save, deleted when stale.
//!
//! Content (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `EXSNAPF1` |
//! | 8 | 8 | log position (u64), equal to the one in the file name |
//! | 16 | 8 | length `n` of the engine snapshot (u64) |
//! | 24 | n | the engine snapshot, [`engine::Engine::snapshot`] (itself versioned and checksummed) |
//! | 24 + n | 4 | CRC-32 (IEEE, `crc32fast`) of bytes `0 .. 24 + n` |
//!
//! # Durability
//!
//! A save writes `….snap.partial`, `sync_all`s it, renames it over `….snap` and then syncs the
//! directory, so after a crash a snapshot file either is complete or does not exist under its
//! final name. One process should write to a directory at a time: saves through one
//! [`SnapshotStore`] are serialized, but two stores (or processes) saving into the same
//! directory may delete each other's `.partial` files.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use engine::Engine;

/// The first 8 bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"EXSNAPF1";
/// Bytes before the engine snapshot: magic, position, length.
pub const HEADER_LEN: usize = 8 + 8 + 8;
/// Bytes after the engine snapshot: the CRC-32.
pub const TRAILER_LEN: usize = 4;

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
const PARTIAL_SUFFIX: &str = ".partial";
const POSITION_DIGITS: usize = 20;

/// Why an operation on the snapshot directory failed. Every I/O variant names the path it
/// was working on.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotStoreError {
    /// [`SnapshotStore::open`] was asked to keep no snapshot at all.
    #[error("a snapshot store must keep at least 1 snapshot, got keep = 0")]
    KeepZero,
    /// The snapshot directory could not be created.
    #[error("cannot create snapshot directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    /// The snapshot directory could not be read.
    #[error("cannot list snapshot directory {}: {source}", path.display())]
    ListDir { path: PathBuf, source: io::Error },
    /// The temporary `.partial` file could not be created, written or synced.
    #[error("cannot write snapshot {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// The complete `.partial` file could not be renamed to its final name.
    #[error("cannot rename {} to {}: {source}", from.display(), to.display())]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    /// The directory could not be synced after the rename, so the new name may not survive a
    /// crash.
    #[error("cannot sync snapshot directory {}: {source}", path.display())]
    SyncDir { path: PathBuf, source: io::Error },
    /// The new snapshot is saved and durable, but an older snapshot or a stale `.partial`
    /// file could not be deleted.
    #[error("snapshot saved, but cannot delete old file {}: {source}", path.display())]
    Prune { path: PathBuf, source: io::Error },
}

/// Why one snapshot file is unusable; [`SnapshotStore::load_latest`] skips such a file for an
/// older one and reports this reason in [`Skipped`].
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Unreadable(#[source] io::Error),
    /// The file is shorter than its header says (or than a header).
    #[error("truncated: {len} bytes, {needed} needed")]
    Truncated { len: u64, needed: u64 },
    /// The file has bytes after its checksum.
    #[error("{0} unexpected bytes after the checksum")]
    TrailingBytes(u64),
    /// The file does not start with [`MAGIC`].
    #[error("not a snapshot file (bad magic bytes)")]
    BadMagic,
    /// The CRC-32 does not match the content.
    #[error("checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
    /// The position in the header is not the one in the file name (a renamed or copied file).
    #[error("header says log position {header}, the file name says {expected}")]
    PositionMismatch { header: u64, expected: u64 },
    /// The engine rejected the snapshot bytes.
    #[error("the engine cannot restore it: {0}")]
    Engine(#[source] engine::SnapshotError),
}

/// A restored snapshot.
pub struct Loaded {
    /// The log position of the snapshot: resume applying the log from here.
    pub position: u64,
    /// The restored engine.
    pub engine: Engine,
    /// The file it came from.
    pub path: PathBuf,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("position", &self.position)
            .field("state_hash", &self.engine.state_hash())
            .field("path", &self.path)
            .finish()
    }
}

/// A snapshot file that [`SnapshotStore::load_latest`] passed over, and why.
#[derive(Debug)]
pub struct Skipped {
    /// The position in its file name.
    pub position: u64,
    /// The file.
    pub path: PathBuf,
    /// Why it is unusable.
    pub reason: SnapshotFileError,
}

/// What [`SnapshotStore::load_latest`] found.
#[derive(Debug)]
pub struct LoadOutcome {
    /// The newest usable snapshot, `None` if there is none (replay the log from the start).
    pub loaded: Option<Loaded>,
    /// Every newer snapshot file that was unusable, newest first. Worth logging: it means a
    /// longer replay than expected and possibly a failing disk.
    pub skipped: Vec<Skipped>,
}

/// A directory of engine snapshots. See the module docs for the layout and guarantees.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    keep: usize,
    /// Serializes saves (and their pruning) and loads through this store, so a load never
    /// sees a file vanish under a concurrent prune.
    lock: Mutex<()>,
}

impl SnapshotStore {
    /// Opens the snapshot directory `dir`, creating it (and its parents) if needed. `save`
    /// keeps the newest `keep` snapshots, which must be at least 1.
    pub fn open(dir: &Path, keep: usize) -> Result<SnapshotStore, SnapshotStoreError> {
        if keep == 0 {
            return Err(SnapshotStoreError::KeepZero);
        }
        fs::create_dir_all(dir).map_err(|source| SnapshotStoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
            keep,
            lock: Mutex::new(()),
        })
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many snapshots `save` keeps.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Where the snapshot at `position` lives (whether or not it exists).
    pub fn path_for(&self, position: u64) -> PathBuf {
        self.dir.join(file_name(position))
    }

    /// Saves `engine` as the snapshot at log `position`, durably (see the module docs),
    /// replacing any snapshot already at that position, then prunes: only the newest `keep`
    /// snapshots stay, and stale `.partial` files are deleted. Returns the snapshot's path.
    ///
    /// A [`SnapshotStoreError::Prune`] error means the snapshot itself was saved.
    pub fn save(&self, position: u64, engine: &Engine) -> Result<PathBuf, SnapshotStoreError> {
        self.save_encoded(position, &encode(position, engine))
    }

    /// Saves a snapshot already encoded with [`encode`] at `position` (a node encodes on the
    /// matcher thread, between commands, and writes here on another thread), as [`Self::save`].
    pub fn save_encoded(&self, position: u64, bytes: &[u8]) -> Result<PathBuf, SnapshotStoreError> {
        let _serial = self.exclusive();
        let path = self.path_for(position);
        let partial = self.dir.join(partial_name(position));
        write_synced(&partial, bytes).map_err(|source| SnapshotStoreError::Write {
            path: partial.clone(),
            source,
        })?;
        fs::rename(&partial, &path).map_err(|source| SnapshotStoreError::Rename {
            from: partial.clone(),
            to: path.clone(),
            source,
        })?;
        sync_dir(&self.dir).map_err(|source| SnapshotStoreError::SyncDir {
            path: self.dir.clone(),
            source,
        })?;
        self.prune()?;
        Ok(path)
    }

    /// The snapshot files, newest (highest position) first. Only names of the form
    /// `snapshot-{position:020}.snap` count; their content is not checked here.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, SnapshotStoreError> {
        let mut snapshots: Vec<(u64, PathBuf)> = self
            .scan()?
            .into_iter()
            .filter_map(|(name, path)| match name {
                Name::Snapshot(position) => Some((position, path)),
                Name::Partial(_) => None,
            })
            .collect();
        snapshots.sort_unstable_by_key(|(position, _)| std::cmp::Reverse(*position));
        Ok(snapshots)
    }

    /// Restores the newest usable snapshot. Snapshots are tried newest first; one that cannot
    /// be read, is truncated, has a bad magic, checksum or position, or that the engine
    /// refuses, is recorded in [`LoadOutcome::skipped`] and the one before it is tried.
    /// `loaded` is `None` when no snapshot is usable (or there is none). Only a failure to
    /// list the directory is an error. Never panics, whatever the files hold.
    pub fn load_latest(&self) -> Result<LoadOutcome, SnapshotStoreError> {
        let _serial = self.exclusive();
        let mut skipped = Vec::new();
        for (position, path) in self.list()? {
            let result = fs::read(&path)
                .map_err(SnapshotFileError::Unreadable)
                .and_then(|bytes| decode(&bytes, position));
            match result {
                Ok(engine) => {
                    return Ok(LoadOutcome {
                        loaded: Some(Loaded {
                            position,
                            engine,
                            path,
                        }),
                        skipped,
                    })
                }
                Err(reason) => skipped.push(Skipped {
                    position,
                    path,
                    reason,
                }),
            }
        }
        Ok(LoadOutcome {
            loaded: None,
            skipped,
        })
    }

    /// Holds off other saves and loads through this store. A panic while holding it leaves
    /// nothing half-done that the next caller could trip on, so poisoning is ignored.
    fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Deletes every snapshot but the newest `keep`, and every `.partial` file.
    fn prune(&self) -> Result<(), SnapshotStoreError> {
        let mut snapshots = Vec::new();
        let mut doomed = Vec::new();
        for (name, path) in self.scan()? {
            match name {
                Name::Snapshot(position) => snapshots.push((position, path)),
                Name::Partial(_) => doomed.push(path),
            }
        }
        snapshots.sort_unstable_by_key(|(position, _)| std::cmp::Reverse(*position));
        doomed.extend(snapshots.into_iter().skip(self.keep).map(|(_, path)| path));
        for path in doomed {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(SnapshotStoreError::Prune { path, source }),
            }
        }
        Ok(())
    }

    /// The directory's entries whose names are ours (directories excluded).
    fn scan(&self) -> Result<Vec<(Name, PathBuf)>, SnapshotStoreError> {
        let list_error = |source| SnapshotStoreError::ListDir {
            path: self.dir.clone(),
            source,
        };
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(list_error)? {
            let entry = entry.map_err(list_error)?;
            let Some(name) = entry.file_name().to_str().and_then(parse_name) else {
                continue;
            };
            // A directory with a snapshot's name is not ours; anything else that fails to
            // read is reported when it is read.
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            found.push((name, entry.path()));
        }
        Ok(found)
    }
}

/// The bytes of a snapshot file for `engine` at log `position` (see the module docs).
pub fn encode(position: u64, engine: &Engine) -> Vec<u8> {
    let snapshot = engine.snapshot();
    let mut bytes = Vec::with_capacity(HEADER_LEN + snapshot.len() + TRAILER_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&position.to_le_bytes());
    bytes.extend_from_slice(&(snapshot.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&snapshot);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Checks the bytes of a snapshot file that should be at log `expected_position` and
/// restores its engine. Checks, in order: length, magic, the length field against the file
/// size, the CRC, the position, then everything [`Engine::restore`] checks. Never panics.
pub fn decode(bytes: &[u8], expected_position: u64) -> Result<Engine, SnapshotFileError> {
    let len = bytes.len() as u64;
    let frame = (HEADER_LEN + TRAILER_LEN) as u64;
    if len < frame {
        return Err(SnapshotFileError::Truncated { len, needed: frame });
    }
    if &bytes[..8] != MAGIC {
        return Err(SnapshotFileError::BadMagic);
    }
    let header_position = read_u64(&bytes[8..16]);
    let snapshot_len = read_u64(&bytes[16..24]);
    let needed = snapshot_len.saturating_add(frame);
    if len < needed {
        return Err(SnapshotFileError::Truncated { len, needed });
    }
    if len > needed {
        return Err(SnapshotFileError::TrailingBytes(len - needed));
    }
    // `len == needed`, so the snapshot length fits in `usize`.
    let (content, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let computed = crc32fast::hash(content);
    if stored != computed {
        return Err(SnapshotFileError::Checksum { stored, computed });
    }
    if header_position != expected_position {
        return Err(SnapshotFileError::PositionMismatch {
            header: header_position,
            expected: expected_position,
        });
    }
    Engine::restore(&content[HEADER_LEN..]).map_err(SnapshotFileError::Engine)
}

/// The engine snapshot's format version in the bytes of a snapshot file, if they look like
/// one (the magic and enough bytes); nothing else is checked.
pub fn engine_version(bytes: &[u8]) -> Option<u32> {
    let at = HEADER_LEN + 8;
    let version = bytes.get(at..at + 4)?;
    (bytes.get(..8)? == MAGIC).then(|| u32::from_le_bytes(version.try_into().expect("4 bytes")))
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(bytes);
    u64::from_le_bytes(le)
}

fn file_name(position: u64) -> String {
    format!(
        "{PREFIX}{position:0width$}{SUFFIX}",
        width = POSITION_DIGITS
    )
}

fn partial_name(position: u64) -> String {
    format!("{}{PARTIAL_SUFFIX}", file_name(position))
}

/// A file name of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name {
    Snapshot(u64),
    Partial(u64),
}

fn parse_name(name: &str) -> Option<Name> {
    let (rest, partial) = match name.strip_suffix(PARTIAL_SUFFIX) {
        Some(rest) => (rest, true),
        None => (name, false),
    };
    let digits = rest.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != POSITION_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let position: u64 = digits.parse().ok()?;
    Some(if partial {
        Name::Partial(position)
    } else {
        Name::Snapshot(position)
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename in `dir` durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened as files here; renames are made durable by the OS.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_strictly() {
        assert_eq!(file_name(42), "snapshot-00000000000000000042.snap");
        assert_eq!(parse_name(&file_name(42)), Some(Name::Snapshot(42)));
        assert_eq!(
            parse_name(&file_name(u64::MAX)),
            Some(Name::Snapshot(u64::MAX))
        );
        assert_eq!(parse_name(&partial_name(7)), Some(Name::Partial(7)));
        for foreign in [
            "snapshot-42.snap",
            "snapshot-000000000000000000042.snap",
            "snapshot-0000000000000000004x.snap",
            "snapshot-+0000000000000000042.snap",
            "snapshot-99999999999999999999.snap",
            "snapshot-00000000000000000042.snap.tmp",
            "snapshot-00000000000000000042.snap.partial.partial",
            "Snapshot-00000000000000000042.snap",
            "snapshot-00000000000000000042",
            "README",
            "",
        ] {
            assert_eq!(parse_name(foreign), None, "{foreign:?}");
        }
    }
}
