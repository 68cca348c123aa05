// The JavaScript SDK benchmark (run by benches/js.sh): figures to read, not
// tests to pass.
//
// 1. Hashing, MiB/s: the Rust SDK (`upcache key`, memory-mapped, all cores)
//    as the reference; the WebAssembly hasher in Node on 1 and N
//    worker_threads (a file); in Chromium on 1 and N Web Workers, of bytes
//    in memory and of a File picked through an <input> (the browser reads
//    it in its own process and hands it over in chunks).
// 2. Uploads over loopback of one input of --size bytes, identity
//    operation, 8 MiB blocks, each on a fresh server (so nothing is
//    there): one PATCH by curl (after POST /v1/ops), the Rust SDK
//    (`upcache put`) and the Node SDK (bench/put.js), with 1 and 4 streams.
//    Seconds are the client process's, start to exit, hashing included;
//    CPU s/GiB the client's (all its threads, by GNU time when installed)
//    and the server's (from /proc) over the same put.
//
//   node bench/js-bench.js --upcache target/release/upcache --work-dir DIR [--size 1GiB] [--browser-size 512MiB] [--runs 1]

import { spawn, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import crypto from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Client } from '@upcache/client'
import { serveStatic } from './static.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.dirname(here)
const MiB = 1 << 20

function parseSize (s) {
  const m = /^(\d+)\s*(B|KiB|MiB|GiB)?$/i.exec(s)
  if (!m) throw new Error(`bad size ${s}`)
  return Number(m[1]) * { b: 1, kib: 1024, mib: MiB, gib: 1024 * MiB }[(m[2] || 'b').toLowerCase()]
}

const args = { size: '1GiB', 'browser-size': '512MiB', runs: '1', upcache: '', 'work-dir': '', curl: 'curl', chromium: process.env.CHROMIUM || '/usr/bin/chromium' }
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '')
  if (!(k in args)) throw new Error(`unknown option ${process.argv[i]}`)
  args[k] = process.argv[i + 1]
}
const size = parseSize(args.size)
const browserSize = parseSize(args['browser-size'])
const runs = Number(args.runs)
const bin = path.resolve(args.upcache)
const work = path.resolve(args['work-dir'])
const cores = os.availableParallelism()

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)] }
const rate = (bytes, ms) => bytes / MiB / (ms / 1000)
const rows = []
function row (group, label, bytes, msList, note = '') {
  const ms = median(msList)
  rows.push({ group, label, seconds: (ms / 1000).toFixed(2), mibs: rate(bytes, ms).toFixed(0), note })
  console.log(`  ${label.padEnd(44)} ${(ms / 1000).toFixed(2).padStart(7)} s ${rate(bytes, ms).toFixed(0).padStart(7)} MiB/s ${note}`)
}

// The client's CPU seconds (user + system, all its threads) come from
// GNU time when it is installed.
const TIME = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : null
const CPU_MARK = 'js-bench-cpu'

function run (cmd, argv, opts = {}) {
  return new Promise((resolve, reject) => {
    const t = performance.now()
    const [c, a] = TIME ? [TIME, ['-f', `${CPU_MARK} %U %S`, cmd, ...argv]] : [cmd, argv]
    const p = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
    let out = ''; let err = ''
    p.stdout.on('data', (d) => { out += d })
    p.stderr.on('data', (d) => { err += d })
    p.on('exit', (code) => {
      const m = new RegExp(`${CPU_MARK} ([\\d.]+) ([\\d.]+)`).exec(err)
      const cpu = m ? Number(m[1]) + Number(m[2]) : null
      code === 0 ? resolve({ ms: performance.now() - t, out, err, cpu }) : reject(new Error(`${cmd} ${argv.join(' ')}: exit ${code}\n${err.slice(-2000)}`))
    })
  })
}

/** CPU seconds a process has used so far (Linux). */
function cpuOf (pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return null
  }
}

