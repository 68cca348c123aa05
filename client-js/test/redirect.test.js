// A large result answered with a 307 to a presigned S3 URL (s3.redirect_above,
// spec/protocol.md §7.7), against the real server and a real SeaweedFS: the
// Node client follows, leaves its token behind, and checks the BLAKE3.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { Client } from '@upcache/client'
import { startServer, startSeaweed, random } from './helpers.js'

const API_KEY = 'js-redirect-api-key'
let s3
let tap
let server
before(async () => {
  s3 = await startSeaweed()
  tap = await startTap(new URL(s3.endpoint).port)
  // The server signs its URLs for the tap, so that clients go through it too.
  const config = s3.config('js/', 'redirect_above = "1MiB"\n').replace(s3.endpoint, tap.endpoint)
  server = await startServer({ config: `api_keys = ["${API_KEY}"]\n${config}` })
})
after(async () => { await server.stop(); tap.close(); await s3.stop() })

/** A TCP pass-through to the S3 server that keeps what clients send it. */
async function startTap (port) {
  const sent = []
  const srv = net.createServer((down) => {
    const up = net.connect(port, '127.0.0.1')
    down.on('data', (d) => sent.push(d.toString('latin1')))
    down.pipe(up).pipe(down)
    const end = () => { down.destroy(); up.destroy() }
    down.on('error', end); up.on('error', end); down.on('close', end); up.on('close', end)
  })
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve))
  return { endpoint: `http://127.0.0.1:${srv.address().port}`, sent: () => sent.join(''), close: () => srv.close() }
}

async function metric (name) {
  const text = await (await fetch(server.url + '/metrics', { headers: { authorization: `Bearer ${API_KEY}` } })).text()
  const line = text.split('\n').find((l) => l.startsWith(name + ' '))
  return line ? Number(line.split(' ')[1]) : 0
}

async function drained (uploads) {
  const until = Date.now() + 60_000
  while (!((await metric('upcache_write_behind_depth')) === 0 && (await metric('upcache_write_behind_uploads_total')) >= uploads)) {
    assert.ok(Date.now() < until, 'the write-behind queue drains')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

test('a large result redirected to the bucket is followed without the token and verified', async () => {
  const client = new Client({ server: server.url, token: API_KEY })
  try {
    const input = random(3 << 20)
    const done = await client.put(input, { op: 'identity' })
    await drained(1)

    const res = await fetch(`${server.url}/v1/ops/${done.key}/result`, { headers: { authorization: `Bearer ${API_KEY}` }, redirect: 'manual' })
    assert.equal(res.status, 307)
    const location = res.headers.get('location')
    assert.ok(location.startsWith(tap.endpoint), location)

    const before = await metric('upcache_result_redirects_total')
    const bytes = await done.bytes()
    assert.equal(bytes.length, input.length)
    assert.ok(Buffer.from(bytes).equals(Buffer.from(input)), 'the same bytes')
    assert.equal(await metric('upcache_result_redirects_total'), before + 1, 'through the bucket')

    assert.ok(tap.sent().includes('X-Amz-Signature='), 'the client went to the bucket')
    assert.ok(!tap.sent().includes(API_KEY), 'and left its token behind')

    // A small result is served by the server itself.
    const small = await client.put(random(1000), { op: 'identity' })
    const direct = await fetch(`${server.url}/v1/ops/${small.key}/result`, { headers: { authorization: `Bearer ${API_KEY}` }, redirect: 'manual' })
    assert.equal(direct.status, 200)
    assert.equal((await direct.arrayBuffer()).byteLength, 1000)
  } finally {
    await client.close()
  }
})
