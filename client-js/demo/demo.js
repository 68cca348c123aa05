// The demo page's script: @upcache/client's browser modules (./lib/, embedded by the server from client-js/src/), with a
// token per input from POST /demo/token. `?block_size=` and
// `?concurrency=` override the client's settings (the browser test uses
// small blocks to catch an upload midway).

import { Client } from './lib/browser.js'

const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)
const MiB = 1 << 20

/** A token for this input alone, from the demo endpoint (spec/tokens.md §6). */
async function demoToken ({ input, length, operation }) {
  const res = await fetch('/demo/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input, max_size: length, ops: [operation.op] })
  })
  if (!res.ok) throw new Error(`POST /demo/token: ${res.status} ${await res.text()}`)
  return (await res.json()).token
}

const client = new Client({
  server: location.origin,
  token: demoToken,
  concurrency: Number(params.get('concurrency')) || 4,
  blockSize: Number(params.get('block_size')) || undefined
})

const fmt = (n) => n >= MiB ? `${(n / MiB).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(0)} KiB` : `${n} B`

function state (s, text, cls = '') {
  document.body.dataset.state = s
  $('status').textContent = text
  $('status').className = cls
}

let running = null

async function run (file) {
  if (running) running.abort()
  const ctl = new AbortController()
  running = ctl
  const size = Number($('size').value)
  const op = { op: 'image.thumbnail', width: size, height: size, format: $('format').value }
  $('hash-progress').value = 0
  $('upload-progress').value = 0
  $('hash-text').textContent = $('upload-text').textContent = ''
  $('result').style.display = 'none'
  $('details').textContent = ''
  const started = performance.now()
  state('hashing', `Hashing ${file.name} (${fmt(file.size)})…`)
  try {
    const done = await client.put(file, op, {
      signal: ctl.signal,
      onProgress (p) {
        if (p.phase === 'hashing') {
          $('hash-progress').value = p.total ? p.loaded / p.total : 1
          $('hash-text').textContent = `${fmt(p.loaded)} / ${fmt(p.total)}`
        } else if (p.phase === 'hashed') {
          $('hash-progress').value = 1
          $('details').textContent = `key ${p.key}`
          state('probing', 'Asking the server what it has…')
        } else if (p.phase === 'probed') {
          $('upload-progress').dataset.blocksMissing = p.blocksMissing
          if (p.state === 'uploading') state('uploading', `Uploading ${p.blocksMissing} of ${p.blocksTotal} blocks…`)
        } else if (p.phase === 'uploading') {
          $('upload-progress').value = p.total ? p.loaded / p.total : 1
          $('upload-progress').dataset.blocksDone = p.blocksDone
          $('upload-text').textContent = `${p.blocksDone}/${p.blocksTotal} blocks`
        } else if (p.phase === 'waiting') {
          state('processing', 'Making the thumbnail…')
        } else if (p.phase === 'retrying') {
          $('upload-text').textContent = `retrying (${p.error.message})`
        }
      }
    })
    const blob = await done.blob({ signal: ctl.signal })
    $('result').src = URL.createObjectURL(blob)
    await $('result').decode()
    $('result').style.display = 'block'
    if (done.hit) {
      $('upload-progress').value = 1
      state('done', 'hit: 0 bytes uploaded', 'hit')
    } else {
      state('done', `uploaded ${done.bytesUploaded} bytes`)
    }
    const ms = Math.round(performance.now() - started)
    $('details').textContent = `key ${done.key} · ${blob.type}, ${fmt(blob.size)} · ${ms} ms`
    $('details').dataset.key = done.key
    $('status').dataset.bytesUploaded = done.bytesUploaded
    $('status').dataset.hit = done.hit
  } catch (e) {
    if (ctl.signal.aborted) return
    state('error', `${e.message}${e.type ? ` (${e.type})` : ''}`, 'error')
  } finally {
    if (running === ctl) running = null
  }
}

$('file').addEventListener('change', () => { const f = $('file').files[0]; if (f) run(f) })
const drop = $('drop')
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over') })
drop.addEventListener('dragleave', () => drop.classList.remove('over'))
drop.addEventListener('drop', (e) => {
  e.preventDefault()
  drop.classList.remove('over')
  const f = e.dataTransfer.files[0]
  if (f) run(f)
})
