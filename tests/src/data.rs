//! Test inputs, and what a client computes about them before sending a byte.

use std::io::Cursor;

use serde_json::Value;
use upcache_protocol::blocks::{encode_ranges, Layout};
use upcache_protocol::headers::encode_operation;
use upcache_protocol::tree::BlockHasher;
use upcache_protocol::{CreateRequest, Digest, InputHash, InputRef, Key, Operation};

/// Deterministic pseudo-random bytes (splitmix64), different for each seed.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A PNG of `width` × `height` RGB pixels: gradients with a texture, so
/// resizing and blurring have something to do, yet it compresses well.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let r = (x * 255 / width.max(1)) as u8;
        let g = (y * 255 / height.max(1)) as u8;
        let b = (((x / 8) ^ (y / 8)) & 1) as u8 * 200;
        image::Rgb([r, g, b])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

/// A PNG of `width` × `height` RGB noise: it does not compress, so it takes
/// about `3 · width · height` bytes — for image inputs of many blocks.
pub fn noisy_png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let pixels = pseudo_random((width * height * 3) as usize, seed);
    let img = image::RgbImage::from_raw(width, height, pixels).expect("the pixels fit");
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

/// An input and an operation, with everything a client derives from them.
#[derive(Debug, Clone)]
pub struct Job {
    pub input: Vec<u8>,
    pub hash: InputHash,
    /// The operation as the client wrote it (not normalized).
    pub op_json: Value,
    pub op: Operation,
    pub key: Key,
}

impl Job {
    /// `op` applied to `input`. Panics if the operation is invalid: use raw
    /// requests to send invalid operations.
    pub fn new(input: Vec<u8>, op: Value) -> Self {
        let parsed =
            Operation::parse(&op).unwrap_or_else(|e| panic!("invalid operation {op}: {e}"));
        let hash = InputHash::of(&input);
        let key = Key::derive(&hash, &parsed);
        Self {
            input,
            hash,
            op_json: op,
            op: parsed,
            key,
        }
    }

    /// The `identity` operation on `input`.
    pub fn identity(input: Vec<u8>) -> Self {
        Self::new(input, serde_json::json!({"op": "identity"}))
    }

    /// Another operation on the same input.
    pub fn with_op(&self, op: Value) -> Self {
        Self::new(self.input.clone(), op)
    }

    /// Input length.
    pub fn len(&self) -> u64 {
        self.input.len() as u64
    }

    /// Whether the input is empty.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// The `Upload-Operation` header value.
    pub fn op_header(&self) -> String {
        encode_operation(&self.op_json)
    }

    /// The body of `POST /v1/ops`.
    pub fn create_request(&self, block_size: Option<u64>) -> Value {
        let req = CreateRequest {
            input: InputRef {
                blake3: self.hash,
                length: self.len(),
            },
            operation: self.op_json.clone(),
            block_size,
        };
        serde_json::to_value(req).expect("serialize a create request")
    }

    /// The block layout for `block_size`.
    pub fn layout(&self, block_size: u64) -> Layout {
        Layout::new(self.len(), block_size, u64::MAX).expect("a valid block size")
    }

    /// The bytes of block `n`.
    pub fn block(&self, layout: &Layout, n: u64) -> &[u8] {
        let r = layout.range(n);
        &self.input[r.start as usize..r.end as usize]
    }

    /// `Upload-Block-Hash` of block `n`: hex BLAKE3 of its bytes.
    pub fn block_hash(&self, layout: &Layout, n: u64) -> String {
        blake3::hash(self.block(layout, n)).to_hex().to_string()
    }

    /// The chaining value of block `n` at its place in the input.
    pub fn cv(&self, layout: &Layout, n: u64) -> [u8; 32] {
        let mut h = BlockHasher::new(layout, n);
        h.update(self.block(layout, n));
        h.finish()
    }

    /// The `Upload-Digest` a server holding exactly `blocks` must report.
    pub fn digest_of(&self, layout: &Layout, blocks: impl IntoIterator<Item = u64>) -> String {
        let mut d = Digest::new();
        for n in blocks {
            d.add(n, &self.cv(layout, n));
        }
        d.to_hex()
    }

    /// The `Upload-Missing` value when `received` blocks are in.
    pub fn missing_after(&self, layout: &Layout, received: &[u64]) -> String {
        encode_ranges((0..layout.blocks()).filter(|n| !received.contains(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_is_deterministic_and_seeded() {
        assert_eq!(pseudo_random(100, 1), pseudo_random(100, 1));
        assert_ne!(pseudo_random(100, 1), pseudo_random(100, 2));
        assert_eq!(pseudo_random(13, 1), pseudo_random(100, 1)[..13]);
    }

    #[test]
    fn large_pngs_stay_small() {
        let bytes = png(2000, 2000);
        assert!(
            bytes.len() < 2 << 20,
            "a 2000×2000 test PNG takes {} bytes",
            bytes.len()
        );
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (2000, 2000));
    }

    #[test]
    fn job_digest_matches_block_by_block() {
        let job = Job::identity(pseudo_random(10_000, 3));
        let layout = job.layout(4096);
        let cvs: Vec<_> = (0..layout.blocks()).map(|n| job.cv(&layout, n)).collect();
        assert_eq!(
            upcache_protocol::tree::root(&layout, &cvs),
            blake3::hash(&job.input)
        );
        assert_eq!(job.missing_after(&layout, &[1]), "0,2");
    }
}
