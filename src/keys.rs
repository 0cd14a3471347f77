//! Key material: generating key values (plain, or with a prefix and a checksum:
//! [`generate_with_prefix`]) and hashing them for storage.
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
    push_random(&mut out, len, "len")?;
    KeySecret::new(out)
}

/// Appends `n` uniform base62 characters from the OS CSPRNG; a failing source is an error naming
/// `field`.
fn push_random(out: &mut String, n: usize, field: &str) -> Result<(), ConfigError> {
    let end = out.len() + n;
    let mut buf = [0u8; 64];
    while out.len() < end {
        getrandom::fill(&mut buf)
            .map_err(|e| ConfigError::invalid(field, format!("the OS random source failed: {e}")))?;
        // 62 * 4 = 248: bytes below 248 map uniformly onto the alphabet.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == end {
                break;
            }
            out.push(char::from(BASE62[usize::from(*b % 62)]));
        }
    }
    Ok(())
}

/// Longest prefix of a key from [`generate_with_prefix`].
pub const MAX_PREFIX_LEN: usize = 32;
/// Random base62 characters between the prefix and the checksum of a key from
/// [`generate_with_prefix`] (about 190 bits).
pub const PREFIXED_RANDOM_LEN: usize = 32;
/// Base62 characters of the checksum ending a prefixed key.
pub const CHECKSUM_LEN: usize = 6;

/// A new random key value that starts with `prefix` and ends with a checksum, so that a mistyped
/// or truncated key is told apart from an unknown one without asking any store (see
/// [`UsagePlanLayerBuilder::key_prefixes`](crate::UsagePlanLayerBuilder::key_prefixes)), and a
/// leaked key is easy to recognize (secret scanners match the prefix).
///
/// The format, for other languages to make or verify such keys:
///
/// ```text
/// value    = prefix random checksum
/// prefix   = 1 to 32 characters of [A-Za-z0-9_-]
/// random   = 32 characters of the base62 alphabet (generated; a verifier accepts 32 or more)
/// checksum = 6 characters of the base62 alphabet
/// base62   = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" (digit values 0 to 61)
/// ```
///
/// `checksum` is the CRC-32 (IEEE 802.3, as zlib's `crc32`, Python's `zlib.crc32`, Go's
/// `crc32.ChecksumIEEE`) of the ASCII bytes of `prefix random`, written in base62, most
/// significant digit first, padded with `0` to 6 digits (62^6 > 2^32). CRC-32 catches every
/// change of one character, and every swap of two neighbouring ones. It is a typo check, not a
/// signature: anyone can make a value with a valid checksum, which the store then refuses.
/// [`checksum_ok`] verifies it.
///
/// ```
/// use tower_usage_plans::keys;
///
/// let secret = keys::generate_with_prefix("sk_live_")?;
/// let value = secret.expose();
/// assert!(value.starts_with("sk_live_"));
/// assert_eq!(value.len(), 8 + keys::PREFIXED_RANDOM_LEN + keys::CHECKSUM_LEN); // 46
/// assert!(keys::checksum_ok(value, "sk_live_"));
///
/// // One character mistyped: the checksum no longer matches.
/// let mut typo = value.to_owned().into_bytes();
/// typo[10] = if typo[10] == b'x' { b'y' } else { b'x' };
/// assert!(!keys::checksum_ok(std::str::from_utf8(&typo).unwrap(), "sk_live_"));
///
/// assert_eq!(keys::generate_with_prefix("sk live").unwrap_err().field(), "prefix");
/// # Ok::<(), tower_usage_plans::ConfigError>(())
/// ```
///
/// # Errors
///
/// A [`ConfigError`] naming `prefix` when the prefix is empty, longer than [`MAX_PREFIX_LEN`]
/// or has a character outside `[A-Za-z0-9_-]`, or when the OS random source fails.
pub fn generate_with_prefix(prefix: &str) -> Result<KeySecret, ConfigError> {
    check_prefix("prefix", prefix)?;
    let mut out = String::with_capacity(prefix.len() + PREFIXED_RANDOM_LEN + CHECKSUM_LEN);
    out.push_str(prefix);
    push_random(&mut out, PREFIXED_RANDOM_LEN, "prefix")?;
    let sum = checksum(out.as_bytes());
    out.extend(sum.iter().map(|&b| char::from(b)));
    KeySecret::new(out)
}

