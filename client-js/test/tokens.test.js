// Scoped tokens (spec/tokens.md) through the client: a token minted for an
// input uploads it and fetches the result; tampered, expired and
// out-of-scope tokens are refused with their problem and change nothing.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { Client, UpcacheError } from '@upcache/client'
import { startServer, random } from './helpers.js'

const API_KEY = 'js-test-api-key'
const SECRET = crypto.randomBytes(32)
let server
let admin
before(async () => {
  server = await startServer({ config: `api_keys = ["${API_KEY}"]\ntoken_keys = ["k1:${SECRET.toString('hex')}"]\n` })
  admin = new Client({ server: server.url, token: API_KEY })
})
after(async () => { await admin.close(); await server.stop() })

async function mint (body) {
  const res = await fetch(server.url + '/v1/tokens', {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body)
  })
  assert.equal(res.status, 201, await res.clone().text())
  return (await res.json()).token
}

/** A token signed here with the server's key (to make one that has already expired). */
function sign (claims) {
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url')
  const signed = `upc1.k1.${payload}`
  return `${signed}.${crypto.createHmac('sha256', SECRET).update(signed).digest('base64url')}`
}

const op = { op: 'identity' }

function refused (type, status) {
  return (e) => {
    assert.ok(e instanceof UpcacheError, String(e))
    assert.equal(e.type, `urn:upcache:problem:${type}`)
    assert.equal(e.status, status)
    assert.equal(e.retryable, false)
    return true
  }
}

test('an input-scoped token uploads its input and reads the result', async () => {
  const bytes = random(300_000)
  const { input } = await admin.hash(bytes)
  const token = await mint({ scope: { input, max_size: bytes.length, ops: ['identity'] }, ttl: 600 })
  assert.match(token, /^upc1\.k1\./)
  const c = new Client({ server: server.url, token, blockSize: 64 << 10 })
  try {
    const done = await c.put(bytes, op)
    assert.equal(done.hit, false)
    assert.deepEqual(await done.bytes(), bytes)
    assert.equal((await c.status(done.key)).state, 'complete')
    // Deleting is for API keys only.
    await assert.rejects(c.delete(done.key), refused('token-not-allowed', 403))
    // A presigned URL serves the result without any header.
    const { url } = await c.presign(done.key, { ttl: 60 })
    const res = await fetch(url)
    assert.equal(res.status, 200)
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes)
  } finally {
    await c.close()
  }
})

test('a token function gets a token for each put, once the input is hashed', async () => {
  const bytes = random(5000)
  const asked = []
  const c = new Client({
    server: server.url,
    token: async ({ input, length, operation }) => {
      asked.push({ input, length, operation })
      return mint({ scope: { key: await admin.key(bytes, op) }, allow: ['upload', 'status', 'wait', 'result'], ttl: 60 })
    }
  })
  try {
    const done = await c.put(bytes, op)
    assert.deepEqual(await done.bytes(), bytes)
    assert.equal(asked.length, 1)
    assert.equal(asked[0].length, 5000)
    assert.deepEqual(asked[0].operation, { op: 'identity', v: 1 })
  } finally {
    await c.close()
  }
})

test('tampered, expired, out-of-scope and wrong-action tokens are refused and change nothing', async () => {
  const bytes = random(70_000)
  const { input } = await admin.hash(bytes)
  const key = await admin.key(bytes, op)
  const good = await mint({ scope: { input, max_size: bytes.length, ops: ['identity'] }, ttl: 600 })
  const noEntry = async () => assert.rejects(admin.status(key), refused('not-found', 404))

  // Tampered: one character of the signature, and one of the payload.
  const parts = good.split('.')
  const sig = parts[3]
  const badSig = [...parts.slice(0, 3), (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1)].join('.')
  const claims = JSON.parse(Buffer.from(parts[2], 'base64url'))
  const badPayload = [parts[0], parts[1], Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 1000 })).toString('base64url'), sig].join('.')
  for (const t of [badSig, badPayload]) {
    const c = new Client({ server: server.url, token: t })
    await assert.rejects(c.put(bytes, op), refused('invalid-token', 401))
    await c.close()
  }
  await noEntry()

  // Expired.
  const now = Math.floor(Date.now() / 1000)
  const expired = sign({ exp: now - 5, scope: { input, max_size: bytes.length, ops: ['identity'] } })
  const e = new Client({ server: server.url, token: expired })
  await assert.rejects(e.put(bytes, op), refused('token-expired', 401))
  await e.close()
  // The same claims, not expired and signed the same way: accepted (the signing above is right).
  const fresh = new Client({ server: server.url, token: sign({ exp: now + 60, scope: { key: 'ab'.repeat(32) } }) })
  await assert.rejects(fresh.status('ab'.repeat(32)), refused('not-found', 404))
  await fresh.close()
  await noEntry()

  // Out of scope: another input, a larger one, another operation.
  const other = random(70_000)
  const c = new Client({ server: server.url, token: good })
  await assert.rejects(c.put(other, op), refused('out-of-scope', 403))
  await assert.rejects(c.put(bytes, { op: 'image.thumbnail', width: 10, height: 10 }), refused('out-of-scope', 403))
  const small = await mint({ scope: { input, max_size: 100, ops: ['identity'] }, ttl: 600 })
  const s = new Client({ server: server.url, token: small })
  await assert.rejects(s.put(bytes, op), refused('out-of-scope', 403))
  await s.close()
  await noEntry()

  // Not allowed: a token for status only cannot upload.
  const statusOnly = new Client({ server: server.url, token: await mint({ scope: { input }, allow: ['status'], ttl: 600 }) })
  await assert.rejects(statusOnly.put(bytes, op), refused('token-not-allowed', 403))
  await statusOnly.close()
  await noEntry()

  // The good one still works.
  const done = await c.put(bytes, op)
  assert.equal(done.key, key)
  await c.close()
})

test('without a token the server with API keys refuses, as an error carrying its problem', async () => {
  const c = new Client({ server: server.url })
  await assert.rejects(c.put(random(10), op), (e) => e instanceof UpcacheError && e.status === 401 && !e.retryable)
  await c.close()
})
