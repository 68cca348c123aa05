// `npm run build`: assembles the package in dist/ — the ES modules of src/,
// their types, and the WebAssembly hasher (client-js/wasm/upcache_hash.wasm,
// committed; client-js/wasm/build.sh rebuilds it from Rust) — and copies it
// to demo/lib/, where the demo page (served by `upcache serve` at /demo/)
// imports it from. No bundler: the sources are the package.

import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const dist = path.join(root, 'dist')
const lib = path.join(root, 'demo', 'lib')

fs.rmSync(dist, { recursive: true, force: true })
fs.mkdirSync(dist, { recursive: true })
for (const f of fs.readdirSync(path.join(root, 'src')).sort()) {
  if (f.endsWith('.js') || f.endsWith('.d.ts')) fs.copyFileSync(path.join(root, 'src', f), path.join(dist, f))
}
fs.copyFileSync(path.join(root, 'wasm', 'upcache_hash.wasm'), path.join(dist, 'upcache_hash.wasm'))

// The browser's share of the package, for the demo page.
fs.rmSync(lib, { recursive: true, force: true })
fs.mkdirSync(lib, { recursive: true })
for (const f of fs.readdirSync(dist).sort()) {
  if (f === 'node.js' || f === 'hash-worker-node.js' || f.endsWith('.d.ts')) continue
  fs.copyFileSync(path.join(dist, f), path.join(lib, f))
}
console.log(`built ${path.relative(process.cwd(), dist) || '.'} and ${path.relative(process.cwd(), lib)}`)
