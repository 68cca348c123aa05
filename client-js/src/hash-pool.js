// Hashing an input block by block on a pool of workers (Web Workers in
// browsers, worker_threads in Node), each running the WebAssembly hasher.
// Every block is hashed once; its chaining value is what its upload sends
// in `Upload-Block-Hash: cv=…`, and the merge of all of them is the input's
// BLAKE3 (spec/protocol.md §5.4).

import { UpcacheError, CLIENT } from './errors.js'

export class HashPool {
  /**
   * @param {() => {post: Function, onMessage: Function, onError: Function, terminate: Function}} spawn
   * @param {() => Promise<ArrayBuffer>} wasmBytes the module's bytes
   * @param {number} size workers at most
   */
  constructor (spawn, wasmBytes, size) {
    this.spawn = spawn
    // Compiled once, here, and shared: a WebAssembly.Module posted to a
    // worker shares its machine code (optimized once for all workers).
    this.module = null
    this.wasmModule = () => {
      if (!this.module) {
        this.module = wasmBytes().then((b) => WebAssembly.compile(b))
        this.module.catch(() => { this.module = null })
      }
      return this.module
    }
    this.size = Math.max(1, size)
    this.workers = []
    this.nextId = 1
    // Buffers of block copies the workers handed back, for the next copies:
    // a fresh 8 MiB buffer per block costs more than the copy (Chromium
    // allocates one in about 15 ms, and copies into one in 1).
    this.spare = []
  }

  async #worker (i) {
    if (!this.workers[i]) {
      this.workers[i] = (async () => {
        // The worker starts while the module compiles (its handlers set
        // at once: an error starting it must not go unheard).
        const w = this.spawn()
        const pending = new Map()
        let ready
        const isReady = new Promise((resolve, reject) => { ready = { resolve, reject } })
        isReady.catch(() => {}) // awaited below, maybe after it failed
        w.onMessage((msg) => {
          if (msg.type === 'ready') return ready.resolve()
          const p = pending.get(msg.id)
          if (!p) return
          if (msg.progress) return p.progress(msg.progress)
          pending.delete(msg.id)
          if (msg.spare && this.spare.length < 2 * this.size + 2) this.spare.push(msg.spare)
          if (msg.error) p.reject(new UpcacheError({ type: CLIENT.hashing, detail: msg.error }))
          else p.resolve(msg.cv)
        })
        w.onError((e) => {
          const err = new UpcacheError({ type: CLIENT.hashing, detail: `hash worker: ${e && e.message ? e.message : e}` })
          ready.reject(err)
          for (const p of pending.values()) p.reject(err)
          pending.clear()
          this.workers[i] = null
        })
        let module
        try {
          module = await this.wasmModule()
        } catch (e) {
          w.terminate()
          throw e
        }
        w.post({ type: 'init', wasm: module })
        await isReady
        return {
          run: (task, progress) => new Promise((resolve, reject) => {
            const id = this.nextId++
            pending.set(id, { resolve, reject, progress })
            const transfer = task.src.bytes ? [task.src.bytes.buffer] : []
            w.post({ id, ...task }, transfer)
          }),
          terminate: () => w.terminate()
        }
      })()
      this.workers[i].catch(() => { this.workers[i] = null })
    }
    return this.workers[i]
  }

  /**
   * Runs `tasks` (see hash-task.js), `makeSrc(task, spare)` giving each its
   * source just before it is sent (so that copies of large inputs are made
   * one block at a time, into `spare`, a buffer a worker handed back, if
   * there is one and it is large enough). Returns the 32-byte results in task order.
   */
  async run (tasks, makeSrc, onBytes, signal) {
    const results = new Array(tasks.length)
    let next = 0
    // Two lanes per worker: while one task is hashed, the next one's bytes
    // are already on their way (a File's next stream opened, a copy transferred).
    const lane = async (i) => {
      const w = await this.#worker(i % this.size)
      while (next < tasks.length) {
        if (signal && signal.aborted) throw aborted(signal)
        const n = next++
        const spare = this.spare.pop()
        const src = await makeSrc(tasks[n], spare)
        if (spare && !(src.bytes && src.bytes.buffer === spare)) this.spare.push(spare)
        const task = { ...tasks[n], src }
        results[n] = await w.run(task, onBytes)
      }
    }
    const lanes = Math.min(2 * this.size, tasks.length)
    await Promise.all(Array.from({ length: lanes }, (_, i) => lane(i)))
    return results
  }

  /** Stops the workers. */
  async close () {
    const ws = this.workers
    this.workers = []
    this.spare = []
    for (const w of ws) {
      if (w) { try { (await w).terminate() } catch {} }
    }
  }
}

export function aborted (signal) {
  return new UpcacheError({ type: CLIENT.aborted, detail: 'aborted', cause: signal && signal.reason })
}
