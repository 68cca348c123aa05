// The Node build (`exports` condition `node`): HTTP over node:http(s) with
// a keep-alive agent sized to the concurrency, hashing on worker_threads,
// inputs from file paths (read block by block, never whole) or memory.

import http from 'node:http'
import https from 'node:https'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { CoreClient, PutResult, DEFAULT_BLOCK_SIZE } from './client.js'
import { UpcacheError, CLIENT } from './errors.js'

export { UpcacheError, PutResult, DEFAULT_BLOCK_SIZE, CLIENT }

/** Pieces a request body is written in; each one flushed is upload progress. */
const WRITE_PIECE = 1 << 20

let wasmBytes = null
function loadWasm () {
  if (!wasmBytes) wasmBytes = fsp.readFile(new URL('./upcache_hash.wasm', import.meta.url)).then((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.length))
  return wasmBytes
}

const nodePlatform = {
  forClient (client) {
    const opts = { keepAlive: true, maxSockets: client.concurrency + 2 }
    const agent = client.server.startsWith('https:') ? new https.Agent(opts) : new http.Agent(opts)
    return {
      cores: () => (os.availableParallelism ? os.availableParallelism() : os.cpus().length),
      wasmBytes: loadWasm,
      spawnHashWorker,
      describe: (input) => describe(input, client),
      // node:http can hold a body back until `100 Continue` (a hit sends none).
      expectContinue: true,
      send: (req) => sendFollowing(agent, client.server, req),
      save,
      close: () => agent.destroy()
    }
  }
}

function spawnHashWorker () {
  const w = new Worker(new URL('./hash-worker-node.js', import.meta.url))
  // Idle workers must not keep the process alive.
  w.unref()
  return {
    post: (msg, transfer) => w.postMessage(msg, transfer),
    onMessage: (fn) => w.on('message', fn),
    onError: (fn) => { w.on('error', fn); w.on('exit', (code) => code && fn(new Error(`exited with ${code}`))) },
    terminate: () => w.terminate()
  }
}

/** An input's length and readers: worker sources for hashing, bytes, request bodies. */
async function describe (input, client) {
  if (typeof input === 'string' || input instanceof URL) {
    const file = input instanceof URL ? input : path.resolve(input)
    const st = await fsp.stat(file).catch((e) => {
      throw new UpcacheError({ type: CLIENT.invalidInput, detail: `cannot read ${input}: ${e.message}`, cause: e })
    })
    if (!st.isFile()) throw new UpcacheError({ type: CLIENT.invalidInput, detail: `${input} is not a file` })
    // One descriptor for the whole put, and block buffers recycled once
    // their request is answered (see BlockBuffers).
    let fh = null
    let buffers = null
    const read = async (start, end, buf = Buffer.allocUnsafe(end - start)) => {
      if (!fh) fh = fsp.open(file, 'r')
      const h = await fh
      let at = 0
      while (at < buf.length) {
        const { bytesRead } = await h.read(buf, at, buf.length - at, start + at)
        if (bytesRead === 0) throw new UpcacheError({ type: CLIENT.invalidInput, detail: `${input} shrank while being uploaded` })
        at += bytesRead
      }
      return buf
    }
    const body = (start, end) => {
      if (!buffers) buffers = new BlockBuffers(client.blockSize, 2 * client.concurrency + 2)
      return read(start, end, buffers.take(end - start))
    }
    const release = (b) => { if (buffers) buffers.give(b) }
    const close = async () => {
      buffers = null
      if (fh) { const h = fh; fh = null; await (await h.catch(() => null))?.close() }
    }
    return { length: st.size, src: () => ({ path: String(file instanceof URL ? file.pathname : file) }), bytes: (start, end) => read(start, end), body, release, close }
  }
  let u8
  if (input instanceof Uint8Array) u8 = input
  else if (input instanceof ArrayBuffer) u8 = new Uint8Array(input)
  else if (ArrayBuffer.isView(input)) u8 = new Uint8Array(input.buffer, input.byteOffset, input.byteLength)
  else if (typeof Blob !== 'undefined' && input instanceof Blob) u8 = new Uint8Array(await input.arrayBuffer())
  else throw new UpcacheError({ type: CLIENT.invalidInput, detail: 'the input must be a file path, Blob, Uint8Array or ArrayBuffer' })
  const sub = async (start, end) => u8.subarray(start, end)
  // A copy of the block alone goes to the worker (a view would clone the whole buffer).
  return { length: u8.length, src: (start, end, spare) => ({ bytes: copyOf(u8, start, end, spare), base: start }), bytes: sub, body: sub }
}

