//! The small classifier on top of the frozen features: standardisation,
//! then logistic regression (`hidden` 0) or one hidden ReLU layer; and its
//! training with candle-nn's AdamW (class-weighted cross-entropy,
//! mini-batches, early stopping on a held-out part), deterministic for a
//! seed. A text is scored by its worst window, so a long attack text
//! trains on its most attack-like window ([`TrainSet`]'s selection).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use ragd_core::{ModelError, Result};

use crate::error::inference;

/// Weight (`[in, out]`) and bias of each linear layer.
type Layers = Vec<(Tensor, Tensor)>;

/// The head: `x -> (x - mean) * inv_std -> [W b ReLU]* -> W b` (logits).
pub struct Head {
    mean: Tensor,
    inv_std: Tensor,
    layers: Layers,
    device: Device,
}

impl Head {
    fn forward(
        mean: &Tensor,
        inv_std: &Tensor,
        layers: &[(Tensor, Tensor)],
        x: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let mut h = x.broadcast_sub(mean)?.broadcast_mul(inv_std)?;
        for (i, (w, b)) in layers.iter().enumerate() {
            if i > 0 {
                h = h.relu()?;
            }
            h = h.matmul(w)?.broadcast_add(b)?;
        }
        Ok(h)
    }

    /// Length of the feature vectors it reads.
    pub fn input_dim(&self) -> usize {
        self.mean.dims1().unwrap_or(0)
    }

    /// Width of the hidden layer (0: logistic regression).
    pub fn hidden(&self) -> usize {
        match self.layers.as_slice() {
            [(w, _), _] => w.dims()[1],
            _ => 0,
        }
    }

    /// Class probabilities (softmax) of each feature vector.
    pub fn probs(&self, rows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let dim = self.input_dim();
        if let Some(r) = rows.iter().find(|r| r.len() != dim) {
            return Err(ModelError::InvalidInput(format!(
                "a feature vector has {} values, the head reads {dim}",
                r.len()
            )));
        }
        let x = Tensor::from_vec(rows.concat(), (rows.len(), dim), &self.device).map_err(inference)?;
        Self::forward(&self.mean, &self.inv_std, &self.layers, &x)
            .and_then(|l| candle_nn::ops::softmax_last_dim(&l))
            .and_then(|p| p.to_vec2())
            .map_err(inference)
    }

