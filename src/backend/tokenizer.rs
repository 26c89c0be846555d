//! Tokenizers rebuilt from GGUF metadata. GGUF files carry the vocabulary,
//! merges and token types but no `tokenizer.json`, so we assemble an equivalent
//! `tokenizers::Tokenizer` (a byte-level BPE) and check it against known ids in
//! tests. Token types 3 (control) and 4 (user-defined) become special added
//! tokens so that `<|im_start|>` encodes as one token.

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// A tokenizer plus the special ids the runner needs.
pub struct GgufTokenizer {
    pub inner: Tokenizer,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`: whether prompts start with BOS.
    pub add_bos: bool,
    /// Strings of BOS/EOS, for chat templates.
    pub bos_token: String,
    pub eos_token: String,
    /// `tokenizer.chat_template` from the GGUF, when it has one.
    pub chat_template: Option<String>,
}

fn md<'a>(ct: &'a gguf_file::Content, key: &str) -> Option<&'a gguf_file::Value> {
    ct.metadata.get(key)
}

fn md_u32(ct: &gguf_file::Content, key: &str) -> Option<u32> {
    md(ct, key).and_then(|v| v.to_u32().ok().or_else(|| v.to_i32().ok().map(|x| x as u32)))
}

impl GgufTokenizer {
    /// Builds the tokenizer for a GPT-2-style byte-level BPE vocabulary
    /// (`tokenizer.ggml.model = "gpt2"`: SmolLM2, Qwen2, Llama 3).
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let model = md(ct, "tokenizer.ggml.model").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        if model != "gpt2" {
            bail!("tokenizer.ggml.model = '{model}' is not supported yet (only byte-level BPE, 'gpt2')");
        }
        let tokens: Vec<String> = md(ct, "tokenizer.ggml.tokens")
            .context("GGUF has no tokenizer.ggml.tokens")?
            .to_vec()?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<candle_core::Result<_>>()?;
        let merges: Vec<(String, String)> = md(ct, "tokenizer.ggml.merges")
            .context("GGUF has no tokenizer.ggml.merges")?
            .to_vec()?
            .iter()
            .map(|v| {
                let s = v.to_string()?;
                let (a, b) = s.split_once(' ').ok_or_else(|| candle_core::Error::Msg(format!("bad merge '{s}'")))?;
                Ok((a.to_string(), b.to_string()))
            })
            .collect::<candle_core::Result<_>>()?;
        let types: Vec<i32> = match md(ct, "tokenizer.ggml.token_type") {
            Some(v) => v.to_vec()?.iter().map(|t| t.to_i32()).collect::<candle_core::Result<_>>()?,
            None => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| anyhow::anyhow!("building BPE from GGUF: {e}"))?;
        let mut inner = Tokenizer::new(bpe);
        // Digits split individually, then GPT-2 byte-level with its regex and no
        // prefix space: matches llama.cpp's "smollm"/"qwen2" pre-tokenizers.
        let pre = Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]);
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
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
