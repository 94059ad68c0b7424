//! What the apiserver takes from outside, so tests decide it: wall time (creationTimestamp,
//! ages in tables) and randomness (uids, generateName suffixes). Only `main.rs` picks the real
//! clock and an OS-seeded generator.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;

/// Wall time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> jiff::Timestamp;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place wall time is read
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// Fresh identifiers from a seeded generator.
pub struct Ids {
    // A std mutex: held for a few nanoseconds, never across an await.
    rng: Mutex<StdRng>,
}

/// Characters of generateName suffixes (Kubernetes leaves out vowels and look-alikes).
const SUFFIX_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl Ids {
    /// A generator seeded with `seed`.
    pub fn seeded(seed: u64) -> Ids {
        Ids { rng: Mutex::new(StdRng::seed_from_u64(seed)) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        let mut g = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    /// A random (version 4) UUID, as Kubernetes uids look.
    pub fn uid(&self) -> String {
        let mut b: [u8; 16] = self.with(|r| r.random());
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }

    /// A second generator seeded from this one, so a stream of ids (audit ids) does not shift
    /// the other's sequence.
    pub fn fork(&self) -> Ids {
        Ids::seeded(self.with(|r| r.random()))
    }

    /// Five characters for generateName.
    pub fn suffix(&self) -> String {
        self.with(|r| (0..5).map(|_| SUFFIX_CHARS[r.random_range(0..SUFFIX_CHARS.len())] as char).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_look_like_uuids_and_repeat_per_seed() {
        let a = Ids::seeded(7);
        let u = a.uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(Ids::seeded(7).uid(), u);
        assert_ne!(a.uid(), u);
        assert!(a.suffix().bytes().all(|c| SUFFIX_CHARS.contains(&c)));
    }
}