    /// Writes the head as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = HashMap::from([
            ("input.mean".to_string(), self.mean.clone()),
            ("input.inv_std".to_string(), self.inv_std.clone()),
        ]);
        for (i, (w, b)) in self.layers.iter().enumerate() {
            tensors.insert(format!("layers.{i}.weight"), w.clone());
            tensors.insert(format!("layers.{i}.bias"), b.clone());
        }
        candle_core::safetensors::save(&tensors, path).map_err(|e| ModelError::load(path.display(), e))
    }

    /// Reads a head written by [`Head::save`], checking its shapes.
    pub fn load(
        path: &Path,
        input_dim: usize,
        hidden: usize,
        classes: usize,
        device: &Device,
    ) -> Result<Self> {
        let fail = |e: &dyn std::fmt::Display| ModelError::load(path.display(), e);
        let tensors = candle_core::safetensors::load(path, device).map_err(|e| fail(&e))?;
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = tensors
                .get(name)
                .ok_or_else(|| fail(&format!("tensor {name} is missing")))?;
            if t.dims() != shape {
                return Err(fail(&format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            t.to_dtype(DType::F32).map_err(|e| fail(&e))
        };
        let dims = layer_dims(input_dim, hidden, classes);
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, io)| {
                Ok((
                    get(&format!("layers.{i}.weight"), io)?,
                    get(&format!("layers.{i}.bias"), &io[1..])?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            mean: get("input.mean", &[input_dim])?,
            inv_std: get("input.inv_std", &[input_dim])?,
            layers,
            device: device.clone(),
        })
    }
}

fn layer_dims(input: usize, hidden: usize, classes: usize) -> Vec<usize> {
    if hidden == 0 {
        vec![input, classes]
    } else {
        vec![input, hidden, classes]
    }
}

/// Texts to train on: each text is one or more windows, each window a
/// feature vector (`dim` values; all concatenated in `x`), with the text's
/// class.
#[derive(Debug, Clone, Default)]
pub struct TrainSet {
    pub dim: usize,
    pub x: Vec<f32>,
    /// Class of each window (its text's).
    pub y: Vec<u32>,
    /// Windows `texts[i].0 .. texts[i].1` are text `i`'s.
    pub texts: Vec<(usize, usize)>,
}

impl TrainSet {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            ..Self::default()
        }
    }

    /// Adds a text of class `class` made of `windows` (at least one).
    pub fn push(&mut self, windows: &[&[f32]], class: u32) {
        let start = self.y.len();
        for w in windows {
            debug_assert_eq!(w.len(), self.dim);
            self.x.extend_from_slice(w);
            self.y.push(class);
        }
        self.texts.push((start, self.y.len()));
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The windows an epoch trains on and their weights, so that each text
    /// counts once: every window of a benign text (`1/n` each: each is
    /// benign); of an attack text, its most attack-like window by `probs`
    /// (multiple-instance learning: the attack may sit in one window of a
    /// long text, the rest of it benign), or all its windows (`1/n` each)
    /// without `probs`.
    fn selection(&self, probs: Option<&[Vec<f32>]>) -> Vec<(u32, f32)> {
        let mut out = Vec::with_capacity(self.len());
        for &(start, end) in &self.texts {
            let n = end - start;
            match probs {
                Some(p) if self.y[start] != 0 && n > 1 => {
                    let attack = |i: &usize| 1.0 - p[*i][0];
                    let worst = (start..end)
                        .max_by(|a, b| attack(a).total_cmp(&attack(b)))
                        .unwrap_or(start);
                    out.push((worst as u32, 1.0));
                }
                _ => out.extend((start..end).map(|i| (i as u32, 1.0 / n as f32))),
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Hidden layer width; 0 for logistic regression.
    pub hidden: usize,
    /// Most passes over the training rows.
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    /// Weigh each class by the inverse of its share (balanced classes).
    pub class_weighting: bool,
    /// Scale each input dimension to zero mean and unit variance. Right
    /// for dense sentence vectors; wrong for sparse n-gram buckets, where a
    /// rare bucket's tiny variance would blow its value up a thousandfold.
    pub standardise: bool,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            hidden: 256,
            epochs: 200,
            batch_size: 128,
            lr: 1e-3,
            weight_decay: 1e-2,
            patience: 12,
            class_weighting: true,
            standardise: true,
            seed: 42,
        }
    }
}

/// One epoch's losses (class-weighted cross-entropy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// The best validation loss so far.
    pub best: bool,
}

pub struct Trained {
    /// The head of the best epoch.
    pub head: Head,
    pub best_epoch: usize,
    pub epochs: Vec<Epoch>,
    pub class_weights: Vec<f32>,
}

/// SplitMix64: a tiny seeded generator, so that a seed fixes the
/// initial weights and the batch order on every machine.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next_u64() % (i as u64 + 1)) as usize);
        }
    }
}

/// Trains a head on `train`, stopping early on `val`'s loss; returns the
/// best epoch's head. `on_epoch` sees each epoch (a progress bar).
pub fn train_head(
    train: &TrainSet,
    val: &TrainSet,
    classes: usize,
    opts: &TrainOptions,
    on_epoch: &mut dyn FnMut(&Epoch),
) -> Result<Trained> {
    train_inner(train, val, classes, opts, on_epoch).map_err(inference)
}

