// The client, shared by the Node and browser builds: hash, probe, upload
// only what is missing, wait, download — the flow of the Rust SDK
// (client-sdk/src/put.rs) over the /v1 protocol (spec/protocol.md). What
// differs between platforms (HTTP, workers, reading inputs, files) comes
// in as `platform`: see node.js and browser.js.

import { Blake3Wasm, hex } from './wasm.js'
import { HashPool, aborted } from './hash-pool.js'
import { UpcacheError, CLIENT } from './errors.js'
import { Retrier, sleep } from './retry.js'
import { expandRanges } from './ranges.js'

/** The protocol's default block size (spec/protocol.md §5.1). */
export const DEFAULT_BLOCK_SIZE = 8 << 20
/** Inputs up to this size are hashed on the calling thread: a worker would cost more than it saves. */
const INLINE_HASH = 1 << 20

export class CoreClient {
  #p
  #wasm = null
  #pool
  /**
   * @param {object} platform
   * @param {import('./index').ClientOptions} options
   */
  constructor (platform, options = {}) {
    const { server, token, concurrency = 4, blockSize, workers, retry, stallTimeout = 30_000, responseTimeout = 60_000, waitPerRequest = 30, headers = {} } = options
    if (!server) throw new TypeError('new Client({ server }) needs the server URL')
    this.server = String(server).replace(/\/+$/, '')
    /** A bearer token, or a function minting one for an input: `({ input, length, operation }) => token`. */
    this.token = token || null
    this.concurrency = Math.max(1, concurrency | 0)
    this.blockSize = blockSize || DEFAULT_BLOCK_SIZE
    this.retry = retry || {}
    this.stallTimeout = stallTimeout
    this.responseTimeout = responseTimeout
    this.waitPerRequest = waitPerRequest
    this.headers = headers
    this.#p = platform.forClient(this)
    this.#pool = new HashPool(() => this.#p.spawnHashWorker(), () => this.#p.wasmBytes(), workers || this.#p.cores())
  }

  /** Stops the hashing workers and closes idle connections. */
  async close () {
    await this.#pool.close()
    if (this.#p.close) this.#p.close()
  }

  async #w () {
    // The module the workers get, compiled once.
    if (!this.#wasm) {
      this.#wasm = this.#pool.wasmModule().then((m) => Blake3Wasm.load(m))
      this.#wasm.catch(() => { this.#wasm = null })
    }
    return this.#wasm
  }

