//! Value types with units: the vocabulary of commands, events and the book.
//!
//! Two families of numbers live here. [`Price`] and [`Qty`] are what the outside world speaks:
//! decimals carried as integers of 10^-8 units ("fixed-8"), symbol-independent, so a gateway can
//! build a command without knowing the symbol's tick. [`Ticks`] and [`Lots`] are what the book
//! speaks: whole multiples of the symbol's tick and lot, produced by the engine's own checks.
//! Decimal text is parsed exactly by [`Price::parse`] (a strict parser: `rust_decimal`'s rounds
//! past 28 digits, which would let an off-lot quantity trade) and printed with `rust_decimal`
//! ([`Price::to_decimal`]); nothing inside the engine is a float or a decimal.

use std::fmt;

use rust_decimal::Decimal;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Number of fractional decimal digits carried by [`Price`] and [`Qty`].
pub const FIXED_SCALE_DIGITS: u32 = 8;
/// One whole unit in fixed-8.
pub const FIXED_ONE: i64 = 100_000_000;

/// Nanoseconds of log time. The engine's only clock: it comes in every command.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TimestampNs(pub u64);

/// A member's account. In later issues it owns balances and risk limits.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct AccountId(pub u64);

/// Dense index of a symbol inside one engine, assigned in `add_symbol` order (so it is the
/// same at every replica applying the same log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SymbolId(pub u32);

/// A string that is not a plain decimal number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("is not a plain decimal number (digits, optionally a '.' and more digits, optionally a leading '-')")]
pub struct NotADecimal;

/// Exact fixed-8 units of a plain decimal string; `i64::MIN` (the `INVALID` value) when it is
/// well-formed but has a nonzero digit past the 8th decimal or does not fit.
fn parse_fixed8(text: &str) -> Result<i64, NotADecimal> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
        return Err(NotADecimal);
    }
    let fraction = fraction.unwrap_or("");
    // Accumulate in i128, saturating once it is certainly out of range.
    let limit = i128::from(i64::MAX) + 1;
    let mut units: i128 = 0;
    for b in whole.bytes() {
        units = (units * 10 + i128::from(b - b'0')).min(limit);
    }
    let mut fits = true;
    for (at, b) in fraction.bytes().enumerate() {
        let digit = i128::from(b - b'0');
        if at < FIXED_SCALE_DIGITS as usize {
            units = (units * 10 + digit).min(limit * 10);
        } else if digit != 0 {
            fits = false;
        }
    }
    for _ in fraction.len()..FIXED_SCALE_DIGITS as usize {
        units = (units * 10).min(limit * 10);
    }
    let units = if negative { -units } else { units };
    Ok(match i64::try_from(units) {
        Ok(units) if fits && units != i64::MIN => units,
        _ => i64::MIN,
    })
}

macro_rules! fixed8 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// A value the edge could not represent (more than 8 decimals, or out of range).
            /// It is not positive, so every check that wants a positive value rejects it.
            pub const INVALID: $name = $name(i64::MIN);

            /// Parses a plain decimal string (`-?digits(.digits)?`, nothing else) exactly. A
            /// well-formed number this type cannot hold (more than 8 significant decimals, or
            /// beyond 64 bits) is [`Self::INVALID`], so the engine rejects it in contract order;
            /// anything else is an error. Never rounds.
            pub fn parse(text: &str) -> Result<$name, NotADecimal> {
                parse_fixed8(text).map($name)
            }

            /// The exact decimal value; `min_scale` pads fractional zeros (a symbol's tick or
            /// lot scale), so `3000.5` prints as `3000.50` on a symbol with tick `0.01`.
            pub fn to_decimal(self, min_scale: u32) -> Decimal {
                let mut value = Decimal::new(self.0, FIXED_SCALE_DIGITS).normalize();
                if value.scale() < min_scale {
                    value.rescale(min_scale.min(FIXED_SCALE_DIGITS));
                }
                value
            }

            /// Whether this is a usable positive value.
            pub fn is_positive(self) -> bool {
                self.0 > 0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if *self == $name::INVALID {
                    f.write_str("invalid")
                } else {
                    fmt::Display::fmt(&self.to_decimal(0), f)
                }
            }
        }
    };
}

