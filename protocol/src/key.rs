//! Input hashes and operation keys.
//!
//! ```text
//! key = BLAKE3 derive_key("upcache v1 operation key", input_hash (32 raw bytes) ‖ canonical_operation)
//! ```
//!
//! Both are 32 bytes and travel as 64 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use crate::operation::Operation;

/// The BLAKE3 key-derivation context of operation keys.
pub const KEY_CONTEXT: &str = "upcache v1 operation key";

/// A 32-byte value written as 64 hex digits on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hexadecimal digits")]
pub struct HexError;

fn parse_hex32(s: &str) -> Result<[u8; 32], HexError> {
    if s.len() != 64 {
        return Err(HexError);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| HexError)?;
    Ok(out)
}

macro_rules! hex32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// Lowercase hex, as on the wire.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }
        impl FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, HexError> {
                parse_hex32(s).map(Self)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex32!(
    /// BLAKE3-256 of an input's bytes.
    InputHash
);
hex32!(
    /// The key of an (input, operation) pair.
    Key
);

impl InputHash {
    /// Hashes bytes held in memory.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

impl From<blake3::Hash> for InputHash {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl Key {
    /// Derives the key of `operation` applied to the input hashing to `input`.
    pub fn derive(input: &InputHash, operation: &Operation) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(KEY_CONTEXT);
        hasher.update(input.as_bytes());
        hasher.update(operation.canonical().as_bytes());
        Self(*hasher.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let h = InputHash::of(b"abc");
        assert_eq!(h.to_hex().parse::<InputHash>().unwrap(), h);
        assert!("zz".parse::<InputHash>().is_err());
        assert!(h.to_hex()[..63].parse::<InputHash>().is_err());
        let upper = h.to_hex().to_uppercase();
        assert_eq!(
            upper.parse::<InputHash>().unwrap(),
            h,
            "hex is case-insensitive on input"
        );
    }

    #[test]
    fn derive_matches_the_documented_construction() {
        let op = Operation::parse(&serde_json::json!({"op": "identity"})).unwrap();
        let input = InputHash::of(b"hello");
        let mut material = input.as_bytes().to_vec();
        material.extend_from_slice(op.canonical().as_bytes());
        assert_eq!(
            Key::derive(&input, &op).0,
            blake3::derive_key(KEY_CONTEXT, &material)
        );
    }
}
