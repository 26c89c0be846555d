//! The seeded order of a task's documents, which decides which documents a
//! `sample`, a `--limit` and the few-shot examples take.

use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The seeded order of documents: evaluated items come from the front
/// (`--limit N` takes a prefix, so smaller runs are subsets of larger ones),
/// few-shot examples from the back, so the two never overlap.
pub fn seeded_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    order
}
