// The browser build (`exports` condition `browser`): uploads with
// XMLHttpRequest (fetch reports no upload progress), other requests with
// fetch, hashing on module Web Workers, inputs as File or Blob (read one
// piece at a time, never whole).

import { CoreClient, PutResult, DEFAULT_BLOCK_SIZE } from './client.js'
import { UpcacheError, CLIENT } from './errors.js'

export { UpcacheError, PutResult, DEFAULT_BLOCK_SIZE, CLIENT }

let wasmBytes = null
function loadWasm () {
  if (!wasmBytes) {
    wasmBytes = fetch(new URL('./upcache_hash.wasm', import.meta.url)).then((r) => {
      if (!r.ok) throw new UpcacheError({ type: CLIENT.hashing, detail: `loading upcache_hash.wasm: HTTP ${r.status}` })
      return r.arrayBuffer()
    })
    wasmBytes.catch(() => { wasmBytes = null })
  }
  return wasmBytes
}

const browserPlatform = {
  forClient () {
    return {
      cores: () => navigator.hardwareConcurrency || 4,
      wasmBytes: loadWasm,
      spawnHashWorker,
      describe,
      send
    }
  }
}

function spawnHashWorker () {
  const w = new Worker(new URL('./hash-worker-browser.js', import.meta.url), { type: 'module' })
  return {
    post: (msg, transfer) => w.postMessage(msg, transfer),
    onMessage: (fn) => { w.onmessage = (e) => fn(e.data) },
    onError: (fn) => { w.onerror = (e) => { e.preventDefault(); fn(new Error(e.message || 'worker failed to start')) } },
    terminate: () => w.terminate()
  }
}

async function describe (input) {
  if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) {
    const u8 = input instanceof ArrayBuffer ? new Uint8Array(input) : new Uint8Array(input.buffer, input.byteOffset, input.byteLength)
    const sub = async (start, end) => u8.subarray(start, end)
    return {
      length: u8.length,
      // A copy of the block alone goes to its worker (a view would clone the whole buffer).
      src: (start, end, spare) => ({ bytes: copyOf(u8, start, end, spare), base: start }),
      bytes: sub,
      body: sub
    }
  }
  if (!(input instanceof Blob)) throw new UpcacheError({ type: CLIENT.invalidInput, detail: 'the input must be a File, Blob, Uint8Array or ArrayBuffer' })
  const blob = input
  return {
    length: blob.size,
    // Workers get the Blob itself (a reference, not a copy) and read their
    // blocks of it, several blocks to a stream.
    src: () => ({ blob }),
    spans: true,
    bytes: async (start, end) => new Uint8Array(await blob.slice(start, end).arrayBuffer()),
    body: async (start, end) => blob.slice(start, end)
  }
}

/** Bytes [start, end) of `u8`, copied into `spare` (an ArrayBuffer) if it is large enough. */
function copyOf (u8, start, end, spare) {
  const out = spare && spare.byteLength >= end - start ? new Uint8Array(spare, 0, end - start) : new Uint8Array(end - start)
  out.set(u8.subarray(start, end))
  return out
}

function send (req) {
  if (req.body && req.onUpload) return sendXhr(req)
  return sendFetch(req)
}

async function sendFetch ({ method, url, headers, body, signal, timeout }) {
  // The timeout covers the wait for the answer's head, not the body's download.
  const ctl = new AbortController()
  const onAbort = () => ctl.abort(signal.reason)
  if (signal) signal.addEventListener('abort', onAbort, { once: true })
  let timedOut = false
  const t = setTimeout(() => { timedOut = true; ctl.abort() }, timeout)
  let res
  try {
    res = await fetch(url, { method, headers, body, signal: ctl.signal, cache: 'no-store' })
  } catch (e) {
    if (timedOut) throw new UpcacheError({ type: CLIENT.network, detail: `${method} ${url}: no answer within ${timeout / 1000} s` })
    throw e
  } finally {
    clearTimeout(t)
  }
  const done = () => signal && signal.removeEventListener('abort', onAbort)
  return {
    status: res.status,
    headers: res.headers,
    async text () { try { return await res.text() } finally { done() } },
    async discard () { try { await res.arrayBuffer() } catch {} finally { done() } },
    async * chunks () {
      const reader = res.body.getReader()
      try {
        for (;;) {
          const { done: end, value } = await reader.read()
          if (end) return
          yield value
        }
      } finally {
        reader.releaseLock()
        done()
      }
    }
  }
}

function sendXhr ({ method, url, headers, body, onUpload, signal, stall }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open(method, url)
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v)
    let last = Date.now()
    let settled = false
    const finish = (fn, v) => {
      if (settled) return
      settled = true
      clearInterval(watchdog)
      if (signal) signal.removeEventListener('abort', onAbort)
      fn(v)
    }
    // XHR's own timeout bounds the whole request; a stall is no progress for `stall` ms.
    const watchdog = setInterval(() => {
      if (Date.now() - last > stall) {
        xhr.abort()
        finish(reject, new UpcacheError({ type: CLIENT.stalled, detail: `${method} ${url}: no progress for ${stall / 1000} s` }))
      }
    }, Math.min(1000, Math.max(50, stall / 4)))
    const onAbort = () => { xhr.abort(); finish(reject, new UpcacheError({ type: CLIENT.aborted, detail: 'aborted', cause: signal.reason })) }
    if (signal) signal.addEventListener('abort', onAbort, { once: true })
    xhr.upload.onprogress = (e) => { last = Date.now(); onUpload(e.loaded) }
    xhr.upload.onload = () => { last = Date.now() }
    xhr.onerror = () => finish(reject, new UpcacheError({ type: CLIENT.network, detail: `${method} ${url}: the connection failed` }))
    xhr.onload = () => {
      const text = xhr.responseText
      finish(resolve, {
        status: xhr.status,
        headers: { get: (n) => xhr.getResponseHeader(n) },
        text: async () => text,
        discard: async () => {},
        async * chunks () { yield new TextEncoder().encode(text) }
      })
    }
    xhr.send(body)
  })
}

/**
 * A client of one upcache server.
 * @example
 *   const client = new Client({ server: location.origin, token, concurrency: 4 })
 *   const done = await client.put(file, { op: 'image.thumbnail', width: 400, height: 400, format: 'webp' })
 *   img.src = URL.createObjectURL(await done.blob())
 */
export class Client extends CoreClient {
  constructor (options) { super(browserPlatform, options) }
}
