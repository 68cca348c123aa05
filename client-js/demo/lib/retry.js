// Retries with exponential backoff and full jitter, bounded by the time
// since the call last made progress (not by a count): a long upload over a
// flaky link goes on as long as blocks keep arriving.

import { UpcacheError, CLIENT } from './errors.js'
import { aborted } from './hash-pool.js'

export const DEFAULT_RETRY = Object.freeze({ initialDelay: 200, maxDelay: 15_000, retryFor: 120_000 })

export class Retrier {
  constructor (policy, signal, onRetry) {
    this.p = { ...DEFAULT_RETRY, ...policy }
    this.signal = signal
    this.onRetry = onRetry
    this.attempt = 0
    this.since = Date.now()
  }

  /** Something advanced: the budget starts over. */
  progressed () { this.attempt = 0; this.since = Date.now() }

  /** A step failed: waits the backoff delay, or throws if it should not be retried. */
  async failed (error, { busy = false } = {}) {
    if (this.signal && this.signal.aborted) throw aborted(this.signal)
    if (!(error instanceof UpcacheError) || !error.retryable) throw error
    const idle = Date.now() - this.since
    if (idle > this.p.retryFor) {
      throw new UpcacheError({
        type: CLIENT.gaveUp,
        detail: `gave up after ${Math.round(idle / 1000)} s without progress: ${error.message}`,
        cause: error
      })
    }
    // Someone else holding a block is no failure of ours: no escalation.
    const attempt = busy ? 0 : this.attempt++
    const ceiling = Math.min(this.p.maxDelay, this.p.initialDelay * 2 ** Math.min(attempt, 30))
    const delay = ceiling / 2 + Math.random() * ceiling / 2
    if (this.onRetry) this.onRetry({ attempt: attempt + 1, delay, error })
    await sleep(delay, this.signal)
  }
}

export function sleep (ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(aborted(signal))
    const t = setTimeout(() => { signal && signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = () => { clearTimeout(t); reject(aborted(signal)) }
    if (signal) signal.addEventListener('abort', onAbort, { once: true })
  })
}
