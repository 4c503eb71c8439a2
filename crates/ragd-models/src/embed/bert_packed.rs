//! BERT encoder over packed (padding-free) batches, for the CPU.
//!
//! The sequences of a batch are concatenated into one `[tokens, hidden]`
//! matrix and run through [`Layer`]s that attend per sequence, so no padded
//! `[batch, heads, seq, seq]` score tensor or mask is ever built. (candle-nn's
//! varlen CPU flash attention was measured 20% slower end to end here: its
//! online softmax does per-key scalar work that matmuls avoid.) Same weights
//! and results as candle-transformers' `BertModel` (Devlin et al., 2018).

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};
use candle_transformers::models::bert::Config;

use super::encoder_layer::{load_layers, pack, Layer, LayerDims, LayerNames};
use super::pooling::mean_pool_packed_normalize;

const BERT_LAYER: LayerNames = LayerNames {
    q: "attention.self.query",
    k: "attention.self.key",
    v: "attention.self.value",
    attn_out: "attention.output.dense",
    attn_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    out_norm: "output.LayerNorm",
};

/// The BERT encoder (embeddings + layers), without pooler. Also runs
/// RoBERTa-family encoders (XLM-R): the same layers, with positions
/// counted from `pad_token_id + 1`.
pub struct PackedBert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    /// Position id of a sequence's first token: 0 for BERT, `pad_token_id
    /// + 1` for RoBERTa.
    position_offset: u32,
    device: Device,
}

/// Whether `cfg` describes a RoBERTa-family model (positions offset by
/// the padding id, weights under `roberta.`).
pub fn is_roberta(cfg: &Config) -> bool {
    matches!(
        cfg.model_type.as_deref(),
        Some("roberta" | "xlm-roberta" | "camembert")
    )
}

impl PackedBert {
    /// Loads from a VarBuilder rooted where `embeddings.*` and `encoder.*`
    /// live (with or without a `bert.` or `roberta.` prefix).
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let vb = match ["bert", "roberta"]
            .into_iter()
            .find(|p| vb.contains_tensor(&format!("{p}.embeddings.word_embeddings.weight")))
        {
            Some(prefix) => vb.pp(prefix),
            None => vb,
        };
        let emb = vb.pp("embeddings");
        let h = cfg.hidden_size;
        let dims = LayerDims {
            hidden: h,
            heads: cfg.num_attention_heads,
            intermediate: cfg.intermediate_size,
            eps: cfg.layer_norm_eps,
        };
        let layers = load_layers(vb.pp("encoder.layer"), cfg.num_hidden_layers, &dims, &BERT_LAYER)?;
        Ok(Self {
            word: embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?,
            position: embedding(cfg.max_position_embeddings, h, emb.pp("position_embeddings"))?,
            token_type: embedding(cfg.type_vocab_size, h, emb.pp("token_type_embeddings"))?,
            norm: layer_norm(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?,
            layers,
            position_offset: if is_roberta(cfg) {
                cfg.pad_token_id as u32 + 1
            } else {
                0
            },
            device: vb.device().clone(),
        })
    }

    /// Longest sequence the position embeddings allow.
    pub fn max_len(&self) -> candle_core::Result<usize> {
        Ok(self
            .position
            .embeddings()
            .dim(0)?
            .saturating_sub(self.position_offset as usize))
    }

    /// Hidden states `[tokens, hidden]` of the packed sequences. `type_ids`:
    /// one token type per token of the packed batch; `None`: all 0.
    pub fn encode(&self, seqs: &[&[u32]], type_ids: Option<Vec<u32>>) -> Result<Tensor> {
        let (lens, ids, positions) = pack(seqs, self.position_offset, &self.device)?;
        let tokens = ids.dim(0)?;
        let x = self
            .word
            .forward(&ids)?
            .add(&self.position.forward(&positions)?)?;
        let x = match type_ids {
            Some(types) => x.add(&self.token_type.forward(&Tensor::from_vec(
                types,
                tokens,
                &self.device,
            )?)?)?,
            None => {
                let type0 = self
                    .token_type
                    .forward(&Tensor::zeros(1, DType::U32, &self.device)?)?;
                x.broadcast_add(&type0)?
            }
        };
        let mut x = self.norm.forward(&x)?;
        for layer in &self.layers {
            x = layer.forward(&x, &lens, None)?;
        }
        Ok(x)
    }

    /// The hidden state of each sequence's first token (`[CLS]` or `<s>`):
    /// `[batch, hidden]`. `type_ids` as for [`Self::encode`].
    pub fn first_tokens(&self, seqs: &[&[u32]], type_ids: Option<Vec<u32>>) -> Result<Tensor> {
        let x = self.encode(seqs, type_ids)?;
        let mut starts = Vec::with_capacity(seqs.len());
        let mut at = 0u32;
        for s in seqs {
            starts.push(at);
            at += s.len() as u32;
        }
        x.index_select(&Tensor::from_vec(starts, seqs.len(), &self.device)?, 0)
    }

    /// Mean-pooled, L2-normalised sentence vectors `[batch, hidden]` of the
    /// given sequences.
    pub fn embed(&self, seqs: &[&[u32]]) -> Result<Tensor> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        mean_pool_packed_normalize(&self.encode(seqs, None)?, &lens)
    }
}