/** Bytes [start, end) of `u8`, copied into `spare` (an ArrayBuffer) if it is large enough. */
function copyOf (u8, start, end, spare) {
  const out = spare && spare.byteLength >= end - start ? new Uint8Array(spare, 0, end - start) : new Uint8Array(end - start)
  out.set(u8.subarray(start, end))
  return out
}

/**
 * Request bodies of a put: `slots` buffers of `size` bytes, page-aligned
 * (views of one WebAssembly memory, whose base is page-aligned; malloc's
 * large buffers are not, and the kernel copies file pages into them and out
 * of them to sockets at half the speed), reused once a block is answered
 * instead of a fresh buffer per block (page faults, garbage collection: CPU
 * the server on the same machine may need). A block that does not fit, or
 * finds no free slot, gets a buffer of its own.
 */
class BlockBuffers {
  constructor (size, slots) {
    this.size = Math.ceil(size / 65536) * 65536
    this.free = []
    try {
      this.memory = new WebAssembly.Memory({ initial: (this.size * slots) / 65536, maximum: (this.size * slots) / 65536 })
      for (let i = 0; i < slots; i++) this.free.push(i * this.size)
    } catch {
      this.memory = null // too large for one memory: plain buffers
    }
  }

  take (len) {
    if (len > this.size || this.free.length === 0) return undefined
    return new Uint8Array(this.memory.buffer, this.free.pop(), len)
  }

  give (view) {
    if (this.memory && view.buffer === this.memory.buffer) this.free.push(view.byteOffset)
  }
}

/** Redirects a `GET` or `HEAD` follows (browsers' fetch follows 20). */
const MAX_REDIRECTS = 5
const REDIRECTS = new Set([301, 302, 303, 307, 308])
/** Headers that stay behind when a redirect leaves for another origin (as fetch drops them). */
const CREDENTIALS = ['authorization', 'cookie', 'proxy-authorization']

/**
 * `send`, following the redirects of body-less requests as fetch does: a
 * server may answer a large result's `GET` with a `307` to a presigned URL
 * of its object in S3 (spec/protocol.md §7.7). The `Range` goes along;
 * credentials do not leave the server's origin, and the server's agent
 * (its keep-alive pool) serves the server's origin alone.
 */
async function sendFollowing (agent, server, req) {
  const home = new URL(server).origin
  let { url, headers } = req
  for (let hops = 0; ; hops++) {
    const here = new URL(url)
    const res = await send(here.origin === home ? agent : undefined, { ...req, url, headers })
    const location = res.headers.get('location')
    const follow = REDIRECTS.has(res.status) && location && (req.method === 'GET' || req.method === 'HEAD') && !req.body
    if (!follow) return res
    await res.discard()
    if (hops >= MAX_REDIRECTS) {
      throw new UpcacheError({ type: CLIENT.network, detail: `${req.method} ${new URL(req.url).pathname}: more than ${MAX_REDIRECTS} redirects` })
    }
    const next = new URL(location, url)
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new UpcacheError({ type: CLIENT.protocol, detail: `redirected to ${next.protocol} URL` })
    }
    if (next.origin !== here.origin) {
      headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !CREDENTIALS.includes(k.toLowerCase())))
    }
    url = next.href
  }
}

/** How long a request with `Expect: 100-continue` waits for `100 Continue` before it sends its body anyway (RFC 9110 §10.1.1). */
const CONTINUE_WAIT = 1000

