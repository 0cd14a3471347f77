//! Requests signed by botocore's own apigateway client (`testdata/sigv4.py` wrote
//! `testdata/sigv4.json`), and refusals.

use super::*;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

/// The instant botocore signed at: 2026-11-26T12:34:56Z.
fn signed_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_696_496)
}

#[derive(serde::Deserialize)]
struct Vectors {
    access_key_id: String,
    secret_access_key: String,
    requests: Vec<Vector>,
}

#[derive(serde::Deserialize, Clone)]
struct Vector {
    name: String,
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("../testdata/sigv4.json")).unwrap()
}

/// A request as the server receives it.
#[derive(Clone)]
struct Req {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
    fn of(v: &Vector) -> Self {
        let mut headers = HeaderMap::new();
        for (name, value) in &v.headers {
            headers.append(HeaderName::try_from(name.as_str()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        Self { method: v.method.parse().unwrap(), uri: v.uri.clone(), headers, body: v.body.clone().into_bytes() }
    }

    fn set(mut self, name: &'static str, value: &str) -> Self {
        self.headers.insert(name, HeaderValue::from_str(value).unwrap());
        self
    }

    fn check(&self, auth: &AdminAuth, now: SystemTime) -> Result<(), AuthError> {
        let uri: Uri = self.uri.parse().unwrap();
        auth.verify(&self.method, &uri, &self.headers, &self.body, now)
    }
}

fn configured() -> (AdminAuth, Vectors) {
    let v = vectors();
    let auth = AdminAuth::new().sigv4("AKIDOTHER", "other-secret").sigv4(&*v.access_key_id, &*v.secret_access_key);
    (auth, v)
}

fn kind(r: Result<(), AuthError>) -> AuthErrorKind {
    r.expect_err("must be refused").kind()
}

#[test]
fn every_botocore_request_verifies() {
    let (auth, v) = configured();
    assert_eq!(v.requests.len(), 7);
    for vector in &v.requests {
        let r = Req::of(vector);
        assert_eq!(r.check(&auth, signed_at()), Ok(()), "{}", vector.name);
        // Within the skew either way.
        assert_eq!(r.check(&auth, signed_at() + Duration::from_secs(14 * 60)), Ok(()), "{}", vector.name);
        assert_eq!(r.check(&auth, signed_at() - Duration::from_secs(14 * 60)), Ok(()), "{}", vector.name);
    }
}

#[test]
fn any_change_breaks_the_signature() {
    let (auth, v) = configured();
    for vector in &v.requests {
        let name = &vector.name;
        let req = Req::of(vector);
        let refused = |r: Req| kind(r.check(&auth, signed_at()));

        let mut r = req.clone();
        match r.body.first_mut() {
            Some(b) => *b ^= 1,
            None => r.body.push(b'x'),
        }
        assert_eq!(refused(r), AuthErrorKind::BadSignature, "{name}: body");

        let mut r = req.clone();
        r.uri = r.uri.replacen("/admin/", "/admim/", 1);
        assert_eq!(refused(r), AuthErrorKind::BadSignature, "{name}: path");

        if let Some((path, query)) = req.uri.split_once('?') {
            let mut r = req.clone();
            let (key, value) = query.split('&').next().unwrap().split_once('=').unwrap();
            r.uri = format!("{path}?{}", query.replacen(&format!("{key}={value}"), &format!("{key}={value}1"), 1));
            assert_eq!(refused(r), AuthErrorKind::BadSignature, "{name}: query value");
        }

        let r = req.clone().set("accept", "application/xml");
        assert_eq!(refused(r), AuthErrorKind::BadSignature, "{name}: signed header");
        let r = req.clone().set("host", "127.0.0.1:8081");
        assert_eq!(refused(r), AuthErrorKind::BadSignature, "{name}: host");
        // An unsigned header may change.
        let r = req.clone().set("user-agent", "curl/8");
        assert_eq!(r.check(&auth, signed_at()), Ok(()), "{name}: unsigned header");

        let r = req.clone().set("x-amz-date", "20261126T123457Z");
        assert_eq!(refused(r), AuthErrorKind::BadSignature, "{name}: date");
        let r = req.clone().set("x-amz-date", "20261127T123456Z");
        assert_eq!(kind(r.check(&auth, signed_at() + Duration::from_secs(86_400))), AuthErrorKind::WrongScope);

        let other = AdminAuth::new().sigv4(&*v.access_key_id, format!("{}x", v.secret_access_key));
        let e = req.check(&other, signed_at()).unwrap_err();
        assert_eq!(e.kind(), AuthErrorKind::BadSignature, "{name}: secret");
        assert_eq!(e.aws_type(), "InvalidSignatureException");
        assert!(e
            .message()
            .starts_with("The request signature we calculated does not match the signature you provided."));

        let stranger = AdminAuth::new().sigv4("AKIDSTRANGER", &*v.secret_access_key);
        let e = req.check(&stranger, signed_at()).unwrap_err();
        assert_eq!(e.kind(), AuthErrorKind::UnknownCredentials, "{name}: access key id");
        assert_eq!(e.aws_type(), "UnrecognizedClientException");
        assert_eq!(e.message(), "The security token included in the request is invalid.");

        assert_eq!(kind(req.check(&AdminAuth::new(), signed_at())), AuthErrorKind::UnknownCredentials);
    }
}

#[test]
fn stale_and_future_dates_are_refused_in_aws_words() {
    let (auth, v) = configured();
    let req = Req::of(&v.requests[0]);
    let e = req.check(&auth, signed_at() + Duration::from_secs(20 * 60)).unwrap_err();
    assert_eq!(e.kind(), AuthErrorKind::Stale);
    assert_eq!(e.aws_type(), "InvalidSignatureException");
    assert_eq!(
        e.message(),
        "Signature expired: 20261126T123456Z is now earlier than 20261126T123956Z (20261126T125456Z - 15 min.)"
    );
    let e = req.check(&auth, signed_at() - Duration::from_secs(20 * 60)).unwrap_err();
    assert_eq!(
        e.message(),
        "Signature not yet current: 20261126T123456Z is still later than 20261126T122956Z (20261126T121456Z + 15 min.)"
    );
    let strict = auth.clone().max_clock_skew(Duration::from_secs(90));
    let e = req.check(&strict, signed_at() + Duration::from_secs(120)).unwrap_err();
    assert!(e.message().ends_with("(20261126T123656Z - 90 s.)"), "{e}");
    assert_eq!(req.check(&strict, signed_at() + Duration::from_secs(90)), Ok(()));
}

#[test]
fn missing_and_malformed_headers() {
    let (auth, v) = configured();
    let req = Req::of(&v.requests[0]);
    let mut r = req.clone();
    r.headers.remove("authorization");
    let e = r.check(&auth, signed_at()).unwrap_err();
    assert_eq!((e.kind(), e.aws_type()), (AuthErrorKind::Missing, "MissingAuthenticationTokenException"));
    assert_eq!(e.to_string(), "Missing Authentication Token");

    let signature = req.headers["authorization"].to_str().unwrap().rsplit_once('=').unwrap().1.to_owned();
    let cases = [
        "garbage",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 garbage",
        "Basic dXNlcjpwYXNz",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/apigateway/aws4_request, SignedHeaders=accept;x-amz-date, Signature=00",
    ];
    for value in cases {
        let e = req.clone().set("authorization", value).check(&auth, signed_at()).unwrap_err();
        assert_eq!((e.kind(), e.aws_type()), (AuthErrorKind::Malformed, "IncompleteSignatureException"), "{value}");
    }
    let host_unsigned = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/apigateway/aws4_request, SignedHeaders=accept;x-amz-date, Signature={signature}"
    );
    let e = req.clone().set("authorization", &host_unsigned).check(&auth, signed_at()).unwrap_err();
    assert_eq!(e.message(), "'host' must be a 'SignedHeader' in the AWS Authorization.");
    let wrong_service = req.headers["authorization"].to_str().unwrap().replace("/apigateway/", "/execute-api/");
    let e = req.clone().set("authorization", &wrong_service).check(&auth, signed_at()).unwrap_err();
    assert_eq!(e.kind(), AuthErrorKind::WrongScope);

    let mut r = req.clone();
    r.headers.remove("x-amz-date");
    assert_eq!(kind(r.check(&auth, signed_at())), AuthErrorKind::Malformed);
    assert_eq!(
        kind(req.clone().set("x-amz-date", "2026-11-26T12:34:56Z").check(&auth, signed_at())),
        AuthErrorKind::Malformed
    );
    let mut r = req.clone();
    r.headers.append("authorization", HeaderValue::from_static("Bearer x"));
    assert_eq!(kind(r.check(&auth, signed_at())), AuthErrorKind::Malformed);
}

#[test]
fn session_tokens_are_signed_but_not_validated() {
    let (auth, v) = configured();
    let vector = v.requests.iter().find(|r| r.name == "get_usage_plan_temporary").unwrap();
    let req = Req::of(vector);
    assert!(req.headers["authorization"].to_str().unwrap().contains("/eu-west-3/"), "any region is accepted");
    assert_eq!(req.check(&auth, signed_at()), Ok(()));
    let r = req.clone().set("x-amz-security-token", "ANOTHER-TOKEN");
    assert_eq!(kind(r.check(&auth, signed_at())), AuthErrorKind::BadSignature);
    let mut r = req.clone();
    r.headers.remove("x-amz-security-token");
    let e = r.check(&auth, signed_at()).unwrap_err();
    assert_eq!(e.message(), "The signed header 'x-amz-security-token' is not in the request.");
}

#[test]
fn payload_hash_header_must_match_the_body() {
    let (auth, v) = configured();
    let vector = v.requests.iter().find(|r| r.name == "create_usage_plan").unwrap();
    let req = Req::of(vector);
    let hash = sigv4::sha256_hex(vector.body.as_bytes());
    assert_eq!(req.clone().set("x-amz-content-sha256", &hash).check(&auth, signed_at()), Ok(()));
    let mut tampered = req.clone().set("x-amz-content-sha256", &hash);
    tampered.body[0] = b' ';
    assert_eq!(kind(tampered.check(&auth, signed_at())), AuthErrorKind::BadSignature);
    let r = req.clone().set("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    assert_eq!(kind(r.check(&auth, signed_at())), AuthErrorKind::Malformed);
}

#[test]
fn http2_authority_stands_in_for_host() {
    let (auth, v) = configured();
    let mut req = Req::of(&v.requests[0]);
    req.headers.remove("host");
    assert_eq!(kind(req.check(&auth, signed_at())), AuthErrorKind::Malformed);
    req.uri = format!("http://127.0.0.1:8080{}", req.uri);
    assert_eq!(req.check(&auth, signed_at()), Ok(()));
}

#[test]
fn bearer_tokens() {
    const TOKEN: &str = "admin-token-0123456789abcdefghij";
    let auth = AdminAuth::new().bearer("first-token-0123456789abcdefghij").bearer(TOKEN);
    let call = |auth: &AdminAuth, value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(value).unwrap());
        auth.verify(&Method::POST, &Uri::from_static("/admin/apikeys"), &headers, b"{}", signed_at())
    };
    assert_eq!(call(&auth, &format!("Bearer {TOKEN}")), Ok(()));
    assert_eq!(call(&auth, &format!("bearer  {TOKEN}")), Ok(()));
    let e = call(&auth, "Bearer admin-token-0123456789abcdefghik").unwrap_err();
    assert_eq!((e.kind(), e.aws_type()), (AuthErrorKind::UnknownCredentials, "UnrecognizedClientException"));
    assert!(!e.message().contains("admin-token"));
    assert_eq!(kind(call(&auth, &format!("Bearer {TOKEN}x"))), AuthErrorKind::UnknownCredentials);
    assert_eq!(kind(call(&auth, "Bearer")), AuthErrorKind::Malformed);
    assert_eq!(kind(call(&auth, &format!("Token {TOKEN}"))), AuthErrorKind::Malformed);
    assert_eq!(kind(call(&auth, TOKEN)), AuthErrorKind::Malformed);
    assert_eq!(kind(call(&AdminAuth::new(), &format!("Bearer {TOKEN}"))), AuthErrorKind::UnknownCredentials);
    assert_eq!(kind(call(&AdminAuth::new(), "Bearer ")), AuthErrorKind::Malformed);
    let sigv4_only = AdminAuth::new().sigv4(TOKEN, TOKEN);
    assert_eq!(kind(call(&sigv4_only, &format!("Bearer {TOKEN}"))), AuthErrorKind::UnknownCredentials);
}

#[test]
fn debug_and_errors_show_no_secret() {
    let (auth, v) = configured();
    let auth = auth.bearer("bearer-secret-0123456789abcdefghij");
    let debug = format!("{auth:?}");
    assert!(debug.contains("AKIDEXAMPLE") && debug.contains("bearer_tokens: 1"), "{debug}");
    for secret in [v.secret_access_key.as_str(), "other-secret", "bearer-secret"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    // No refusal quotes the secret or a signature.
    let req = Req::of(&v.requests[1]);
    let signature = req.headers["authorization"].to_str().unwrap().rsplit_once('=').unwrap().1.to_owned();
    let wrong = AdminAuth::new().sigv4(&*v.access_key_id, "wrong");
    for e in [
        req.check(&wrong, signed_at()).unwrap_err(),
        req.clone().set("accept", "x").check(&auth, signed_at()).unwrap_err(),
        req.check(&auth, signed_at() + Duration::from_secs(3600)).unwrap_err(),
    ] {
        let all = format!("{e} {e:?} {}", e.message());
        assert!(!all.contains(&signature) && !all.contains(&v.secret_access_key) && !all.contains("wrong"), "{all}");
    }
}

#[test]
fn bearer_tokens_shorter_than_16_characters_are_refused() {
    for short in ["", "s3cret", "admin-secret", "fifteen-chars-x"] {
        let e = AdminAuth::new().try_bearer(short).unwrap_err();
        assert_eq!(e.kind(), AdminAuthErrorKind::TokenTooShort, "{short:?}");
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("at least 16 characters"), "{shown}");
        assert!(short.is_empty() || !shown.contains(short), "the token is shown: {shown}");
    }
    // Characters, not bytes: 15 two-byte characters are too short, 16 are enough.
    assert!(AdminAuth::new().try_bearer("é".repeat(15)).is_err());
    let auth = AdminAuth::new().try_bearer("sixteen-chars-xy").unwrap().try_bearer("é".repeat(16)).unwrap();
    assert!(format!("{auth:?}").contains("bearer_tokens: 2"));
}

#[test]
#[should_panic(expected = "AdminAuth::bearer: a bearer token must be at least 16 characters long, got 6")]
fn bearer_panics_on_a_short_token() {
    let _ = AdminAuth::new().bearer("s3cret");
}

#[test]
fn expected_hosts_pin_the_signed_host() {
    let (auth, v) = configured();
    let req = Req::of(&v.requests[0]);
    let host = req.headers["host"].to_str().unwrap().to_owned();
    assert_eq!(req.check(&auth, signed_at()), Ok(()), "unset: any host");
    let pinned = auth.clone().expected_hosts(["admin.example.com", &host.to_uppercase()]);
    assert_eq!(req.check(&pinned, signed_at()), Ok(()), "{host} is expected (without case)");
    let elsewhere = auth.clone().expected_hosts(["admin.example.com"]);
    let e = req.check(&elsewhere, signed_at()).unwrap_err();
    assert_eq!((e.kind(), e.aws_type()), (AuthErrorKind::UnexpectedHost, "InvalidSignatureException"));
    assert_eq!(e.message(), "The signed 'host' header does not name this server.");
    // Refused from the head: no body needed.
    let uri: Uri = req.uri.parse().unwrap();
    assert_eq!(
        elsewhere.verify_head(&uri, &req.headers, signed_at()).unwrap_err().kind(),
        AuthErrorKind::UnexpectedHost
    );
    assert_eq!(pinned.verify_head(&uri, &req.headers, signed_at()), Ok(Head::NeedsBody));
    // The port is part of the host: the same name on another port is not expected.
    let name = host.split(':').next().unwrap();
    assert_eq!(kind(req.check(&auth.clone().expected_hosts([name]), signed_at())), AuthErrorKind::UnexpectedHost);
    // Over HTTP/2 the authority stands in for `host`, and is pinned the same way.
    let mut h2 = req.clone();
    h2.headers.remove("host");
    h2.uri = format!("http://{host}{}", h2.uri);
    assert_eq!(h2.check(&pinned, signed_at()), Ok(()));
    assert_eq!(kind(h2.check(&elsewhere, signed_at())), AuthErrorKind::UnexpectedHost);
    // Bearer tokens are not affected.
    let bearer = AdminAuth::new().bearer("admin-token-0123456789").expected_hosts(["admin.example.com"]);
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer admin-token-0123456789"));
    assert_eq!(bearer.verify(&Method::GET, &uri, &headers, b"", signed_at()), Ok(()));
}

#[test]
fn the_head_settles_all_but_the_signature() {
    let (auth, v) = configured();
    let req = Req::of(&v.requests[0]);
    let uri: Uri = req.uri.parse().unwrap();
    assert_eq!(auth.verify_head(&uri, &req.headers, signed_at()), Ok(Head::NeedsBody));
    let stranger = AdminAuth::new().sigv4("AKIDSTRANGER", "x");
    assert_eq!(
        stranger.verify_head(&uri, &req.headers, signed_at()).unwrap_err().kind(),
        AuthErrorKind::UnknownCredentials
    );
    let late = signed_at() + Duration::from_secs(3600);
    assert_eq!(auth.verify_head(&uri, &req.headers, late).unwrap_err().kind(), AuthErrorKind::Stale);
    let mut bearer = HeaderMap::new();
    bearer.insert("authorization", HeaderValue::from_static("Bearer admin-token-0123456789"));
    let known = AdminAuth::new().bearer("admin-token-0123456789");
    assert_eq!(known.verify_head(&uri, &bearer, signed_at()), Ok(Head::Accepted));
    assert_eq!(auth.verify_head(&uri, &bearer, signed_at()).unwrap_err().kind(), AuthErrorKind::UnknownCredentials);
}
