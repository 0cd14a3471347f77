//! Key material: generating key values and hashing them for storage.
//!
//! A database should never hold API key values, only their [`KeyHash`] (SHA-256): a leaked table
//! then gives an attacker nothing to present. A presented value is hashed once per store lookup
//! (not per request: the layer caches answers), and found by its hash.
//!
//! ```
//! use tower_usage_plans::keys::{self, KeyHash};
//!
//! let secret = keys::generate();                    // 40 characters, base62, from the OS CSPRNG
//! assert_eq!(secret.expose().len(), 40);
//! let stored = KeyHash::of(secret.expose()).to_hex(); // what the database keeps
//! assert_eq!(stored.len(), 64);
//! assert_eq!(KeyHash::from_hex(&stored).unwrap(), KeyHash::of(secret.expose()));
//! ```

use crate::error::ConfigError;
use crate::model::{KeySecret, MAX_KEY_LEN, MIN_KEY_LEN};
use sha2::{Digest, Sha256};
use std::fmt;

/// Length of generated key values (API Gateway's generated keys have 40 characters).
pub const GENERATED_KEY_LEN: usize = 40;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new random key value: [`GENERATED_KEY_LEN`] base62 characters (about 238 bits) from the
/// operating system's CSPRNG.
///
/// # Panics
///
/// If the operating system has no random source (`getrandom` fails), which no supported platform
/// does once booted: a key must never be made from a weaker source.
#[must_use]
pub fn generate() -> KeySecret {
    match generate_len(GENERATED_KEY_LEN) {
        Ok(secret) => secret,
        Err(e) => panic!("cannot generate an API key: {e}"),
    }
}

/// A new random key value of `len` base62 characters (20 to 128) from the OS CSPRNG. Each
/// character is uniform (rejection sampling, no modulo bias).
pub fn generate_len(len: usize) -> Result<KeySecret, ConfigError> {
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&len) {
        return Err(ConfigError::invalid("len", format!("must be {MIN_KEY_LEN} to {MAX_KEY_LEN}, got {len}")));
    }
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf)
            .map_err(|e| ConfigError::invalid("len", format!("the OS random source failed: {e}")))?;
        // 62 * 4 = 248: bytes below 248 map uniformly onto the alphabet.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == len {
                break;
            }
            out.push(char::from(BASE62[usize::from(*b % 62)]));
        }
    }
    KeySecret::new(out)
}

/// Length of ids from [`generate_id`] (API Gateway's API key ids have 10 characters).
pub const GENERATED_ID_LEN: usize = 10;

const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A new random id for a key or a plan, like API Gateway's (`"3hjkv9q0ml"`):
/// [`GENERATED_ID_LEN`] lowercase letters and digits, each uniform, from the OS CSPRNG.
///
/// An id is not a secret; it is random so that ids from different sources (a file, an import,
/// an admin call) do not collide: two of 36^10 (about 3.7 * 10^15) meet with odds under 10^-7
/// among 20,000 ids. Callers that must be sure (e.g. [`Config::with_imported_keys`]) check anyway.
///
/// ```
/// let id = tower_usage_plans::keys::generate_id();
/// assert_eq!(id.len(), 10);
/// assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
/// ```
///
/// # Panics
///
/// If the operating system has no random source (`getrandom` fails), as [`generate`].
///
/// [`Config::with_imported_keys`]: crate::Config::with_imported_keys
#[must_use]
pub fn generate_id() -> String {
    let mut out = String::with_capacity(GENERATED_ID_LEN);
    let mut buf = [0u8; 16];
    while out.len() < GENERATED_ID_LEN {
        if let Err(e) = getrandom::fill(&mut buf) {
            panic!("cannot generate an id: the OS random source failed: {e}");
        }
        // 36 * 7 = 252: bytes below 252 map uniformly onto the alphabet.
        for b in buf.iter().filter(|b| **b < 252) {
            if out.len() == GENERATED_ID_LEN {
                break;
            }
            out.push(char::from(BASE36[usize::from(*b % 36)]));
        }
    }
    out
}

/// The SHA-256 of a key value: what a store keeps instead of the value.
///
/// `Debug` and `Display` show the hex digest (a hash is not a secret: it cannot be presented).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Hashes a presented or generated key value.
    #[must_use]
    pub fn of(value: &str) -> Self {
        Self(Sha256::digest(value.as_bytes()).into())
    }

    /// The digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A hash from its 32 bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Lowercase hex, 64 characters (the form the SQL store keeps).
    #[must_use]
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(hex: &str) -> Result<Self, ConfigError> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(ConfigError::invalid("hash", format!("must be 64 hex characters, got {}", bytes.len())));
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else {
                return Err(ConfigError::invalid("hash", "must contain only hex digits"));
            };
            out[i] = hi << 4 | lo;
        }
        Ok(Self(out))
    }
}

impl std::str::FromStr for KeyHash {
    type Err = ConfigError;

    /// [`KeyHash::from_hex`].
    fn from_str(hex: &str) -> Result<Self, Self::Err> {
        Self::from_hex(hex)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_keys_are_base62_of_the_right_length_and_distinct() {
        let keys: HashSet<String> = (0..1000).map(|_| generate().expose().to_owned()).collect();
        assert_eq!(keys.len(), 1000);
        assert!(keys.iter().all(|k| k.len() == GENERATED_KEY_LEN && k.bytes().all(|b| b.is_ascii_alphanumeric())));
        assert_eq!(generate_len(128).unwrap().expose().len(), 128);
        assert!(generate_len(19).is_err());
        assert!(generate_len(129).is_err());
    }

    #[test]
    fn every_character_is_used_about_equally() {
        let mut counts = [0u32; 62];
        for _ in 0..500 {
            for b in generate().expose().bytes() {
                counts[BASE62.iter().position(|c| *c == b).unwrap()] += 1;
            }
        }
        // 20,000 draws over 62 symbols: ~322 each; a modulo bias or a missing symbol shows far outside.
        assert!(counts.iter().all(|c| (200..450).contains(c)), "{counts:?}");
    }

    #[test]
    fn generated_ids_are_ten_lowercase_alphanumerics_covering_the_alphabet() {
        let ids: Vec<String> = (0..2000).map(|_| generate_id()).collect();
        assert!(
            ids.iter()
                .all(|id| id.len() == GENERATED_ID_LEN
                    && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        );
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        let mut counts = [0u32; 36];
        for b in ids.iter().flat_map(|id| id.bytes()) {
            counts[BASE36.iter().position(|c| *c == b).unwrap()] += 1;
        }
        // 20,000 draws over 36 symbols: ~556 each; a modulo bias or a missing symbol shows far outside.
        assert!(counts.iter().all(|c| (420..700).contains(c)), "{counts:?}");
    }

    #[test]
    fn hash_is_sha256_and_round_trips_through_hex() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        let h = KeyHash::of("abc");
        assert_eq!(h.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(KeyHash::from_hex(&h.to_hex().to_uppercase()).unwrap(), h);
        assert!(KeyHash::from_hex("zz").is_err());
        assert!(KeyHash::from_hex(&"g".repeat(64)).is_err());
        assert_eq!(format!("{h}"), h.to_hex());
        assert_eq!(h.to_hex().parse::<KeyHash>().unwrap(), h);
    }
}
