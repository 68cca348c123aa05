// put and its parts against the real server: uploads in parallel blocks,
// 0-byte hits, thumbnails, downloads; resets by a fault proxy (each costs
// at most one block re-sent), abort and resume, and the server's problems.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { Client, UpcacheError } from '@upcache/client'
import { startServer, random, tempFile, png } from './helpers.js'
import { startProxy } from './proxy.js'

const BS = 64 << 10
let server
before(async () => { server = await startServer() })
after(async () => { await server.stop() })

function client (opts = {}) {
  return new Client({ server: server.url, blockSize: BS, concurrency: 4, retry: { initialDelay: 20, maxDelay: 200, retryFor: 20_000 }, ...opts })
}

test('a new input goes up in parallel blocks; the same put again is a hit with 0 bytes', async () => {
  const proxy = await startProxy(server.url)
  const c = client({ server: proxy.url })
  try {
    const bytes = random(40 * BS + 999)
    const file = tempFile(bytes)
    const phases = new Set()
    const before = await server.metrics()
    const done = await c.put(file, { op: 'identity' }, { onProgress: (p) => phases.add(p.phase) })
    assert.equal(done.hit, false)
    assert.equal(done.bytesUploaded, bytes.length)
    assert.deepEqual([...phases], ['hashing', 'hashed', 'probed', 'uploading', 'done'])
    const afterFirst = await server.metrics()
    assert.equal(afterFirst.upcache_blocks_stored_total - before.upcache_blocks_stored_total, 41)
    assert.ok(proxy.stats.maxOpen >= 2, `blocks went over ${proxy.stats.maxOpen} connection(s) at once`)
    assert.deepEqual(await done.bytes(), bytes)
    assert.equal(done.status.state, 'complete')
    assert.match(done.url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/ops\/[0-9a-f]{64}\/result$/)

    const up = proxy.stats.up
    const again = await c.put(bytes, { op: 'identity' })
    assert.equal(again.hit, true)
    assert.equal(again.bytesUploaded, 0)
    assert.equal(again.key, done.key)
    assert.ok(proxy.stats.up - up < 4096, `a hit sent ${proxy.stats.up - up} bytes`)
    assert.equal((await server.metrics()).upcache_bytes_stored_total, afterFirst.upcache_bytes_stored_total)
  } finally {
    await c.close()
    await proxy.close()
  }
})

test('an input of one block goes in one PUT with Expect: 100-continue; a hit then sends no byte', async () => {
  const proxy = await startProxy(server.url, { record: true })
  const c = client({ server: proxy.url })
  try {
    const bytes = random(BS - 7)
    const phases = new Set()
    const before = await server.metrics()
    const done = await c.put(tempFile(bytes), { op: 'identity' }, { onProgress: (p) => phases.add(p.phase) })
    assert.equal(done.hit, false)
    assert.equal(done.bytesUploaded, bytes.length)
    assert.deepEqual([...phases], ['hashing', 'hashed', 'uploading', 'done'])
    const first = proxy.stats.sent
    assert.match(first, new RegExp(`^PUT /v1/ops/${done.key} HTTP/1.1\r$`, 'm'))
    assert.match(first, /^expect: 100-continue\r$/im)
    assert.doesNotMatch(first, /^POST \/v1\/ops /m, 'no probe before the one-shot PUT')
    const afterFirst = await server.metrics()
    assert.equal(afterFirst.upcache_bytes_stored_total - before.upcache_bytes_stored_total, bytes.length)
    assert.deepEqual(await done.bytes(), bytes)

    const up = proxy.stats.up
    const mark = proxy.stats.sent.length
    const again = await c.put(bytes, { op: 'identity' })
    assert.equal(again.hit, true)
    assert.equal(again.bytesUploaded, 0)
    assert.equal(again.key, done.key)
    assert.ok(proxy.stats.up - up < 4096, `a hit sent ${proxy.stats.up - up} bytes`)
    const second = proxy.stats.sent.slice(mark)
    assert.match(second, new RegExp(`^PUT /v1/ops/${done.key} HTTP/1.1\\r$`, 'm'), 'the hit came from the one-shot PUT')
    assert.doesNotMatch(second, /^POST /m)
    assert.equal((await server.metrics()).upcache_bytes_stored_total, afterFirst.upcache_bytes_stored_total)
    assert.deepEqual(await again.bytes(), bytes)
  } finally {
    await c.close()
    await proxy.close()
  }
})

