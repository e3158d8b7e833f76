//! Memory taken once, up front: fallible reservation (capacities beyond the machine are an
//! error, not an abort) and committing reserved pages before the first command needs them.

use crate::config::ConfigError;

/// An empty vector with room for `count` items, or an error if the allocator refuses.
pub(crate) fn reserve<T>(count: u32) -> Result<Vec<T>, ConfigError> {
    reserve_exact(count as usize)
}

/// [`reserve`] for a count that need not fit in a `u32` (an index's table).
pub(crate) fn reserve_exact<T>(count: usize) -> Result<Vec<T>, ConfigError> {
    let mut items = Vec::new();
    items
        .try_reserve_exact(count)
        .map_err(|_| ConfigError::OutOfMemory {
            bytes: count.saturating_mul(std::mem::size_of::<T>()),
        })?;
    Ok(items)
}

/// Writes `filler` over the spare capacity of `items`, then takes it off again: `items` is as it
/// was, and the pages behind its capacity are mapped. Allocates nothing.
pub(crate) fn commit_capacity<T: Copy>(items: &mut Vec<T>, filler: T) {
    let len = items.len();
    let capacity = items.capacity();
    items.resize(capacity, filler);
    items.truncate(len);
    assert_eq!(items.capacity(), capacity);
}
