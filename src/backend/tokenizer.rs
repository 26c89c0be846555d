//! Tokenizers for the models openweigh runs. GGUF files carry the vocabulary,
//! merges or scores and the token types but no `tokenizer.json`, so we assemble
//! an equivalent `tokenizers::Tokenizer` per vocabulary kind and check each
//! against known ids in tests:
//! - `gpt2` (byte-level BPE: SmolLM2, Qwen2, Llama 3), with the pre-tokenizer
//!   named by `tokenizer.ggml.pre`;
//! - `llama` (SentencePiece BPE: Gemma, Llama 2): the scores are merge
//!   priorities, so merges are derived from them (a pair merges when the joined
//!   piece is in the vocabulary; higher score first), with byte fallback.
//!
//! Token types 3 (control) and 4 (user-defined) become special added tokens so
//! that `<|im_start|>` or `<start_of_turn>` encode as one token. A safetensors
//! model folder brings its own `tokenizer.json`, loaded as is.

use super::weights::{md, one_line};
use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use std::collections::HashMap;
use std::path::Path;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

/// Qwen2's pre-tokenizer regex (llama.cpp `qwen2`): digits one by one.
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's (llama.cpp `llama-bpe`): digits in runs of up to three.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer plus the special ids the runner needs.
pub struct ModelTokenizer {
    pub inner: Tokenizer,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Whether prompts start with BOS (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    /// Strings of BOS/EOS, for chat templates.
    pub bos_token: String,
    pub eos_token: String,
    /// The model's own chat template (Jinja), when it has one.
    pub chat_template: Option<String>,
}

fn md_u32(ct: &gguf_file::Content, key: &str) -> Option<u32> {
    md(ct, key).and_then(|v| v.to_u32().ok().or_else(|| v.to_i32().ok().map(|x| x as u32)))
}

fn md_strings(ct: &gguf_file::Content, key: &str) -> Result<Vec<String>> {
    md(ct, key)
        .with_context(|| format!("GGUF has no {key}"))?
        .to_vec()
        .map_err(|e| short(key, e))?
        .iter()
        .map(|v| Ok(v.to_string().map_err(|e| short(key, e))?.clone()))
        .collect()
}

/// A candle metadata error as one line naming the key (candle appends a
/// backtrace to its message when RUST_BACKTRACE is set).
fn short(key: &str, e: candle_core::Error) -> anyhow::Error {
    anyhow::anyhow!("{key}: {}", one_line(&e))
}

fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper> {
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(SplitPattern::Regex(re.into()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| anyhow::anyhow!("pre-tokenizer regex: {e}"))?;
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
        ])))
    };
    Ok(match pre {
        "qwen2" => split(QWEN2_REGEX)?,
        "llama-bpe" | "llama3" => split(LLAMA3_REGEX)?,
        // Digits split individually, then GPT-2 byte-level with its regex and no
        // prefix space: matches llama.cpp's "smollm" pre-tokenizer.
        "smollm" | "gpt2" | "default" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ])),
        other => bail!(
            "tokenizer.ggml.pre = '{other}' is not supported (known: smollm, qwen2, llama-bpe); \
             use a safetensors folder with its tokenizer.json instead"
        ),
    })
}

