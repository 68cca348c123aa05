// A TCP fault proxy between a client and the server (the pattern of
// tests/src/proxy.rs): it forwards both ways, counts the bytes, and resets
// a connection (TCP RST toward both sides) once it has carried a given
// number of bytes in a given direction since the fault was armed.

import net from 'node:net'

export async function startProxy (target, { record = false } = {}) {
  const { hostname, port } = new URL(target)
  const faults = []
  const sockets = new Set()
  // `sent`: what went toward the server, as text, when recording (for requests' headers).
  const stats = { up: 0, down: 0, connections: 0, resets: 0, maxOpen: 0, sent: '' }
  const server = net.createServer((client) => {
    stats.connections++
    const upstream = net.connect(Number(port), hostname)
    sockets.add(client); sockets.add(upstream)
    stats.maxOpen = Math.max(stats.maxOpen, sockets.size / 2)
    const conn = { up: 0, down: 0 }
    let dead = false
    const reset = () => {
      if (dead) return
      dead = true
      stats.resets++
      client.resetAndDestroy()
      upstream.resetAndDestroy()
    }
    const forward = (from, to, dir) => from.on('data', (d) => {
      if (dead) return
      const onRequest = dir === 'up' && faults.find((f) => f.request && !f.fired && d.subarray(0, f.request.length).toString('latin1') === f.request)
      if (onRequest) {
        // The request goes through; its connection is reset right after.
        onRequest.fired = true
        to.write(d)
        stats.up += d.length
        return setTimeout(reset, onRequest.delay)
      }
      const f = faults.find((f) => f.dir === dir && !f.fired && !f.request)
      if (f) {
        f.seen += d.length
        if (f.seen >= f.after) {
          // Forward only the bytes up to the fault, then cut.
          const keep = d.length - (f.seen - f.after)
          f.fired = true
          if (keep > 0) { to.write(d.subarray(0, keep)); stats[dir] += keep }
          return reset()
        }
      }
      stats[dir] += d.length
      conn[dir] += d.length
      if (record && dir === 'up') stats.sent += d.toString('latin1')
      to.write(d)
    })
    forward(client, upstream, 'up')
    forward(upstream, client, 'down')
    const close = () => {
      sockets.delete(client); sockets.delete(upstream)
      if (!dead) { dead = true; client.destroy(); upstream.destroy() }
    }
    client.on('error', close); upstream.on('error', close)
    client.on('close', close); upstream.on('close', close)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    stats,
    /** Resets the connection that carries the `after`-th byte in direction `dir` ('up': toward the server) from now on. */
    armReset (after, dir = 'up') { const f = { after, dir, seen: 0, fired: false }; faults.push(f); return f },
    /** Resets, `delay` ms after it went through, the connection of the next request whose first bytes are `request` (e.g. `HEAD /v1/`). */
    armResetOnRequest (request, delay = 0) { const f = { request, delay, fired: false }; faults.push(f); return f },
    async close () {
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}
