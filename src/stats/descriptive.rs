//! Descriptive statistics as pure functions: mean, sample standard
//! deviation, standard error of the mean, percentiles.

/// Arithmetic mean; 0 for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (n − 1 in the denominator); 0 when n < 2.
pub fn sample_sd(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// Standard error of the mean: sd / √n (lm-evaluation-harness's `stderr`).
pub fn stderr(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    sample_sd(xs) / (xs.len() as f64).sqrt()
}

/// Percentile `p` in [0, 100] by linear interpolation between closest ranks
/// (numpy's default); `None` for an empty slice.
pub fn percentile(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (rank - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn textbook_values() {
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&xs), 5.0);
        assert!((sample_sd(&xs) - 2.138089935299395).abs() < 1e-12);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.5));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 90.0), Some(3.7));
        // 60 correct out of 100: SE = sqrt(0.6·0.4·100/99)/10.
        let acc: Vec<f64> = (0..100).map(|i| if i < 60 { 1.0 } else { 0.0 }).collect();
        assert!((stderr(&acc) - 0.049236596391733).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn mean_lies_within_range(xs in proptest::collection::vec(-1e6f64..1e6, 1..200)) {
            let m = mean(&xs);
            let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(m >= min - 1e-6 && m <= max + 1e-6);
        }

        #[test]
        fn percentile_is_monotone(xs in proptest::collection::vec(-1e3f64..1e3, 1..100), a in 0f64..100.0, b in 0f64..100.0) {
            let (p, q) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(percentile(&xs, p).unwrap() <= percentile(&xs, q).unwrap() + 1e-9);
        }
    }
}
