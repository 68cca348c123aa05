// Block sets as ranges, `0-3,7` (spec/protocol.md §5.2).

/** Expands `0-3,7` into [0, 1, 2, 3, 7]. */
export function expandRanges (s) {
  const out = []
  if (!s || !s.trim()) return out
  let last = -1
  for (const part of s.split(',')) {
    const m = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part)
    if (!m) throw new Error(`malformed block ranges ${JSON.stringify(s)}`)
    const a = Number(m[1]); const b = m[2] === undefined ? a : Number(m[2])
    if (a > b || a <= last) throw new Error(`malformed block ranges ${JSON.stringify(s)}`)
    for (let n = a; n <= b; n++) out.push(n)
    last = b
  }
  return out
}
