//! The admin API (`spec/protocol.md`, "Admin API"): endpoints that need an
//! admin key, never an API key or a token.
//!
//! `POST /v1/admin/purge` takes a [`PurgeRequest`] — exactly one of `key`,
//! `operation`, `before` or `all` — and answers a [`PurgeReport`].

use serde::{Deserialize, Serialize};

use crate::Key;

/// Where purges are asked for.
pub const PURGE_PATH: &str = "/v1/admin/purge";

/// What to purge: exactly one selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// The entry under this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    /// Every entry of this operation name (`image.thumbnail`), any version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Every entry created before this time, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Everything: every entry and every stored input.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

impl PurgeRequest {
    /// Whether exactly one selector is given.
    pub fn is_valid(&self) -> bool {
        let n = usize::from(self.key.is_some())
            + usize::from(self.operation.is_some())
            + usize::from(self.before.is_some())
            + usize::from(self.all);
        n == 1
    }
}

/// What a purge did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Entries removed (with their results and staged uploads).
    pub entries: u64,
    /// Stored inputs removed (`all` only).
    pub inputs: u64,
    /// Bytes of results, inputs and staged uploads removed from disk.
    pub bytes: u64,
    /// Entries that matched but were left alone because an upload request
    /// or the operation was running; purge again once they settled.
    pub in_flight: u64,
}

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 date-time
/// (`2026-01-31T12:00:00Z`, `…+02:00`, fractions of a second ignored)
/// into seconds since the Unix epoch. Times before 1970 are refused.
pub fn parse_date(text: &str) -> Option<u64> {
    let text = text.trim();
    let (date, rest) = if text.len() > 10 {
        text.split_at(10)
    } else {
        (text, "")
    };
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 || parts.next().is_some() {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (num(y)?, num(m)?, num(d)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86400;
    if !rest.is_empty() {
        let rest = rest.strip_prefix(['T', 't', ' '])?;
        let (clock, zone) = rest.split_at(rest.find(['Z', 'z', '+', '-'])?);
        let clock = clock.split('.').next()?;
        let mut hms = clock.split(':');
        let (h, mi, s) = (num(hms.next()?)?, num(hms.next()?)?, num(hms.next()?)?);
        if hms.next().is_some() || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        secs += h * 3600 + mi * 60 + s;
        secs -= match zone {
            "Z" | "z" => 0,
            z => {
                let sign = if z.starts_with('-') { -1 } else { 1 };
                let (zh, zm) = z[1..].split_once(':')?;
                let (zh, zm) = (num(zh)?, num(zm)?);
                if zh > 23 || zm > 59 {
                    return None;
                }
                sign * (zh * 3600 + zm * 60)
            }
        };
    }
    u64::try_from(secs).ok()
}

fn num(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_to_epoch_seconds() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-03-01"), Some(951_868_800));
        assert_eq!(parse_date("2026-01-31T12:00:00Z"), Some(1_769_860_800));
        assert_eq!(
            parse_date("2026-01-31T14:00:00.250+02:00"),
            Some(1_769_860_800)
        );
        assert_eq!(parse_date("2024-02-29"), Some(1_709_164_800));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "26-01-01",
            "2026-01-01T25:00:00Z",
            "2026-01-01T10:00:00",
            "yesterday",
            "1969-12-31",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_purge_names_one_selector() {
        assert!(!PurgeRequest::default().is_valid());
        let all = PurgeRequest {
            all: true,
            ..Default::default()
        };
        assert!(all.is_valid());
        assert_eq!(serde_json::to_string(&all).unwrap(), r#"{"all":true}"#);
        let two = PurgeRequest {
            before: Some(1),
            ..all
        };
        assert!(!two.is_valid());
        assert!(serde_json::from_str::<PurgeRequest>(r#"{"everything":true}"#).is_err());
    }
}
