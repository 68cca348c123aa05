//! Examples of the tus codecs; the properties are in `tests/props.rs`.

use super::*;

const K: &str = "38574c97ace8ccab61b23102d438ae3ab49da37d62e4c2221f7834cc34f2c343";

#[test]
fn metadata_examples() {
    let m = Metadata::parse("filename aGVsbG8udHh0, flag ,op e30").unwrap();
    assert_eq!(m.get("filename"), Some(&b"hello.txt"[..]));
    assert_eq!(m.get("flag"), Some(&b""[..]));
    assert_eq!(m.get("op"), Some(&b"{}"[..]), "unpadded base64");
    assert_eq!(m.get("other"), None);
    assert_eq!(m.encode(), "filename aGVsbG8udHh0,flag,op e30=");
    assert_eq!(Metadata::parse("").unwrap(), Metadata::default());
    for bad in ["filename !!!", "a YQ==,a YQ==", "a YQ== YQ==", "a\tb YQ=="] {
        assert!(Metadata::parse(bad).is_err(), "{bad:?}");
    }
    assert!(Metadata::new([("a,b", vec![])]).is_err());
}

#[test]
fn concat_examples() {
    assert_eq!(Concat::parse(" partial ").unwrap(), Concat::Partial);
    let f = Concat::parse("final;/files/a  http://h/files/b").unwrap();
    assert_eq!(
        f,
        Concat::Final(vec!["/files/a".into(), "http://h/files/b".into()])
    );
    assert_eq!(f.encode(), "final;/files/a http://h/files/b");
    for bad in ["final;", "final; ", "partial;x", "whole", ""] {
        assert!(Concat::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn upload_ids_from_paths_and_urls() {
    let k: Key = K.parse().unwrap();
    let here: &[&str] = &["h:1"];
    assert_eq!(upload_id(&format!("/files/{K}"), here), Ok(k));
    assert_eq!(upload_id(&format!("http://h:1/files/{K}/"), here), Ok(k));
    assert_eq!(upload_id(&format!("http://H:1/files/{K}?x=1"), here), Ok(k));
    assert_eq!(upload_id(&format!("https://h/files/{K}"), &[]), Ok(k));
    assert_eq!(upload_id(&format!("http://h:80/files/{K}"), &["h"]), Ok(k));
    assert_eq!(
        upload_id(&format!("https://h/files/{K}"), &["h:443"]),
        Ok(k)
    );
    let proxied: &[&str] = &["backend:8080", "files.example"];
    assert_eq!(
        upload_id(&format!("https://files.example/files/{K}"), proxied),
        Ok(k)
    );
    for foreign in [
        format!("http://evil:1/files/{K}"),
        format!("http://h:2/files/{K}"),
        format!("http://h/files/{K}"),
        format!("http://h:1@evil:1/files/{K}"),
    ] {
        assert!(
            matches!(upload_id(&foreign, here), Err(UploadUrlError::Foreign(_))),
            "{foreign}"
        );
    }
    for bad in [
        format!("/v1/ops/{K}"),
        "/files/nope".into(),
        "http://h:1".into(),
    ] {
        assert!(
            matches!(upload_id(&bad, here), Err(UploadUrlError::NotAnUpload(_))),
            "{bad}"
        );
    }
}

#[test]
fn checksum_examples() {
    let c = Checksum::parse("SHA1 qvTGHdzF6KLavt4PO0gs2a6pQ00=").unwrap();
    assert_eq!(c.algorithm, ChecksumAlgorithm::Sha1);
    assert_eq!(
        hex::encode(&c.digest),
        "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
    );
    assert_eq!(c.encode(), "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=");
    assert_eq!(
        Checksum::parse("crc32 AAAA"),
        Err(TusHeaderError::UnsupportedChecksum("crc32".into()))
    );
    for bad in ["md5 qvTGHdzF6KLavt4PO0gs2a6pQ00=", "sha1", "sha1 !!"] {
        assert!(
            matches!(Checksum::parse(bad), Err(TusHeaderError::Checksum(_))),
            "{bad:?}"
        );
    }
    assert_eq!(ChecksumAlgorithm::header(), "sha1,md5,sha256");
    for (name, a) in ChecksumAlgorithm::ALL {
        assert_eq!(a.name(), name);
        assert_eq!(ChecksumAlgorithm::named(&name.to_uppercase()), Some(a));
    }
}

#[test]
fn extension_lists() {
    let all = encode_extensions(&EXTENSIONS);
    assert_eq!(all, "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination,concatenation");
    assert_eq!(parse_extensions(&all).unwrap(), EXTENSIONS);
    assert_eq!(parse_extensions(" a , b ").unwrap(), ["a", "b"]);
    assert_eq!(parse_extensions("").unwrap(), Vec::<String>::new());
    assert!(parse_extensions("a,,b").is_err());
    assert!(parse_extensions("a b").is_err());
}