test('a one-shot PUT whose connection is cut falls back to the resumable flow', async () => {
  const proxy = await startProxy(server.url)
  const c = client({ server: proxy.url })
  try {
    const bytes = random(BS)
    proxy.armResetOnRequest('PUT /v1/ops/', 0)
    const done = await c.put(bytes, { op: 'identity' })
    assert.equal(proxy.stats.resets, 1)
    assert.equal(done.hit, false)
    assert.deepEqual(await done.bytes(), bytes)
  } finally {
    await c.close()
    await proxy.close()
  }
})

test('a thumbnail: put a PNG, get the WebP; another operation on the same input sends nothing', async () => {
  const c = client({ blockSize: undefined })
  try {
    const image = png(300, 200, 1)
    const done = await c.put(new Blob([image]), { op: 'image.thumbnail', width: 64, height: 64, format: 'webp' })
    assert.equal(done.hit, false)
    assert.equal(done.contentType, 'image/webp')
    const blob = await done.blob()
    assert.equal(blob.type, 'image/webp')
    const head = new Uint8Array(await blob.arrayBuffer()).subarray(0, 12)
    assert.equal(Buffer.from(head.subarray(8, 12)).toString(), 'WEBP')
    const out = path.join(path.dirname(tempFile(new Uint8Array(0))), 'thumb.webp')
    assert.equal(await done.save(out), blob.size)
    assert.deepEqual(new Uint8Array(fs.readFileSync(out)), new Uint8Array(await blob.arrayBuffer()))

    const gray = await c.put(image.buffer, { op: 'image.thumbnail', width: 32, height: 32, format: 'png' })
    assert.equal(gray.hit, true, 'the input is stored: no upload for a new operation')
    assert.equal(gray.bytesUploaded, 0)
  } finally {
    await c.close()
  }
})

test('connection resets: each fault costs at most one block re-sent, and the result is right', async () => {
  const proxy = await startProxy(server.url)
  const c = client({ server: proxy.url })
  try {
    const bytes = random(48 * BS)
    // Three resets at different points of the upload (block bodies are most of the bytes).
    proxy.armReset(5 * BS + 1000)
    proxy.armReset(10 * BS + 7000)
    proxy.armReset(7 * BS + 3)
    const retries = []
    const done = await c.put(bytes, { op: 'identity' }, { onProgress: (p) => p.phase === 'retrying' && retries.push(p) })
    assert.equal(proxy.stats.resets, 3)
    assert.ok(retries.length >= 1)
    const extra = done.bytesUploaded - bytes.length
    assert.ok(extra >= 0 && extra <= 3 * BS, `re-sent ${extra} bytes for 3 faults of blocks of ${BS}`)
    // What reached the proxy: the input, at most a block per fault, and headers.
    assert.ok(proxy.stats.up <= bytes.length + 3 * BS + 200 * 1024, `proxy forwarded ${proxy.stats.up}`)
    assert.deepEqual(await done.bytes(), bytes)
  } finally {
    await c.close()
    await proxy.close()
  }
})

test('the wait for the result rides out a reset connection', async () => {
  const proxy = await startProxy(server.url)
  const c = client({ server: proxy.url })
  try {
    // The HEAD that waits for the result is cut while the server works.
    proxy.armResetOnRequest('HEAD /v1/ops/', 50)
    const phases = []
    const image = png(1500, 1500, 11, { noise: true })
    const done = await c.put(image, { op: 'image.thumbnail', width: 100, height: 100, format: 'png' }, { onProgress: (p) => phases.push(p.phase) })
    assert.equal(proxy.stats.resets, 1)
    const afterUpload = phases.slice(phases.lastIndexOf('uploading'))
    assert.ok(afterUpload.includes('retrying'), `phases after the upload: ${[...new Set(afterUpload)]}`)
    assert.equal(done.contentType, 'image/png')
    assert.ok((await done.bytes()).length > 0)
  } finally {
    await c.close()
    await proxy.close()
  }
})

test('a download cut off midway resumes with Range and is verified', async () => {
  const c = client()
  const bytes = random(3 << 20)
  await c.put(bytes, { op: 'identity' })
  const proxy = await startProxy(server.url, { record: true })
  const via = client({ server: proxy.url })
  try {
    const key = await c.key(bytes, { op: 'identity' })
    const done = await via.get(key, { wait: 5 })
    proxy.armReset(1 << 20, 'down')
    proxy.armReset(1 << 20, 'down')
    assert.deepEqual(await done.bytes(), bytes)
    assert.equal(proxy.stats.resets, 2)
    const ranges = proxy.stats.sent.match(/^range: bytes=\d+-\r$/gim) || []
    assert.equal(ranges.length, 2, 'each retry asked for the rest only')
    assert.ok(proxy.stats.down < 2 * bytes.length, `${proxy.stats.down} bytes came down`)
  } finally {
    await c.close(); await via.close(); await proxy.close()
  }
})

