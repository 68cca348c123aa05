// One `put` of the Node SDK, as its own process (so that its time includes
// what a program pays: start-up, hashing, upload, wait):
//   node bench/put.js SERVER FILE CONCURRENCY
// Prints one JSON line: { hashMs, totalMs, bytesUploaded, hit, key }.

import { Client } from '@upcache/client'

const [server, file, concurrency] = process.argv.slice(2)
const t0 = performance.now()
let hashMs = 0
const client = new Client({ server, concurrency: Number(concurrency) || 4 })
const done = await client.put(file, { op: 'identity' }, {
  onProgress: (p) => { if (p.phase === 'hashed') hashMs = performance.now() - t0 }
})
await client.close()
console.log(JSON.stringify({ hashMs, totalMs: performance.now() - t0, bytesUploaded: done.bytesUploaded, hit: done.hit, key: done.key }))