/// Merges of a SentencePiece-BPE vocabulary: every split of a piece into two
/// pieces of the vocabulary, ordered by the joined piece's score, highest
/// first (ties: vocabulary order), which is the order SentencePiece and
/// llama.cpp merge in.
pub fn merges_from_scores(tokens: &[String], scores: &[f32]) -> Vec<(String, String)> {
    let index: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        for (cut, _) in piece.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (index.get(&piece[..cut]), index.get(&piece[cut..])) {
                merges.push((scores[id], id, l, r));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges.into_iter().map(|(_, _, l, r)| (tokens[l].clone(), tokens[r].clone())).collect()
}

impl ModelTokenizer {
    /// Builds the tokenizer a GGUF file describes; an error is one line (a
    /// token quoted from the file may hold a line break).
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        Self::build_from_gguf(ct).map_err(|e| anyhow::anyhow!(crate::error::fold_lines(&format!("{e:#}"))))
    }

    fn build_from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let kind = md(ct, "tokenizer.ggml.model").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        let tokens = md_strings(ct, "tokenizer.ggml.tokens")?;
        let types: Vec<i32> = match md(ct, "tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .and_then(|v| v.iter().map(|t| t.to_i32()).collect::<candle_core::Result<_>>())
                .map_err(|e| short("tokenizer.ggml.token_type", e))?,
            None => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let mut inner = match kind.as_str() {
            "gpt2" => {
                let merges: Vec<(String, String)> = md_strings(ct, "tokenizer.ggml.merges")?
                    .into_iter()
                    .map(|s| s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).context("bad merge"))
                    .collect::<Result<_>>()?;
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .build()
                    .map_err(|e| anyhow::anyhow!("building BPE from GGUF: {e}"))?;
                let mut t = Tokenizer::new(bpe);
                let pre = md(ct, "tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned();
                t.with_pre_tokenizer(Some(pre_tokenizer(pre.as_deref().unwrap_or("default"))?));
                t.with_decoder(Some(ByteLevelDecoder::default()));
                t
            }
            "llama" => {
                let scores: Vec<f32> = md(ct, "tokenizer.ggml.scores")
                    .context("GGUF has no tokenizer.ggml.scores")?
                    .to_vec()
                    .and_then(|v| v.iter().map(|v| v.to_f32()).collect::<candle_core::Result<_>>())
                    .map_err(|e| short("tokenizer.ggml.scores", e))?;
                let merges = merges_from_scores(&tokens, &scores);
                let unk = md_u32(ct, "tokenizer.ggml.unknown_token_id").and_then(|i| tokens.get(i as usize)).cloned();
                let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true);
                if let Some(unk) = unk {
                    builder = builder.unk_token(unk);
                }
                let bpe = builder.build().map_err(|e| anyhow::anyhow!("building SentencePiece BPE: {e}"))?;
                let mut t = Tokenizer::new(bpe);
                let prefix = md(ct, "tokenizer.ggml.add_space_prefix").and_then(|v| v.to_bool().ok()).unwrap_or(true);
                let replace = Replace::new(" ", "\u{2581}").map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut decoders = vec![
                    DecoderWrapper::Replace(Replace::new("\u{2581}", " ").map_err(|e| anyhow::anyhow!("{e}"))?),
                    DecoderWrapper::ByteFallback(ByteFallback::new()),
                    DecoderWrapper::Fuse(Fuse::new()),
                ];
                if prefix {
                    t.with_normalizer(Some(NormalizerWrapper::Sequence(tokenizers::normalizers::Sequence::new(vec![
                        NormalizerWrapper::Prepend(Prepend::new("\u{2581}".into())),
                        NormalizerWrapper::Replace(replace),
                    ]))));
                    decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
                } else {
                    t.with_normalizer(Some(NormalizerWrapper::Replace(replace)));
                }
                t.with_decoder(Some(DecoderSequence::new(decoders)));
                t
            }
            other => bail!("tokenizer.ggml.model = '{other}' is not supported (known: gpt2, llama)"),
        };
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(types.iter())
            .filter(|(_, t)| **t == 3 || **t == 4)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        inner.add_special_tokens(&specials);
        let bos_id = md_u32(ct, "tokenizer.ggml.bos_token_id");
        let eos_id = md_u32(ct, "tokenizer.ggml.eos_token_id");
        let name = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize).cloned()).unwrap_or_default();
        Ok(Self {
            bos_token: name(bos_id),
            eos_token: name(eos_id),
            bos_id,
            eos_id,
            add_bos: md(ct, "tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false),
            chat_template: md(ct, "tokenizer.chat_template").and_then(|v| v.to_string().ok()).cloned(),
            inner,
        })
    }

    /// From a GGUF file's metadata, or a folder with `tokenizer.json`.
    pub fn from_path(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Self::from_hf_dir(path);
        }
        let (_, ct) = super::weights::open_gguf(path)?;
        Self::from_gguf(&ct)
    }

    /// Loads a Hugging Face model folder's `tokenizer.json`; BOS/EOS, whether
    /// to add BOS and the chat template come from `tokenizer_config.json`.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = Tokenizer::from_file(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
            Ok(s) => serde_json::from_str(&s).with_context(|| format!("{} is not valid JSON", cfg_path.display()))?,
            Err(_) => serde_json::Value::Null,
        };
        // Tokens may be plain strings or {"content": ...} objects.
        let token = |key: &str| -> Option<String> {
            let v = cfg.get(key)?;
            v.as_str().map(str::to_string).or_else(|| v.get("content")?.as_str().map(str::to_string))
        };
        let bos_token = token("bos_token").unwrap_or_default();
        let eos_token = token("eos_token").unwrap_or_default();
        Ok(Self {
            bos_id: inner.token_to_id(&bos_token),
            eos_id: inner.token_to_id(&eos_token),
            add_bos: cfg.get("add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false),
            chat_template: cfg.get("chat_template").and_then(|v| v.as_str()).map(str::to_string),
            bos_token,
            eos_token,
            inner,
        })
    }

    /// Token ids of `text`, special tokens recognised, no BOS added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens kept.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| anyhow::anyhow!("detokenizing: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_the_joined_pieces_score() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"].iter().map(|s| s.to_string()).collect();
        // "bc" outranks "ab"; "abc" splits two ways, both kept, behind both.
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0];
        let m = merges_from_scores(&tokens, &scores);
        let m: Vec<(&str, &str)> = m.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(m, vec![("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]);
    }
}