/// Whether `value` is `prefix`, then 32 or more base62 characters, then their valid checksum
/// (the format of [`generate_with_prefix`]). False for a value without that prefix, and for a
/// prefix [`generate_with_prefix`] refuses. Allocates nothing.
///
/// ```
/// use tower_usage_plans::keys;
/// let value = keys::generate_with_prefix("acme_")?;
/// assert!(keys::checksum_ok(value.expose(), "acme_"));
/// assert!(!keys::checksum_ok(value.expose(), "other_"));
/// assert!(!keys::checksum_ok("acme_0123456789abcdefghij0123456789ab000000", "acme_"));
/// # Ok::<(), tower_usage_plans::ConfigError>(())
/// ```
#[must_use]
pub fn checksum_ok(value: &str, prefix: &str) -> bool {
    check_prefix("prefix", prefix).is_ok() && checksum_ok_after(value.as_bytes(), prefix.as_bytes())
}

/// [`checksum_ok`] for a prefix already checked.
fn checksum_ok_after(value: &[u8], prefix: &[u8]) -> bool {
    let Some(rest) = value.strip_prefix(prefix) else {
        return false;
    };
    if rest.len() < PREFIXED_RANDOM_LEN + CHECKSUM_LEN || !rest.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (body, sum) = value.split_at(value.len() - CHECKSUM_LEN);
    checksum(body) == sum
}

fn check_prefix(field: &str, prefix: &str) -> Result<(), ConfigError> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err(ConfigError::invalid(
            field,
            format!("must be 1 to {MAX_PREFIX_LEN} characters long, got {}", prefix.len()),
        ));
    }
    if !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(ConfigError::invalid(field, "must contain only A-Z, a-z, 0-9, '_' and '-'"));
    }
    Ok(())
}

/// The 6 base62 digits of the CRC-32 of `body`, most significant first.
fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut crc = !body.iter().fold(!0u32, |c, &b| CRC32[usize::from(c.to_le_bytes()[0] ^ b)] ^ (c >> 8));
    let mut out = [b'0'; CHECKSUM_LEN];
    for digit in out.iter_mut().rev() {
        *digit = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    out
}

/// The CRC-32 (IEEE, reflected polynomial 0xEDB88320) of every byte.
const CRC32: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The prefixes a layer checks presented values against
/// ([`UsagePlanLayerBuilder::key_prefixes`](crate::UsagePlanLayerBuilder::key_prefixes)).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyPrefixes(Box<[Box<str>]>);

impl KeyPrefixes {
    /// Checks every prefix; an error names `field[i]`.
    pub(crate) fn new(field: &str, prefixes: Vec<String>) -> Result<Self, ConfigError> {
        for (i, p) in prefixes.iter().enumerate() {
            check_prefix(&format!("{field}[{i}]"), p)?;
        }
        Ok(Self(prefixes.into_iter().map(String::into_boxed_str).collect()))
    }

    /// Whether no prefix is configured (then [`refuses`](Self::refuses) is never asked).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `value` starts with a configured prefix yet is valid for none of those it starts
    /// with. A value without any of the prefixes is not refused. Allocates nothing.
    pub(crate) fn refuses(&self, value: &[u8]) -> bool {
        let mut claimed = false;
        for p in self.0.iter().map(|p| p.as_bytes()) {
            if value.starts_with(p) {
                if checksum_ok_after(value, p) {
                    return false;
                }
                claimed = true;
            }
        }
        claimed
    }
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
mod prefixed_tests;

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
