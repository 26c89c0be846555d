//! Independent passes side by side: each compute thread takes whole jobs
//! (packed scoring passes) from a shared queue and runs every kernel of its
//! job on itself alone, instead of all threads splitting each matrix
//! product of one pass.
//!
//! A pass is some thirty layers of a dozen operations each; splitting every
//! one of them between the threads costs a hand-off and a wait per
//! operation, and leaves the other threads idle in the serial parts between
//! products (norms, masks, the head's running statistics, buffer set-up).
//! Two single-threaded passes side by side do neither: on two cores they
//! score the same items in about 20% less time (see `run_in_lanes`). Each
//! output is computed by the same sequence of operations whichever thread
//! computes it and however the work is split (`linear`, `int8_gemm`), so a
//! pass gives the same bits in a lane as spread over the threads.
//!
//! Time is shared out by the clock: a job's share of the elapsed time is
//! each moment it ran divided by the number of jobs running then
//! ([`SharedClock`]), so the shares of a batch add up to the time its jobs
//! took together, as one pass's do.

use super::linear::serially;
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Instant;

/// Elapsed seconds shared among the jobs running: it advances by `dt / n`
/// over each stretch `dt` in which `n` jobs run, so a job's share of the
/// time is the clock's reading at its end less the reading at its start.
/// Over any set of jobs the shares add up to the length of the union of
/// their runs; a job that runs alone gets its whole length.
#[derive(Debug, Default)]
pub struct SharedClock {
    /// Seconds of the last start or end, from the clock's origin.
    last_s: f64,
    running: usize,
    shared_s: f64,
}

impl SharedClock {
    /// The reading at `now_s` (not before the last event), when `change`
    /// jobs start (+1) or end (−1) there.
    pub fn event(&mut self, now_s: f64, change: isize) -> f64 {
        if self.running > 0 {
            self.shared_s += (now_s - self.last_s).max(0.0) / self.running as f64;
        }
        self.last_s = self.last_s.max(now_s);
        self.running = self.running.saturating_add_signed(change);
        self.shared_s
    }
}

/// A [`SharedClock`] read by several threads against one origin.
pub struct Clock {
    origin: Instant,
    shared: Mutex<SharedClock>,
}

impl Clock {
    pub fn new() -> Self {
        Self { origin: Instant::now(), shared: Mutex::new(SharedClock::default()) }
    }

    /// A job starts: the reading to give back to [`Clock::end`].
    pub fn start(&self) -> f64 {
        self.event(1)
    }

    /// The job that started at reading `start` ends: its share in seconds.
    pub fn end(&self, start: f64) -> f64 {
        self.event(-1) - start
    }

    fn event(&self, change: isize) -> f64 {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.event(self.origin.elapsed().as_secs_f64(), change)
    }
}

