//! Checksums of a request body (tus `Upload-Checksum`): computed as the
//! bytes go by, compared once the body ended.

use sha1::Digest as _;

/// The algorithms a body checksum may use (their names are the protocol's).
pub use upcache_protocol::tus::ChecksumAlgorithm;

/// What a body must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyCheck {
    pub algorithm: ChecksumAlgorithm,
    pub expected: Vec<u8>,
}

/// A checksum being computed.
pub(super) enum Running {
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
}

impl Running {
    pub(super) fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Sha1 => Running::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Md5 => Running::Md5(md5::Md5::new()),
            ChecksumAlgorithm::Sha256 => Running::Sha256(sha2::Sha256::new()),
        }
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        match self {
            Running::Sha1(h) => h.update(bytes),
            Running::Md5(h) => h.update(bytes),
            Running::Sha256(h) => h.update(bytes),
        }
    }

    pub(super) fn finish(self) -> Vec<u8> {
        match self {
            Running::Sha1(h) => h.finalize().to_vec(),
            Running::Md5(h) => h.finalize().to_vec(),
            Running::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(alg: ChecksumAlgorithm, pieces: &[&[u8]]) -> String {
        let mut r = Running::new(alg);
        for p in pieces {
            r.update(p);
        }
        hex::encode(r.finish())
    }

    #[test]
    fn known_digests_whatever_the_pieces() {
        use ChecksumAlgorithm::*;
        assert_eq!(
            digest(Sha1, &[b"hel", b"lo"]),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
        assert_eq!(digest(Md5, &[b"hello"]), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(
            digest(Sha256, &[b"h", b"ello"]),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(ChecksumAlgorithm::named("SHA1"), Some(Sha1));
        assert_eq!(ChecksumAlgorithm::named("crc32"), None);
        for (_, a) in ChecksumAlgorithm::ALL {
            assert_eq!(Running::new(a).finish().len(), a.digest_len());
        }
    }
}
