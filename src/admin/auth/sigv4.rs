//! Signature Version 4 as botocore computes it for a REST service such as `apigateway`: the
//! `Authorization` header, the canonical request and the signature. Pure: no clock, no I/O.
//!
//! The canonical request (botocore `SigV4Auth.canonical_request`):
//!
//! ```text
//! METHOD
//! canonical URI      the path as received, dot segments and empty segments removed, then
//!                    percent-encoded again except unreserved characters and '/' (so "%20" is "%2520")
//! canonical query    pairs split on '&' and '=', each side decoded and re-encoded (RFC 3986
//!                    unreserved characters kept), sorted by key then value, joined with '&'
//! name:value\n ...   each signed header, values trimmed with inner runs of spaces collapsed,
//!                    repeated headers joined with ','
//! (empty line)
//! signed;headers
//! payload hash       `x-amz-content-sha256` when present, else hex SHA-256 of the body
//! ```

use super::errors::{AuthError, AuthErrorKind};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The only algorithm accepted.
pub(super) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The parsed `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug)]
pub(super) struct Authorization<'h> {
    pub(super) access_key_id: &'h str,
    /// `YYYYMMDD` (checked to be 8 digits).
    pub(super) date: &'h str,
    pub(super) region: &'h str,
    pub(super) service: &'h str,
    pub(super) terminator: &'h str,
    /// Lowercase, sorted, without repeats.
    pub(super) signed_headers: Vec<String>,
    pub(super) signature: [u8; 32],
}

fn malformed(message: impl Into<String>) -> AuthError {
    AuthError::new(AuthErrorKind::Malformed, message)
}

/// Parses what follows `AWS4-HMAC-SHA256 `. Errors never quote the header.
pub(super) fn parse_authorization(params: &str) -> Result<Authorization<'_>, AuthError> {
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in params.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            return Err(malformed("Authorization header parameters must be name=value pairs separated by ','."));
        };
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(malformed("Authorization header has an unknown parameter.")),
        };
        if slot.replace(value).is_some() {
            return Err(malformed(format!("Authorization header has parameter '{name}' twice.")));
        }
    }
    let mut missing = String::new();
    for (name, value) in [("Credential", credential), ("Signature", signature), ("SignedHeaders", signed)] {
        if value.is_none() {
            missing.push_str(&format!("Authorization header requires '{name}' parameter. "));
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(malformed(missing.trim_end()));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let &[access_key_id, date, region, service, terminator] = parts.as_slice() else {
        return Err(malformed(
            "Credential must have the form <access key id>/<YYYYMMDD>/<region>/<service>/aws4_request.",
        ));
    };
    if access_key_id.is_empty() || region.is_empty() {
        return Err(malformed("Credential must name an access key id and a region."));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("The date in Credential must have the form YYYYMMDD."));
    }
    let mut signed_headers: Vec<String> = signed.split(';').map(|h| h.trim().to_ascii_lowercase()).collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(malformed("SignedHeaders must be header names separated by ';'."));
    }
    signed_headers.sort_unstable();
    signed_headers.dedup();
    let signature = from_hex(signature).ok_or_else(|| malformed("Signature must be 64 hexadecimal digits."))?;
    Ok(Authorization { access_key_id, date, region, service, terminator, signed_headers, signature })
}

/// The canonical request. `headers` are the signed headers' canonical values, in the order of
/// `auth.signed_headers`.
pub(super) fn canonical_request(
    method: &str,
    uri: &http::Uri,
    signed_headers: &[String],
    header_values: &[String],
    payload_hash: &str,
) -> String {
    let mut cr = String::with_capacity(256);
    cr.push_str(method);
    cr.push('\n');
    cr.push_str(&canonical_uri(uri.path()));
    cr.push('\n');
    cr.push_str(&canonical_query(uri.query().unwrap_or_default()));
    cr.push('\n');
    for (name, value) in signed_headers.iter().zip(header_values) {
        cr.push_str(name);
        cr.push(':');
        cr.push_str(value);
        cr.push('\n');
    }
    cr.push('\n');
    cr.push_str(&signed_headers.join(";"));
    cr.push('\n');
    cr.push_str(payload_hash);
    cr
}

/// botocore `_normalize_url_path`: `quote(remove_dot_segments(path), safe='/~')`.
pub(super) fn canonical_uri(path: &str) -> String {
    encode(remove_dot_segments(path).as_bytes(), true)
}

/// botocore `utils.remove_dot_segments` (RFC 3986 5.2.4, also dropping empty segments); an empty
/// path is `/`.
fn remove_dot_segments(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let first = if path.starts_with('/') { "/" } else { "" };
    let last = if path.ends_with('/') && !out.is_empty() { "/" } else { "" };
    format!("{first}{}{last}", out.join("/"))
}

/// The canonical query string of the raw query `query` (without `?`).
pub(super) fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(&decode(key), false), encode(&decode(value), false))
        })
        .collect();
    pairs.sort_unstable();
    let pairs: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join("&")
}

/// Percent-encodes every byte but RFC 3986's unreserved characters (and `/` when `keep_slash`),
/// with uppercase hex, as Python's `quote` does.
fn encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 15)]));
        }
    }
    out
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is. `+` stays `+`.
fn decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (bytes.get(i + 1).and_then(hex_digit), bytes.get(i + 2).and_then(hex_digit)) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn hex_digit(c: &u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// 64 hex digits (either case) as 32 bytes.
pub(super) fn from_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = hex_digit(&pair[0])? << 4 | hex_digit(&pair[1])?;
    }
    Some(out)
}

/// Lowercase hex of SHA-256 of `data`.
pub(super) fn sha256_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// SigV4's `Trimall`, as botocore does it (Python's `' '.join(value.split())`) for ASCII values.
pub(super) fn trim_all(value: &str) -> String {
    let space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1c'..='\x1f');
    value.split(space).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The string to sign for `timestamp` (`YYYYMMDDTHHMMSSZ`) and the credential scope.
pub(super) fn string_to_sign(timestamp: &str, auth: &Authorization<'_>, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{timestamp}\n{}/{}/{}/{}\n{}",
        auth.date,
        auth.region,
        auth.service,
        auth.terminator,
        sha256_hex(canonical_request.as_bytes())
    )
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &str) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data.as_bytes());
    mac
}

/// Whether `signature` is the signature of `string_to_sign` under `secret`, compared in
/// constant time. The expected signature never leaves this function.
pub(super) fn signature_matches(secret: &str, auth: &Authorization<'_>, string_to_sign: &str) -> bool {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date).finalize().into_bytes();
    let k_region = hmac(&k_date, auth.region).finalize().into_bytes();
    let k_service = hmac(&k_region, auth.service).finalize().into_bytes();
    let k_signing = hmac(&k_service, auth.terminator).finalize().into_bytes();
    hmac(&k_signing, string_to_sign).verify_slice(&auth.signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_is_normalized_then_encoded_again() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/admin/usageplans/p1/keys/k%201/usage"), "/admin/usageplans/p1/keys/k%25201/usage");
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_uri("/a/:b@c!~"), "/a/%3Ab%40c%21~");
        assert_eq!(canonical_uri("/.."), "/");
    }

    #[test]
    fn query_is_decoded_reencoded_and_sorted() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("name=Acme%20Inc%2F%2B%3D~%2A"), "name=Acme%20Inc%2F%2B%3D~%2A");
        assert_eq!(canonical_query("x=a b+c/d&flag"), "flag=&x=a%20b%2Bc%2Fd");
        assert_eq!(canonical_query("p=%7e%zz"), "p=~%25zz");
    }

    #[test]
    fn trim_all_collapses_inner_spaces() {
        assert_eq!(trim_all("  a   b\tc  "), "a b c");
        assert_eq!(trim_all(""), "");
    }

    #[test]
    fn authorization_header_parts() {
        let sig = "0".repeat(64);
        let header = format!(
            "Credential=AK/20261126/us-east-1/apigateway/aws4_request, SignedHeaders=X-Amz-Date;host, Signature={sig}"
        );
        let a = parse_authorization(&header).unwrap();
        assert_eq!((a.access_key_id, a.date, a.region, a.service), ("AK", "20261126", "us-east-1", "apigateway"));
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
        let e = parse_authorization("Credential=AK/20261126/r/apigateway/aws4_request").unwrap_err();
        assert_eq!(
            e.message(),
            "Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter."
        );
        for bad in [
            format!("Credential=AK/2026112/r/s/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("Credential=AK/20261126/r/s, SignedHeaders=host, Signature={sig}"),
            format!("Credential=AK/20261126/r/s/aws4_request, SignedHeaders=host;, Signature={sig}"),
            "Credential=AK/20261126/r/s/aws4_request, SignedHeaders=host, Signature=zz".to_owned(),
            format!("Credential=AK/20261126/r/s/aws4_request, SignedHeaders=host, Signature={sig}, Signature={sig}"),
            format!("Credential=AK/20261126/r/s/aws4_request, SignedHeaders=host, Signature={sig}, Extra=1"),
        ] {
            assert_eq!(parse_authorization(&bad).unwrap_err().kind(), AuthErrorKind::Malformed, "{bad}");
        }
    }
}
