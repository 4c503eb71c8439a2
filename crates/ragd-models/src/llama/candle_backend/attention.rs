//! Attention through block tables, built from candle ops so it runs on any
//! device: the blocks a group of sequences reads are gathered by index, then
//! a masked matmul-softmax-matmul. Sequences are grouped by how many query
//! tokens they bring this step (all decodes together; prefill chunks by
//! length), so no query row is padding; only keys are padded to the longest
//! block table of the group, and masked. Decodes go through
//! `ragd_kernels::device::paged_attention_decode`: the fused CUDA kernel
//! where it is compiled in, the same gathered matmuls elsewhere.

use candle_core::{DType, Device, Result, Tensor};

/// The queries of one group: `seqs` sequences with `t` tokens each.
pub struct Group {
    /// Token rows of the step's batch, sequence by sequence.
    pub rows: Vec<u32>,
    pub seqs: usize,
    pub t: usize,
    /// Block tables, each padded to `max_blocks` with block 0.
    pub tables: Vec<u32>,
    pub max_blocks: usize,
    /// Positions each sequence attends to after this step's tokens.
    pub context_lens: Vec<u32>,
    /// Additive mask `[seqs, t, max_blocks * block_size]`: 0 where a query
    /// may attend the key, -inf elsewhere (the future, padding).
    pub mask: Vec<f32>,
}

impl Group {
    /// Empty group for sequences bringing `t` tokens.
    pub fn new(t: usize) -> Self {
        Self {
            rows: Vec::new(),
            seqs: 0,
            t,
            tables: Vec::new(),
            max_blocks: 0,
            context_lens: Vec::new(),
            mask: Vec::new(),
        }
    }
}

/// The shape of one model's attention.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub block_size: usize,
}

/// Builds the groups of a step: chunk `i` brings `lens[i]` tokens at
/// `starts[i]`, reading the first blocks of `tables[i]`.
pub fn groups(lens: &[usize], starts: &[usize], tables: &[&[u32]], block_size: usize) -> Vec<Group> {
    let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &len) in lens.iter().enumerate() {
        by_len.entry(len).or_default().push(i);
    }
    let mut first_row = Vec::with_capacity(lens.len());
    let mut row = 0;
    for &len in lens {
        first_row.push(row);
        row += len;
    }
    by_len
        .into_iter()
        .map(|(t, members)| {
            let needed = |i: usize| (starts[i] + t).div_ceil(block_size);
            let max_blocks = members.iter().map(|&i| needed(i)).max().unwrap_or(0);
            let keys = max_blocks * block_size;
            let mut g = Group::new(t);
            g.max_blocks = max_blocks;
            for &i in &members {
                g.rows.extend((0..t).map(|j| (first_row[i] + j) as u32));
                let own = &tables[i][..needed(i)];
                g.tables.extend_from_slice(own);
                g.tables.extend(std::iter::repeat_n(0, max_blocks - own.len()));
                g.context_lens.push((starts[i] + t) as u32);
                for j in 0..t {
                    let last = starts[i] + j;
                    g.mask
                        .extend((0..keys).map(|k| if k <= last { 0.0 } else { f32::NEG_INFINITY }));
                }
                g.seqs += 1;
            }
            g
        })
        .collect()
}

/// Attention of one group. `q` holds the step's rotated queries `[n,
/// n_heads * head_dim]` (f32); `k_cache`/`v_cache` are the layer's
/// `[num_blocks, block_size, n_kv_heads, head_dim]`. Returns the group's
/// rows `[seqs * t, n_heads * head_dim]` in `g.rows` order.
pub fn attend_group(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    g: &Group,
    h: Heads,
    scale: f64,
    device: &Device,
) -> Result<Tensor> {
    let (s, t) = (g.seqs, g.t);
    let group = h.n_heads / h.n_kv_heads;
    let keys = g.max_blocks * h.block_size;
    let rows = Tensor::from_slice(&g.rows, g.rows.len(), device)?;
    if t == 1 {
        let q = q.index_select(&rows, 0)?.reshape((s, h.n_heads, h.head_dim))?;
        let tables = Tensor::from_slice(&g.tables, (s, g.max_blocks), device)?;
        let lens = Tensor::from_slice(&g.context_lens, s, device)?;
        let out =
            ragd_kernels::device::paged_attention_decode(&q, k_cache, v_cache, &tables, &lens, scale as f32)?;
        return out.reshape((s, h.n_heads * h.head_dim));
    }
    let tables = Tensor::from_slice(&g.tables, g.tables.len(), device)?;
    let mask = Tensor::from_slice(&g.mask, (s, 1, t, 1, keys), device)?;
    // [s, t, kv, group, d] -> [s, kv, t * group, d]
    let q = q
        .index_select(&rows, 0)?
        .reshape((s, t, h.n_kv_heads, group, h.head_dim))?
        .permute((0, 2, 1, 3, 4))?
        .reshape((s, h.n_kv_heads, t * group, h.head_dim))?;
    // [s * blocks, bs, kv, d] -> [s, kv, keys, d]
    let gather = |cache: &Tensor| -> Result<Tensor> {
        cache
            .index_select(&tables, 0)?
            .to_dtype(DType::F32)?
            .reshape((s, keys, h.n_kv_heads, h.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (k, v) = (gather(k_cache)?, gather(v_cache)?);
    let scores = (q.matmul(&k.t()?)? * scale)?
        .reshape((s, h.n_kv_heads, t, group, keys))?
        .broadcast_add(&mask)?
        .reshape((s, h.n_kv_heads, t * group, keys))?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    // [s, kv, t * group, d] -> [s, t, kv, group, d] -> rows
    probs
        .matmul(&v)?
        .reshape((s, h.n_kv_heads, t, group, h.head_dim))?
        .permute((0, 2, 1, 3, 4))?
        .reshape((s * t, h.n_heads * h.head_dim))
}

/// Attention of a whole step: every group, reassembled in row order.
pub fn attend(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    groups: &[Group],
    h: Heads,
    scale: f64,
) -> Result<Tensor> {
    let device = q.device();
    let outs = groups
        .iter()
        .map(|g| attend_group(q, k_cache, v_cache, g, h, scale, device))
        .collect::<Result<Vec<_>>>()?;
    let order: Vec<u32> = groups.iter().flat_map(|g| g.rows.iter().copied()).collect();
    if order.iter().enumerate().all(|(i, &r)| r as usize == i) {
        return match outs.len() {
            1 => Ok(outs.into_iter().next().expect("one group")),
            _ => Tensor::cat(&outs, 0),
        };
    }
    let mut inverse = vec![0u32; order.len()];
    for (i, &r) in order.iter().enumerate() {
        inverse[r as usize] = i as u32;
    }
    let inverse = Tensor::from_slice(&inverse, inverse.len(), device)?;
    Tensor::cat(&outs, 0)?.index_select(&inverse, 0)
}
