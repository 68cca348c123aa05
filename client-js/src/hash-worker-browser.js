// A hashing worker (Web Worker, module type): see hash-task.js. Streams
// its block of the File or Blob (Blob.stream() reads ahead while a chunk
// is hashed, which beats one-shot reads of slices) into buffers of its
// own, reused from block to block (a BYOB reader): a fresh buffer per chunk
// costs page faults and zeroing, and hashing from a smaller buffer that
// stays in the cache is faster (from a File, about a third more MiB/s).
import { serveHashing } from './hash-task.js'

/** Bytes read per chunk. */
const READ = 512 << 10
/** Buffers of READ bytes not in use (one per task in flight). */
const spare = []

serveHashing({ post: (m, transfer) => self.postMessage(m, transfer || []), onMessage: (fn) => { self.onmessage = (e) => fn(e.data) } }, (src) => src.bytes ? {
  read: (pos, len) => src.bytes.subarray(pos - src.base, pos - src.base + len),
  close () {}
} : {
  async * chunks (start, end) {
    const stream = src.blob.slice(start, end).stream()
    let byob = null
    try {
      byob = stream.getReader({ mode: 'byob' })
    } catch {
      // Not a byte stream here: chunks as the browser allocates them.
    }
    if (!byob) {
      const reader = stream.getReader()
      try {
        for (;;) {
          const { done, value } = await reader.read()
          if (done) return
          yield value
        }
      } finally {
        reader.releaseLock()
      }
    }
    // Each read hands the buffer over and gives it back in `value`: the
    // chunk is hashed before the next read, so one buffer serves the task.
    let buf = spare.pop() || new ArrayBuffer(READ)
    try {
      for (;;) {
        const { done, value } = await byob.read(new Uint8Array(buf, 0, READ))
        if (value) buf = value.buffer
        if (done) return
        yield value
      }
    } finally {
      byob.releaseLock()
      if (buf.byteLength === READ) spare.push(buf)
    }
  },
  close () {}
})
