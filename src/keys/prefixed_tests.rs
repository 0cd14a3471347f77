//! Keys with a prefix and a checksum.

use super::*;
use std::collections::HashSet;

const PREFIX: &str = "sk_live_";

fn with_byte(value: &str, at: usize, b: u8) -> String {
    let mut bytes = value.as_bytes().to_vec();
    bytes[at] = b;
    String::from_utf8(bytes).unwrap()
}

#[test]
fn prefixed_keys_are_prefix_random_base62_and_checksum() {
    let keys: HashSet<String> = (0..500).map(|_| generate_with_prefix(PREFIX).unwrap().expose().to_owned()).collect();
    assert_eq!(keys.len(), 500);
    for k in &keys {
        assert_eq!(k.len(), PREFIX.len() + PREFIXED_RANDOM_LEN + CHECKSUM_LEN, "{k}");
        let rest = k.strip_prefix(PREFIX).unwrap();
        assert!(rest.bytes().all(|b| BASE62.contains(&b)), "{k}");
        assert!(checksum_ok(k, PREFIX), "{k}");
        assert!(!checksum_ok(k, "sk_test_"));
    }
    // The random part uses the whole alphabet.
    let used: HashSet<u8> =
        keys.iter().flat_map(|k| k.as_bytes()[PREFIX.len()..][..PREFIXED_RANDOM_LEN].to_vec()).collect();
    assert_eq!(used.len(), 62);
    // Shortest and longest prefixes stay within KeySecret's bounds.
    assert_eq!(generate_with_prefix("a").unwrap().expose().len(), 1 + 32 + 6);
    assert_eq!(generate_with_prefix(&"A-_9".repeat(8)).unwrap().expose().len(), 32 + 32 + 6);
}

#[test]
fn the_checksum_is_base62_crc32_as_documented() {
    // CRC-32 check value: crc32("123456789") = 0xCBF43926 = 3421780262 = "3jZRME" in base62.
    assert_eq!(&checksum(b"123456789"), b"3jZRME");
    assert_eq!(&checksum(b""), b"000000");
    // Made with Python: v + b62(zlib.crc32(v.encode())).
    let made_elsewhere = "sk_live_0123456789abcdefghijABCDEFGHIJKL2rQEm4";
    assert!(checksum_ok(made_elsewhere, PREFIX));
    assert!(!checksum_ok("sk_live_0123456789abcdefghijABCDEFGHIJKL2rQEm5", PREFIX));
}

#[test]
fn every_single_character_change_is_caught() {
    for _ in 0..5 {
        let key = generate_with_prefix(PREFIX).unwrap();
        let key = key.expose();
        // Every position after the prefix (random part and checksum), every other base62 character.
        for at in PREFIX.len()..key.len() {
            for &b in BASE62.iter().filter(|&&b| b != key.as_bytes()[at]) {
                let typo = with_byte(key, at, b);
                assert!(!checksum_ok(&typo, PREFIX), "{key} → {typo}");
            }
        }
        // Two neighbours swapped.
        for at in PREFIX.len()..key.len() - 1 {
            let mut bytes = key.as_bytes().to_vec();
            if bytes[at] != bytes[at + 1] {
                bytes.swap(at, at + 1);
                let typo = String::from_utf8(bytes).unwrap();
                assert!(!checksum_ok(&typo, PREFIX), "{key} → {typo}");
            }
        }
        // Truncated or extended by one character.
        assert!(!checksum_ok(&key[..key.len() - 1], PREFIX));
        assert!(!checksum_ok(&format!("{key}0"), PREFIX));
    }
}

#[test]
fn a_verifier_accepts_a_longer_random_part_but_not_a_shorter_one_or_other_characters() {
    let sum = |body: &str| format!("{body}{}", std::str::from_utf8(&checksum(body.as_bytes())).unwrap());
    assert!(checksum_ok(&sum(&format!("{PREFIX}{}", "a".repeat(33))), PREFIX));
    assert!(checksum_ok(&sum(&format!("{PREFIX}{}", "a".repeat(32))), PREFIX));
    assert!(!checksum_ok(&sum(&format!("{PREFIX}{}", "a".repeat(31))), PREFIX));
    assert!(!checksum_ok(&sum(&format!("{PREFIX}{}_", "a".repeat(32))), PREFIX));
    assert!(!checksum_ok(&sum(&format!("{PREFIX}{}", "a".repeat(32))), ""));
}

#[test]
fn bad_prefixes_are_refused_naming_the_field() {
    for bad in ["", "sk live", "sk.live", "sk/", "clé_", "\u{7f}", &"a".repeat(33)] {
        let e = generate_with_prefix(bad).unwrap_err();
        assert_eq!(e.field(), "prefix", "{bad:?}");
        assert!(!checksum_ok("sk_live_0123456789abcdefghijABCDEFGHIJKL2rQEm4", bad));
    }
    let e = KeyPrefixes::new("key_prefixes", vec!["sk_".into(), "bad prefix".into()]).unwrap_err();
    assert_eq!(e.field(), "key_prefixes[1]");
    assert!(e.to_string().contains("only A-Z"), "{e}");
}

#[test]
fn prefixes_refuse_only_claimed_values_with_a_wrong_checksum() {
    let none = KeyPrefixes::default();
    assert!(none.is_empty());
    let set = KeyPrefixes::new("key_prefixes", vec!["sk_".into(), "sk_live_".into()]).unwrap();
    assert!(!set.is_empty());
    let live = generate_with_prefix("sk_live_").unwrap();
    let short = generate_with_prefix("sk_").unwrap();
    // Valid for one of the prefixes it starts with ("sk_live_", not "sk_"): not refused.
    assert!(!set.refuses(live.expose().as_bytes()));
    assert!(!set.refuses(short.expose().as_bytes()));
    let typo = with_byte(live.expose(), 12, if live.expose().as_bytes()[12] == b'x' { b'y' } else { b'x' });
    assert!(set.refuses(typo.as_bytes()));
    // Without any configured prefix (an imported key): not this check's business.
    assert!(!set.refuses(b"imported-0123456789abcdefghij"));
    assert!(!set.refuses(b"pk_live_0123456789abcdefghijABCDEFGHIJKL2rQEm4"));
}
