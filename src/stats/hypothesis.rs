//! Hypothesis tests on paired results: the exact McNemar test for two
//! models' right/wrong outcomes on the same items, and Holm's correction for
//! testing several tasks at once.

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    }
}
