//! Intervals: the typed [`Estimate`] (a point with its 95% confidence
//! interval, standard error and n, as criterion.rs's `Estimate`) that every
//! score and difference is reported as; the Wilson score interval of a
//! proportion (every per-item metric is 0 or 1); the normal-approximation
//! interval of a mean; the percentile bootstrap over groups of paired items;
//! and the chance normalisation the aggregate score uses.

use super::descriptive::{mean, percentile, stderr};
use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959963984540054;

/// A closed interval `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn new((low, high): (f64, f64)) -> Self {
        Self { low, high }
    }

    /// high − low.
    pub fn width(&self) -> f64 {
        self.high - self.low
    }
}

/// A statistic with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The statistic on the data (a mean, a difference of means, an aggregate),
    /// in the metric's own unit (0..1 for accuracies).
    pub point: f64,
    /// Its 95% confidence interval.
    pub ci95: Interval,
    /// Standard error of `point` where the interval is built from one
    /// (normal approximation); `None` for bootstrap intervals.
    pub stderr: Option<f64>,
    /// Items the statistic is computed from.
    pub n: usize,
}

impl Estimate {
    /// The mean of `xs` with its normal-approximation 95% CI clipped to `[lo, hi]`.
    pub fn mean_normal(xs: &[f64], lo: f64, hi: f64) -> Self {
        Self { point: mean(xs), ci95: Interval::new(ci95(xs, lo, hi)), stderr: Some(stderr(xs)), n: xs.len() }
    }

    /// The share of 1s among per-item 0/1 outcomes with its Wilson 95% CI
    /// (which, unlike mean ± 1.96·SE, is never empty at 0/n or n/n and never
    /// leaves [0, 1]); `stderr` is still sd/√n. Values other than 0 and 1
    /// fall back to [`Estimate::mean_normal`].
    pub fn proportion(xs: &[f64]) -> Self {
        if !xs.iter().all(|x| *x == 0.0 || *x == 1.0) {
            return Self::mean_normal(xs, 0.0, 1.0);
        }
        let successes = xs.iter().sum::<f64>();
        Self {
            point: mean(xs),
            ci95: Interval::new(wilson(successes, xs.len(), Z95)),
            stderr: Some(stderr(xs)),
            n: xs.len(),
        }
    }

    /// A point with a bootstrap 95% CI.
    pub fn bootstrap(point: f64, ci95: (f64, f64), n: usize) -> Self {
        Self { point, ci95: Interval::new(ci95), stderr: None, n }
    }
}

/// 95% confidence interval of the mean, mean ± 1.96·SE, clipped to
/// `[lo, hi]` (use `[0, 1]` for accuracies).
pub fn ci95(xs: &[f64], lo: f64, hi: f64) -> (f64, f64) {
    let m = mean(xs);
    let h = Z95 * stderr(xs);
    ((m - h).max(lo), (m + h).min(hi))
}

