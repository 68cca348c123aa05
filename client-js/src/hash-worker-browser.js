// A hashing worker (Web Worker, module type): see hash-task.js. Reads the
// File or Blob piece by piece, synchronously (FileReaderSync exists in
// workers for this).
import { serveHashing } from './hash-task.js'

serveHashing({ post: (m) => self.postMessage(m), onMessage: (fn) => { self.onmessage = (e) => fn(e.data) } }, (src) => {
  const reader = new FileReaderSync()
  return {
    read: (pos, len) => new Uint8Array(reader.readAsArrayBuffer(src.blob.slice(pos, pos + len))),
    close () {}
  }
})
