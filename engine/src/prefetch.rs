//! Cache hints: asking the CPU to start loading memory the engine will touch a few commands
//! later (the index slot of the next finished order to forget, the slot the next finished order
//! will be written to), so that the access finds it in cache. A hint changes no behaviour.

/// Cache line size of the targets we run on.
const LINE: usize = 64;

/// Starts loading the `lines` cache lines from `at` into every cache level, without waiting.
/// Any address is allowed (past the end of a vector's length, within its capacity, is the
/// usual case): a prefetch never faults and reads nothing into the program.
#[inline]
pub(crate) fn prefetch<T>(at: *const T, lines: usize) {
    let at = at.cast::<u8>();
    for line in 0..lines {
        let address = at.wrapping_add(line * LINE);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `_mm_prefetch` is a hint: it cannot fault, on any address, and has no
        // observable effect; SSE, which it needs, is part of every x86_64 target.
        #[allow(unsafe_code)]
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(address.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = address;
    }
}
