//! Multiple-choice metrics as pure functions, defined as in
//! lm-evaluation-harness: `acc` picks the choice with the highest summed
//! log-likelihood, `acc_norm` the highest log-likelihood per character.

use crate::backend::ChoiceLogLik;

/// Index of the largest value; the first one wins ties (as `numpy.argmax`).
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// `acc`'s prediction: the choice with the highest summed log-likelihood.
pub fn predict_acc(ll: &[ChoiceLogLik]) -> usize {
    argmax(&ll.iter().map(|c| c.logprob).collect::<Vec<_>>())
}

/// `acc_norm`'s prediction: log-likelihood divided by the choice's length in
/// characters (Unicode scalar values, like Python's `len`), the target
/// delimiter excluded.
pub fn predict_acc_norm(ll: &[ChoiceLogLik], choices: &[String]) -> usize {
    let normed: Vec<f64> =
        ll.iter().zip(choices).map(|(c, text)| c.logprob / (text.chars().count().max(1) as f64)).collect();
    argmax(&normed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ll(lp: &[f64]) -> Vec<ChoiceLogLik> {
        lp.iter().map(|&logprob| ChoiceLogLik { logprob, n_tokens: 1, is_greedy: false }).collect()
    }

    #[test]
    fn acc_picks_highest_loglik_first_on_ties() {
        assert_eq!(predict_acc(&ll(&[-3.0, -1.0, -1.0])), 1);
    }

    #[test]
    fn acc_norm_divides_by_characters() {
        // Long choice with a lower total but a better per-character score.
        let choices = vec!["ab".to_string(), "abcdefghij".to_string()];
        let l = ll(&[-2.0, -5.0]);
        assert_eq!(predict_acc(&l), 0);
        assert_eq!(predict_acc_norm(&l, &choices), 1);
        // Characters, not bytes: "éé" is 2 characters.
        let choices = vec!["éé".to_string(), "abc".to_string()];
        assert_eq!(predict_acc_norm(&ll(&[-2.0, -3.3]), &choices), 0);
    }
}
