//! Load-test statistics as pure functions, defined as vLLM's `bench serve`
//! defines them: request throughput = completed requests / duration; output
//! throughput = Σ output tokens / duration; goodput = requests that meet
//! every SLO / duration; TTFT, TPOT ((E2E − TTFT)/(output tokens − 1), for
//! requests with more than one output token), ITL (every gap between
//! streamed chunks, pooled over requests) and E2E latency summarised by
//! mean and the 50th, 90th and 99th percentiles (linear interpolation).

use crate::backend::openai::stream;
use crate::stats;
use serde::{Deserialize, Serialize};

/// One request of a load test, as measured on the client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestRecord {
    /// Seconds from the level's start to this request's send.
    pub start_s: f64,
    /// Send → first chunk with text (seconds); None when none came.
    pub ttft_s: Option<f64>,
    /// Send → end of stream (seconds).
    pub e2e_s: f64,
    /// Gaps between chunks with text (seconds).
    pub itl_s: Vec<f64>,
    pub tokens_in: usize,
    pub tokens_out: usize,
    /// Set when the request failed (it then counts in `errors`, in no latency).
    pub error: Option<String>,
}

impl RequestRecord {
    /// (E2E − TTFT)/(tokens_out − 1), seconds; None for one output token or none.
    pub fn tpot_s(&self) -> Option<f64> {
        match self.ttft_s {
            Some(t) if self.error.is_none() => stream::tpot_s(self.e2e_s, t, self.tokens_out),
            _ => None,
        }
    }
}

/// Mean and percentiles of one latency, seconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Percentiles {
    pub n: usize,
    pub mean_s: f64,
    pub p50_s: f64,
    pub p90_s: f64,
    pub p99_s: f64,
}

/// Mean and p50/p90/p99 of `xs` (zeros with n = 0 when empty).
pub fn percentiles(xs: &[f64]) -> Percentiles {
    if xs.is_empty() {
        return Percentiles::default();
    }
    let p = |q: f64| stats::percentile(xs, q).unwrap_or(0.0);
    Percentiles { n: xs.len(), mean_s: stats::mean(xs), p50_s: p(50.0), p90_s: p(90.0), p99_s: p(99.0) }
}

/// Latency goals a request must meet to count towards goodput (seconds; None: no goal).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Slo {
    pub ttft_s: Option<f64>,
    pub tpot_s: Option<f64>,
    pub e2e_s: Option<f64>,
}

impl Slo {
    /// Whether a successful request meets every goal set.
    pub fn met_by(&self, r: &RequestRecord) -> bool {
        let within = |goal: Option<f64>, v: Option<f64>| goal.is_none_or(|g| v.is_some_and(|v| v <= g));
        r.error.is_none()
            && within(self.ttft_s, r.ttft_s)
            && within(self.tpot_s, r.tpot_s())
            && within(self.e2e_s, Some(r.e2e_s))
    }
}

/// What one concurrency level measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LevelSummary {
    pub concurrency: usize,
    pub completed: usize,
    pub errors: usize,
    /// The level's wall time, its start → every stream stopped (seconds; at
    /// least `--duration` when given). Rates divide by it.
    pub duration_s: f64,
    pub request_per_s: f64,
    pub output_tok_per_s: f64,
    /// Input + output tokens per second.
    pub total_tok_per_s: f64,
    /// Requests meeting every SLO per second (equals request_per_s without SLOs).
    pub goodput_request_per_s: f64,
    pub ttft: Percentiles,
    pub tpot: Percentiles,
    pub itl: Percentiles,
    pub e2e: Percentiles,
    pub tokens_in: usize,
    pub tokens_out: usize,
}

/// Summarises one level's requests over `duration_s`.
pub fn summarize(concurrency: usize, records: &[RequestRecord], duration_s: f64, slo: &Slo) -> LevelSummary {
    let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.error.is_none()).collect();
    let per_s = |x: f64| if duration_s > 0.0 { x / duration_s } else { 0.0 };
    let tokens_in: usize = ok.iter().map(|r| r.tokens_in).sum();
    let tokens_out: usize = ok.iter().map(|r| r.tokens_out).sum();
    let ttft: Vec<f64> = ok.iter().filter_map(|r| r.ttft_s).collect();
    let tpot: Vec<f64> = ok.iter().filter_map(|r| r.tpot_s()).collect();
    let itl: Vec<f64> = ok.iter().flat_map(|r| r.itl_s.iter().copied()).collect();
    let e2e: Vec<f64> = ok.iter().map(|r| r.e2e_s).collect();
    LevelSummary {
        concurrency,
        completed: ok.len(),
        errors: records.len() - ok.len(),
        duration_s,
        request_per_s: per_s(ok.len() as f64),
        output_tok_per_s: per_s(tokens_out as f64),
        total_tok_per_s: per_s((tokens_in + tokens_out) as f64),
        goodput_request_per_s: per_s(ok.iter().filter(|r| slo.met_by(r)).count() as f64),
        ttft: percentiles(&ttft),
        tpot: percentiles(&tpot),
        itl: percentiles(&itl),
        e2e: percentiles(&e2e),
        tokens_in,
        tokens_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(ttft: f64, e2e: f64, out: usize) -> RequestRecord {
        RequestRecord {
            start_s: 0.0,
            ttft_s: Some(ttft),
            e2e_s: e2e,
            itl_s: vec![0.01; out.saturating_sub(1)],
            tokens_in: 10,
            tokens_out: out,
            error: None,
        }
    }

    #[test]
    fn throughput_tpot_and_goodput() {
        let mut rs = vec![rec(0.1, 1.1, 11), rec(0.3, 2.3, 21), rec(0.2, 0.2, 1)];
        rs.push(RequestRecord { error: Some("HTTP 500".into()), ..rec(0.0, 5.0, 0) });
        let slo = Slo { ttft_s: Some(0.25), ..Default::default() };
        let s = summarize(2, &rs, 4.0, &slo);
        assert_eq!((s.completed, s.errors), (3, 1));
        assert_eq!(s.request_per_s, 0.75);
        assert_eq!(s.output_tok_per_s, 33.0 / 4.0);
        assert_eq!(s.tpot.n, 2, "a one-token answer has no TPOT");
        assert!((s.tpot.mean_s - 0.1).abs() < 1e-12); // (1.0/10 + 2.0/20)/2
        assert_eq!(s.goodput_request_per_s, 0.5, "two of three meet TTFT ≤ 0.25 s");
        assert_eq!(summarize(1, &rs, 4.0, &Slo::default()).goodput_request_per_s, s.request_per_s);
    }

    proptest! {
        #[test]
        fn percentiles_are_ordered_and_bounded(xs in proptest::collection::vec(0.0f64..100.0, 1..200)) {
            let p = percentiles(&xs);
            let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            prop_assert!(lo <= p.p50_s && p.p50_s <= p.p90_s && p.p90_s <= p.p99_s && p.p99_s <= hi);
            prop_assert!(lo <= p.mean_s && p.mean_s <= hi);
        }
    }
}
