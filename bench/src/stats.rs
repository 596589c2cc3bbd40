//! Medians over alternating rounds, and ratios taken round by round.

/// Median with the spread it came from: what every figure in a table is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The middle value (mean of the two middle ones for an even count).
    pub median: f64,
    /// Smallest value seen.
    pub min: f64,
    /// Largest value seen.
    pub max: f64,
}

impl Summary {
    /// Summarises finite values; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Summary { median, min: v[0], max: v[n - 1] })
    }

    /// Ratios `ours[i] / anchor[i]` of the same round, summarised: pairing by round
    /// cancels the machine's drift between rounds.
    pub fn of_ratios(ours: &[f64], anchor: &[f64]) -> Option<Summary> {
        let ratios: Vec<f64> =
            ours.iter().zip(anchor).filter(|(_, a)| **a != 0.0).map(|(o, a)| o / a).collect();
        Summary::of(&ratios)
    }

    /// `median (min–max)` with `digits` decimals; the range is left out for one value.
    pub fn show(&self, digits: usize) -> String {
        if self.min == self.max {
            format!("{:.*}", digits, self.median)
        } else {
            format!("{:.*} ({:.*}–{:.*})", digits, self.median, digits, self.min, digits, self.max)
        }
    }
}

/// Shows an optional summary, `–` when absent (an anchor that does not serve a case).
pub fn show(summary: Option<Summary>, digits: usize) -> String {
    summary.map_or_else(|| "–".to_string(), |s| s.show(digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_and_empty() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).map(|s| s.median), Some(2.0));
        assert_eq!(
            Summary::of(&[4.0, 1.0, 2.0, 3.0]).map(|s| (s.median, s.min, s.max)),
            Some((2.5, 1.0, 4.0))
        );
        assert_eq!(Summary::of(&[f64::NAN]), None);
    }

    #[test]
    fn ratios_pair_rounds() {
        let s = Summary::of_ratios(&[2.0, 3.0, 4.0], &[1.0, 1.0, 0.0]).expect("two rounds have an anchor");
        assert_eq!((s.min, s.max), (2.0, 3.0));
    }
}