function send (agent, { method, url, headers, body, onUpload, signal, timeout, stall, expectContinue }) {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const mod = u.protocol === 'https:' ? https : http
    const h = { ...headers }
    if (body) h['content-length'] = String(body.length)
    else if (method === 'POST' || method === 'PUT' || method === 'PATCH') h['content-length'] = '0'
    const waitForContinue = expectContinue && body && body.length > 0
    if (waitForContinue) h.expect = '100-continue'
    const req = mod.request(u, { method, headers: h, agent, signal })
    let answered = false
    // Idle time on the socket: a body that stops moving, or an answer that does not come.
    req.setTimeout(body ? Math.max(stall, 1) : timeout, () => {
      req.destroy(new UpcacheError({ type: answered || !body ? CLIENT.network : CLIENT.stalled, detail: `${method} ${u.pathname}: no progress for ${(body ? stall : timeout) / 1000} s` }))
    })
    // Whether the body is on its way (or there is none): only a request
    // waiting for `100 Continue` can be answered before.
    let started = !waitForContinue
    let continueTimer = null
    req.on('error', reject)
    req.on('close', () => clearTimeout(continueTimer))
    req.on('response', (res) => {
      answered = true
      if (!started) {
        // Answered from the headers (a hit): the body is never sent, and
        // the connection, with a request left unfinished, not reused.
        started = true
        clearTimeout(continueTimer)
        res.once('end', () => req.destroy())
      }
      resolve(wrap(res, req))
    })
    if (!body || body.length === 0) return req.end()
    const start = () => {
      if (started && waitForContinue) return
      started = true
      clearTimeout(continueTimer)
      if (waitForContinue) {
        // Once the body is out, the answer may take the server's wait for the operation.
        req.once('finish', () => req.setTimeout(Math.max(timeout, stall)))
      }
      pump()
    }
    let at = 0
    let flushed = 0
    const pump = () => {
      while (at < body.length) {
        const piece = body.subarray(at, Math.min(at + WRITE_PIECE, body.length))
        at += piece.length
        const more = req.write(piece, (err) => {
          if (err) return
          flushed += piece.length
          if (onUpload) onUpload(flushed)
        })
        if (!more) { req.once('drain', pump); return }
      }
      req.end()
    }
    if (waitForContinue) {
      req.flushHeaders()
      req.once('continue', start)
      continueTimer = setTimeout(start, CONTINUE_WAIT)
    } else {
      start()
    }
  })
}

function wrap (res, req) {
  return {
    status: res.statusCode,
    headers: { get: (name) => { const v = res.headers[name.toLowerCase()]; return v === undefined ? null : String(v) } },
    async text () {
      const parts = []
      for await (const c of res) parts.push(c)
      return Buffer.concat(parts).toString('utf8')
    },
    // The socket goes back to the pool only once the body has been read to its end.
    discard () {
      if (res.readableEnded) return Promise.resolve()
      return new Promise((resolve) => {
        res.once('end', resolve)
        res.once('error', resolve)
        res.once('close', resolve)
        res.resume()
      })
    },
    chunks () { return res }
  }
}

/** Downloads into a temporary file beside `target`, renamed into place once verified. */
async function save (target, download) {
  const dir = path.dirname(path.resolve(target))
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${Date.now()}.part`)
  let fh = await fsp.open(tmp, 'w')
  try {
    const n = await download(async (chunk) => { await fh.write(chunk) }, async () => { await fh.truncate(0); await fh.close(); fh = await fsp.open(tmp, 'w') })
    await fh.sync()
    await fh.close()
    fh = null
    await fsp.rename(tmp, target)
    return n
  } catch (e) {
    if (fh) await fh.close().catch(() => {})
    await fsp.rm(tmp, { force: true })
    throw e
  }
}

/**
 * A client of one upcache server.
 * @example
 *   const client = new Client({ server: 'http://127.0.0.1:8080', token, concurrency: 4 })
 *   const done = await client.put('photo.jpg', { op: 'image.thumbnail', width: 400, height: 400, format: 'webp' })
 *   await done.save('thumb.webp')
 */
export class Client extends CoreClient {
  constructor (options) { super(nodePlatform, options) }
}
