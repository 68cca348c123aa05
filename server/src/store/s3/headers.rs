//! A blob's [`BlobMeta`] as an object's user metadata (`x-amz-meta-*`), and
//! back; the layout is in the module doc of [`super`] and in
//! `spec/s3-objects.md`.

use std::collections::HashMap;
use std::io;

use upcache_protocol::{InputHash, Key};

use crate::store::blob::{BlobMeta, BlobName, ResultOf};
use crate::store::records::InputRecord;

/// S3's limit on user metadata: keys and values, in bytes, together.
const METADATA_LIMIT: usize = 2048;

/// The version of the metadata layout written.
const FORMAT: &str = "1";
/// The user metadata of `name` (without the `x-amz-meta-` prefix).
pub(super) fn metadata(name: BlobName, meta: &BlobMeta) -> io::Result<HashMap<String, String>> {
    let mut m = HashMap::new();
    let mut put = |k: &str, v: String| m.insert(format!("upcache-{k}"), v);
    put("format", FORMAT.into());
    put("length", meta.length.to_string());
    put("blake3", meta.blake3.to_hex());
    if let Some(rec) = &meta.input {
        put("block-size", rec.block_size.to_string());
        put("digest", hex::encode(rec.digest));
    }
    if let BlobName::Result(key) = name {
        put("key", key.to_string());
    }
    if let Some(of) = &meta.result {
        put("input", of.input.to_hex());
        put("input-length", of.input_length.to_string());
        put("operation", percent_encode(&of.operation));
        if of.is_input {
            put("result-is-input", "true".into());
        }
    }
    let size: usize = m.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > METADATA_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name}: its metadata takes {size} bytes, over S3's {METADATA_LIMIT}"),
        ));
    }
    Ok(m)
}

/// [`BlobMeta`] from an object's user metadata; `None` for an object
/// upcache did not write, or whose metadata does not hold together.
pub(super) fn parse_metadata(
    name: BlobName,
    m: &HashMap<String, String>,
    content_type: &str,
) -> Option<BlobMeta> {
    let get = |k: &str| m.get(&format!("upcache-{k}")).map(String::as_str);
    if get("format")? != FORMAT {
        return None;
    }
    let hash = |k: &str| get(k).and_then(|v| v.parse::<InputHash>().ok());
    let number = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
    let length = number("length")?;
    let blake3 = hash("blake3")?;
    let input = match get("block-size") {
        None => None,
        Some(_) => Some(InputRecord {
            length,
            block_size: number("block-size")?,
            digest: hex::decode(get("digest")?).ok()?.try_into().ok()?,
        }),
    };
    let result = match name {
        BlobName::Result(key) => {
            if get("key")?.parse::<Key>().ok()? != key {
                return None;
            }
            Some(ResultOf {
                input: hash("input")?,
                input_length: number("input-length")?,
                operation: percent_decode(get("operation")?)?,
                is_input: get("result-is-input") == Some("true"),
            })
        }
        BlobName::Input(h) if h != blake3 => return None,
        BlobName::Input(_) => None,
    };
    Some(BlobMeta {
        length,
        blake3,
        content_type: content_type.to_owned(),
        input,
        result,
    })
}

/// Percent-encodes every byte outside printable ASCII, and space and `%`:
/// header values must be ASCII, and SigV4 folds runs of spaces.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_survive_the_header_encoding() {
        for op in [
            r#"{"name":"identity","v":1}"#,
            "{\"text\":\"é ☃ 100% \\\"quoted\\\"  two spaces\\ttab\"}",
            "",
        ] {
            let enc = percent_encode(op);
            assert!(enc.bytes().all(|b| b.is_ascii_graphic()), "{enc}");
            assert_eq!(percent_decode(&enc).as_deref(), Some(op));
        }
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn metadata_round_trips_through_headers() {
        let key = Key([7; 32]);
        let meta = BlobMeta::result(
            InputHash::of(b"out"),
            3,
            "image/png",
            ResultOf {
                input: InputHash::of(b"in"),
                input_length: 2,
                operation: r#"{"name":"image.resize","width":10}"#.into(),
                is_input: false,
            },
        );
        let name = BlobName::Result(key);
        let headers = metadata(name, &meta).unwrap();
        assert_eq!(headers["upcache-key"], key.to_string());
        assert_eq!(parse_metadata(name, &headers, "image/png"), Some(meta));
        let other = BlobName::Result(Key([8; 32]));
        assert_eq!(
            parse_metadata(other, &headers, "image/png"),
            None,
            "metadata naming another key is not trusted"
        );

        let hash = InputHash::of(b"input");
        let record = InputRecord {
            length: 5,
            block_size: 1 << 20,
            digest: [3; 32],
        };
        let meta = BlobMeta::input(hash, record);
        let headers = metadata(BlobName::Input(hash), &meta).unwrap();
        assert_eq!(
            parse_metadata(BlobName::Input(hash), &headers, OCTET),
            Some(meta)
        );
    }

    #[test]
    fn a_link_round_trips_and_only_links_say_so() {
        let key = Key([9; 32]);
        let of = ResultOf {
            input: InputHash::of(b"in"),
            input_length: 2,
            operation: r#"{"name":"identity","v":1}"#.into(),
            is_input: false,
        };
        let link = BlobMeta::link(of.clone());
        let name = BlobName::Result(key);
        let headers = metadata(name, &link).unwrap();
        assert_eq!(headers["upcache-result-is-input"], "true");
        assert_eq!(headers["upcache-length"], "0");
        assert_eq!(parse_metadata(name, &headers, OCTET), Some(link));
        let result = BlobMeta::result(InputHash::of(b"out"), 3, OCTET, of);
        let headers = metadata(name, &result).unwrap();
        assert!(!headers.contains_key("upcache-result-is-input"));
        assert!(!parse_metadata(name, &headers, OCTET).unwrap().is_link());
    }

    const OCTET: &str = "application/octet-stream";

    #[test]
    fn oversized_metadata_is_refused_before_sending() {
        let meta = BlobMeta::result(
            InputHash::of(b""),
            0,
            OCTET,
            ResultOf {
                input: InputHash::of(b""),
                input_length: 0,
                operation: "x".repeat(METADATA_LIMIT),
                is_input: false,
            },
        );
        let e = metadata(BlobName::Result(Key([1; 32])), &meta).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
