// The one error class of the SDK: the server's problem document (RFC 9457,
// spec/protocol.md §12) or a client-side failure in the same shape.

/** Problem types the client itself reports (the server's are `urn:upcache:problem:*`). */
export const CLIENT = Object.freeze({
  network: 'urn:upcache:client:network',
  stalled: 'urn:upcache:client:stalled',
  aborted: 'urn:upcache:client:aborted',
  gaveUp: 'urn:upcache:client:gave-up',
  corruptResult: 'urn:upcache:client:corrupt-result',
  invalidOperation: 'urn:upcache:client:invalid-operation',
  invalidInput: 'urn:upcache:client:invalid-input',
  hashing: 'urn:upcache:client:hashing',
  protocol: 'urn:upcache:client:protocol',
  notReady: 'urn:upcache:client:not-ready'
})

const PROBLEM = 'urn:upcache:problem:'
/** Server problems worth another try: a block someone else is writing, one corrupted or cut short on the way. */
const RETRYABLE = new Set(['upload-busy', 'block-hash-mismatch', 'block-length-mismatch'].map((s) => PROBLEM + s))
const RETRYABLE_CLIENT = new Set([CLIENT.network, CLIENT.stalled, CLIENT.corruptResult])

export class UpcacheError extends Error {
  /**
   * @param {{type: string, status?: number, title?: string, detail?: string, problem?: object, cause?: unknown}} p
   */
  constructor ({ type, status = 0, title, detail, problem, cause }) {
    super(detail || title || type, cause === undefined ? undefined : { cause })
    this.name = 'UpcacheError'
    /** The problem type (`urn:upcache:problem:<slug>`, or `urn:upcache:client:<slug>`). */
    this.type = type
    /** The HTTP status of the server's answer; 0 when the failure was on the client's side. */
    this.status = status
    this.title = title || ''
    this.detail = detail || ''
    /** The server's whole problem document, when it sent one. */
    this.problem = problem || null
  }

  /** Whether trying again may succeed (network failures, 5xx, 408, 429, busy or damaged blocks). */
  get retryable () {
    if (this.status === 0) return RETRYABLE_CLIENT.has(this.type)
    return this.status >= 500 || this.status === 408 || this.status === 429 || RETRYABLE.has(this.type)
  }

  /** The slug of the type: `not-found` for `urn:upcache:problem:not-found`. */
  get slug () {
    return this.type.slice(this.type.lastIndexOf(':') + 1)
  }

  /** An error from a problem answer's status and body text. */
  static fromAnswer (status, text) {
    let p = null
    try { p = JSON.parse(text) } catch {}
    if (p && typeof p === 'object' && typeof p.type === 'string') {
      return new UpcacheError({ type: p.type, status, title: p.title, detail: p.detail, problem: p })
    }
    const type = status >= 500 ? PROBLEM + 'internal' : PROBLEM + 'malformed-request'
    return new UpcacheError({ type, status, detail: String(text || '').slice(0, 200) || `HTTP ${status}` })
  }
}
