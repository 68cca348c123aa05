// Test fixtures: the real `upcache serve` binary on a free port with a data
// directory of its own (as tests/src/server.rs starts it for the Rust
// tests), its metrics, inputs, and PNG images made on the spot.

import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'
import crypto from 'node:crypto'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
/** The server binary: `UPCACHE_BIN`, or the workspace's debug build (`cargo build -p upcache`). */
export const BIN = process.env.UPCACHE_BIN || path.join(REPO, 'target', 'debug', 'upcache')

/**
 * Starts `upcache serve --listen 127.0.0.1:0 --data <tmp>/data [args]`,
 * with `config` (TOML text) as its configuration file if given, and `env`
 * added to a environment cleared of UPCACHE_* variables.
 */
export async function startServer ({ config, args = [], env = {} } = {}) {
  if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run \`cargo build -p upcache\` (or set UPCACHE_BIN)`)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upcache-js-'))
  const all = ['serve', '--listen', '127.0.0.1:0', '--data', path.join(dir, 'data'), ...args]
  if (config) {
    fs.writeFileSync(path.join(dir, 'config.toml'), config)
    all.push('--config', path.join(dir, 'config.toml'))
  }
  const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('UPCACHE_')))
  const stderr = fs.openSync(path.join(dir, 'stderr.log'), 'a')
  const child = spawn(BIN, all, { env: { ...cleanEnv, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', stderr] })
  const url = await new Promise((resolve, reject) => {
    let out = ''
    const t = setTimeout(() => reject(new Error(`upcache did not start; see ${dir}/stderr.log`)), 30_000)
    child.stdout.on('data', (d) => {
      out += d
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (m) { clearTimeout(t); resolve(m[1].replace(/\/$/, '')) }
    })
    child.on('exit', (code) => { clearTimeout(t); reject(new Error(`upcache exited with ${code}: ${fs.readFileSync(path.join(dir, 'stderr.log'), 'utf8').slice(-2000)}`)) })
  })
  child.stdout.resume()
  return {
    url,
    dir,
    async metrics () {
      const text = await (await fetch(url + '/metrics')).text()
      const m = {}
      for (const line of text.split('\n')) {
        const r = /^(upcache_[a-z_]+)(?:\{[^}]*\})? ([0-9.e+]+)$/.exec(line)
        if (r) m[r[1]] = (m[r[1]] || 0) + Number(r[2])
      }
      return m
    },
    async stop () {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        await exited
      }
      fs.closeSync(stderr)
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** `n` random bytes. */
export function random (n) {
  return new Uint8Array(crypto.randomBytes(n))
}

/** A temporary file holding `bytes`; removed with its directory at exit. */
export function tempFile (bytes, name = 'input.bin') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upcache-js-in-'))
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, name)
  fs.writeFileSync(file, bytes)
  return file
}

/**
 * A `width`×`height` RGB PNG, its pixels derived from `seed` (so that
 * different seeds give different images); with `noise`, random pixels,
 * which do not compress: a file of about 3 bytes a pixel.
 */
export function png (width, height, seed = 0, { noise = false } = {}) {
  const raw = noise ? crypto.randomBytes((width * 3 + 1) * height) : Buffer.alloc((width * 3 + 1) * height)
  if (noise) {
    for (let y = 0; y < height; y++) raw[y * (width * 3 + 1)] = 0
    return encodePng(width, height, raw)
  }
  let s = seed * 2654435761 + 1
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1)
    raw[row] = 0
    for (let x = 0; x < width; x++) {
      s = (s * 1103515245 + 12345) >>> 0
      const i = row + 1 + x * 3
      raw[i] = (x * 255 / width) ^ (s >>> 24) & 15
      raw[i + 1] = (y * 255 / height)
      raw[i + 2] = (seed * 40 + x + y) & 255
    }
  }
  return encodePng(width, height, raw)
}

function encodePng (width, height, raw) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length)
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data])
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td))
    return Buffer.concat([len, td, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0
  return new Uint8Array(Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw, { level: 1 })),
    chunk('IEND', Buffer.alloc(0))
  ]))
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})
function crc32 (buf) {
  let c = 0xffffffff
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 255] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/** The access key and secret SeaweedFS is started with (as tests/src/s3.rs). */
export const S3_KEY = 'upcache-test-key'
export const S3_SECRET = 'upcache-test-secret-0123456789'
export const S3_BUCKET = 'upcache-test'

