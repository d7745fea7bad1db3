//! Deterministic pseudo-randomness: the same seed gives the same numbers in
//! every version, which a shared crate's RNG does not promise. Benchmark
//! graphs, retry jitter and the crash matrix's kill points depend on that.

/// SplitMix64: tiny, fast, and fixed forever.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; the bias is below
    /// 2^-32 for the bounds used here).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seed from several byte strings (FNV-1a over each, with a separator so
/// `("ab", "c")` and `("a", "bc")` differ).
pub(crate) fn seed_of(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// A run id derived from a seed and the workflow's name, shaped like a
/// random (version 4) UUID: the same seed gives the same id, for
/// reproducible runs and tests.
pub fn seeded_run_id(seed: u64, workflow: &str) -> String {
    let mut random = SplitMix64(seed_of(&[&seed.to_le_bytes(), workflow.as_bytes()]));
    let (high, low) = (random.next(), random.next());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0x0fff,
        0x8000 | ((low >> 48) & 0x3fff),
        low & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_run_ids_repeat_and_look_like_uuids() {
        let id = seeded_run_id(7, "nightly");
        assert_eq!(id, seeded_run_id(7, "nightly"));
        assert_ne!(id, seeded_run_id(8, "nightly"));
        assert_ne!(id, seeded_run_id(7, "release"));
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn seeds_separate_their_parts() {
        assert_ne!(seed_of(&[b"ab", b"c"]), seed_of(&[b"a", b"bc"]));
        assert_eq!(seed_of(&[b"run", b"task"]), seed_of(&[b"run", b"task"]));
    }

    #[test]
    fn unit_values_stay_in_range() {
        let mut random = SplitMix64(7);
        assert!(
            (0..1000)
                .map(|_| random.unit())
                .all(|u| (0.0..1.0).contains(&u))
        );
    }
}