test('abort stops cleanly; put again resumes with only the missing blocks', async () => {
  const proxy = await startProxy(server.url)
  // Slow the upload down so that it is caught midway: one lane.
  const c = client({ server: proxy.url, concurrency: 1 })
  try {
    const bytes = random(64 * BS)
    const file = tempFile(bytes)
    const ctl = new AbortController()
    const first = c.put(file, { op: 'identity' }, {
      signal: ctl.signal,
      onProgress: (p) => { if (p.phase === 'uploading' && p.blocksDone >= 10) ctl.abort() }
    })
    await assert.rejects(first, (e) => e instanceof UpcacheError && e.type === 'urn:upcache:client:aborted' && !e.retryable)
    const key = await c.key(file, { op: 'identity' })
    const mid = await c.status(key)
    assert.equal(mid.state, 'uploading')
    assert.ok(mid.blocks_received >= 10 && mid.blocks_received < 64, `${mid.blocks_received} blocks in`)
    const done = await c.put(file, { op: 'identity' })
    assert.equal(done.hit, false)
    const stillMissing = (64 - mid.blocks_received) * BS
    assert.ok(done.bytesUploaded <= stillMissing, `sent ${done.bytesUploaded}, ${stillMissing} were missing`)
    assert.ok(done.bytesUploaded >= stillMissing - BS)
    assert.deepEqual(await done.bytes(), bytes)
  } finally {
    await c.close()
    await proxy.close()
  }
})

test('the server\'s problems arrive as UpcacheError with type, status, detail and retryable', async () => {
  const c = client()
  try {
    const missing = 'ab'.repeat(32)
    for (const call of [() => c.status(missing), () => c.get(missing), () => c.delete(missing)]) {
      await assert.rejects(call(), (e) => {
        assert.ok(e instanceof UpcacheError)
        assert.equal(e.type, 'urn:upcache:problem:not-found')
        assert.equal(e.status, 404)
        assert.equal(e.retryable, false)
        return true
      })
    }
    // An operation that fails on the server: a thumbnail of bytes that are no image.
    await assert.rejects(c.put(random(5000), { op: 'image.thumbnail', width: 10, height: 10 }), (e) => {
      assert.equal(e.type, 'urn:upcache:problem:invalid-image')
      assert.equal(e.status, 422)
      assert.ok(e.detail.length > 0)
      assert.equal(e.retryable, false)
      return true
    })
    // Delete, then the entry is gone.
    const d = await c.put(random(10), { op: 'identity' })
    await c.delete(d.key)
    await assert.rejects(c.status(d.key), { status: 404 })
  } finally {
    await c.close()
  }
})

test('limits and unreachable servers', async () => {
  const small = await startServer({ args: ['--max-input-size', '1KiB'] })
  const c = client({ server: small.url })
  try {
    await assert.rejects(c.put(random(5000), { op: 'identity' }), (e) => {
      assert.equal(e.type, 'urn:upcache:problem:input-too-large')
      assert.equal(e.status, 413)
      assert.equal(e.retryable, false)
      return true
    })
  } finally {
    await c.close()
    await small.stop()
  }
  // Nothing listens there: retried with backoff until the time without progress runs out.
  const gone = client({ server: small.url, retry: { initialDelay: 10, maxDelay: 50, retryFor: 500 } })
  const t = Date.now()
  await assert.rejects(gone.put(random(10), { op: 'identity' }), (e) => {
    assert.equal(e.type, 'urn:upcache:client:gave-up')
    assert.equal(e.cause.type, 'urn:upcache:client:network')
    assert.equal(e.cause.retryable, true)
    return true
  })
  assert.ok(Date.now() - t >= 500)
  await gone.close()
})

test('get waits for a result, or says it is not ready', async () => {
  const c = client()
  try {
    const bytes = random(3 * BS)
    // An upload left half done: the result is not there.
    const hashed = await c.hash(bytes)
    const res = await fetch(server.url + '/v1/ops', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: { blake3: hashed.input, length: bytes.length }, operation: { op: 'identity' }, block_size: BS })
    })
    const { key } = await res.json()
    await assert.rejects(c.get(key, { wait: 1 }), (e) => e.type === 'urn:upcache:client:not-ready' && !e.retryable)
    const [got, put] = await Promise.all([c.get(key, { wait: 20 }), c.put(bytes, { op: 'identity' })])
    assert.equal(got.key, put.key)
    assert.deepEqual(await got.bytes(), bytes)
  } finally {
    await c.close()
  }
})