/// Runs `work` on every job, `lanes` jobs at a time, each on one of rayon's
/// threads with serial kernels ([`serially`]), and hands each result to
/// `done` on the calling thread, in job order, with the job's share of the
/// elapsed seconds ([`SharedClock`]). An error from `done` stops the batch:
/// no job starts after it, the running ones finish, and it is returned.
///
/// Measured (Intel Xeon, AVX2-only build, 2 threads; 100 HellaSwag + 100
/// MMLU + 40 BoolQ items): two single-threaded processes side by side took
/// 68.1 and 68.4 s each against 43.3 s for one process on both threads,
/// 34.2 s a batch: the work this module moves into one process.
pub fn run_in_lanes<J: Sync, R: Send>(
    lanes: usize,
    jobs: &[J],
    work: impl Fn(&J) -> R + Sync,
    mut done: impl FnMut(usize, R, f64) -> Result<()>,
) -> Result<()> {
    let clock = Clock::new();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, R, f64)>();
    let lane = |tx: mpsc::Sender<(usize, R, f64)>| {
        serially(|| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= jobs.len() || stop.load(Ordering::Relaxed) {
                break;
            }
            let start = clock.start();
            let result = work(&jobs[i]);
            if tx.send((i, result, clock.end(start))).is_err() {
                break;
            }
        })
    };
    std::thread::scope(|s| {
        let lane = &lane;
        s.spawn(move || {
            rayon::scope(|rs| {
                for _ in 0..lanes.max(1) {
                    let tx = tx.clone();
                    rs.spawn(move |_| lane(tx));
                }
            })
        });
        // Results arrive as lanes finish; `done` takes them in job order.
        let (mut waiting, mut want, mut outcome) = (BTreeMap::new(), 0, Ok(()));
        for (i, result, share) in rx {
            waiting.insert(i, (result, share));
            while let Some((result, share)) = waiting.remove(&want) {
                if outcome.is_ok() {
                    outcome = done(want, result, share);
                    if outcome.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                want += 1;
            }
        }
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Length of the union of closed spans.
    fn union(spans: &[(f64, f64)]) -> f64 {
        let mut v = spans.to_vec();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut total, mut cur): (f64, Option<(f64, f64)>) = (0.0, None);
        for (s, e) in v {
            cur = match cur {
                Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
                Some((cs, ce)) => {
                    total += ce - cs;
                    Some((s, e))
                }
                None => Some((s, e)),
            };
        }
        total + cur.map_or(0.0, |(s, e)| e - s)
    }

    /// Each job's share from a clock fed the spans' starts and ends in time order.
    fn shares(spans: &[(f64, f64)]) -> Vec<f64> {
        let mut events: Vec<(f64, isize, usize)> =
            spans.iter().enumerate().flat_map(|(i, &(s, e))| [(s, 1, i), (e, -1, i)]).collect();
        // Ends before starts at the same moment (a job that ends as another starts).
        events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut clock = SharedClock::default();
        let mut out = vec![0.0; spans.len()];
        for (t, change, i) in events {
            let reading = clock.event(t, change);
            out[i] = if change > 0 { -reading } else { out[i] + reading };
        }
        out
    }

    #[test]
    fn overlapping_jobs_share_the_overlap() {
        assert_eq!(shares(&[(0.0, 2.0), (1.0, 3.0)]), [1.5, 1.5]);
        assert_eq!(shares(&[(0.0, 4.0), (1.0, 2.0)]), [3.5, 0.5]);
        assert_eq!(shares(&[(0.0, 1.0), (2.0, 3.0)]), [1.0, 1.0]);
    }

    proptest! {
        #[test]
        fn shares_add_up_to_the_time_the_jobs_took_together(
            raw in prop::collection::vec((0u32..1000, 1u32..300), 1..12)
        ) {
            let spans: Vec<(f64, f64)> = raw.iter().map(|&(s, l)| (s as f64 / 10.0, (s + l) as f64 / 10.0)).collect();
            let shares = shares(&spans);
            let total: f64 = shares.iter().sum();
            prop_assert!((total - union(&spans)).abs() < 1e-9, "{total} vs {}", union(&spans));
            for (share, (s, e)) in shares.iter().zip(&spans) {
                prop_assert!(*share > 0.0 && *share <= e - s + 1e-9);
            }
        }
    }

    #[test]
    fn results_come_back_in_job_order_with_their_shares() {
        let jobs: Vec<u64> = (0..20).collect();
        let mut seen = Vec::new();
        let mut total = 0.0;
        let start = Instant::now();
        run_in_lanes(
            2,
            &jobs,
            |&j| {
                std::thread::sleep(std::time::Duration::from_millis(if j % 3 == 0 { 9 } else { 2 }));
                j * j
            },
            |i, r, share| {
                seen.push((i, r));
                total += share;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, jobs.iter().map(|&j| (j as usize, j * j)).collect::<Vec<_>>());
        assert!(total > 0.0 && total <= start.elapsed().as_secs_f64());
    }

    #[test]
    fn an_error_from_done_stops_the_batch() {
        let jobs: Vec<u32> = (0..200).collect();
        let started = AtomicUsize::new(0);
        let err = run_in_lanes(
            2,
            &jobs,
            |_| {
                started.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            },
            |i, _, _| if i == 3 { anyhow::bail!("stop at 3") } else { Ok(()) },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "stop at 3");
        assert!(started.load(Ordering::Relaxed) < 200);
    }
}
