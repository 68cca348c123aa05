// The hashing core: upcache_hash.wasm, built from client-js/wasm (the
// protocol crate's own Rust code), behind a few plain functions. See
// client-js/wasm/src/lib.rs for the ABI.

const enc = new TextEncoder()
const dec = new TextDecoder()

/** Bytes copied into the module per update call. */
export const PIECE = 1 << 20
const PAGE = 4096
const alignUp = (p, a) => Math.ceil(p / a) * a

export class Blake3Wasm {
  /** @param {WebAssembly.Instance} instance */
  constructor (instance) {
    this.x = instance.exports
    // Page-aligned: the kernel's copy of a file read into it (and memcpy)
    // runs several times slower into a misaligned buffer.
    this.buf = alignUp(this.x.upc_alloc(PIECE + PAGE), PAGE)
    this.out = this.x.upc_alloc(32)
    this.inp = this.x.upc_alloc(32)
  }

  /** Instantiates the module from its bytes (or a compiled module). */
  static async load (bytesOrModule) {
    const { instance } = bytesOrModule instanceof WebAssembly.Module
      ? { instance: await WebAssembly.instantiate(bytesOrModule, {}) }
      : await WebAssembly.instantiate(bytesOrModule, {})
    return new Blake3Wasm(instance)
  }

  /** The module's memory as bytes (a new view: memory may have grown). */
  mem () { return new Uint8Array(this.x.memory.buffer) }

  /** A hasher of the bytes at `offset` in the input. */
  hasher (offset = 0) {
    return new Hasher(this, this.x.upc_hasher_new(BigInt(offset)))
  }

  /** Plain BLAKE3 of bytes, hex. */
  hash (bytes) {
    const h = this.hasher(0)
    h.update(bytes)
    return hex(h.finish(true))
  }

  /** Merges chaining values (block order) into the input's BLAKE3, as bytes. */
  root (cvs) {
    const n = cvs.length
    const p = this.x.upc_alloc(32 * n)
    const m = this.mem()
    cvs.forEach((cv, i) => m.set(cv, p + 32 * i))
    this.x.upc_root(p, n, this.out)
    const r = this.mem().slice(this.out, this.out + 32)
    this.x.upc_free(p, 32 * n)
    return r
  }

  #text (op) {
    const bytes = enc.encode(typeof op === 'string' ? op : JSON.stringify(op))
    const p = this.x.upc_alloc(bytes.length)
    this.mem().set(bytes, p)
    return [p, bytes.length]
  }

  #output () {
    const p = this.x.upc_output_ptr(); const n = this.x.upc_output_len()
    return dec.decode(this.mem().slice(p, p + n))
  }

  /**
   * The key of `op` on the input hashing to `inputHex`, and the canonical
   * operation: `{ key, canonical }`, or `{ error }` when the operation is invalid.
   */
  key (inputHex, op) {
    this.mem().set(unhex(inputHex), this.inp)
    const [p, n] = this.#text(op)
    const code = this.x.upc_key(this.inp, p, n, this.out)
    this.x.upc_free(p, n)
    const text = this.#output()
    if (code !== 0) return { error: text }
    return { key: hex(this.mem().slice(this.out, this.out + 32)), canonical: text }
  }
}

export class Hasher {
  constructor (w, h) { this.w = w; this.h = h }
  /** Feeds bytes (any length). */
  update (bytes) {
    const x = this.w.x
    for (let at = 0; at < bytes.length; at += PIECE) {
      const piece = bytes.subarray(at, Math.min(at + PIECE, bytes.length))
      this.w.mem().set(piece, this.w.buf)
      x.upc_hasher_update(this.h, this.w.buf, piece.length)
    }
  }

  /**
   * Feeds `len` bytes that `fill(view)` writes straight into the module's
   * buffer (no copy), for readers that read into a given buffer.
   */
  updateWith (len, fill) {
    const view = new Uint8Array(this.w.x.memory.buffer, this.w.buf, len)
    fill(view)
    this.w.x.upc_hasher_update(this.h, this.w.buf, len)
  }

  /** The 32-byte result: the root hash if `root`, else the chaining value. */
  finish (root) {
    this.w.x.upc_hasher_finish(this.h, root ? 1 : 0, this.w.out)
    this.h = 0
    return this.w.mem().slice(this.w.out, this.w.out + 32)
  }
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))
export function hex (bytes) {
  let s = ''
  for (const b of bytes) s += HEX[b]
  return s
}
export function unhex (s) {
  if (!/^[0-9a-fA-F]{64}$/.test(s)) throw new TypeError(`expected 64 hex digits, got ${JSON.stringify(s)}`)
  const out = new Uint8Array(32)
  for (let i = 0; i < 32; i++) out[i] = parseInt(s.substr(2 * i, 2), 16)
  return out
}
