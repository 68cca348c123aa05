//! Key derivation against `spec/vectors/keys.json`, the vectors every SDK reuses.

use serde_json::Value;
use upcache_protocol::{InputHash, Key, Operation};

#[test]
fn key_vectors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/keys.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let bytes = hex::decode(case["input_hex"].as_str().unwrap()).unwrap();
        let input = InputHash::of(&bytes);
        assert_eq!(
            input.to_hex(),
            case["input_blake3"],
            "input hash of {}",
            case["input_name"]
        );
        let op = Operation::parse(&case["operation"]).unwrap();
        assert_eq!(op.normalized(), &case["normalized"]);
        assert_eq!(op.canonical(), case["canonical"].as_str().unwrap());
        assert_eq!(
            Key::derive(&input, &op).to_hex(),
            case["key"],
            "key of {}",
            case["canonical"]
        );
    }
}

#[test]
fn spelling_does_not_change_the_key() {
    let input = InputHash::of(b"x");
    let a = Operation::from_json(r#"{"op":"image.thumbnail","width":8,"height":9}"#).unwrap();
    let b = Operation::from_json(
        r#"{ "height" : 9, "format":"png","v":2, "width":8, "op":"image.thumbnail" }"#,
    )
    .unwrap();
    assert_eq!(Key::derive(&input, &a), Key::derive(&input, &b));
    let c = Operation::from_json(r#"{"op":"image.thumbnail","width":8,"height":10}"#).unwrap();
    assert_ne!(Key::derive(&input, &a), Key::derive(&input, &c));
}