async function startServer (dir) {
  fs.mkdirSync(dir, { recursive: true })
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('UPCACHE_')))
  const p = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data', path.join(dir, 'data')], { env, stdio: ['ignore', 'pipe', fs.openSync(path.join(dir, 'stderr.log'), 'a')] })
  const url = await new Promise((resolve, reject) => {
    let out = ''
    p.stdout.on('data', (d) => { out += d; const m = /listening on (http:\/\/\S+)/.exec(out); if (m) resolve(m[1].replace(/\/$/, '')) })
    p.on('exit', (c) => reject(new Error(`server exited ${c}`)))
  })
  p.stdout.resume()
  return {
    url,
    cpu: () => cpuOf(p.pid),
    async stop () { const e = new Promise((resolve) => p.once('exit', resolve)); p.kill('SIGTERM'); await e; fs.rmSync(dir, { recursive: true, force: true }) }
  }
}

async function settle () {
  execFileSync('sync')
  await new Promise((resolve) => setTimeout(resolve, 2000))
}

// --- the machine and the input ---
const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
console.log(`# JavaScript SDK benchmark\n`)
console.log(`machine: ${os.cpus()[0].model}, ${cores} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, load average ${load}`)
console.log(`node ${process.version}; ${execFileSync(args.chromium, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()}`)
console.log(`input: ${args.size} of random bytes; work dir ${work}\n`)
const input = path.join(work, 'input.bin')
{
  const fd = fs.openSync(input, 'w')
  const buf = Buffer.alloc(8 * MiB)
  for (let at = 0; at < size; at += buf.length) {
    crypto.randomFillSync(buf)
    fs.writeSync(fd, buf, 0, Math.min(buf.length, size - at))
  }
  fs.fsyncSync(fd)
  fs.closeSync(fd)
}

// --- hashing ---
console.log('## Hashing (BLAKE3, block chaining values)\n')
{
  const ms = []
  for (let r = 0; r < runs; r++) ms.push((await run(bin, ['key', input, '--op', '{"op":"identity"}'])).ms)
  row('hash', `Rust SDK, ${cores} threads (upcache key)`, size, ms)
}
for (const workers of [1, cores]) {
  const c = new Client({ server: 'http://127.0.0.1:9', workers })
  await c.hash(new Uint8Array(16 * MiB)) // every worker started
  const ms = []
  for (let r = 0; r < runs; r++) { const t = performance.now(); await c.hash(input); ms.push(performance.now() - t) }
  await c.close()
  row('hash', `WASM in Node, ${workers} worker${workers > 1 ? 's' : ''} (file)`, size, ms)
}

const { chromium } = await import('playwright-core')
const statics = await serveStatic(root)
const profile = fs.mkdtempSync(path.join(work, 'chromium-'))
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: args.chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
})
try {
  const page = ctx.pages()[0] || await ctx.newPage()
  await page.goto(statics.url + '/bench/blank.html')
  await page.evaluate(() => document.body.append(Object.assign(document.createElement('input'), { type: 'file', id: 'input' })))
  await page.setInputFiles('#input', input)
  const figures = await page.evaluate(async ({ browserSize, runs }) => {
    const { Client } = await import('/dist/browser.js')
    const n = navigator.hardwareConcurrency
    const data = new Uint8Array(browserSize)
    for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536))
    const file = document.getElementById('input').files[0]
    const out = []
    for (const [what, source] of [['memory', data], ['File', file]]) {
      for (const workers of [1, n]) {
        const c = new Client({ server: location.origin, workers })
        await c.hash(new Uint8Array(16 << 20)) // every worker started
        const ms = []
        for (let r = 0; r < runs; r++) { const t = performance.now(); await c.hash(source); ms.push(performance.now() - t) }
        await c.close()
        out.push({ what, workers, bytes: source.size ?? source.length, ms })
      }
    }
    return out
  }, { browserSize, runs })
  for (const f of figures) row('hash', `WASM in Chromium, ${f.workers} worker${f.workers > 1 ? 's' : ''} (${f.what})`, f.bytes, f.ms)
} finally {
  await ctx.close()
  await statics.close()
  fs.rmSync(profile, { recursive: true, force: true })
}

