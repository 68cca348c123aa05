use super::*;

const K: &str = "38574c97ace8ccab61b23102d438ae3ab49da37d62e4c2221f7834cc34f2c343";
const I: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

fn k1() -> SigningKey {
    SigningKey::new("k1", (0u8..32).collect()).unwrap()
}

fn claims(exp: u64) -> Claims {
    Claims {
        exp,
        nbf: None,
        scope: Scope::key(K.parse().unwrap()),
        allow: Action::ALL.to_vec(),
    }
}

#[test]
fn signing_keys_parse() {
    let k: SigningKey = "k1:000102030405060708090a0b0c0d0e0f".parse().unwrap();
    assert_eq!(k.kid(), "k1");
    assert!(!format!("{k:?}").contains("0001"), "Debug hides the secret");
    for (bad, why) in [
        ("k1", SigningKeyError::Shape),
        (":000102030405060708090a0b0c0d0e0f", SigningKeyError::Kid),
        ("k.1:000102030405060708090a0b0c0d0e0f", SigningKeyError::Kid),
        ("k1:0001", SigningKeyError::Secret),
        (
            "k1:zz0102030405060708090a0b0c0d0e0f",
            SigningKeyError::Secret,
        ),
    ] {
        assert_eq!(bad.parse::<SigningKey>(), Err(why), "{bad}");
    }
}

#[test]
fn round_trip_and_time_window() {
    let t = sign(&k1(), &claims(100));
    assert!(is_token(&t));
    assert_eq!(kid_of(&t), Some("k1"));
    let key = k1();
    assert_eq!(verify(&t, |_| Some(&key), 99), Ok(claims(100)));
    assert_eq!(
        verify(&t, |_| Some(&key), 100),
        Err(TokenError::Expired(100))
    );
    let early = Claims {
        nbf: Some(50),
        ..claims(100)
    };
    let t = sign(&key, &early);
    assert_eq!(
        verify(&t, |_| Some(&key), 49),
        Err(TokenError::NotYetValid(50))
    );
    assert!(verify(&t, |_| Some(&key), 50).is_ok());
}

#[test]
fn refusals() {
    let key = k1();
    let t = sign(&key, &claims(100));
    assert_eq!(
        verify(&t, |_| None, 0),
        Err(TokenError::UnknownKey("k1".into()))
    );
    let other = SigningKey::new("k1", vec![7; 32]).unwrap();
    assert_eq!(
        verify(&t, |_| Some(&other), 0),
        Err(TokenError::BadSignature)
    );
    for bad in [
        "",
        "upc1",
        "upc1...",
        "upc1.k1.e30",
        "upc2.k1.e30.x",
        "a.b.c.d.e",
    ] {
        assert_eq!(
            verify(bad, |_| Some(&key), 0),
            Err(TokenError::Malformed),
            "{bad:?}"
        );
    }
    assert!(!is_token("upc1"), "an API key may be anything but a token");
    assert!(!is_token("upc10.x"));
}

#[test]
fn scopes_cover() {
    let key: Key = K.parse().unwrap();
    let input: InputHash = I.parse().unwrap();
    let other: Key = I.parse().unwrap();
    let by_key = Scope::key(key);
    assert!(by_key.covers(&key, &input, 5, "identity"));
    assert!(!by_key.covers(&other, &input, 5, "identity"));
    let by_input: Scope = serde_json::from_value(serde_json::json!(
        {"input": I, "max_size": 10, "ops": ["image.thumbnail"]}
    ))
    .unwrap();
    assert!(by_input.covers(&other, &input, 10, "image.thumbnail"));
    assert!(!by_input.covers(&other, &input, 11, "image.thumbnail"));
    assert!(!by_input.covers(&other, &input, 10, "identity"));
    assert!(!by_input.covers(&other, &K.parse().unwrap(), 10, "image.thumbnail"));
    let any_op: Scope = serde_json::from_value(serde_json::json!({"input": I})).unwrap();
    assert!(any_op.covers(&other, &input, u64::MAX, "identity"));
    for bad in [
        serde_json::json!({"key": K, "input": I}),
        serde_json::json!({"input": I, "extra": 1}),
        serde_json::json!({"key": "abc"}),
        serde_json::json!({}),
    ] {
        assert!(
            serde_json::from_value::<Scope>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn presigned_urls() {
    let key: Key = K.parse().unwrap();
    let signing = k1();
    let url = presign_result(&signing, &key, 100);
    let (path, query) = url.split_once('?').unwrap();
    assert_eq!(path, crate::status::result_path(&key));
    let p = Presigned::parse(query).unwrap().unwrap();
    assert_eq!((p.exp, p.kid), (100, "k1"));
    assert_eq!(p.verify(&key, |_| Some(&signing), 99), Ok(()));
    assert_eq!(
        p.verify(&key, |_| Some(&signing), 100),
        Err(PresignError::Expired(100))
    );
    assert_eq!(
        p.verify(&I.parse().unwrap(), |_| Some(&signing), 0),
        Err(PresignError::BadSignature)
    );
    assert_eq!(
        p.verify(&key, |_| None, 0),
        Err(PresignError::UnknownKey("k1".into()))
    );
    assert_eq!(Presigned::parse(""), None);
    assert_eq!(Presigned::parse("x=1"), None);
    for bad in [
        "exp=1",
        "exp=&kid=k&sig=s",
        "exp=+1&kid=k&sig=s",
        "exp=1&kid=k&sig=s&exp=2",
        "exp=1&kid=&sig=s",
    ] {
        assert_eq!(
            Presigned::parse(bad),
            Some(Err(PresignError::Malformed)),
            "{bad}"
        );
    }
}

#[test]
fn mint_requests_refuse_unknown_members() {
    let ok: MintRequest = serde_json::from_value(serde_json::json!(
        {"scope": {"key": K}, "allow": ["upload", "status"], "ttl": 60}
    ))
    .unwrap();
    assert_eq!(ok.allow, Some(vec![Action::Upload, Action::Status]));
    assert!(serde_json::from_value::<MintRequest>(
        serde_json::json!({"scope": {"key": K}, "x": 1})
    )
    .is_err());
    assert!(
        serde_json::from_value::<MintRequest>(serde_json::json!({"allow": ["delete"]})).is_err()
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Verification never panics, and accepts nothing it did not sign.
        #[test]
        fn arbitrary_text_is_refused(text in "\\PC{0,200}", dotted in "upc1\\.k1\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_=-]{0,50}") {
            let key = k1();
            prop_assert!(verify(&text, |_| Some(&key), 0).is_err());
            prop_assert!(verify(&dotted, |_| Some(&key), 0).is_err());
            let _ = Presigned::parse(&text);
        }

        /// What is signed verifies to the same claims; any one changed
        /// character of it does not.
        #[test]
        fn signed_claims_round_trip(exp in 1u64..u64::MAX, max in proptest::option::of(any::<u64>()),
                                    ops in proptest::collection::vec("[a-z.]{1,20}", 0..4), at in any::<prop::sample::Index>()) {
            let key = k1();
            let claims = Claims {
                exp,
                nbf: None,
                scope: Scope::Input(InputScope { input: I.parse().unwrap(), max_size: max, ops }),
                allow: vec![Action::Upload, Action::Result],
            };
            let t = sign(&key, &claims);
            prop_assert_eq!(verify(&t, |_| Some(&key), exp - 1), Ok(claims));
            let mut bytes = t.into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            prop_assert!(verify(&altered, |_| Some(&key), exp - 1).is_err(), "{}", altered);
        }
    }
}
