//! Statistics as pure, documented functions: mean, sample standard deviation,
//! standard error, normal-approximation 95% confidence intervals and
//! percentiles. Property-tested below.

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959963984540054;

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

/// 95% confidence interval of the mean, mean ± 1.96·SE, clipped to
/// `[lo, hi]` (use `[0, 1]` for accuracies).
pub fn ci95(xs: &[f64], lo: f64, hi: f64) -> (f64, f64) {
    let m = mean(xs);
    let h = Z95 * stderr(xs);
    ((m - h).max(lo), (m + h).min(hi))
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

/// Natural log of the binomial coefficient C(n, k).
fn ln_choose(n: u64, k: u64) -> f64 {
    fn ln_fact(n: u64) -> f64 {
        (2..=n).map(|i| (i as f64).ln()).sum()
    }
    ln_fact(n) - ln_fact(k) - ln_fact(n - k)
}

/// Exact two-sided McNemar test on paired binary outcomes: `b` items right
/// only in the first run, `c` items right only in the second. Under the null
/// each discordant item is a fair coin, so p = min(1, 2·P(X ≤ min(b, c)))
/// with X ~ Binomial(b + c, ½). Returns 1 when there are no discordant items.
pub fn mcnemar_exact_p(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let ln_half_n = n as f64 * 0.5f64.ln();
    let tail: f64 = (0..=k).map(|i| (ln_choose(n, i) + ln_half_n).exp()).sum();
    (2.0 * tail).min(1.0)
}

/// Holm–Bonferroni adjusted p-values, in the input's order: sort ascending,
/// multiply the i-th smallest (0-based) by (m − i), enforce monotonicity,
/// cap at 1. Reject where adjusted p ≤ α to control the family-wise error.
pub fn holm(pvalues: &[f64]) -> Vec<f64> {
    let m = pvalues.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| pvalues[a].total_cmp(&pvalues[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * pvalues[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
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

    #[test]
    fn mcnemar_textbook_values() {
        // b = 1, c = 6: 2·(1 + 7)/128.
        assert!((mcnemar_exact_p(1, 6) - 0.125).abs() < 1e-12);
        assert!((mcnemar_exact_p(6, 1) - 0.125).abs() < 1e-12);
        // b = 0, c = 10: 2/1024.
        assert!((mcnemar_exact_p(0, 10) - 2.0 / 1024.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact_p(5, 5), 1.0);
        assert_eq!(mcnemar_exact_p(0, 0), 1.0);
        // Large n stays finite: b = 40, c = 60 → about 0.0569 (R: binom.test(40, 100)).
        assert!((mcnemar_exact_p(40, 60) - 0.05688793).abs() < 1e-6);
    }

    #[test]
    fn holm_textbook_values() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
        let expect = [0.03, 0.06, 0.06, 0.02];
        for (a, e) in adj.iter().zip(expect) {
            assert!((a - e).abs() < 1e-12, "{adj:?}");
        }
    }

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

    proptest! {
        #[test]
        fn mcnemar_is_a_symmetric_probability(b in 0u64..300, c in 0u64..300) {
            let p = mcnemar_exact_p(b, c);
            prop_assert!((0.0..=1.0).contains(&p));
            prop_assert!((p - mcnemar_exact_p(c, b)).abs() < 1e-12);
            // More imbalance never raises p.
            prop_assert!(mcnemar_exact_p(b, c + 1) <= p + 1e-12 || b > c);
        }

        #[test]
        fn holm_never_lowers_p_and_keeps_order(ps in proptest::collection::vec(0f64..=1.0, 1..20)) {
            let adj = holm(&ps);
            for (a, p) in adj.iter().zip(&ps) {
                prop_assert!(*a >= *p - 1e-15 && *a <= 1.0);
            }
            for i in 0..ps.len() {
                for j in 0..ps.len() {
                    if ps[i] < ps[j] { prop_assert!(adj[i] <= adj[j] + 1e-15); }
                }
            }
        }

        #[test]
        fn mean_lies_within_range(xs in proptest::collection::vec(-1e6f64..1e6, 1..200)) {
            let m = mean(&xs);
            let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(m >= min - 1e-6 && m <= max + 1e-6);
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

        #[test]
        fn percentile_is_monotone(xs in proptest::collection::vec(-1e3f64..1e3, 1..100), a in 0f64..100.0, b in 0f64..100.0) {
            let (p, q) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(percentile(&xs, p).unwrap() <= percentile(&xs, q).unwrap() + 1e-9);
        }
    }
}
