// Types of @upcache/client, the same for the `browser` and `node` builds.

/** What `put`, `key` and `hash` accept: in Node also a file path (string or file: URL). */
export type Input = Blob | Uint8Array | ArrayBuffer | ArrayBufferView | string | URL

/** An operation (spec/protocol.md §3), e.g. `{ op: 'image.thumbnail', width: 400, height: 400, format: 'webp' }`. */
export interface Operation {
  op: string
  [field: string]: unknown
}

/** Mints a token for one input, e.g. by asking the web app's back end. */
export type TokenSource = (input: { input: string; length: number; operation: Operation }) => string | Promise<string>

export interface RetryPolicy {
  /** First backoff delay in ms (default 200); each retry doubles it, with jitter. */
  initialDelay?: number
  /** Longest backoff delay in ms (default 15000). */
  maxDelay?: number
  /** Give up after this many ms without progress (default 120000). */
  retryFor?: number
}

export interface ClientOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:8080`. */
  server: string
  /**
   * An API key or a scoped token (`upc1.…`), sent as `Authorization: Bearer`; or a
   * function that gets one for each `put` once the input is hashed (e.g. from the
   * web app's back end, scoped to that input).
   */
  token?: string | TokenSource
  /** Parallel block uploads (default 4). */
  concurrency?: number
  /** Block size to hash with and ask for (a power of two, default 8 MiB). */
  blockSize?: number
  /** Hashing workers (default: the machine's cores). */
  workers?: number
  retry?: RetryPolicy
  /** A request body that makes no progress for this many ms is abandoned and retried (default 30000). */
  stallTimeout?: number
  /** How long to wait for an answer, in ms (default 60000). */
  responseTimeout?: number
  /** `Prefer: wait=N` of each wait for the result, in seconds (default 30). */
  waitPerRequest?: number
  /** Extra headers on every request. */
  headers?: Record<string, string>
}

/** Where a call is: hashing, then probing, uploading, waiting, done (and retries on the way). */
export interface Progress {
  phase: 'hashing' | 'hashed' | 'probed' | 'uploading' | 'waiting' | 'retrying' | 'done'
  /** Bytes hashed (hashing) or acknowledged plus in flight (uploading). */
  loaded?: number
  total?: number
  /** Input bytes this call has put on the wire. */
  bytesUploaded?: number
  blocksDone?: number
  blocksTotal?: number
  blocksMissing?: number
  /** The entry's state (probed, waiting). */
  state?: EntryState
  key?: string
  input?: string
  hit?: boolean
  attempt?: number
  delay?: number
  error?: UpcacheError
}

export interface CallOptions {
  onProgress?: (progress: Progress) => void
  signal?: AbortSignal
}

export type EntryState = 'uploading' | 'processing' | 'complete' | 'failed'

/** Problem document (RFC 9457) of the server. */
export interface Problem {
  type: string
  title?: string
  status?: number
  detail?: string
  [field: string]: unknown
}

/** The status document of an entry (spec/protocol.md §7.2). */
export interface Status {
  key: string
  state: EntryState
  input: { blake3: string; length: number }
  operation: Operation
  block_size: number
  blocks_total: number
  blocks_received: number
  missing: string
  offset: number
  digest: string
  result?: { url: string; length: number; content_type: string; blake3: string }
  error?: Problem
}

/** An input hashed block by block. */
export interface Hashed {
  /** BLAKE3 of the input, hex. */
  input: string
  length: number
  blockSize: number
  /** Each block's chaining value in the input's BLAKE3 tree (the root hash for a one-block input). */
  cvs: Uint8Array[]
}

/** A complete entry, from `put` or `get`. */
export declare class PutResult {
  /** The entry's key (64 hex digits). */
  readonly key: string
  /** Whether the result came without sending an input byte. */
  readonly hit: boolean
  /** Input bytes this call put on the wire, retries included. */
  readonly bytesUploaded: number
  /** The result's absolute URL. */
  readonly url: string | null
  readonly contentType: string | null
  /** The result's length in bytes. */
  readonly size: number
  readonly status: Status
  /** The result's bytes, resumed with `Range` after interruptions and checked against its BLAKE3. */
  bytes(options?: { signal?: AbortSignal }): Promise<Uint8Array>
  /** The result as a Blob of its content type. */
  blob(options?: { signal?: AbortSignal }): Promise<Blob>
  /** (Node) Writes the result to `path` atomically, verified; resolves to its length. */
  save(path: string, options?: { signal?: AbortSignal }): Promise<number>
}

/** Problem types of failures on the client's side (status 0). */
export declare const CLIENT: {
  readonly network: 'urn:upcache:client:network'
  readonly stalled: 'urn:upcache:client:stalled'
  readonly aborted: 'urn:upcache:client:aborted'
  readonly gaveUp: 'urn:upcache:client:gave-up'
  readonly corruptResult: 'urn:upcache:client:corrupt-result'
  readonly invalidOperation: 'urn:upcache:client:invalid-operation'
  readonly invalidInput: 'urn:upcache:client:invalid-input'
  readonly hashing: 'urn:upcache:client:hashing'
  readonly protocol: 'urn:upcache:client:protocol'
  readonly notReady: 'urn:upcache:client:not-ready'
}

/** Every failure: the server's problem, or a client-side one in the same shape. */
export declare class UpcacheError extends Error {
  constructor(p: { type: string; status?: number; title?: string; detail?: string; problem?: Problem; cause?: unknown })
  readonly name: 'UpcacheError'
  /** `urn:upcache:problem:<slug>` from the server, or one of `CLIENT`. */
  readonly type: string
  /** HTTP status of the server's answer; 0 for client-side failures. */
  readonly status: number
  readonly title: string
  readonly detail: string
  /** The server's problem document, when it sent one. */
  readonly problem: Problem | null
  /** Whether trying again may succeed. */
  readonly retryable: boolean
  /** The last segment of `type`, e.g. `not-found`. */
  readonly slug: string
  static fromAnswer(status: number, text: string): UpcacheError
}

/** The protocol's default block size, 8 MiB. */
export declare const DEFAULT_BLOCK_SIZE: number

export declare class Client {
  constructor(options: ClientOptions)
  readonly server: string
  readonly concurrency: number
  readonly blockSize: number
  /** Makes sure `op` of `input` is computed — uploading only the blocks the server lacks — and waits for it. */
  put(input: Input, op: Operation, options?: CallOptions): Promise<PutResult>
  /** The entry key of `op` on `input` (hashes the input; no request). */
  key(input: Input, op: Operation, options?: CallOptions): Promise<string>
  /** Hashes `input` block by block on the workers. */
  hash(input: Input, options?: CallOptions): Promise<Hashed>
  /** The entry's status document. */
  status(key: string, options?: { signal?: AbortSignal }): Promise<Status>
  /** The complete entry `key`, waiting up to `wait` seconds (default 0); `urn:upcache:client:not-ready` if it is not. */
  get(key: string, options?: { wait?: number; signal?: AbortSignal }): Promise<PutResult>
  /** A presigned URL of the result (spec/tokens.md §3), valid `ttl` seconds (default 3600). */
  presign(key: string, options?: { ttl?: number; signal?: AbortSignal }): Promise<{ url: string; expires: number }>
  /** Cancels the upload or invalidates the result. */
  delete(key: string, options?: { signal?: AbortSignal }): Promise<void>
  /** Streams a complete entry's result into `sink`, resumed and verified; resolves to its length. */
  download(status: Status, sink: (chunk: Uint8Array) => void | Promise<void>, options?: { signal?: AbortSignal; reset?: () => void | Promise<void> }): Promise<number>
  /** Stops the hashing workers and closes idle connections. */
  close(): Promise<void>
}
