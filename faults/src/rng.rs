//! The seeded generator behind schedules and workloads: SplitMix64, written out here so a seed
//! means the same schedule on every machine and every version of every dependency (rand's
//! `StdRng` promises no such thing across releases).

use std::time::Duration;

/// A SplitMix64 stream.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// An independent stream for `purpose` (the schedule and the workload of one seed draw
    /// from different streams, so changing one never shifts the other).
    pub fn fork(seed: u64, purpose: &str) -> Rng {
        let mut r = Rng(seed);
        for b in purpose.bytes() {
            r.0 ^= u64::from(b);
            r.next_u64();
        }
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// A duration uniform in `lo..=hi`, in whole milliseconds.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        Duration::from_millis(self.between(lo.as_millis() as u64, hi.as_millis() as u64))
    }

    /// One of `items` by weight: `(weight, item)`.
    pub fn weighted<'a, T>(&mut self, items: &'a [(u64, T)]) -> Option<&'a T> {
        let total: u64 = items.iter().map(|(w, _)| w).sum();
        let mut at = self.below(total);
        for (w, item) in items {
            if at < *w {
                return Some(item);
            }
            at -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_stream() {
        // SplitMix64's published first outputs for seed 0 (Vigna's reference implementation).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let (mut a, mut b) = (Rng::fork(7, "schedule"), Rng::fork(7, "workload"));
        assert_ne!(a.next_u64(), b.next_u64(), "forks differ");
        let mut r = Rng::new(3);
        for _ in 0..1000 {
            let v = r.between(2, 5);
            assert!((2..=5).contains(&v));
        }
        assert_eq!(Rng::new(1).weighted::<u8>(&[]), None);
        assert_eq!(Rng::new(1).weighted(&[(0, 'a'), (5, 'b')]), Some(&'b'));
    }
}