// --- uploads ---
console.log(`\n## Uploads over loopback (${args.size}, identity, 8 MiB blocks, a fresh server each)\n`)
const uploads = {}
// Each scenario returns { ms, cpu }: wall time and the client's CPU seconds.
async function scenario (label, fn) {
  const ms = []; const cpu = []; const serverCpu = []
  for (let r = 0; r < runs; r++) {
    await settle()
    const server = await startServer(path.join(work, `server-${Object.keys(uploads).length}-${r}`))
    try {
      const s0 = server.cpu()
      const o = await fn(server.url)
      ms.push(o.ms)
      if (o.cpu != null) cpu.push(o.cpu)
      const s1 = server.cpu()
      if (s0 != null && s1 != null) serverCpu.push(s1 - s0)
    } finally { await server.stop() }
  }
  uploads[label] = median(ms)
  const perGiB = (xs) => xs.length ? (median(xs) / (size / 2 ** 30)).toFixed(2) : '?'
  row('upload', label, size, ms, `CPU s/GiB: client ${perGiB(cpu)}, server ${perGiB(serverCpu)}`)
}
const { hash: inputHash } = await (async () => { const c = new Client({ server: 'http://x' }); const h = await c.hash(input); await c.close(); return { hash: h.input } })()
await scenario('(a) PATCH, curl', async (url) => {
  const t = performance.now()
  const res = await fetch(url + '/v1/ops', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: { blake3: inputHash, length: size }, operation: { op: 'identity' } }) })
  const { key } = await res.json()
  const r = await run(args.curl, ['-sS', '-f', '-o', '/dev/null', '-X', 'PATCH', '-T', input, '-H', 'Content-Type: application/offset+octet-stream', '-H', 'Upload-Offset: 0', '-H', 'Expect:', `${url}/v1/ops/${key}`])
  return { ms: performance.now() - t, cpu: r.cpu }
})
for (const streams of [1, 4]) {
  await scenario(`Rust SDK put, ${streams} stream${streams > 1 ? 's' : ''}`, async (url) =>
    await run(bin, ['put', input, '--op', '{"op":"identity"}', '--server', url, '--concurrency', String(streams)]))
  await scenario(`Node SDK put, ${streams} stream${streams > 1 ? 's' : ''}`, async (url) => {
    const r = await run(process.execPath, [path.join(here, 'put.js'), url, input, String(streams)])
    const o = JSON.parse(r.out)
    if (o.hit || o.bytesUploaded !== size) throw new Error(`the Node SDK sent ${o.bytesUploaded} bytes`)
    return r
  })
}
fs.rmSync(input)

const ratio = (a, b) => (uploads[b] / uploads[a]).toFixed(2)
console.log('\n## Summary\n')
console.log(`Node SDK, 4 streams / Rust SDK, 4 streams (throughput): ${ratio('Node SDK put, 4 streams', 'Rust SDK put, 4 streams')}×  (target ≥ 0.8×)`)
console.log(`Node SDK, 1 stream / Rust SDK, 1 stream:                 ${ratio('Node SDK put, 1 stream', 'Rust SDK put, 1 stream')}×`)
console.log(`Node SDK, 4 streams / PATCH, curl:                       ${ratio('Node SDK put, 4 streams', '(a) PATCH, curl')}×`)
const best = rows.filter((r) => r.label.startsWith('WASM in Chromium')).map((r) => Number(r.mibs))
console.log(`Chromium hashing, best of the rows above:               ${Math.max(...best)} MiB/s  (target ≥ 1024 MiB/s with the machine's cores)`)