  /**
   * Hashes an input block by block: its BLAKE3 and each block's chaining value.
   * @returns {Promise<{input: string, length: number, blockSize: number, cvs: Uint8Array[], source: object}>}
   */
  async hash (input, { onProgress, signal } = {}) {
    const source = await this.#p.describe(input)
    const { length } = source
    const bs = this.blockSize
    const blocks = Math.ceil(length / bs)
    const wasm = await this.#w()
    let hashed = 0
    const report = (n) => { hashed += n; onProgress && onProgress({ phase: 'hashing', loaded: hashed, total: length }) }
    report(0)
    let cvs
    try {
      if (length <= INLINE_HASH) {
        cvs = []
        for (let n = 0; n < blocks; n++) {
          const start = n * bs; const end = Math.min(start + bs, length)
          const h = wasm.hasher(start)
          h.update(await source.bytes(start, end))
          cvs.push(h.finish(blocks === 1))
          report(end - start)
        }
      } else {
        // A source read as a stream (a browser's File) goes in runs of
        // blocks, one stream each: opening a stream per block costs more
        // than the reading. Four runs per worker keep the workers even.
        const span = source.spans ? Math.max(1, Math.ceil(blocks / (4 * this.#pool.size))) : 1
        const tasks = []
        for (let n = 0; n < blocks; n += span) {
          tasks.push({
            start: n * bs,
            end: Math.min((n + span) * bs, length),
            offset: n * bs,
            root: blocks === 1,
            ...(span > 1 ? { blockSize: bs } : {})
          })
        }
        const results = await this.#pool.run(tasks, (t, spare) => source.src(t.start, t.end, spare), report, signal)
        cvs = span > 1 ? results.flat() : results
      }
    } finally {
      // A file read here is opened again, if needed, by the upload.
      if (source.close) await source.close()
    }
    if (signal && signal.aborted) throw aborted(signal)
    const root = blocks === 0 ? wasm.hash(new Uint8Array(0)) : blocks === 1 ? hex(cvs[0]) : hex(wasm.root(cvs))
    return { input: root, length, blockSize: bs, cvs, source }
  }

  async #keyOf (inputHex, op) {
    const r = (await this.#w()).key(inputHex, op)
    if (r.error) throw new UpcacheError({ type: CLIENT.invalidOperation, detail: r.error })
    return r
  }

  /** The key of `op` on `input`, as the server derives it (spec/protocol.md §2). */
  async key (input, op, options) {
    const hashed = await this.hash(input, options)
    return (await this.#keyOf(hashed.input, op)).key
  }

  /**
   * Makes sure `op` of `input` is computed, uploading only the blocks the
   * server is missing, and waits for the result.
   */
  async put (input, op, { onProgress, signal } = {}) {
    const report = onProgress || (() => {})
    const hashed = await this.hash(input, { onProgress: report, signal })
    try {
      return await this.#put(hashed, op, report, signal)
    } finally {
      if (hashed.source.close) await hashed.source.close()
    }
  }

  async #put (hashed, op, report, signal) {
    const { key, canonical } = await this.#keyOf(hashed.input, op)
    report({ phase: 'hashed', key, input: hashed.input, loaded: hashed.length, total: hashed.length })
    const operation = JSON.parse(canonical)
    const auth = typeof this.token === 'function'
      ? await this.token({ input: hashed.input, length: hashed.length, operation })
      : this.token
    const retrier = new Retrier(this.retry, signal, (r) => report({ phase: 'retrying', ...r }))
    const sent = { n: 0 }
    if (this.#p.expectContinue && hashed.length > 0 && hashed.length <= this.blockSize) {
      const done = await this.#oneShot(key, hashed, canonical, sent, retrier, report, signal, auth)
      if (done) return done
    }
    for (;;) {
      let status
      try {
        status = await this.#json('POST', '/v1/ops', {
          json: {
            input: { blake3: hashed.input, length: hashed.length },
            operation,
            ...(this.blockSize !== DEFAULT_BLOCK_SIZE ? { block_size: this.blockSize } : {})
          },
          signal,
          auth
        })
      } catch (e) {
        await retrier.failed(e)
        continue
      }
      retrier.progressed()
      const missing = expandRanges(status.missing)
      report({ phase: 'probed', state: status.state, blocksMissing: missing.length, blocksTotal: status.blocks_total })
      if (status.state === 'uploading') {
        // Nothing missing yet still uploading: the last block is being
        // committed by another request; look again shortly.
        if (missing.length === 0) await sleep(100, signal)
        else await this.#upload(status, missing, hashed, sent, retrier, report, signal, auth)
        continue
      }
      if (status.state === 'failed') throw entryError(status)
      const done = await this.#wait(key, retrier, report, signal, auth)
      const result = new PutResult(this, this.#p, done, sent.n, auth)
      report({ phase: 'done', hit: result.hit, bytesUploaded: sent.n, loaded: hashed.length, total: hashed.length })
      return result
    }
  }

  /**
   * An input of one block in one request: `PUT /v1/ops/{key}` with
   * `Expect: 100-continue` (spec/protocol.md §7.4), so that a hit — result
   * ready or input stored — is answered from the headers and no input byte
   * is sent, in one round trip instead of a probe and a block. Any failure
   * but an abort returns null: the resumable flow then takes over (and
   * reports the entry's own problem, if that is what it was).
   */
  async #oneShot (key, hashed, canonical, sent, retrier, report, signal, auth) {
    let res
    try {
      const body = await hashed.source.body(0, hashed.length)
      let counted = 0
      res = await this.#send('PUT', `/v1/ops/${key}`, {
        headers: {
          'upload-input-hash': hashed.input,
          'upload-operation': base64url(canonical),
          'content-type': 'application/octet-stream',
          prefer: `return=minimal, wait=${this.waitPerRequest}`
        },
        body,
        expectContinue: true,
        auth,
        signal,
        timeout: this.waitPerRequest * 1000 + this.responseTimeout,
        onUpload: (loaded) => {
          sent.n += loaded - counted
          counted = loaded
          report({ phase: 'uploading', loaded, total: hashed.length, bytesUploaded: sent.n, blocksDone: 0, blocksTotal: 1 })
        }
      })
      // 303 to the result (return=minimal), 200 with it, 202 when the wait ran out.
      if (res.status !== 303) await expectOk(res)
      await res.discard()
      if (hashed.source.release) hashed.source.release(body)
    } catch (e) {
      if (signal && signal.aborted) throw aborted(signal)
      return null
    }
    retrier.progressed()
    const done = res.status === 202 ? await this.#wait(key, retrier, report, signal, auth) : await this.status(key, { signal, auth })
    if (done.state !== 'complete') return null
    const result = new PutResult(this, this.#p, done, sent.n, auth)
    report({ phase: 'done', hit: result.hit, bytesUploaded: sent.n, loaded: hashed.length, total: hashed.length })
    return result
  }

