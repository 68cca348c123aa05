// The pure parts: block ranges, the error class's classification, retry delays.
// (Internal modules come from dist/, the package being tested, like the public ones.)

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { UpcacheError, CLIENT } from '@upcache/client'
import { expandRanges } from '../dist/ranges.js'
import { Retrier } from '../dist/retry.js'

test('block ranges expand as spec/protocol.md §5.2 writes them, and malformed ones are refused', () => {
  assert.deepEqual(expandRanges('0-3,7'), [0, 1, 2, 3, 7])
  assert.deepEqual(expandRanges(''), [])
  assert.deepEqual(expandRanges('5'), [5])
  for (const bad of ['3-1', '1,1', '4,2', 'x', '1-', '-1']) assert.throws(() => expandRanges(bad), /malformed/, bad)
  // Random sets round-trip through the canonical encoding.
  for (let i = 0; i < 200; i++) {
    const set = [...new Set(Array.from({ length: Math.floor(Math.random() * 40) }, () => Math.floor(Math.random() * 100)))].sort((a, b) => a - b)
    const runs = []
    for (const n of set) {
      const last = runs[runs.length - 1]
      if (last && last[1] === n - 1) last[1] = n
      else runs.push([n, n])
    }
    const encoded = runs.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',')
    assert.deepEqual(expandRanges(encoded), set)
  }
})

test('problems: retryable for 5xx, 408, 429, busy or damaged blocks and network failures; not otherwise', () => {
  const p = (slug, status) => UpcacheError.fromAnswer(status, JSON.stringify({ type: `urn:upcache:problem:${slug}`, title: 't', status, detail: 'd' }))
  assert.equal(p('internal', 500).retryable, true)
  assert.equal(p('body-too-slow', 408).retryable, true)
  assert.equal(p('upload-busy', 409).retryable, true)
  assert.equal(p('block-hash-mismatch', 460).retryable, true)
  assert.equal(p('block-length-mismatch', 400).retryable, true)
  assert.equal(p('not-found', 404).retryable, false)
  assert.equal(p('input-hash-mismatch', 422).retryable, false)
  assert.equal(p('invalid-token', 401).retryable, false)
  const e = p('not-found', 404)
  assert.equal(e.slug, 'not-found')
  assert.equal(e.detail, 'd')
  assert.equal(e.problem.title, 't')
  assert.ok(e instanceof Error)
  // A body that is no problem document still gives a typed error.
  const plain = UpcacheError.fromAnswer(502, 'Bad Gateway')
  assert.equal(plain.type, 'urn:upcache:problem:internal')
  assert.equal(plain.retryable, true)
  assert.equal(new UpcacheError({ type: CLIENT.network }).retryable, true)
  assert.equal(new UpcacheError({ type: CLIENT.aborted }).retryable, false)
})

test('retries back off with jitter, and give up only after the time without progress', async () => {
  const delays = []
  const r = new Retrier({ initialDelay: 1, maxDelay: 8, retryFor: 150 }, undefined, (x) => delays.push(x.delay))
  const net = new UpcacheError({ type: CLIENT.network })
  for (let i = 0; i < 6; i++) await r.failed(net)
  assert.deepEqual(delays.map((d) => d >= 0), delays.map(() => true))
  for (const [i, d] of delays.entries()) assert.ok(d <= Math.min(8, 2 ** i), `delay ${i}: ${d}`)
  r.progressed()
  await new Promise((resolve) => setTimeout(resolve, 160))
  await assert.rejects(r.failed(net), (e) => e.type === CLIENT.gaveUp && e.cause === net)
  await assert.rejects(new Retrier({}).failed(new UpcacheError({ type: CLIENT.invalidInput })), { type: CLIENT.invalidInput })
})