fn class_weights(set: &TrainSet, classes: usize, balanced: bool) -> Vec<f32> {
    let mut per_class = vec![0f64; classes];
    for &(start, _) in &set.texts {
        per_class[set.y[start] as usize] += 1.0;
    }
    let total: f64 = per_class.iter().sum();
    per_class
        .iter()
        .map(|&c| match (balanced, c > 0.0) {
            (false, _) => 1.0,
            (true, true) => (total / (classes as f64 * c)) as f32,
            (true, false) => 0.0,
        })
        .collect()
}

/// Per-dimension mean and 1/std of the training rows.
fn standardisation(set: &TrainSet) -> (Vec<f32>, Vec<f32>) {
    let n = set.len().max(1) as f64;
    let mut mean = vec![0f64; set.dim];
    let mut sq = vec![0f64; set.dim];
    for row in set.x.chunks(set.dim) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += f64::from(v);
            sq[j] += f64::from(v) * f64::from(v);
        }
    }
    let mean: Vec<f64> = mean.iter().map(|m| m / n).collect();
    let inv_std = sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| (1.0 / (s / n - m * m).max(1e-12).sqrt()) as f32)
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), inv_std)
}

/// Windows and classes of a set as tensors, with the loss weights of
/// the windows an epoch trains on.
struct Batchable {
    x: Tensor,
    y: Tensor,
    w: Tensor,
}

impl Batchable {
    fn new(set: &TrainSet, device: &Device) -> candle_core::Result<Self> {
        Ok(Self {
            x: Tensor::from_slice(&set.x, (set.len(), set.dim), device)?,
            y: Tensor::from_slice(&set.y, set.len(), device)?,
            w: Tensor::zeros(set.len(), DType::F32, device)?,
        })
    }

    /// Weights `selection`'s windows (times their class weight), the rest 0.
    fn weigh(&mut self, set: &TrainSet, selection: &[(u32, f32)], cw: &[f32]) -> candle_core::Result<()> {
        let mut w = vec![0f32; set.len()];
        for &(i, weight) in selection {
            w[i as usize] = weight * cw[set.y[i as usize] as usize];
        }
        self.w = Tensor::from_vec(w, set.len(), self.x.device())?;
        Ok(())
    }

    fn rows(&self, idx: &[u32]) -> candle_core::Result<Self> {
        let idx = Tensor::from_slice(idx, idx.len(), self.x.device())?;
        Ok(Self {
            x: self.x.index_select(&idx, 0)?,
            y: self.y.index_select(&idx, 0)?,
            w: self.w.index_select(&idx, 0)?,
        })
    }
}

/// Class probabilities of every window of `b` under `layers`.
fn all_probs(
    mean: &Tensor,
    inv_std: &Tensor,
    layers: &[(Tensor, Tensor)],
    b: &Batchable,
) -> candle_core::Result<Vec<Vec<f32>>> {
    candle_nn::ops::softmax_last_dim(&Head::forward(mean, inv_std, layers, &b.x)?)?.to_vec2()
}

/// Weighted mean cross-entropy of `logits` against the set's classes.
fn loss(logits: &Tensor, b: &Batchable) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&b.y.unsqueeze(1)?, 1)?.squeeze(1)?;
    let total = b.w.sum_all()?.to_scalar::<f32>()?.max(f32::MIN_POSITIVE);
    (picked * &b.w)?.sum_all()?.affine(-1.0 / f64::from(total), 0.0)
}

