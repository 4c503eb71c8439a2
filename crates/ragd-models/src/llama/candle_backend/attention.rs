//! Attention through block tables, built from candle ops so it runs on any
//! device: the blocks a group of sequences reads are gathered by index, then
//! a masked matmul-softmax-matmul. Sequences are grouped by how many query
//! tokens they bring this step (all decodes together; prefill chunks by
//! length), so no query row is padding; only keys are padded to the longest
//! block table of the group, and masked. Decodes go through
//! `ragd_kernels::device::paged_attention_decode`: the fused CUDA kernel
//! where it is compiled in, the same gathered matmuls elsewhere.

use candle_core::{DType, Device, Result, Tensor};
use ragd_core::SeqChunk;

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
    /// may attend the key, -inf elsewhere (the future, padding). Empty for
    /// decodes (`t == 1`).
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

/// Builds the groups of a step's chunks (their rows in chunk order).
fn groups(chunks: &[SeqChunk<'_>], block_size: usize) -> Vec<Group> {
    let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    let mut first_row = Vec::with_capacity(chunks.len());
    let mut row = 0;
    for (i, c) in chunks.iter().enumerate() {
        by_len.entry(c.tokens.len()).or_default().push(i);
        first_row.push(row);
        row += c.tokens.len();
    }
    by_len
        .into_iter()
        .map(|(t, members)| {
            let needed = |i: usize| (chunks[i].start_pos + t).div_ceil(block_size);
            let max_blocks = members.iter().map(|&i| needed(i)).max().unwrap_or(0);
            let keys = max_blocks * block_size;
            let mut g = Group::new(t);
            g.max_blocks = max_blocks;
            for &i in &members {
                let start = chunks[i].start_pos;
                g.rows.extend((0..t).map(|j| (first_row[i] + j) as u32));
                let own = &chunks[i].blocks[..needed(i)];
                g.tables.extend_from_slice(own);
                g.tables.extend(std::iter::repeat_n(0, max_blocks - own.len()));
                g.context_lens.push((start + t) as u32);
                // Decodes go through `paged_attention_decode`, which masks
                // by `context_lens`: only prefill groups need the mask.
                for j in (0..t).filter(|_| t > 1) {
                    let last = start + j;
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
    d: &GroupTensors,
    h: Heads,
    scale: f64,
) -> Result<Tensor> {
    let (s, t) = (g.seqs, g.t);
    let group = h.n_heads / h.n_kv_heads;
    let keys = g.max_blocks * h.block_size;
    let Some(mask) = &d.mask else {
        let q = q.index_select(&d.rows, 0)?.reshape((s, h.n_heads, h.head_dim))?;
        let tables = d.tables.reshape((s, g.max_blocks))?;
        let out = ragd_kernels::device::paged_attention_decode(
            &q,
            k_cache,
            v_cache,
            &tables,
            &d.context_lens,
            scale as f32,
        )?;
        return out.reshape((s, h.n_heads * h.head_dim));
    };
    let tables = &d.tables;
    // [s, t, kv, group, d] -> [s, kv, t * group, d]
    let q = q
        .index_select(&d.rows, 0)?
        .reshape((s, t, h.n_kv_heads, group, h.head_dim))?
        .permute((0, 2, 1, 3, 4))?
        .reshape((s, h.n_kv_heads, t * group, h.head_dim))?;
    // [s * blocks, bs, kv, d] -> [s, kv, keys, d]
    let gather = |cache: &Tensor| -> Result<Tensor> {
        cache
            .index_select(tables, 0)?
            .to_dtype(DType::F32)?
            .reshape((s, keys, h.n_kv_heads, h.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (k, v) = (gather(k_cache)?, gather(v_cache)?);
    let scores = (q.matmul(&k.t()?)? * scale)?
        .reshape((s, h.n_kv_heads, t, group, keys))?
        .broadcast_add(mask)?
        .reshape((s, h.n_kv_heads, t * group, keys))?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    // [s, kv, t * group, d] -> [s, t, kv, group, d] -> rows
    probs
        .matmul(&v)?
        .reshape((s, h.n_kv_heads, t, group, h.head_dim))?
        .permute((0, 2, 1, 3, 4))?
        .reshape((s * t, h.n_heads * h.head_dim))
}

/// A group's index tensors on the device.
pub struct GroupTensors {
    rows: Tensor,
    /// Flat block ids, `seqs * max_blocks`.
    tables: Tensor,
    context_lens: Tensor,
    /// `[seqs, 1, t, 1, keys]`; `None` for decodes.
    mask: Option<Tensor>,
}

/// A step's groups with their tensors, uploaded once and read by every
/// layer.
pub struct StepGroups {
    groups: Vec<(Group, GroupTensors)>,
    /// Row `r` of the step is row `inverse[r]` of the groups' outputs
    /// stacked; `None` when the groups already hold the rows in order.
    inverse: Option<Tensor>,
}

impl StepGroups {
    pub fn new(chunks: &[SeqChunk<'_>], block_size: usize, device: &Device) -> Result<Self> {
        let groups = groups(chunks, block_size)
            .into_iter()
            .map(|g| {
                let keys = g.max_blocks * block_size;
                let tensors = GroupTensors {
                    rows: Tensor::from_slice(&g.rows, g.rows.len(), device)?,
                    tables: Tensor::from_slice(&g.tables, g.tables.len(), device)?,
                    context_lens: Tensor::from_slice(&g.context_lens, g.seqs, device)?,
                    mask: match g.t {
                        1 => None,
                        t => Some(Tensor::from_slice(&g.mask, (g.seqs, 1, t, 1, keys), device)?),
                    },
                };
                Ok((g, tensors))
            })
            .collect::<Result<Vec<_>>>()?;
        let order: Vec<u32> = groups.iter().flat_map(|(g, _)| g.rows.iter().copied()).collect();
        let inverse = match order.iter().enumerate().all(|(i, &r)| r as usize == i) {
            true => None,
            false => {
                let mut inverse = vec![0u32; order.len()];
                for (i, &r) in order.iter().enumerate() {
                    inverse[r as usize] = i as u32;
                }
                Some(Tensor::from_slice(&inverse, inverse.len(), device)?)
            }
        };
        Ok(Self { groups, inverse })
    }
}

/// Attention of a whole step: every group, reassembled in row order.
pub fn attend(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    step: &StepGroups,
    h: Heads,
    scale: f64,
) -> Result<Tensor> {
    let outs = step
        .groups
        .iter()
        .map(|(g, d)| attend_group(q, k_cache, v_cache, g, d, h, scale))
        .collect::<Result<Vec<_>>>()?;
    let stacked = match outs.len() {
        1 => outs.into_iter().next().expect("one group"),
        _ => Tensor::cat(&outs, 0)?,
    };
    match &step.inverse {
        Some(inverse) => stacked.index_select(inverse, 0),
        None => Ok(stacked),
    }
}
