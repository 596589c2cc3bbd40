//! What one run of the load generator counts: a latency histogram of bounded size,
//! a bitset per subscriber and publisher to tell new deliveries from duplicates, and
//! the run's [`Outcome`].
//!
//! Runs last a fixed time, so the number of deliveries depends on the broker's speed;
//! a log-bucketed histogram keeps memory fixed (about 30 KiB) whatever that number is.

use std::time::Duration;

/// Sub-buckets per power of two: 64 keeps every percentile within 1.6 % of the truth.
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for any `u64`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Counts of nanosecond values in log-linear buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], total: 0 }
    }
}

impl Histogram {
    /// Counts one value.
    pub fn record(&mut self, ns: u64) {
        self.counts[index(ns)] += 1;
        self.total += 1;
    }

    /// How many values were recorded.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `p`-th percentile (0–100), nearest rank, as the upper bound of its bucket;
    /// 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().clamp(1.0, self.total as f64) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i);
            }
        }
        upper(BUCKETS - 1)
    }
}

/// Values below 64 get a bucket each; above, the leading 1 and the next six bits pick it.
fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    let mantissa = (v >> shift) as usize - SUB;
    (shift as usize + 1) * SUB + mantissa
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let mantissa = (SUB + i % SUB) as u64;
    ((mantissa + 1) << shift).wrapping_sub(1)
}

/// Which sequence numbers arrived, growing as they do.
#[derive(Debug, Clone, Default)]
pub struct Seen(Vec<u64>);

impl Seen {
    /// Marks `seq`; `false` if it was already there (a duplicate).
    pub fn insert(&mut self, seq: u32) -> bool {
        let (word, bit) = (seq as usize / 64, seq % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let fresh = self.0[word] & (1 << bit) == 0;
        self.0[word] |= 1 << bit;
        fresh
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Messages published.
    pub published: u64,
    /// Deliveries that should have happened: each message times its subscribers.
    pub expected: u64,
    /// Distinct deliveries received.
    pub delivered: u64,
    /// Deliveries of a (publisher, sequence) a subscriber already had.
    pub duplicates: u64,
    /// First publish to last delivery: the denominator of the delivery rate, and the
    /// "wall time of the run" of the time measures.
    pub span: Duration,
    /// Publish-to-receive time of every distinct delivery.
    pub latency: Histogram,
    /// Sum over distinct deliveries of publish-to-receive time, ns.
    pub latency_sum_ns: u128,
    /// Sum over fully delivered messages of publish-to-last-subscriber time, ns.
    pub last_sum_ns: u128,
    /// CPU time of the generator thread from first publish to the end of the drain.
    pub generator_cpu: Duration,
    /// CPU time of the broker's processes over the same time (zero for the sink,
    /// which runs inside bench).
    pub broker_cpu: Duration,
    /// Connecting and subscribing every client.
    pub setup: Duration,
    /// What the churn thread did, in a run with connection churn.
    pub churn: Option<super::churn::Tally>,
}

impl Outcome {
    /// Deliveries that never came.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// Distinct deliveries per second of [`Outcome::span`].
    pub fn rate(&self) -> f64 {
        let secs = self.span.as_secs_f64();
        if secs > 0.0 {
            self.delivered as f64 / secs
        } else {
            0.0
        }
    }

    /// Broker CPU time per distinct delivery, µs: like HTTP's CPU per request, steadier
    /// than the rate when the generator or loopback sets the pace.
    pub fn broker_us_per_delivery(&self) -> f64 {
        if self.delivered > 0 {
            self.broker_cpu.as_secs_f64() * 1e6 / self.delivered as f64
        } else {
            f64::NAN
        }
    }

    /// Share of one CPU the broker used while publishing and draining.
    pub fn broker_load(&self) -> f64 {
        self.share_of_span(self.broker_cpu)
    }

    /// Share of one CPU the generator used while publishing and draining.
    pub fn generator_load(&self) -> f64 {
        self.share_of_span(self.generator_cpu)
    }

    fn share_of_span(&self, cpu: Duration) -> f64 {
        let secs = self.span.as_secs_f64();
        if secs > 0.0 {
            cpu.as_secs_f64() / secs
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_values_within_two_percent() {
        for v in (0..100_000u64).chain([1 << 20, 123_456_789, u64::MAX / 3, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS);
            assert!(upper(i) >= v, "{v} above its bucket {}", upper(i));
            assert!(i == 0 || upper(i - 1) < v, "{v} belongs to an earlier bucket");
            assert!((upper(i) - v) as f64 <= v as f64 * 0.016 + 1.0);
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(99.0), 99);
        assert!((100..=101).contains(&h.percentile(99.9)));
        assert_eq!(Histogram::default().percentile(50.0), 0);
    }

    #[test]
    fn seen_tells_duplicates() {
        let mut s = Seen::default();
        assert!(s.insert(0));
        assert!(s.insert(1000));
        assert!(!s.insert(1000));
        assert!(!s.insert(0));
    }
}
