// A hashing worker (worker_threads): see hash-task.js.
import fs from 'node:fs'
import { parentPort } from 'node:worker_threads'
import { serveHashing } from './hash-task.js'

serveHashing({ post: (m, transfer) => parentPort.postMessage(m, transfer), onMessage: (fn) => parentPort.on('message', fn) }, (src) => {
  if (src.bytes) {
    return { read: (pos, len) => src.bytes.subarray(pos - src.base, pos - src.base + len), close () {} }
  }
  const fd = fs.openSync(src.path, 'r')
  return {
    read: () => null,
    readInto (pos, view) {
      let at = 0
      while (at < view.length) {
        const n = fs.readSync(fd, view, at, view.length - at, pos + at)
        if (n === 0) throw new Error(`${src.path} shrank while being hashed`)
        at += n
      }
    },
    close () { fs.closeSync(fd) }
  }
})