fixed8!(
    /// A price as a count of 10^-8 units (fixed-8); see the module docs.
    Price
);
fixed8!(
    /// A quantity as a count of 10^-8 units (fixed-8); see the module docs.
    Qty
);

/// A price in whole ticks of its symbol. Always positive on the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ticks(pub i64);

/// A quantity in whole lots of its symbol.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Lots(pub u64);

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// Order type. Stop and iceberg orders will be further variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrdType {
    Limit,
    Market,
}

/// Time in force. GTD (expiry by log time) will be a further variant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tif {
    #[default]
    Gtc,
    Ioc,
    Fok,
}

/// Self-trade prevention: what happens when an order would trade with its own account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stp {
    /// The account trades with itself.
    None,
    /// The incoming order's rest is cancelled and matching stops.
    #[default]
    CancelTaker,
    /// The resting order is cancelled and matching goes on.
    CancelMaker,
    /// The resting order, then the incoming order's rest, are cancelled.
    CancelBoth,
}

/// A symbol's trading status, set by an operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradingStatus {
    /// Orders, amends and cancels.
    #[default]
    Open,
    /// Cancels only: new orders and amends are rejected with `cancel_only`.
    CancelOnly,
}

impl TradingStatus {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TradingStatus::Open => "open",
            TradingStatus::CancelOnly => "cancel_only",
        }
    }
}

/// Where an order stands, as the engine remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Live, nothing filled.
    New,
    /// Live, something filled.
    PartiallyFilled,
    /// Finished with nothing open.
    Filled,
    /// Finished with an open quantity cancelled (whatever was filled before).
    Cancelled,
    /// The id was given up for a new one by an amend (`replaced_by` names it).
    Replaced,
}

impl OrderStatus {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "new",
            OrderStatus::PartiallyFilled => "partially_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Replaced => "replaced",
        }
    }

    /// Whether the order is still live.
    pub fn is_live(self) -> bool {
        matches!(self, OrderStatus::New | OrderStatus::PartiallyFilled)
    }
}

/// Why a name could not be made into a [`Symbol`] or an [`OrderId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("has a character that is not printable ASCII (0x21..=0x7E)")]
    BadChar,
}

macro_rules! inline_name {
    ($(#[$doc:meta])* $name:ident, $bytes:expr, $what:expr) => {
        $(#[$doc])*
        ///
        /// Stored inline, zero-padded, so it is `Copy`, compares as whole words and never
        /// allocates. Only printable ASCII without spaces is accepted.
        #[derive(Clone, Copy, Eq, PartialOrd, Ord)]
        pub struct $name([u8; $bytes]);

        /// Word by word: inlined loads and compares instead of a `bcmp` call.
        impl PartialEq for $name {
            #[inline]
            fn eq(&self, other: &Self) -> bool {
                let (a, b) = (self.words(), other.words());
                a.iter().zip(&b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state);
            }
        }

        impl $name {
            /// Longest accepted name, in bytes.
            pub const MAX_LEN: usize = $bytes;

            /// Validates and stores `text`.
            pub fn new(text: &str) -> Result<Self, NameError> {
                let bytes = text.as_bytes();
                if bytes.is_empty() {
                    return Err(NameError::Empty);
                }
                if bytes.len() > $bytes {
                    return Err(NameError::TooLong { max: $bytes });
                }
                if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
                    return Err(NameError::BadChar);
                }
                let mut stored = [0u8; $bytes];
                stored[..bytes.len()].copy_from_slice(bytes);
                Ok(Self(stored))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                let len = self.0.iter().position(|b| *b == 0).unwrap_or($bytes);
                std::str::from_utf8(&self.0[..len])
                    .expect("names hold printable ASCII by construction")
            }

            /// The stored bytes as little-endian words, for hashing and fast compares.
            #[inline]
            pub(crate) fn words(&self) -> [u64; $bytes / 8] {
                let mut words = [0u64; $bytes / 8];
                for (word, chunk) in words.iter_mut().zip(self.0.chunks_exact(8)) {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(chunk);
                    *word = u64::from_le_bytes(le);
                }
                words
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visit;
                impl de::Visitor<'_> for Visit {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} of 1 to {} printable ASCII bytes", $what, $bytes)
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$name, E> {
                        $name::new(text).map_err(|err| E::custom(format_args!("{} {err}", $what)))
                    }
                }
                deserializer.deserialize_str(Visit)
            }
        }
    };
}

