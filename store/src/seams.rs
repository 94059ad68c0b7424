//! The seams through which the outside world reaches the store: randomness here, and (in
//! `node`) the listener and the storage backend. Only `main.rs` and the simulation pick the
//! concrete ones. Elapsed time is always `tokio::time`, which the simulation drives.

/// A source of random numbers, seeded by whoever builds the member.
pub trait Rng: Send {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64;
}

/// SplitMix64: tiny, fast, and fully determined by its seed.
pub struct SplitMix64(pub u64);

impl Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (SplitMix64(42), SplitMix64(42));
        let xs: Vec<_> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<_> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], SplitMix64(43).next_u64());
    }
}
