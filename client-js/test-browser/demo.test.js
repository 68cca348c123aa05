// The demo page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser is ever downloaded): a real upload shows the
// thumbnail; a reload in the middle of an upload, then picking the same
// file, resumes without re-sending the blocks the server acknowledged; a
// second upload is a hit with 0 input bytes, by the server's own metrics.
// A screenshot is saved to target/js-browser/demo.png.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { chromium } from 'playwright-core'
import { Client } from '@upcache/client'
import { startServer, tempFile, png, REPO } from '../test/helpers.js'

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'
export const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']
const ARTIFACTS = path.join(REPO, 'target', 'js-browser')
const BS = 256 << 10

let server, context, page, profile
before(async () => {
  server = await startServer()
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'upcache-chromium-'))
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS })
  page = context.pages()[0] || await context.newPage()
  page.on('pageerror', (e) => console.error('page error:', e))
})
after(async () => {
  await context?.close()
  await server?.stop()
  if (profile) fs.rmSync(profile, { recursive: true, force: true })
})

const thumbOp = { op: 'image.thumbnail', width: 400, height: 400, format: 'webp' }

async function pick (file) {
  await page.setInputFiles('#file', file)
}

async function finished () {
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 60_000 })
  const status = await page.textContent('#status')
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'done', status)
  return {
    status,
    bytesUploaded: Number(await page.getAttribute('#status', 'data-bytes-uploaded')),
    key: await page.getAttribute('#details', 'data-key'),
    width: await page.evaluate(() => document.getElementById('result').naturalWidth)
  }
}

test('a real upload shows the thumbnail', async () => {
  const image = png(640, 480, 7)
  const file = tempFile(image, 'small.png')
  await page.goto(`${server.url}/demo/`)
  await pick(file)
  const r = await finished()
  assert.equal(r.status, `uploaded ${image.length} bytes`)
  assert.equal(r.bytesUploaded, image.length)
  assert.equal(r.width, 400, 'a 640×480 image fits 400×400 as 400×300')
  const c = new Client({ server: server.url })
  assert.equal(r.key, await c.key(file, thumbOp))
  await c.close()
})

test('a reload mid-upload, then the same file: only the missing blocks are sent; then a 0-byte hit', async () => {
  // A photo-sized image of noise (PNG does not compress it): many blocks.
  const image = png(1800, 1200, 3, { noise: true })
  const file = tempFile(image, 'photo.png')
  const blocks = Math.ceil(image.length / BS)
  assert.ok(blocks >= 20, `${blocks} blocks`)
  const c = new Client({ server: server.url, blockSize: BS })
  const key = await c.key(file, thumbOp)
  await c.close()

  // One block at a time, each held back a little, so that the reload lands midway.
  // (A request the reload cancels is already handled when its delay ends.)
  await page.route('**/blocks/*', async (route) => { await new Promise((resolve) => setTimeout(resolve, 150)); await route.continue().catch(() => {}) })
  await page.goto(`${server.url}/demo/?block_size=${BS}&concurrency=1`)
  await pick(file)
  await page.waitForFunction(() => Number(document.getElementById('upload-progress').dataset.blocksDone || 0) >= 6, null, { timeout: 60_000 })
  await page.reload()
  await page.unroute('**/blocks/*')
  // What the server acknowledged before the reload (a block in flight may still land).
  await new Promise((resolve) => setTimeout(resolve, 300))
  const mid = await (await fetch(`${server.url}/v1/ops/${key}`)).json()
  assert.equal(mid.state, 'uploading')
  assert.ok(mid.blocks_received >= 6 && mid.blocks_received < blocks, `${mid.blocks_received} of ${blocks} blocks before the reload`)

  const before = await server.metrics()
  await pick(file)
  const resumed = await finished()
  assert.equal(resumed.key, key)
  const missingBytes = image.length - mid.blocks_received * BS
  assert.ok(resumed.bytesUploaded <= missingBytes, `sent ${resumed.bytesUploaded} bytes, ${missingBytes} were missing`)
  assert.ok(resumed.bytesUploaded > 0)
  assert.equal(resumed.width, 400)
  const afterResume = await server.metrics()
  assert.ok(afterResume.upcache_bytes_stored_total - before.upcache_bytes_stored_total <= missingBytes)

  // The same file again, on a fresh page: a hit, no block sent, no input byte stored.
  await page.goto(`${server.url}/demo/`)
  const blockRequests = []
  page.on('request', (r) => { if (r.url().includes('/blocks/')) blockRequests.push(r.url()) })
  await pick(file)
  const hit = await finished()
  assert.equal(hit.status, 'hit: 0 bytes uploaded')
  assert.equal(hit.bytesUploaded, 0)
  assert.equal(blockRequests.length, 0)
  const afterHit = await server.metrics()
  assert.equal(afterHit.upcache_bytes_stored_total, afterResume.upcache_bytes_stored_total, 'the server stored no input byte')
  assert.ok(afterHit.upcache_hits_total > afterResume.upcache_hits_total)

  fs.mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo.png'), fullPage: true })
})
