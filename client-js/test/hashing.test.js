// The WebAssembly hasher computes what the protocol crate computes: the
// keys of spec/vectors/keys.json, and the input hash and block chaining
// values of the Rust SDK (checked through `upcache key`, which hashes with
// it) for inputs hashed on the calling thread and on worker threads.

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { Client } from '@upcache/client'
import { REPO, BIN, random, tempFile } from './helpers.js'

const client = new Client({ server: 'http://127.0.0.1:9' })
after(() => client.close())

test('keys match the vectors every client must reproduce', async () => {
  const { cases } = JSON.parse(fs.readFileSync(path.join(REPO, 'spec', 'vectors', 'keys.json'), 'utf8'))
  assert.ok(cases.length > 10)
  for (const c of cases) {
    const input = Buffer.from(c.input_hex, 'hex')
    const hashed = await client.hash(input)
    assert.equal(hashed.input, c.input_blake3, c.input_name)
    assert.equal(await client.key(input, c.operation), c.key, JSON.stringify(c.operation))
  }
})

test('file, bytes and Blob inputs hash alike, on one thread and on workers, as the Rust SDK does', async () => {
  const small = new Client({ server: 'http://127.0.0.1:9', blockSize: 1 << 16, workers: 2 })
  try {
    const op = { op: 'identity' }
    // Empty, within one chunk, one block, just over, many blocks on workers
    // (over the inline limit), and a one-block input hashed on a worker.
    for (const len of [0, 1, 1024, 1 << 16, (1 << 16) + 1, 3 * (1 << 20) + 12_345]) {
      const bytes = random(len)
      const file = tempFile(bytes)
      const fromFile = await small.hash(file)
      const fromBytes = await small.hash(bytes)
      const fromBlob = await small.hash(new Blob([bytes]))
      assert.equal(fromBytes.input, fromFile.input, `length ${len}`)
      assert.equal(fromBlob.input, fromFile.input, `length ${len}`)
      assert.deepEqual(fromBytes.cvs, fromFile.cvs)
      assert.equal(fromFile.cvs.length, Math.ceil(len / (1 << 16)))
      const rust = execFileSync(BIN, ['key', file, '--op', JSON.stringify(op)], { encoding: 'utf8' }).trim()
      assert.equal(await small.key(file, op), rust, `length ${len}`)
    }
    const big = random(9 << 20)
    const file = tempFile(big)
    const rust = execFileSync(BIN, ['key', file, '--op', '{"op":"identity"}'], { encoding: 'utf8' }).trim()
    assert.equal(await client.key(file, { op: 'identity' }), rust, 'default 8 MiB blocks, two of them')
  } finally {
    await small.close()
  }
})

test('an invalid operation is refused before any request', async () => {
  await assert.rejects(client.key(new Uint8Array(1), { op: 'image.thumbnail', width: 0 }), (e) => {
    assert.equal(e.name, 'UpcacheError')
    assert.equal(e.type, 'urn:upcache:client:invalid-operation')
    assert.equal(e.status, 0)
    assert.equal(e.retryable, false)
    return true
  })
})

test('a run of blocks read as one stream gives each block its chaining value, at any chunk size', async () => {
  const { hashTask } = await import('../src/hash-task.js')
  const { Blake3Wasm, hex } = await import('../src/wasm.js')
  const wasm = await Blake3Wasm.load(fs.readFileSync(path.join(REPO, 'client-js', 'wasm', 'upcache_hash.wasm')))
  const bs = 1 << 16
  const small = new Client({ server: 'http://127.0.0.1:9', blockSize: bs, workers: 1 })
  try {
    const bytes = random(7 * bs + 1234)
    const want = (await small.hash(bytes)).cvs.map(hex)
    // Streams cut into chunks that straddle block ends (as a browser's File reads).
    const reader = (chunk) => () => ({
      async * chunks (start, end) { for (let at = start; at < end; at += chunk) yield bytes.subarray(at, Math.min(at + chunk, end)) },
      close () {}
    })
    for (const chunk of [1000, bs, 3 * bs + 7, 8 * bs]) {
      const head = await hashTask(wasm, { src: {}, start: 0, end: 4 * bs, offset: 0, root: false, blockSize: bs }, reader(chunk), () => {})
      const tail = await hashTask(wasm, { src: {}, start: 4 * bs, end: bytes.length, offset: 4 * bs, root: false, blockSize: bs }, reader(chunk), () => {})
      assert.deepEqual([...head, ...tail].map(hex), want, `chunks of ${chunk} bytes`)
    }
  } finally {
    await small.close()
  }
})