inline_name!(
    /// A symbol name such as `BTC-USD`, up to 16 bytes.
    Symbol,
    16,
    "symbol"
);
inline_name!(
    /// A client order id (FIX ClOrdID), unique per account, up to 40 bytes (a UUID fits).
    OrderId,
    40,
    "order id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed8_parses_exactly_and_marks_what_it_cannot_hold() {
        assert_eq!(Price::parse("100.5"), Ok(Price(10_050_000_000)));
        assert_eq!(Price::parse("3000.50"), Ok(Price(300_050_000_000)));
        assert_eq!(Price::parse("007"), Ok(Price(700_000_000)));
        assert_eq!(Qty::parse("0.00000001"), Ok(Qty(1)));
        assert_eq!(Qty::parse("1.000000000000"), Ok(Qty(100_000_000)));
        assert_eq!(Qty::parse("-2"), Ok(Qty(-200_000_000)));
        assert_eq!(Qty::parse("0"), Ok(Qty(0)));
        // Well-formed, but not representable: never rounded.
        assert_eq!(Qty::parse("0.000000001"), Ok(Qty::INVALID));
        assert_eq!(
            Qty::parse("1.00000000000000000000000000001"),
            Ok(Qty::INVALID)
        );
        assert_eq!(
            Price::parse("99.999999999999999999999999999"),
            Ok(Price::INVALID)
        );
        assert_eq!(Price::parse("92233720368.54775807"), Ok(Price(i64::MAX)));
        assert_eq!(Price::parse("92233720368.54775808"), Ok(Price::INVALID));
        assert_eq!(Price::parse("-92233720368.54775808"), Ok(Price::INVALID));
        assert_eq!(Qty::parse(&"9".repeat(400)), Ok(Qty::INVALID));
        assert!(!Price::INVALID.is_positive());
        // Not plain decimals.
        for bad in [
            "", "-", ".5", "5.", "1e5", "+1", " 1", "1_0", "1.2.3", "0x10", "--1", "١",
        ] {
            assert_eq!(Qty::parse(bad), Err(NotADecimal), "{bad:?}");
        }
    }

    #[test]
    fn fixed8_prints_with_the_symbol_scale() {
        assert_eq!(Price(300_050_000_000).to_decimal(2).to_string(), "3000.50");
        assert_eq!(Price(300_050_000_000).to_decimal(0).to_string(), "3000.5");
        assert_eq!(Qty(50_000_000).to_decimal(3).to_string(), "0.500");
        assert_eq!(Qty::INVALID.to_string(), "invalid");
    }

    #[test]
    fn names_validate_and_round_trip() {
        let id = OrderId::new("0f8c2d1e-7a5b-4c3d-9e8f-123456789abc").unwrap();
        assert_eq!(id.as_str(), "0f8c2d1e-7a5b-4c3d-9e8f-123456789abc");
        assert_eq!(Symbol::new(""), Err(NameError::Empty));
        assert_eq!(
            Symbol::new("A-VERY-LONG-SYMBOL"),
            Err(NameError::TooLong { max: 16 })
        );
        assert_eq!(OrderId::new("a b"), Err(NameError::BadChar));
        assert_eq!(OrderId::new("é"), Err(NameError::BadChar));
        let bytes = bincode::serialize(&id).unwrap();
        assert_eq!(bincode::deserialize::<OrderId>(&bytes).unwrap(), id);
        let bad = bincode::serialize("bad id").unwrap();
        assert!(bincode::deserialize::<OrderId>(&bad).is_err());
    }
}
