//! The single byte ranges of `Range` (RFC 9110 §14) that `GET …/result`
//! serves partially, and the `Content-Range` of the answer.
//!
//! Only one `bytes=` range is served partially; several ranges, or another
//! unit, are answered with the whole result (a server may ignore `Range`).

/// One byte range as a request names it, before it meets a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (`last: Some(b)`) or `bytes=a-` (`last: None`).
    From { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// A `Range` that cannot be served: malformed, or outside the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the range is not satisfiable")]
pub struct Unsatisfiable;

impl ByteRange {
    /// Parses a `Range` value. `Ok(None)`: serve everything (another unit,
    /// or several ranges); `Err`: a malformed `bytes=` range.
    pub fn parse(value: &str) -> Result<Option<Self>, Unsatisfiable> {
        let Some(spec) = value.trim().strip_prefix("bytes=") else {
            return Ok(None);
        };
        if spec.contains(',') {
            return Ok(None);
        }
        let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
        let (a, b) = (a.trim(), b.trim());
        let number = |s: &str| s.parse::<u64>().map_err(|_| Unsatisfiable);
        let range = match (a.is_empty(), b.is_empty()) {
            (true, _) => ByteRange::Suffix(number(b)?),
            (false, true) => ByteRange::From {
                first: number(a)?,
                last: None,
            },
            (false, false) => ByteRange::From {
                first: number(a)?,
                last: Some(number(b)?),
            },
        };
        if let ByteRange::From {
            first,
            last: Some(last),
        } = range
        {
            if first > last {
                return Err(Unsatisfiable);
            }
        }
        Ok(Some(range))
    }

    /// The `Range` value.
    pub fn encode(&self) -> String {
        match self {
            ByteRange::From { first, last: None } => format!("bytes={first}-"),
            ByteRange::From {
                first,
                last: Some(last),
            } => format!("bytes={first}-{last}"),
            ByteRange::Suffix(n) => format!("bytes=-{n}"),
        }
    }

    /// The inclusive `(first, last)` bytes of a result of `len` bytes; a
    /// `last` past the end is cut to it.
    pub fn resolve(&self, len: u64) -> Result<(u64, u64), Unsatisfiable> {
        let end = len.checked_sub(1).ok_or(Unsatisfiable)?;
        let (first, last) = match *self {
            ByteRange::Suffix(0) => return Err(Unsatisfiable),
            ByteRange::Suffix(n) => (len.saturating_sub(n), end),
            ByteRange::From { first, last } => (first, last.map_or(end, |l| l.min(end))),
        };
        if first > end || first > last {
            return Err(Unsatisfiable);
        }
        Ok((first, last))
    }
}

/// Resolves an optional `Range` value against a result of `len` bytes:
/// `Ok(None)` serves everything, `Ok(Some((first, last)))` one range.
pub fn resolve(value: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    match value.map(ByteRange::parse).transpose()?.flatten() {
        Some(range) => range.resolve(len).map(Some),
        None => Ok(None),
    }
}

/// `Content-Range` of a partial answer: `bytes first-last/len`.
pub fn content_range(first: u64, last: u64, len: u64) -> String {
    format!("bytes {first}-{last}/{len}")
}

/// `Content-Range` of a `416`: `bytes */len`.
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(resolve(None, 10), Ok(None));
        assert_eq!(resolve(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(resolve(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(resolve(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(resolve(Some("bytes=-30"), 10), Ok(Some((0, 9))));
        assert_eq!(resolve(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(resolve(Some("bytes=10-"), 10), Err(Unsatisfiable));
        assert_eq!(resolve(Some("bytes=4-2"), 10), Err(Unsatisfiable));
        assert_eq!(resolve(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(resolve(Some("items=0-1"), 10), Ok(None));
        assert_eq!(resolve(Some("bytes=-0"), 10), Err(Unsatisfiable));
        assert_eq!(resolve(Some("bytes=0-0"), 0), Err(Unsatisfiable));
        assert_eq!(resolve(Some("bytes=x-1"), 10), Err(Unsatisfiable));
        assert_eq!(content_range(0, 3, 10), "bytes 0-3/10");
        assert_eq!(unsatisfied_range(10), "bytes */10");
    }
}