  /**
   * Sends the `missing` blocks over `concurrency` parallel requests. A
   * block whose request failed goes to the back of the queue and is sent
   * again only if a fresh status still lists it: a request the network cut
   * may have delivered it anyway.
   */
  async #upload (status, missing, hashed, sent, retrier, report, signal, auth) {
    const { key } = status
    const bs = status.block_size
    const length = status.input.length
    const total = status.blocks_total
    const blockLen = (n) => Math.min(bs, length - n * bs)
    const useCv = bs === hashed.blockSize
    const queue = missing.map((n) => ({ n, failed: false }))
    const missingSet = new Set(missing)
    let storedBytes = 0
    for (let n = 0; n < total; n++) if (!missingSet.has(n)) storedBytes += blockLen(n)
    let blocksDone = total - missing.length
    const inflight = new Map()
    const emit = () => {
      let moving = 0
      for (const v of inflight.values()) moving += v
      report({ phase: 'uploading', loaded: Math.min(length, storedBytes + moving), total: length, bytesUploaded: sent.n, blocksDone, blocksTotal: total })
    }
    const stored = (n) => {
      retrier.progressed()
      storedBytes += blockLen(n)
      blocksDone++
      emit()
    }
    // One failure that is not retried stops every lane.
    const ctl = new AbortController()
    const onAbort = () => ctl.abort(signal.reason)
    if (signal) signal.addEventListener('abort', onAbort, { once: true })
    let over = false
    const failed = async (item, e) => {
      if (e.type === 'urn:upcache:problem:not-uploading' || e.type === 'urn:upcache:problem:not-found') {
        over = true // finished (or gone) meanwhile: the next probe tells which
        return
      }
      queue.push({ n: item.n, failed: true })
      try {
        await retrier.failed(e, { busy: e.type === 'urn:upcache:problem:upload-busy' })
      } catch (fatal) {
        over = true
        ctl.abort(fatal)
        throw fatal
      }
    }
    // Each lane reads its next block while it sends this one (one block of
    // read-ahead per lane), so that the connection never waits for the disk.
    const bodies = new Map()
    const body = (n) => {
      let b = bodies.get(n)
      if (!b) {
        b = hashed.source.body(n * bs, n * bs + blockLen(n))
        b.catch(() => {})
        bodies.set(n, b)
      }
      return b
    }
    const lane = async () => {
      while (!over) {
        if (signal && signal.aborted) throw aborted(signal)
        const item = queue.shift()
        if (!item) return
        const { n } = item
        const next = queue.find((q) => !bodies.has(q.n))
        if (next && !next.failed) body(next.n)
        if (item.failed) {
          try {
            const now = await this.status(key, { signal: ctl.signal, auth })
            if (now.state !== 'uploading') { over = true; continue }
            if (!expandRanges(now.missing).includes(n)) { stored(n); continue }
          } catch (e) {
            await failed(item, e)
            continue
          }
        }
        const start = n * bs; const end = start + blockLen(n)
        const hash = useCv ? 'cv=' + hex(hashed.cvs[n]) : (await this.#w()).hash(await hashed.source.bytes(start, end))
        const bytes = await body(n)
        bodies.delete(n)
        let counted = 0
        try {
          const res = await this.#send('PUT', `/v1/ops/${key}/blocks/${n}`, {
            headers: { 'upload-block-hash': hash, 'content-type': 'application/octet-stream' },
            body: bytes,
            auth,
            signal: ctl.signal,
            onUpload: (loaded) => {
              sent.n += loaded - counted
              counted = loaded
              inflight.set(n, loaded)
              emit()
            }
          })
          inflight.delete(n)
          await expectOk(res)
          await res.discard()
          // Answered: the body is off our hands, its buffer can take another block.
          if (hashed.source.release) hashed.source.release(bytes)
          stored(n)
          if (res.headers.get('upload-state') !== 'uploading') over = true
        } catch (e) {
          inflight.delete(n)
          if (signal && signal.aborted) throw aborted(signal)
          await failed(item, e)
        }
      }
    }
    try {
      await Promise.all(Array.from({ length: Math.min(this.concurrency, Math.max(1, queue.length)) }, lane))
    } finally {
      if (signal) signal.removeEventListener('abort', onAbort)
    }
  }

  /** Waits, with reconnects, until the entry is complete; a failed operation is thrown as its problem. */
  async #wait (key, retrier, report, signal, auth) {
    for (;;) {
      let outcome
      try {
        outcome = await this.#waitOnce(key, this.waitPerRequest, signal, auth)
      } catch (e) {
        await retrier.failed(e)
        continue
      }
      if (outcome.status) return outcome.status
      if (outcome.error) throw outcome.error
      retrier.progressed()
      report({ phase: 'waiting', state: 'processing' })
    }
  }

  /** One `HEAD …/result` with `Prefer: wait`: `{status}`, `{error}` (failed entry) or `{}` (not yet). */
  async #waitOnce (key, wait, signal, auth = this.#staticToken()) {
    const res = await this.#send('HEAD', `/v1/ops/${key}/result`, {
      headers: { prefer: `wait=${wait}` }, signal, auth, timeout: wait * 1000 + this.responseTimeout
    })
    await res.discard()
    if (res.status === 202) return {}
    if (res.status >= 200 && res.status < 300) return { status: await this.status(key, { signal, auth }) }
    // HEAD has no problem body: the status document carries it.
    if (res.status === 404) throw new UpcacheError({ type: 'urn:upcache:problem:not-found', status: 404, detail: `no entry ${key}` })
    if (res.status === 401 || res.status === 403) {
      // HEAD has no body: the same credentials on GET bring the problem document.
      await this.status(key, { signal, auth })
      throw UpcacheError.fromAnswer(res.status, '')
    }
    const st = await this.status(key, { signal, auth })
    if (st.error) return { error: entryError(st) }
    throw UpcacheError.fromAnswer(res.status, '')
  }

  /** `GET /v1/ops/{key}`: the entry's status document. */
  async status (key, { signal, auth = this.#staticToken() } = {}) {
    return this.#json('GET', `/v1/ops/${key}`, { signal, auth })
  }

  /**
   * The result of the entry `key`, waiting up to `wait` seconds for it;
   * throws `urn:upcache:client:not-ready` if it is not ready by then.
   */
  async get (key, { wait = 0, signal } = {}) {
    const r = await this.#waitOnce(key, wait, signal)
    if (r.error) throw r.error
    if (!r.status) throw new UpcacheError({ type: CLIENT.notReady, status: 202, detail: `the result of ${key} is not ready` })
    return new PutResult(this, this.#p, r.status, 0, this.#staticToken())
  }

  /**
   * A presigned URL of the result of `key` (spec/tokens.md §3), valid for
   * `ttl` seconds: usable without a token, e.g. as an `<img src>`.
   */
  async presign (key, { ttl = 3600, signal } = {}) {
    const r = await this.#json('POST', '/v1/tokens', { json: { result_url_for: key, ttl }, signal, auth: this.#staticToken() })
    return { url: new URL(r.url, this.server + '/').href, expires: r.expires }
  }

  /** `DELETE /v1/ops/{key}`: cancels an upload or invalidates a result. */
  async delete (key, { signal } = {}) {
    const res = await this.#send('DELETE', `/v1/ops/${key}`, { signal, auth: this.#staticToken() })
    await expectOk(res)
    await res.discard()
  }

  /**
   * Streams the result of a complete entry into `sink(chunk)`, resuming
   * with `Range` after interruptions and checking its BLAKE3 at the end.
   * `reset()` is called if the server restarts the body from its start.
   */
  async download (status, sink, { signal, reset, auth = this.#staticToken() } = {}) {
    const info = status.result
    if (!info) throw new UpcacheError({ type: CLIENT.protocol, detail: 'the entry has no result yet' })
    const retrier = new Retrier(this.retry, signal)
    const wasm = await this.#w()
    let h = wasm.hasher(0)
    let written = 0
    while (written < info.length) {
      let res
      try {
        res = await this.#send('GET', `/v1/ops/${status.key}/result`, {
          headers: { prefer: 'wait=0', ...(written > 0 ? { range: `bytes=${written}-` } : {}) }, signal, auth
        })
        await expectOk(res)
        if (res.status === 202) throw new UpcacheError({ type: CLIENT.protocol, detail: 'the result went away' })
      } catch (e) {
        await retrier.failed(e)
        continue
      }
      if (res.status === 200 && written > 0) {
        // The range was not honoured: start over.
        h.finish(true); h = wasm.hasher(0); written = 0
        if (reset) await reset()
      }
      try {
        for await (const chunk of res.chunks()) {
          const bytes = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk)
          h.update(bytes)
          await sink(bytes)
          written += bytes.length
          retrier.progressed()
        }
      } catch (e) {
        if (signal && signal.aborted) throw aborted(signal)
        await retrier.failed(e instanceof UpcacheError ? e : new UpcacheError({ type: CLIENT.network, detail: String(e.message || e), cause: e }))
      }
    }
    const got = hex(h.finish(true))
    if (got !== info.blake3) {
      throw new UpcacheError({ type: CLIENT.corruptResult, detail: `the result hashes to ${got}, not ${info.blake3}` })
    }
    return written
  }

  /** The token of calls outside `put` (a token function applies to `put` only). */
  #staticToken () {
    return typeof this.token === 'function' ? null : this.token
  }

  async #json (method, path, { json, signal, auth } = {}) {
    const res = await this.#send(method, path, { json, signal, auth })
    await expectOk(res)
    const text = await res.text()
    try {
      return JSON.parse(text)
    } catch {
      throw new UpcacheError({ type: CLIENT.protocol, status: res.status, detail: `a JSON document was expected: ${text.slice(0, 100)}` })
    }
  }

  /** One HTTP request; network failures become retryable `UpcacheError`s. */
  async #send (method, path, { headers = {}, body, json, onUpload, signal, timeout, auth, expectContinue } = {}) {
    const h = { ...this.headers, ...headers }
    if (auth) h.authorization = `Bearer ${auth}`
    if (json !== undefined) {
      body = new TextEncoder().encode(JSON.stringify(json))
      h['content-type'] = 'application/json'
    }
    if (signal && signal.aborted) throw aborted(signal)
    try {
      return await this.#p.send({
        method,
        url: this.server + path,
        headers: h,
        body,
        onUpload,
        signal,
        expectContinue,
        timeout: timeout || this.responseTimeout,
        stall: this.stallTimeout
      })
    } catch (e) {
      if (signal && signal.aborted) throw aborted(signal)
      if (e instanceof UpcacheError) throw e
      throw new UpcacheError({ type: CLIENT.network, detail: `${method} ${path}: ${e && e.message ? e.message : e}`, cause: e })
    }
  }
}

