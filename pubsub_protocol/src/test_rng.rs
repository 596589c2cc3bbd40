//! A small deterministic generator (xorshift64*) for the seeded random tests of the
//! crate's modules: reproducible without a dependency, so a failure replays.

/// xorshift64* state; seed it with any non-zero value.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// One of `from`.
    pub(crate) fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    /// Fewer than `max` picks from `from`, joined.
    pub(crate) fn text(&mut self, from: &[&str], max: u64) -> String {
        (0..self.next() % max).map(|_| self.pick(from)).collect()
    }
}
