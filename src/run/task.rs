//! One task's items through the engine as one batch: every item is planned
//! into its requests, all of them go to the engine tagged with their item,
//! and each item is scored and appended to `samples.jsonl` the moment its
//! last response arrives, whatever order the engine answers in. A failed
//! item is recorded with its error and the task goes on; the results come
//! back in item order, so summaries never depend on completion order.

use super::item::{self, Plan};
use crate::backend::{Engine, Response, Tagged};
use crate::results::{ItemResult, SamplesWriter};
use crate::suite::Task;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::time::Instant;

/// An item whose requests are out: the answers received so far, by request.
/// An item is settled (and its entry emptied) by its last answer or its first error.
struct Pending {
    prompt: String,
    parts: Vec<Option<Response>>,
}

/// Runs every item of `task`; `chat`: wrap prompts in the model's chat
/// template. Items found in `done` (a resumed run's, by id) are taken from
/// there, neither run nor written again.
pub fn run_task(
    engine: &mut dyn Engine,
    task: &Task,
    chat: bool,
    samples: &mut SamplesWriter,
    done: &mut HashMap<String, ItemResult>,
) -> Result<Vec<ItemResult>> {
    let bar = ProgressBar::new(task.items.len() as u64).with_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} ({eta} left) {msg}")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_prefix(task.spec.task.clone());
    let start = Instant::now();
    let mut results: Vec<Option<ItemResult>> = vec![None; task.items.len()];
    let mut correct = 0usize;
    let mut finished = 0usize;
    let mut kept = vec![false; task.items.len()];
    for (i, it) in task.items.iter().enumerate() {
        if let Some(r) = done.remove(&it.id) {
            correct += r.correct as usize;
            finished += 1;
            kept[i] = true;
            results[i] = Some(r);
            bar.inc(1);
        }
    }
    let mut record = |i: usize, result: ItemResult, samples: &mut SamplesWriter| -> Result<()> {
        if let Some(err) = &result.error {
            bar.suspend(|| eprintln!("{}: item failed: {err}", result.id));
        }
        correct += result.correct as usize;
        finished += 1;
        samples.append(&result)?;
        results[i] = Some(result);
        bar.set_message(format!("{}: {:.3}", task.metrics[0], correct as f64 / finished as f64));
        bar.inc(1);
        if super::interrupted() {
            bar.abandon();
            return Err(crate::error::UserError::Interrupted.into());
        }
        Ok(())
    };

    // Item → requests; the tag of each request says which item it belongs to.
    let mut pending: Vec<Option<Pending>> = Vec::with_capacity(task.items.len());
    let mut owner: Vec<(usize, usize)> = Vec::new();
    let mut batch = Vec::new();
    for (i, it) in task.items.iter().enumerate() {
        if kept[i] {
            pending.push(None);
            continue;
        }
        match item::plan(&*engine, chat, it) {
            Ok(Plan { prompt, requests }) => {
                let parts = requests.iter().map(|_| None).collect();
                for (part, request) in requests.into_iter().enumerate() {
                    batch.push(Tagged { tag: owner.len(), request });
                    owner.push((i, part));
                }
                pending.push(Some(Pending { prompt, parts }));
            }
            Err(e) => {
                pending.push(None);
                record(i, item::failed(task, it, format!("{e:#}")), samples)?;
            }
        }
    }

    engine.run_batch(batch, &mut |tag, response| {
        let (i, part) = owner[tag];
        let Some(p) = pending[i].as_mut() else { return Ok(()) }; // already failed
        let it = &task.items[i];
        let result = match response {
            Err(e) => item::failed(task, it, format!("{e:#}")),
            Ok(r) => {
                p.parts[part] = Some(r);
                if !p.parts.iter().all(Option::is_some) {
                    return Ok(());
                }
                let p = pending[i].take().expect("pending");
                let parts = p.parts.into_iter().flatten().collect();
                item::merge(parts)
                    .and_then(|r| item::result(task, it, p.prompt, r))
                    .unwrap_or_else(|e| item::failed(task, it, format!("{e:#}")))
            }
        };
        pending[i] = None;
        record(i, result, samples)
    })?;
    bar.finish_and_clear();
    let results: Vec<ItemResult> = results.into_iter().flatten().collect();
    eprintln!("{:>14}: {} items in {:.1} s", task.spec.task, results.len(), start.elapsed().as_secs_f64());
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ChoiceLogLik, OnResponse, Output, Request};
    use crate::suite::Suite;

    /// Plumbing only: answers a batch in reverse order, scoring each
    /// continuation by minus the length of context and continuation, and
    /// fails any request whose context contains "FAIL".
    struct Reversed;

    impl Engine for Reversed {
        fn name(&self) -> &'static str {
            "reversed"
        }
        crate::backend::stub_engine_basics!();
        fn run_batch(&mut self, batch: Vec<Tagged>, on_response: &mut OnResponse) -> Result<()> {
            for Tagged { tag, request } in batch.into_iter().rev() {
                let Request::LogLikelihood { context, continuations, .. } = request else { unreachable!() };
                let response = if context.contains("FAIL") {
                    Err(anyhow::anyhow!("refused {context}"))
                } else {
                    let ll = continuations
                        .iter()
                        .map(|c| ChoiceLogLik {
                            logprob: -((context.len() + c.len()) as f64),
                            n_tokens: 1,
                            is_greedy: false,
                        })
                        .collect();
                    Ok(Response {
                        output: Output::LogLikelihood(ll),
                        tokens_in: context.len(),
                        tokens_cached: 0,
                        tokens_out: 0,
                        wall_s: 0.5,
                        prefix_s: 0.0,
                        ttft_s: None,
                        decode_tok_per_s: None,
                        served: None,
                    })
                };
                on_response(tag, response)?;
            }
            Ok(())
        }
        fn encode(&self, _: &str) -> Result<Vec<u32>> {
            Ok(vec![])
        }
        fn timed_generate(&mut self, _: &[u32], _: usize) -> Result<(f64, f64)> {
            Ok((0.0, 0.0))
        }
    }

    #[test]
    fn results_come_back_in_item_order_whatever_order_the_engine_answers() {
        let tmp = tempfile::tempdir().unwrap();
        // Partial scoring: each choice is a context, the continuation is shared,
        // so every item takes two requests; item 1's second context fails.
        std::fs::write(
            tmp.path().join("d.jsonl"),
            "{\"a\": \"x\", \"b\": \"yy\", \"g\": 0}\n{\"a\": \"x\", \"b\": \"FAIL\", \"g\": 1}\n{\"a\": \"xxx\", \"b\": \"y\", \"g\": 1}\n",
        )
        .unwrap();
        let suite = tmp.path().join("s.yaml");
        std::fs::write(
            &suite,
            "name: s\ntasks:\n  - task: w\n    data_files: d.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"{{ g }}\"\n    doc_to_choice: \"{{ [a, b] }}\"\n    doc_to_target: \"end\"\n",
        )
        .unwrap();
        let suite = Suite::load(suite.to_str().unwrap(), None).unwrap();
        let task = &suite.tasks[0];
        let samples_path = tmp.path().join("samples.jsonl");
        let mut samples = SamplesWriter::create(&samples_path).unwrap();
        let results = run_task(&mut Reversed, task, false, &mut samples, &mut HashMap::new()).unwrap();

        let ids: Vec<&str> = results.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["w/0", "w/1", "w/2"]);
        // Both parts merged in request order: one log-likelihood per context, the wall times added.
        let first = &results[0];
        assert_eq!(first.loglik.as_ref().unwrap().len(), 2);
        assert_eq!((first.wall_s, first.tokens_in), (1.0, "x".len() + "yy".len()));
        assert!(results[1].error.as_deref().unwrap().contains("refused"), "{:?}", results[1].error);
        assert!(results[2].error.is_none() && results[2].correct, "{:?}", results[2]);
        // Every item appended as it finished: the engine answered the last item first.
        let written = crate::results::read_samples(&samples_path).unwrap();
        let order: Vec<&str> = written.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(order, ["w/2", "w/1", "w/0"]);
    }
}
