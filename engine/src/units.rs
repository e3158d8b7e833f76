//! A symbol's units: its tick and lot, and the exact conversion between the outside's fixed-8
//! numbers (`Price`, `Qty`) and the book's (`Ticks`, `Lots`), by multiplication.

use crate::types::{Lots, Price, Qty, Ticks};

/// A symbol's tick and lot in fixed-8 units: the one place where the book's numbers and the
/// outside's are converted. Ticks and lots only ever come from an exact division of an `i64`
/// price or quantity (here, or from a snapshot checked with `checked_mul`), so converting back
/// cannot overflow.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Units {
    tick: i64,
    lot: i64,
    per_tick: ExactDivisor,
    per_lot: ExactDivisor,
}

impl Units {
    /// The units of a symbol with a positive `tick` and `lot`.
    pub(crate) fn new(tick: Price, lot: Qty) -> Units {
        Units {
            tick: tick.0,
            lot: lot.0,
            per_tick: ExactDivisor::new(tick.0),
            per_lot: ExactDivisor::new(lot.0),
        }
    }

    /// `price` in whole ticks, if it is a positive multiple of the tick.
    #[inline]
    pub(crate) fn ticks(self, price: Price) -> Option<Ticks> {
        self.per_tick
            .quotient(price.0)
            .map(|ticks| Ticks(ticks as i64))
    }

    /// `qty` in whole lots, if it is a positive multiple of the lot.
    #[inline]
    pub(crate) fn lots(self, qty: Qty) -> Option<Lots> {
        self.per_lot.quotient(qty.0).map(Lots)
    }

    #[inline]
    pub(crate) fn price(self, ticks: Ticks) -> Price {
        Price(ticks.0 * self.tick)
    }

    #[inline]
    pub(crate) fn qty(self, lots: Lots) -> Qty {
        Qty(lots.0 as i64 * self.lot)
    }

    /// A notional in ticks × lots as fixed-16 (fixed-8 price times fixed-8 quantity). Exact:
    /// an order's notional is at most its largest price times its total, each below 2^63.
    pub(crate) fn notional(self, ticks_lots: u128) -> u128 {
        ticks_lots * self.tick as u128 * self.lot as u128
    }

    /// A level's total, saturating: a total beyond 64 bits is possible only in absurd books.
    pub(crate) fn total(self, lots: u128) -> Qty {
        Qty(i64::try_from(lots.saturating_mul(self.lot as u128)).unwrap_or(i64::MAX))
    }
}

/// Exact division by a positive divisor `d = 2^shift · odd` without a divide instruction (a
/// 64-bit `idiv` costs tens of cycles, and every order and amend converts a price): `n` is a
/// multiple of `d` exactly when its low `shift` bits are zero and `(n >> shift) · odd⁻¹ mod 2^64`
/// is at most `(2^64 - 1) / odd`, and that product is then the quotient (Granlund and
/// Montgomery, "Division by invariant integers using multiplication", section 9).
#[derive(Clone, Copy, Debug)]
struct ExactDivisor {
    shift: u32,
    /// The inverse of `odd` modulo 2^64.
    inverse: u64,
    /// `u64::MAX / odd`: the largest quotient of an exact division.
    quotient_max: u64,
}

impl ExactDivisor {
    fn new(divisor: i64) -> ExactDivisor {
        assert!(divisor > 0, "a positive divisor");
        let divisor = divisor as u64;
        let shift = divisor.trailing_zeros();
        let odd = divisor >> shift;
        // Newton's iteration doubles the correct low bits: 3 (any odd number is its own
        // inverse modulo 8), 6, 12, 24, 48, 96.
        let mut inverse = odd;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        }
        assert_eq!(odd.wrapping_mul(inverse), 1);
        ExactDivisor {
            shift,
            inverse,
            quotient_max: u64::MAX / odd,
        }
    }

    /// `n / divisor` when `n` is a positive multiple of the divisor.
    #[inline]
    fn quotient(self, n: i64) -> Option<u64> {
        if n <= 0 || n.trailing_zeros() < self.shift {
            return None;
        }
        let quotient = ((n as u64) >> self.shift).wrapping_mul(self.inverse);
        (quotient <= self.quotient_max).then_some(quotient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Division by multiplication answers as `%` and `/` do, for any divisor, on
        /// multiples and non-multiples alike.
        #[test]
        fn exact_division_agrees_with_the_divide_instruction(
            divisor in prop_oneof![1i64..1000, 1i64..=i64::MAX, (0u32..63).prop_map(|k| 1i64 << k)],
            factor in prop_oneof![-3i64..1000, any::<i64>()],
            offset in prop_oneof![Just(0i64), -3i64..3, any::<i64>()],
        ) {
            let divider = ExactDivisor::new(divisor);
            for n in [divisor.wrapping_mul(factor), divisor.wrapping_mul(factor).wrapping_add(offset), factor, offset] {
                let expected = (n > 0 && n % divisor == 0).then(|| (n / divisor) as u64);
                prop_assert_eq!(divider.quotient(n), expected, "{} / {}", n, divisor);
            }
        }
    }
}
