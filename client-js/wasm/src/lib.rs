//! The JavaScript SDK's hashing core, compiled to WebAssembly
//! (`client-js/wasm/build.sh` builds `client-js/wasm/upcache_hash.wasm`).
//!
//! It is the protocol crate's code, so the JavaScript client computes exactly
//! what the Rust SDK and the server compute: block chaining values
//! ([`upcache_protocol::tree`]), their merge into the input's BLAKE3, the
//! normalized operation and the key ([`upcache_protocol::key`]).
//!
//! # ABI
//!
//! Plain C functions over the module's linear memory, so that a few lines of
//! JavaScript load it (`client-js/src/wasm.js`) without generated glue:
//!
//! * `upc_alloc(len) -> ptr`, `upc_free(ptr, len)` — buffers JavaScript fills.
//! * `upc_hasher_new(offset) -> h`, `upc_hasher_update(h, ptr, len)`,
//!   `upc_hasher_finish(h, root, out)` — one block (or the whole input) at
//!   its byte offset in the input; `root = 1` finalizes the input's hash,
//!   `0` the block's chaining value. `finish` frees the hasher.
//! * `upc_root(cvs, n, out)` — merges `n` chaining values (32 bytes each, in
//!   block order) into the input's BLAKE3.
//! * `upc_key(input, op, op_len, out) -> 0 | 1` — the key of the operation
//!   (JSON text) on the input hash; `upc_normalize(op, op_len) -> 0 | 1` —
//!   the canonical normalized operation. The text (or the error message)
//!   is then at `upc_output_ptr()`, `upc_output_len()` bytes.

use std::cell::RefCell;

use blake3::hazmat::HasherExt;
use upcache_protocol::{tree, InputHash, Key, Layout, Operation};

thread_local! {
    /// The text of the last `upc_key` / `upc_normalize` call.
    static OUTPUT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A buffer of `len` bytes for JavaScript to fill; free it with [`upc_free`].
#[no_mangle]
pub extern "C" fn upc_alloc(len: usize) -> *mut u8 {
    let mut v = Vec::<u8>::with_capacity(len.max(1));
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

/// Frees a buffer from [`upc_alloc`].
///
/// # Safety
/// `ptr` and `len` are what `upc_alloc` was given and returned.
#[no_mangle]
pub unsafe extern "C" fn upc_free(ptr: *mut u8, len: usize) {
    drop(Vec::from_raw_parts(ptr, 0, len.max(1)));
}

/// A hasher for the bytes starting at `offset` in the input.
#[no_mangle]
pub extern "C" fn upc_hasher_new(offset: u64) -> *mut blake3::Hasher {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    Box::into_raw(Box::new(hasher))
}

/// Feeds `len` bytes at `ptr` to the hasher.
///
/// # Safety
/// `h` comes from [`upc_hasher_new`] and is not finished; `ptr` holds `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn upc_hasher_update(h: *mut blake3::Hasher, ptr: *const u8, len: usize) {
    (*h).update(std::slice::from_raw_parts(ptr, len));
}

/// Writes the 32-byte result to `out` and frees the hasher: the root hash
/// when `root` is non-zero (the block is the whole input), the chaining
/// value otherwise.
///
/// # Safety
/// `h` comes from [`upc_hasher_new`]; `out` has room for 32 bytes.
#[no_mangle]
pub unsafe extern "C" fn upc_hasher_finish(h: *mut blake3::Hasher, root: u32, out: *mut u8) {
    let hasher = Box::from_raw(h);
    let bytes = if root != 0 {
        *hasher.finalize().as_bytes()
    } else {
        hasher.finalize_non_root()
    };
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), out, 32);
}

