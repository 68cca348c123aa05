// Sends one request the way a plain Node program would, with fetch.
//
// usage: node send.mjs METHOD URL FILE [NAME:VALUE ...]
//
// Prints the status on the first line, then the answer's body. Exits 1 with
// the error if no answer was read.
//
// When an answer is complete before the request body is sent, undici (Node's
// fetch) destroys the socket under its own pending write, whose EPIPE then
// surfaces as an uncaught exception — after the answer was read. That is
// reported on stderr, and does not fail the run.
import { readFileSync } from 'node:fs'

const [method, url, file, ...headers] = process.argv.slice(2)
const body = readFileSync(file)
const h = {}
for (const line of headers) {
  const i = line.indexOf(':')
  h[line.slice(0, i).trim()] = line.slice(i + 1).trim()
}
let answered = false
process.on('uncaughtException', (e) => {
  console.error(`${answered ? 'after the answer' : 'error'}: ${e}`)
  process.exit(answered ? 0 : 1)
})
try {
  const resp = await fetch(url, { method, body, headers: h, redirect: 'manual' })
  const text = await resp.text()
  answered = true
  process.stdout.write(`${resp.status}\n${text}`)
} catch (e) {
  console.error(`error: ${e} ${e.cause ?? ''}`)
  process.exit(1)
}
