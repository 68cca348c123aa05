// `npm run build`: assembles the package in dist/ — the ES modules of src/,
// their types, and the WebAssembly hasher (client-js/wasm/upcache_hash.wasm,
// committed; client-js/wasm/build.sh rebuilds it from Rust). No bundler: the
// sources are the package. (The demo page's lib/ is embedded into the server
// straight from src/ and wasm/ by server/build.rs.)

import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const dist = path.join(root, 'dist')

fs.rmSync(dist, { recursive: true, force: true })
fs.mkdirSync(dist, { recursive: true })
for (const f of fs.readdirSync(path.join(root, 'src')).sort()) {
  if (f.endsWith('.js') || f.endsWith('.d.ts')) fs.copyFileSync(path.join(root, 'src', f), path.join(dist, f))
}
fs.copyFileSync(path.join(root, 'wasm', 'upcache_hash.wasm'), path.join(dist, 'upcache_hash.wasm'))

console.log(`built ${path.relative(process.cwd(), dist) || '.'}`)