/// Wilson score interval of a proportion, `successes` of `n` at normal
/// quantile `z` (1.96 for 95%): centre (p̂ + z²/2n)/(1 + z²/n), half-width
/// z·√(p̂(1 − p̂)/n + z²/4n²)/(1 + z²/n). `[0, 1]` when n is 0.
pub fn wilson(successes: f64, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = successes / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Percentile bootstrap (1 − `alpha`) CI of a statistic over resampled groups of
/// paired items. `groups[g]` holds per-item paired differences of group g
/// (a task); each replicate resamples items with replacement within every
/// group, and `stat` maps the per-group resampled means to one number (the
/// identity for one group; the aggregate score for several). Deterministic
/// for a given `seed`.
pub fn bootstrap_ci<F>(groups: &[Vec<f64>], replicates: usize, seed: u64, alpha: f64, stat: F) -> (f64, f64)
where
    F: Fn(&[f64]) -> f64,
{
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(replicates);
    let mut means = vec![0.0; groups.len()];
    for _ in 0..replicates {
        for (g, items) in groups.iter().enumerate() {
            let n = items.len();
            means[g] = if n == 0 { 0.0 } else { (0..n).map(|_| items[rng.gen_range(0..n)]).sum::<f64>() / n as f64 };
        }
        values.push(stat(&means));
    }
    let tail = 100.0 * alpha / 2.0;
    (percentile(&values, tail).unwrap_or(0.0), percentile(&values, 100.0 - tail).unwrap_or(0.0))
}

/// Chance-normalised score: (score − chance) / (1 − chance); 0 is guessing,
/// 1 is perfect. `chance` below 1.
pub fn normalize_by_chance(score: f64, chance: f64) -> f64 {
    (score - chance) / (1.0 - chance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bootstrap_ci_covers_the_true_mean_about_95_percent() {
        use rand::{Rng, SeedableRng};
        // Simulated paired differences with true mean 0.1: count how often the CI covers it.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        let trials = 200;
        let mut covered = 0;
        for t in 0..trials {
            let diffs: Vec<f64> = (0..200)
                .map(|_| {
                    let u: f64 = rng.gen();
                    if u < 0.25 {
                        1.0
                    } else if u < 0.40 {
                        -1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let (lo, hi) = bootstrap_ci(&[diffs], 1000, t, 0.05, |m| m[0]);
            covered += (lo <= 0.1 && 0.1 <= hi) as usize;
        }
        let rate = covered as f64 / trials as f64;
        assert!((0.90..=0.99).contains(&rate), "coverage {rate}");
    }

    #[test]
    fn estimate_of_a_mean_carries_its_interval_and_n() {
        let xs: Vec<f64> = (0..100).map(|i| if i < 60 { 1.0 } else { 0.0 }).collect();
        let e = Estimate::mean_normal(&xs, 0.0, 1.0);
        assert_eq!((e.point, e.n), (0.6, 100));
        assert!((e.stderr.unwrap() - 0.049236596391733).abs() < 1e-12);
        assert!((e.ci95.low - (0.6 - Z95 * 0.049236596391733)).abs() < 1e-12);
        assert!((e.ci95.high - (0.6 + Z95 * 0.049236596391733)).abs() < 1e-12);
    }

    #[test]
    fn wilson_textbook_values() {
        // 0 of 10: [0, z²/(n + z²)] = [0, 0.2775]; 10 of 10 mirrors it.
        let (lo, hi) = wilson(0.0, 10, Z95);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.277_533).abs() < 1e-6, "{hi}");
        let (lo, hi) = wilson(10.0, 10, Z95);
        assert!((lo - 0.722_467).abs() < 1e-6 && (hi - 1.0).abs() < 1e-12, "{lo} {hi}");
        // 8 of 10 (Newcombe 1998, Table I): [0.4902, 0.9433].
        let (lo, hi) = wilson(8.0, 10, Z95);
        assert!((lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4, "{lo} {hi}");
        // The normal interval of 0/10 is empty; Wilson's is not.
        let zeros = [0.0; 10];
        assert_eq!(ci95(&zeros, 0.0, 1.0), (0.0, 0.0));
        assert!(Estimate::proportion(&zeros).ci95.high > 0.27);
    }

    proptest! {
        #[test]
        fn wilson_contains_the_proportion_within_0_1(k in 0usize..200, extra in 0usize..200) {
            let n = k + extra;
            prop_assume!(n > 0);
            let (lo, hi) = wilson(k as f64, n, Z95);
            let p = k as f64 / n as f64;
            prop_assert!(0.0 <= lo && lo <= p + 1e-12 && p <= hi + 1e-12 && hi <= 1.0);
            prop_assert!(hi - lo > 0.0);
        }

        #[test]
        fn ci_contains_mean_and_shrinks_with_n(xs in proptest::collection::vec(0f64..=1.0, 2..100)) {
            let (lo, hi) = ci95(&xs, 0.0, 1.0);
            let m = mean(&xs);
            prop_assert!(lo <= m + 1e-12 && m <= hi + 1e-12);
            let doubled: Vec<f64> = xs.iter().chain(xs.iter()).cloned().collect();
            let (lo2, hi2) = ci95(&doubled, 0.0, 1.0);
            prop_assert!(hi2 - lo2 <= hi - lo + 1e-12);
        }
    }
}
