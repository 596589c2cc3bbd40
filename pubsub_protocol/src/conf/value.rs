//! Reading one value: the words after a key, numbers, booleans, durations. Errors
//! are the reason only; the caller adds file, line and key.

use std::num::IntErrorKind;
use std::ops::RangeInclusive;
use std::time::Duration;

/// mosquitto reads numbers into a C `int`.
pub(super) const INT_MAX: i64 = i32::MAX as i64;

/// The text after a key, trimmed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Args<'a>(pub(super) &'a str);

impl<'a> Args<'a> {
    /// The whole rest of the line: a path may contain spaces, and mosquitto takes a
    /// `#` there literally.
    pub(super) fn text(self) -> Result<&'a str, String> {
        if self.0.is_empty() {
            return Err("missing value".to_owned());
        }
        Ok(self.0)
    }

    /// The words up to a `#` word (mosquitto never reads past the words it needs, so
    /// a comment there was always harmless).
    pub(super) fn words(self) -> impl Iterator<Item = &'a str> {
        self.0.split_whitespace().take_while(|word| !word.starts_with('#'))
    }

    /// Exactly one word.
    pub(super) fn word(self) -> Result<&'a str, String> {
        let mut words = self.words();
        let word = words.next().ok_or("missing value")?;
        match words.next() {
            None => Ok(word),
            Some(extra) => Err(format!("too many arguments: '{extra}' after the value")),
        }
    }
}

/// A whole decimal number within `range`.
pub(super) fn number(word: &str, range: RangeInclusive<i64>) -> Result<i64, String> {
    let outside = || format!("{word} is out of range ({}..={})", range.start(), range.end());
    let n = word.parse::<i64>().map_err(|e| match e.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => outside(),
        _ => format!("'{word}' is not a whole number"),
    })?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(outside())
    }
}

/// A number within `range`, as the type that holds it.
pub(super) fn ranged<T: TryFrom<i64>>(word: &str, range: RangeInclusive<i64>) -> Result<T, String> {
    let n = number(word, range)?;
    T::try_from(n).map_err(|_| format!("{word} is too large for this machine"))
}

/// A count from 0 to `max`.
pub(super) fn count(word: &str, max: i64) -> Result<usize, String> {
    ranged(word, 0..=max)
}

/// mosquitto's four spellings, case-sensitive as in mosquitto.
pub(super) fn boolean(word: &str) -> Result<bool, String> {
    match word {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("'{word}' is not a boolean (true, false, 1 or 0)")),
    }
}

/// `persistent_client_expiration`'s `<n><unit>`: hours, days, weeks, months of 30
/// days, years of 365 days; n ≥ 1. There is no unit for seconds or minutes.
pub(super) fn expiration(word: &str) -> Result<Duration, String> {
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;
    let unit = match word.chars().last() {
        Some('h') => HOUR,
        Some('d') => DAY,
        Some('w') => 7 * DAY,
        Some('m') => 30 * DAY,
        Some('y') => 365 * DAY,
        _ => return Err(format!("'{word}' needs a unit: h, d, w, m (30 days) or y (365 days)")),
    };
    let n = number(&word[..word.len() - 1], 1..=i64::MAX)?;
    let seconds = u64::try_from(n).ok().and_then(|n| n.checked_mul(unit));
    seconds.map(Duration::from_secs).ok_or_else(|| format!("{word} is too long"))
}