/** A free port on 127.0.0.1, held (listening) until `release()`. */
async function holdPort (port = 0) {
  const srv = net.createServer()
  await new Promise((resolve, reject) => { srv.once('error', reject); srv.listen(port, '127.0.0.1', resolve) })
  return { port: srv.address().port, release: () => new Promise((resolve) => srv.close(resolve)) }
}

/**
 * Starts a real S3 server — SeaweedFS's `weed mini`, the pinned binary
 * `.ci/seaweedfs.sh` installs (or `SEAWEEDFS_WEED`) — on free loopback
 * ports with the bucket `S3_BUCKET`, as tests/src/s3.rs does for the Rust
 * tests. `config(prefix, extra)` is an `[s3]` table for upcache.
 */
export async function startSeaweed () {
  const weed = process.env.SEAWEEDFS_WEED || path.join(REPO, 'tests', 'seaweedfs', '.venv', 'bin', 'weed')
  if (!fs.existsSync(weed)) throw new Error(`${weed} is missing: run .ci/seaweedfs.sh (or set SEAWEEDFS_WEED)`)
  const held = []
  for (let i = 0; i < 8; i++) held.push(await holdPort())
  // weed's maintenance worker dials the admin port plus 10000, whatever the flags say.
  let admin
  for (;;) {
    const a = await holdPort()
    if (a.port + 10000 > 65535) { held.push(a); continue }
    try { held.push(await holdPort(a.port + 10000)); admin = a; held.push(a); break } catch { held.push(a) }
  }
  const [s3, s3Grpc, master, masterGrpc, volume, volumeGrpc, filer, filerGrpc] = held.map((h) => h.port)
  await Promise.all(held.map((h) => h.release()))
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upcache-js-weed-'))
  fs.mkdirSync(path.join(dir, 'data'))
  const log = fs.openSync(path.join(dir, 'weed.log'), 'a')
  const ports = { 's3.port': s3, 's3.port.grpc': s3Grpc, 'master.port': master, 'master.port.grpc': masterGrpc, 'volume.port': volume, 'volume.port.grpc': volumeGrpc, 'filer.port': filer, 'filer.port.grpc': filerGrpc, 'admin.port': admin.port, 'admin.port.grpc': admin.port + 10000 }
  const args = ['mini', `-dir=${path.join(dir, 'data')}`, '-ip=127.0.0.1', '-ip.bind=127.0.0.1',
    ...Object.entries(ports).map(([k, v]) => `-${k}=${v}`),
    '-webdav=false', '-s3.port.iceberg=0', '-s3.port.lance=0', '-admin.ui=false', '-master.telemetry=false',
    `-bucket=${S3_BUCKET}`, `-filer.localSocket=${path.join(dir, 'filer.sock')}`, `-s3.localSocket=${path.join(dir, 's3.sock')}`]
  const child = spawn(weed, args, {
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: dir, AWS_ACCESS_KEY_ID: S3_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET },
    stdio: ['ignore', log, log]
  })
  const endpoint = `http://127.0.0.1:${s3}`
  // Up once the S3 port answers HTTP at all; upcache's write-behind retries
  // until the bucket takes objects.
  const until = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`weed exited with ${child.exitCode}: ${fs.readFileSync(path.join(dir, 'weed.log'), 'utf8').slice(-2000)}`)
    try { await fetch(endpoint + '/'); break } catch {}
    if (Date.now() > until) throw new Error('weed did not answer within 60 s')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  fs.writeFileSync(path.join(dir, 'secret'), S3_SECRET)
  return {
    endpoint,
    config: (prefix, extra = '') => `[s3]\nendpoint = "${endpoint}"\nbucket = "${S3_BUCKET}"\nregion = "us-east-1"\npath_style = true\nprefix = "${prefix}"\naccess_key_id = "${S3_KEY}"\nsecret_access_key_file = "${path.join(dir, 'secret')}"\n${extra}`,
    async stop () {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGKILL')
        await exited
      }
      fs.closeSync(log)
      for (const port of Object.values(ports)) {
        for (const kind of ['master', 'volume', 'filer', 's3', 'admin']) {
          for (const grpc of ['', '-grpc']) fs.rmSync(`/tmp/seaweedfs-${kind}${grpc}-${port}.sock`, { force: true })
        }
      }
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}