/** The outcome of `put` or `get`: a complete entry and how it came about. */
export class PutResult {
  #c
  #p
  #auth
  constructor (client, platform, status, bytesUploaded, auth) {
    this.#c = client
    this.#p = platform
    this.#auth = auth
    /** The entry's key. */
    this.key = status.key
    /** The entry's status document (state `complete`). */
    this.status = status
    /** Input bytes this call put on the wire (retries included). */
    this.bytesUploaded = bytesUploaded
    /** Whether the result came without sending an input byte. */
    this.hit = bytesUploaded === 0
    /** The result's absolute URL. */
    this.url = status.result ? new URL(status.result.url, client.server + '/').href : null
    this.contentType = status.result ? status.result.content_type : null
    this.size = status.result ? status.result.length : 0
  }

  /** The result's bytes, verified. */
  async bytes ({ signal } = {}) {
    const parts = []
    let len = 0
    await this.#c.download(this.status, (c) => { parts.push(c.slice()); len += c.length }, {
      signal,
      auth: this.#auth,
      reset: () => { parts.length = 0; len = 0 }
    })
    const out = new Uint8Array(len)
    let at = 0
    for (const p of parts) { out.set(p, at); at += p.length }
    return out
  }

  /** The result as a Blob of its content type. */
  async blob (options) {
    return new Blob([await this.bytes(options)], { type: this.contentType || '' })
  }

  /** (Node) Writes the result to `path`: a temporary file, renamed into place once verified. */
  async save (path, { signal } = {}) {
    if (!this.#p.save) throw new UpcacheError({ type: CLIENT.invalidInput, detail: 'save(path) needs Node; use blob() in a browser' })
    return this.#p.save(path, (sink, reset) => this.#c.download(this.status, sink, { signal, reset, auth: this.#auth }))
  }
}

/** Base64url without padding of a text's UTF-8 bytes (RFC 4648 §5). */
function base64url (text) {
  let bin = ''
  for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b)
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

async function expectOk (res) {
  if (res.status >= 200 && res.status < 300) return
  throw UpcacheError.fromAnswer(res.status, await res.text())
}

function entryError (status) {
  const p = status.error || { type: 'urn:upcache:problem:internal', status: 500, detail: 'the operation failed' }
  return new UpcacheError({ type: p.type, status: p.status || 500, title: p.title, detail: p.detail, problem: p })
}