/// Merges `n` chaining values into the input's BLAKE3 (32 bytes to `out`).
///
/// # Safety
/// `cvs` holds `32 · n` bytes; `out` has room for 32.
#[no_mangle]
pub unsafe extern "C" fn upc_root(cvs: *const u8, n: usize, out: *mut u8) {
    let cvs: Vec<[u8; 32]> = std::slice::from_raw_parts(cvs, 32 * n)
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32-byte chunks"))
        .collect();
    // Only the number of blocks matters to the merge, not their size.
    let layout = Layout {
        length: n as u64 * 1024,
        block_size: 1024,
    };
    let hash = tree::root(&layout, &cvs);
    std::ptr::copy_nonoverlapping(hash.as_bytes().as_ptr(), out, 32);
}

fn parse_operation(ptr: *const u8, len: usize) -> Result<Operation, String> {
    // SAFETY: the callers' contracts say `ptr` holds `len` bytes.
    let text = unsafe { std::slice::from_raw_parts(ptr, len) };
    let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
    Operation::from_json(text).map_err(|e| e.to_string())
}

fn answer(result: Result<String, String>) -> u32 {
    let (code, text) = match result {
        Ok(text) => (0, text),
        Err(message) => (1, message),
    };
    OUTPUT.with(|o| *o.borrow_mut() = text);
    code
}

/// The canonical normalized form of the operation (JSON text at `op`).
/// Returns 0, or 1 with the error message as the output.
///
/// # Safety
/// `op` holds `op_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn upc_normalize(op: *const u8, op_len: usize) -> u32 {
    answer(parse_operation(op, op_len).map(|o| o.canonical().to_owned()))
}

/// The key of the operation (JSON text at `op`) on the input whose BLAKE3
/// is the 32 bytes at `input`, written to `out` as 32 bytes. Returns 0 (the
/// output is the canonical operation), or 1 with the error message.
///
/// # Safety
/// `input` holds 32 bytes, `op` holds `op_len`, `out` has room for 32.
#[no_mangle]
pub unsafe extern "C" fn upc_key(
    input: *const u8,
    op: *const u8,
    op_len: usize,
    out: *mut u8,
) -> u32 {
    let mut hash = [0u8; 32];
    std::ptr::copy_nonoverlapping(input, hash.as_mut_ptr(), 32);
    answer(parse_operation(op, op_len).map(|o| {
        let key = Key::derive(&InputHash(hash), &o);
        std::ptr::copy_nonoverlapping(key.as_bytes().as_ptr(), out, 32);
        o.canonical().to_owned()
    }))
}

/// Where the output text of the last call starts.
#[no_mangle]
pub extern "C" fn upc_output_ptr() -> *const u8 {
    OUTPUT.with(|o| o.borrow().as_ptr())
}

/// The output text's length in bytes.
#[no_mangle]
pub extern "C" fn upc_output_len() -> usize {
    OUTPUT.with(|o| o.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_values_merge_into_the_inputs_hash() {
        let input: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let bs = 4096u64;
        let mut cvs = Vec::new();
        for (n, block) in input.chunks(bs as usize).enumerate() {
            let h = upc_hasher_new(n as u64 * bs);
            let mut cv = [0u8; 32];
            unsafe {
                upc_hasher_update(h, block.as_ptr(), block.len());
                upc_hasher_finish(h, 0, cv.as_mut_ptr());
            }
            cvs.extend_from_slice(&cv);
        }
        let mut root = [0u8; 32];
        unsafe { upc_root(cvs.as_ptr(), 3, root.as_mut_ptr()) };
        assert_eq!(root, *blake3::hash(&input).as_bytes());
    }

    #[test]
    fn keys_and_errors() {
        let op = br#"{"op":"identity"}"#;
        let input = *blake3::hash(b"").as_bytes();
        let mut key = [0u8; 32];
        assert_eq!(
            unsafe { upc_key(input.as_ptr(), op.as_ptr(), op.len(), key.as_mut_ptr()) },
            0
        );
        let expected = Key::derive(
            &InputHash(input),
            &Operation::from_json("{\"op\":\"identity\"}").unwrap(),
        );
        assert_eq!(key, expected.0);
        let bad = br#"{"op":"nope"}"#;
        assert_eq!(unsafe { upc_normalize(bad.as_ptr(), bad.len()) }, 1);
        assert!(upc_output_len() > 0);
    }
}
