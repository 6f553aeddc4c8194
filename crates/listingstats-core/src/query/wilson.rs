//! The Wilson score lower bound of `TOP ... RANK WILSON`.

use crate::error::{Error, Result};

/// The default confidence of `RANK WILSON`.
pub const WILSON_CONFIDENCE: f64 = 0.95;

/// The two-sided normal quantile for `confidence` (0.95 -> 1.959964).
pub fn wilson_z(confidence: f64) -> Result<f64> {
    use statrs::distribution::{ContinuousCDF, Normal};
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(Error::invalid(format!(
            "RANK WILSON confidence must be between 0 and 1 (e.g. 0.95), got {confidence}"
        )));
    }
    let normal = Normal::standard();
    Ok(normal.inverse_cdf(1.0 - (1.0 - confidence) / 2.0))
}

/// The lower bound of the Wilson score interval for `numerator` successes
/// in `denominator` trials at quantile `z`, in 0..=1; `None` when the pair
/// is not a proportion (numerator above denominator, or negative).
pub fn wilson_lower(numerator: i64, denominator: i64, z: f64) -> Option<f64> {
    if denominator <= 0 || numerator < 0 || numerator > denominator {
        return None;
    }
    if numerator == 0 {
        return Some(0.0); // Exactly; the formula leaves rounding residue.
    }
    let n = denominator as f64;
    let p = numerator as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - spread) / (1.0 + z2 / n)).max(0.0))
}
