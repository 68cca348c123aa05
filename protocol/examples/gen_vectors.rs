//! Regenerates `spec/vectors/keys.json`: `cargo run -p upcache-protocol --example gen_vectors`.
//! Only run it when the key derivation deliberately changes (a new protocol version).

use serde_json::{json, Value};
use upcache_protocol::{InputHash, Key, Operation};

fn main() {
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("hello", b"hello world\n".to_vec()),
        ("ramp-5000", (0..5000u32).map(|i| (i % 251) as u8).collect()),
    ];
    let ops = [
        json!({"op": "identity"}),
        json!({"op": "identity", "v": 1}),
        json!({"op": "image.thumbnail", "width": 400, "height": 400, "format": "webp"}),
        json!({"height": 300, "width": 200, "op": "image.thumbnail"}),
        json!({"op": "image.thumbnail", "width": 64, "height": 64, "format": "jpeg"}),
        json!({"op": "image.resize", "width": 10, "height": 20, "fit": "cover"}),
        json!({"op": "image.blur", "sigma": 1.5, "format": "png"}),
        json!({"op": "image.blur", "sigma": 0.1}),
        json!({"op": "image.pipeline", "format": "jpeg", "quality": 70, "steps": [
            {"op": "image.crop", "x": 1, "y": 2, "width": 30, "height": 40},
            {"op": "image.rotate", "degrees": 90},
            {"op": "image.grayscale"}]}),
    ];
    let mut cases = Vec::new();
    for (name, bytes) in &inputs {
        let input = InputHash::of(bytes);
        for op in &ops {
            let parsed = Operation::parse(op).expect("vector operations are valid");
            cases.push(json!({
                "input_name": name,
                "input_hex": hex::encode(bytes),
                "input_blake3": input.to_hex(),
                "operation": op,
                "normalized": parsed.normalized(),
                "canonical": parsed.canonical(),
                "key": Key::derive(&input, &parsed).to_hex(),
            }));
        }
    }
    let doc: Value = json!({
        "description": "upcache v1 key derivation vectors: key = hex(BLAKE3 derive_key(\"upcache v1 operation key\", input_blake3 (32 raw bytes) || canonical)), canonical = RFC 8785 of the normalized operation",
        "cases": cases,
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap());
}
