// Type-checked by `npm test` (tsc -p test/types): the README's usage, against dist/index.d.ts.
import { Client, UpcacheError, CLIENT, type Progress, type PutResult } from '@upcache/client'

async function example (file: Blob, token: string, signal: AbortSignal): Promise<void> {
  const client = new Client({ server: 'http://127.0.0.1:8080', token, concurrency: 4 })
  const onProgress = (p: Progress): void => { console.log(p.phase, p.loaded, p.total) }
  const done: PutResult = await client.put(file, { op: 'image.thumbnail', width: 400, height: 400, format: 'webp' }, { onProgress, signal })
  const key: string = done.key
  const hit: boolean = done.hit
  const sent: number = done.bytesUploaded
  const bytes: Uint8Array = await done.bytes()
  const blob: Blob = await done.blob()
  await done.save('thumb.webp')
  const url: string | null = done.url
  await client.key(new Uint8Array(3), { op: 'identity' })
  const st = await client.status(key)
  if (st.state === 'complete') console.log(st.result?.length)
  await client.get(key, { wait: 10 })
  await client.delete(key)
  try {
    await client.put(new ArrayBuffer(1), { op: 'identity' })
  } catch (e) {
    if (e instanceof UpcacheError && e.type !== CLIENT.aborted) console.log(e.type, e.status, e.detail, e.retryable)
  }
  console.log(hit, sent, bytes.length, blob.size, url)
}
void example
