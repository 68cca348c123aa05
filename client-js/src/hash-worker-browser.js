// A hashing worker (Web Worker, module type): see hash-task.js. Streams
// its block of the File or Blob (Blob.stream() reads ahead while a chunk
// is hashed, which beats one-shot reads of slices).
import { serveHashing } from './hash-task.js'

serveHashing({ post: (m) => self.postMessage(m), onMessage: (fn) => { self.onmessage = (e) => fn(e.data) } }, (src) => src.bytes ? {
  read: (pos, len) => src.bytes.subarray(pos - src.base, pos - src.base + len),
  close () {}
} : {
  async * chunks (start, end) {
    const reader = src.blob.slice(start, end).stream().getReader()
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return
        yield value
      }
    } finally {
      reader.releaseLock()
    }
  },
  close () {}
})
