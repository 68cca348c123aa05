//! The commutative digest of a set of received blocks.
//!
//! A lattice hash in the style of LtHash: block `n` with chaining value `cv`
//! contributes `BLAKE3 derive_key("upcache v1 block digest", n as u64 LE ‖ cv)`
//! extended (XOF) to 2048 bytes, read as 1024 little-endian 16-bit lanes and
//! added lane-wise modulo 2¹⁶ into a 2 KiB state. The wire form is the hex
//! BLAKE3 of the state's bytes.
//!
//! Adding is commutative and associative, so the digest of a set does not
//! depend on the order blocks arrived in, and is updated in O(1) per block.
//! A plain 256-bit modular sum would be open to generalized-birthday attacks;
//! the wide lattice state is what makes finding two sets with equal digests
//! hard. It is a progress check for clients comparing their view with the
//! server's — not the security boundary: the whole-input BLAKE3 check is.

/// Key-derivation context of block contributions.
pub const DIGEST_CONTEXT: &str = "upcache v1 block digest";
/// Number of 16-bit lanes in the state.
pub const LANES: usize = 1024;

/// The digest state of a set of blocks.
#[derive(Clone, PartialEq, Eq)]
pub struct Digest {
    lanes: Box<[u16; LANES]>,
}

impl Default for Digest {
    fn default() -> Self {
        Self {
            lanes: Box::new([0; LANES]),
        }
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl Digest {
    /// The digest of the empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn contribution(n: u64, cv: &[u8; 32]) -> [u8; LANES * 2] {
        let mut hasher = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
        hasher.update(&n.to_le_bytes());
        hasher.update(cv);
        let mut out = [0u8; LANES * 2];
        hasher.finalize_xof().fill(&mut out);
        out
    }

    /// Adds block `n` with chaining value `cv` to the set.
    pub fn add(&mut self, n: u64, cv: &[u8; 32]) {
        let c = Self::contribution(n, cv);
        for (lane, pair) in self.lanes.iter_mut().zip(c.chunks_exact(2)) {
            *lane = lane.wrapping_add(u16::from_le_bytes([pair[0], pair[1]]));
        }
    }

    /// Removes block `n` (the inverse of [`Digest::add`]).
    pub fn remove(&mut self, n: u64, cv: &[u8; 32]) {
        let c = Self::contribution(n, cv);
        for (lane, pair) in self.lanes.iter_mut().zip(c.chunks_exact(2)) {
            *lane = lane.wrapping_sub(u16::from_le_bytes([pair[0], pair[1]]));
        }
    }

    /// The state as 2048 little-endian bytes (for storage).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.lanes.iter().flat_map(|l| l.to_le_bytes()).collect()
    }

    /// Restores a state saved with [`Digest::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LANES * 2 {
            return None;
        }
        let mut d = Self::new();
        for (lane, pair) in d.lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([pair[0], pair[1]]);
        }
        Some(d)
    }

    /// The wire form: hex BLAKE3 of the state bytes.
    pub fn to_hex(&self) -> String {
        blake3::hash(&self.to_bytes()).to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cv(n: u64) -> [u8; 32] {
        *blake3::hash(&n.to_be_bytes()).as_bytes()
    }

    #[test]
    fn distinguishes_sets_and_undoes() {
        let mut a = Digest::new();
        a.add(0, &cv(0));
        let mut b = Digest::new();
        b.add(1, &cv(0));
        assert_ne!(
            a.to_hex(),
            b.to_hex(),
            "the index is bound into a contribution"
        );
        a.remove(0, &cv(0));
        assert_eq!(a, Digest::new());
        assert_eq!(Digest::from_bytes(&b.to_bytes()).unwrap(), b);
    }

    proptest! {
        #[test]
        fn order_does_not_matter(mut blocks in proptest::collection::vec(0u64..10_000, 0..40), rot in 0usize..40) {
            let mut forward = Digest::new();
            for &n in &blocks { forward.add(n, &cv(n)); }
            if !blocks.is_empty() { let k = rot % blocks.len(); blocks.rotate_left(k); }
            blocks.reverse();
            let mut backward = Digest::new();
            for &n in &blocks { backward.add(n, &cv(n)); }
            prop_assert_eq!(forward.to_hex(), backward.to_hex());
        }
    }
}
