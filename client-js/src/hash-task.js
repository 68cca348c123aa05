// One hashing task, as a worker runs it: the chaining value of one block
// (or the root hash of a one-block input), read piece by piece from its
// source straight into the WebAssembly module's memory.

import { Blake3Wasm, PIECE } from './wasm.js'

/** Bytes hashed between two progress messages. */
const REPORT = 4 * PIECE

/**
 * Serves the pool's messages on one worker. `port` has `post(msg, transfer)` and
 * `onMessage(fn)`; `reader(src)` returns a reader of the source with
 * `close()` and one of: `chunks(start, end)`, an async iterable of its
 * bytes; `read(pos, len)`, the bytes (or a promise of them); or
 * `read() → null` with `readInto(pos, view)` filling a view of the
 * module's memory.
 */
export function serveHashing (port, reader) {
  let wasm = null
  port.onMessage(async (msg) => {
    if (msg.type === 'init') {
      wasm = await Blake3Wasm.load(msg.wasm)
      port.post({ type: 'ready' })
      return
    }
    try {
      const cv = await hashTask(wasm, msg, reader, (n) => port.post({ id: msg.id, progress: n }))
      // A copy of the block goes back, for the pool to copy the next block into.
      const spare = msg.src.bytes ? msg.src.bytes.buffer : null
      port.post({ id: msg.id, cv, spare }, spare ? [spare] : [])
    } catch (e) {
      port.post({ id: msg.id, error: String(e && e.stack ? e.stack : e) })
    }
  })
}

/**
 * The task `{ src, start, end, offset, root, blockSize }`: bytes
 * `[start, end)` of the source, which sit at `offset` in the input; `root`
 * when they are the whole input. Its result is their chaining value (or
 * root hash) — or, with `blockSize` (a run of whole blocks, read as one
 * stream), the chaining values of its blocks, in order.
 */
export async function hashTask (wasm, task, reader, progress) {
  let h = wasm.hasher(task.offset)
  const r = reader(task.src)
  try {
    let unreported = 0
    if (r.chunks) {
      // A stream of the bytes: the next chunk is read while this one is hashed.
      const cvs = []
      const stop = task.offset + (task.end - task.start)
      const bs = task.blockSize || (task.end - task.start)
      let at = task.offset
      let blockEnd = task.offset + bs
      for await (const chunk of r.chunks(task.start, task.end)) {
        for (let i = 0; i < chunk.length;) {
          const take = Math.min(chunk.length - i, blockEnd - at)
          h.update(take === chunk.length ? chunk : chunk.subarray(i, i + take))
          i += take
          at += take
          if (at === blockEnd && at < stop) {
            cvs.push(h.finish(false))
            h = wasm.hasher(at)
            blockEnd += bs
          }
        }
        unreported += chunk.length
        if (unreported >= REPORT) { progress(unreported); unreported = 0 }
      }
      if (unreported) progress(unreported)
      cvs.push(h.finish(task.root))
      return task.blockSize ? cvs : cvs[0]
    }
    for (let pos = task.start; pos < task.end; pos += PIECE) {
      const len = Math.min(PIECE, task.end - pos)
      // The view is made after the read: an async read may let memory grow.
      const bytes = await r.read(pos, len)
      if (bytes) {
        h.update(bytes)
      } else {
        h.updateWith(len, (view) => r.readInto(pos, view))
      }
      unreported += len
      if (unreported >= REPORT) { progress(unreported); unreported = 0 }
    }
    if (unreported) progress(unreported)
    return h.finish(task.root)
  } finally {
    r.close()
  }
}