fn train_inner(
    train: &TrainSet,
    val: &TrainSet,
    classes: usize,
    opts: &TrainOptions,
    on_epoch: &mut dyn FnMut(&Epoch),
) -> candle_core::Result<Trained> {
    if train.is_empty() || val.is_empty() || classes < 2 || train.dim != val.dim {
        candle_core::bail!(
            "training needs rows of one width on both sides and two classes or more \
             ({} training rows, {} validation rows, {classes} classes)",
            train.len(),
            val.len()
        );
    }
    let device = Device::Cpu;
    let mut rng = Rng(opts.seed);
    let (mean, inv_std) = if opts.standardise {
        standardisation(train)
    } else {
        (vec![0.0; train.dim], vec![1.0; train.dim])
    };
    let mean = Tensor::from_vec(mean, train.dim, &device)?;
    let inv_std = Tensor::from_vec(inv_std, train.dim, &device)?;
    // PyTorch's `nn.Linear` initialisation: U(-1/sqrt(in), 1/sqrt(in)).
    let mut vars = Vec::new();
    for io in layer_dims(train.dim, opts.hidden, classes).windows(2) {
        let bound = 1.0 / (io[0] as f64).sqrt();
        let mut init = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
                .collect()
        };
        let w = Var::from_tensor(&Tensor::from_vec(init(io[0] * io[1]), (io[0], io[1]), &device)?)?;
        let b = Var::from_tensor(&Tensor::from_vec(init(io[1]), io[1], &device)?)?;
        vars.push((w, b));
    }
    let params = ParamsAdamW {
        lr: opts.lr,
        weight_decay: opts.weight_decay,
        ..ParamsAdamW::default()
    };
    let mut optimizer = AdamW::new(
        vars.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect(),
        params,
    )?;
    let cw = class_weights(train, classes, opts.class_weighting);
    let mut all = Batchable::new(train, &device)?;
    let mut held_out = Batchable::new(val, &device)?;
    let layers = |vars: &[(Var, Var)]| -> Layers {
        vars.iter()
            .map(|(w, b)| (w.as_tensor().clone(), b.as_tensor().clone()))
            .collect()
    };
    // (validation loss, epoch, weights) of the best epoch so far.
    let mut best: Option<(f64, usize, Layers)> = None;
    let mut epochs = Vec::new();
    for epoch in 1..=opts.epochs.max(1) {
        // The first epoch sees every window; later ones an attack text's
        // most attack-like window under the current head.
        let probs = match epoch {
            1 => None,
            _ => Some(all_probs(&mean, &inv_std, &layers(&vars), &all)?),
        };
        let selection = train.selection(probs.as_deref());
        all.weigh(train, &selection, &cw)?;
        let mut order: Vec<u32> = selection.iter().map(|&(i, _)| i).collect();
        rng.shuffle(&mut order);
        let (mut sum, mut batches) = (0.0, 0usize);
        for idx in order.chunks(opts.batch_size.max(1)) {
            let b = all.rows(idx)?;
            let l = loss(&Head::forward(&mean, &inv_std, &layers(&vars), &b.x)?, &b)?;
            optimizer.backward_step(&l)?;
            sum += f64::from(l.to_scalar::<f32>()?);
            batches += 1;
        }
        let current = layers(&vars);
        let val_probs = all_probs(&mean, &inv_std, &current, &held_out)?;
        held_out.weigh(val, &val.selection(Some(&val_probs)), &cw)?;
        let val_loss = f64::from(
            loss(&Head::forward(&mean, &inv_std, &current, &held_out.x)?, &held_out)?.to_scalar::<f32>()?,
        );
        let improved = best.as_ref().is_none_or(|(b, _, _)| val_loss < *b);
        if improved {
            // Copies: the optimizer updates the variables in place.
            let copies = current
                .iter()
                .map(|(w, b)| Ok((w.copy()?, b.copy()?)))
                .collect::<candle_core::Result<_>>()?;
            best = Some((val_loss, epoch, copies));
        }
        let e = Epoch {
            epoch,
            train_loss: sum / batches.max(1) as f64,
            val_loss,
            best: improved,
        };
        on_epoch(&e);
        epochs.push(e);
        if best
            .as_ref()
            .is_some_and(|(_, at, _)| epoch - at >= opts.patience.max(1))
        {
            break;
        }
    }
    let Some((_, best_epoch, layers)) = best else {
        candle_core::bail!("no epoch was run");
    };
    Ok(Trained {
        head: Head {
            mean,
            inv_std,
            layers,
            device,
        },
        best_epoch,
        epochs,
        class_weights: cw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian-ish blobs in 4 dimensions, from the seeded generator.
    fn blobs(n: usize, seed: u64) -> TrainSet {
        let mut rng = Rng(seed);
        let mut set = TrainSet::new(4);
        for i in 0..n {
            let class = (i % 3 == 0) as u32;
            let shift = if class == 1 { 1.5 } else { -1.5 };
            let row: Vec<f32> = (0..4).map(|_| (shift + rng.unit() * 2.0 - 1.0) as f32).collect();
            set.push(&[&row], class);
        }
        set
    }

    #[test]
    fn a_separable_problem_is_learned_and_the_same_seed_gives_the_same_head() {
        let (train, val) = (blobs(300, 1), blobs(60, 2));
        for hidden in [0, 8] {
            let opts = TrainOptions {
                hidden,
                epochs: 40,
                lr: 1e-2,
                ..TrainOptions::default()
            };
            let a = train_head(&train, &val, 2, &opts, &mut |_| {}).unwrap();
            let b = train_head(&train, &val, 2, &opts, &mut |_| {}).unwrap();
            let rows: Vec<Vec<f32>> = val.x.chunks(4).map(<[f32]>::to_vec).collect();
            let (pa, pb) = (a.head.probs(&rows).unwrap(), b.head.probs(&rows).unwrap());
            assert_eq!(pa, pb);
            let right = pa
                .iter()
                .zip(&val.y)
                .filter(|(p, &y)| (p[1] > 0.5) == (y == 1))
                .count();
            assert_eq!(right, val.len(), "hidden {hidden}");
            assert_eq!(a.head.hidden(), hidden);
            // Balanced: the minority class (a third) weighs twice as much.
            assert!((a.class_weights[1] / a.class_weights[0] - 2.0).abs() < 0.05);
        }
    }

    #[test]
    fn an_attack_text_trains_on_its_worst_window_and_a_benign_one_on_all() {
        let mut set = TrainSet::new(1);
        set.push(&[&[0.0], &[1.0]], 0);
        set.push(&[&[2.0], &[3.0], &[4.0]], 1);
        set.push(&[&[5.0]], 1);
        let all = set.selection(None);
        assert_eq!(all.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(all[0].1, 0.5);
        assert!((all[2].1 - 1.0 / 3.0).abs() < 1e-6);
        let probs: Vec<Vec<f32>> = [0.9, 0.1, 0.8, 0.2, 0.6, 0.5]
            .iter()
            .map(|&b| vec![b, 1.0 - b])
            .collect();
        // Text 1's most attack-like window is 3 (benign 0.2); text 0 keeps both.
        assert_eq!(
            set.selection(Some(&probs)),
            [(0, 0.5), (1, 0.5), (3, 1.0), (5, 1.0)]
        );
        assert_eq!(set.texts, [(0, 2), (2, 5), (5, 6)]);
    }

    #[test]
    fn a_saved_head_loads_and_scores_alike() {
        let (train, val) = (blobs(90, 3), blobs(30, 4));
        let opts = TrainOptions {
            hidden: 4,
            epochs: 5,
            ..TrainOptions::default()
        };
        let t = train_head(&train, &val, 2, &opts, &mut |_| {}).unwrap();
        let dir = std::env::temp_dir().join(format!("ragd-head-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("head.safetensors");
        t.head.save(&path).unwrap();
        let loaded = Head::load(&path, 4, 4, 2, &Device::Cpu).unwrap();
        let rows = vec![vec![0.1, 0.2, 0.3, 0.4]];
        assert_eq!(loaded.probs(&rows).unwrap(), t.head.probs(&rows).unwrap());
        assert!(Head::load(&path, 4, 0, 2, &Device::Cpu).is_err());
        assert!(loaded.probs(&[vec![1.0]]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
