//! Tokens and presigned URLs against `spec/vectors/tokens.json`, made by an
//! independent implementation (`spec/vectors/tokens.py`, Python's `hmac`).

use std::collections::HashMap;

use serde_json::Value;
use upcache_protocol::token::{self, Claims, PresignError, Presigned, SigningKey, TokenError};
use upcache_protocol::Key;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/tokens.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn keys(v: &Value) -> HashMap<String, SigningKey> {
    v["keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(kid, hex)| {
            let key = format!("{kid}:{}", hex.as_str().unwrap()).parse().unwrap();
            (kid.clone(), key)
        })
        .collect()
}

fn category(e: &TokenError) -> &'static str {
    match e {
        TokenError::Malformed => "malformed",
        TokenError::UnknownKey(_) => "unknown-kid",
        TokenError::BadSignature => "signature",
        TokenError::BadClaims(_) => "claims",
        TokenError::Expired(_) | TokenError::NotYetValid(_) => "expired",
    }
}

#[test]
fn token_vectors() {
    let v = vectors();
    let keys = keys(&v);
    let now = v["now"].as_u64().unwrap();
    let cases = v["tokens"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let t = case["token"].as_str().unwrap();
        let got = token::verify(t, |kid| keys.get(kid), now);
        if case["valid"].as_bool().unwrap() {
            let claims = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut want = case["claims"].clone();
            if want.get("allow").is_none() {
                want["allow"] = serde_json::json!(["upload", "status", "wait", "result"]);
            }
            assert_eq!(serde_json::to_value(&claims).unwrap(), want, "{name}");
            // Re-signed by us, the token is byte for byte the same when the
            // payload was written in our member order.
            let resigned = token::sign(&keys[token::kid_of(t).unwrap()], &claims);
            let ours: Claims = serde_json::from_value(want).unwrap();
            assert_eq!(claims, ours);
            if name.contains("Rust encoder") {
                assert_eq!(resigned, t, "{name}");
            }
        } else {
            let e = got.expect_err(name);
            assert_eq!(category(&e), case["error"].as_str().unwrap(), "{name}: {e}");
        }
    }
}

#[test]
fn presigned_vectors() {
    let v = vectors();
    let keys = keys(&v);
    let now = v["now"].as_u64().unwrap();
    for case in v["presigned"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let key: Key = case["key"].as_str().unwrap().parse().unwrap();
        let url = case["url"].as_str().unwrap();
        let (_, query) = url.split_once('?').unwrap();
        let got = Presigned::parse(query)
            .unwrap()
            .and_then(|p| p.verify(&key, |kid| keys.get(kid), now));
        match (case["valid"].as_bool().unwrap(), got) {
            (true, Ok(())) => {
                let p = Presigned::parse(query).unwrap().unwrap();
                assert_eq!(
                    token::presign_result(&keys[p.kid], &key, p.exp),
                    url,
                    "{name}"
                );
            }
            (false, Err(PresignError::Expired(_))) => {
                assert_eq!(case["error"], "expired", "{name}")
            }
            (false, Err(PresignError::BadSignature)) => {
                assert_eq!(case["error"], "signature", "{name}")
            }
            (valid, got) => panic!("{name}: valid {valid}, got {got:?}"),
        }
    }
}
