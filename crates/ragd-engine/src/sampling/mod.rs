//! Choosing the next token from a row of logits.
//!
//! [`Sampler::sample`] works in this order:
//!
//! 1. logprobs (when asked for) are taken from the raw logits: the
//!    log-softmax of the row as passed in, before anything below;
//! 2. penalties, in place: `repetition_penalty` over the distinct tokens of
//!    prompt and generated text (HF/llama.cpp: a positive logit is divided by
//!    it, a negative one multiplied), then OpenAI's `presence_penalty` (once
//!    per distinct generated token) and `frequency_penalty` (per occurrence);
//! 3. temperature 0: argmax (the lowest index on ties), nothing else;
//! 4. otherwise temperature scaling, `top_k`, `top_p` (measured on the
//!    distribution left by `top_k`), `min_p` (relative to the most likely
//!    token), and a draw from what is left, renormalised.
//!
//! Each [`Sampler`] has its own random generator (ChaCha8), seeded from
//! `seed` when one is given, so the same seed and the same logits give the
//! same tokens; otherwise from the operating system.
//!
//! Cost per call is a few passes over the row: no full sort (top_k selects,
//! top_p sorts only as many candidates as it needs), and the greedy path is a
//! plain argmax that allocates nothing.

use std::cmp::Ordering;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// At most this many alternatives are reported per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// How one sequence picks its tokens. The defaults sample nothing away:
/// temperature 0 means greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy (argmax); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches top_p; 1 = off.
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one; 0 = off.
    pub min_p: f32,
    /// Same seed, same params, same prompt: same tokens. None = random.
    pub seed: Option<u64>,
    /// OpenAI: subtracted once from the logit of every token already generated.
    pub presence_penalty: f32,
    /// OpenAI: subtracted per occurrence of a token already generated.
    pub frequency_penalty: f32,
    /// HF/llama.cpp style over prompt and generated tokens; 1 = off.
    pub repetition_penalty: f32,
    /// None: no logprobs. Some(k): the chosen token's logprob and the k
    /// most likely alternatives (k <= 20).
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            logprobs: None,
        }
    }
}

/// Log-probabilities of a chosen token, from the model's raw distribution
/// (log-softmax of the logits before penalties and temperature).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// Never NaN; `-inf` only for a token the raw distribution gives no mass.
    pub logprob: f32,
    /// The most likely tokens and their logprobs, most likely first (the
    /// lowest id first on ties). Tokens of probability 0 are left out, so it
    /// may be shorter than asked.
    pub top: Vec<(u32, f32)>,
}

/// One sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    pub logprobs: Option<TokenLogprob>,
}

/// Per-sequence sampling state (its random generator and scratch buffers,
/// reused from call to call).
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// (token, logit or weight) of the tokens still in the running.
    candidates: Vec<(u32, f32)>,
    /// Per-vocabulary counters for the penalties; all zero between calls.
    counts: Vec<u32>,
    /// The raw row, kept for the logprob of the chosen token when penalties
    /// modify the logits.
    raw: Vec<f32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        Self {
            params,
            rng,
            candidates: Vec::new(),
            counts: Vec::new(),
            raw: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Whether this sampler only ever takes the most likely raw logit: greedy,
    /// no penalties, no logprobs. Such a sequence needs no logits row, only
    /// the argmax ([`ragd_core::Generator::step_greedy`]).
    pub fn is_plain_greedy(&self) -> bool {
        let t = self.params.temperature;
        (t.is_nan() || t <= 0.0) && !self.has_penalties() && self.params.logprobs.is_none()
    }

    /// Picks the next token. `logits` may be modified in place (penalties).
    pub fn sample(&mut self, logits: &mut [f32], prompt: &[u32], generated: &[u32]) -> Sampled {
        let penalised = self.has_penalties();
        let raw_stats = self.params.logprobs.map(|k| {
            let norm = LogNorm::of(logits);
            (norm, top_logprobs(logits, k.min(MAX_TOP_LOGPROBS), norm))
        });
        if raw_stats.is_some() && penalised {
            self.raw.clear();
            self.raw.extend_from_slice(logits);
        }
        if penalised {
            self.apply_penalties(logits, prompt, generated);
        }

        // A zero, negative or NaN temperature is greedy.
        let token = if self.params.temperature > 0.0 {
            self.draw(logits)
        } else {
            argmax(logits)
        };

        let logprobs = raw_stats.map(|(norm, top)| {
            let raw = if penalised { &self.raw[..] } else { &logits[..] };
            let x = raw.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY);
            TokenLogprob {
                logprob: norm.logprob(x),
                top,
            }
        });
        Sampled { token, logprobs }
    }

    fn repetition_penalty(&self) -> Option<f32> {
        let rp = self.params.repetition_penalty;
        (rp.is_finite() && rp > 0.0 && rp != 1.0).then_some(rp)
    }

    fn openai_penalties(&self) -> Option<(f32, f32)> {
        let (pp, fp) = (self.params.presence_penalty, self.params.frequency_penalty);
        (pp.is_finite() && fp.is_finite() && (pp != 0.0 || fp != 0.0)).then_some((pp, fp))
    }

    fn has_penalties(&self) -> bool {
        self.repetition_penalty().is_some() || self.openai_penalties().is_some()
    }

    /// Applies the penalties in place. Token ids outside the row are ignored.
    fn apply_penalties(&mut self, logits: &mut [f32], prompt: &[u32], generated: &[u32]) {
        let (rp, openai) = (self.repetition_penalty(), self.openai_penalties());
        let n = logits.len();
        if self.counts.len() < n {
            self.counts.resize(n, 0);
        }
        let counts = &mut self.counts;
        let in_row = |t: &&u32| (**t as usize) < n;

        if let Some(rp) = rp {
            let seen = prompt.iter().chain(generated).filter(in_row);
            for &t in seen.clone() {
                let t = t as usize;
                if counts[t] == 0 {
                    counts[t] = 1;
                    let x = logits[t];
                    logits[t] = if x > 0.0 { x / rp } else { x * rp };
                }
            }
            for &t in seen {
                counts[t as usize] = 0;
            }
        }

        if let Some((pp, fp)) = openai {
            for &t in generated.iter().filter(in_row) {
                counts[t as usize] += 1;
            }
            for &t in generated.iter().filter(in_row) {
                let t = t as usize;
                let c = counts[t];
                if c > 0 {
                    logits[t] -= pp + c as f32 * fp;
                    counts[t] = 0;
                }
            }
        }
    }

    /// Temperature, top_k, top_p, min_p, then a draw. Temperature > 0.
    fn draw(&mut self, logits: &[f32]) -> u32 {
        let SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
            ..
        } = self.params;
        if top_k == 1 {
            return argmax(logits);
        }
        let max = max_logit(logits);
        let inv_t = 1.0 / temperature;
        if !max.is_finite() || !inv_t.is_finite() {
            // No finite logit, a +inf one, or a temperature so small that
            // only the maximum has any mass.
            return argmax(logits);
        }
        // Relative probability to the most likely token: in (0, 1], 1 for the max.
        let weight = |x: f32| ((x - max) * inv_t).exp();
        let min_p = if min_p > 0.0 { min_p.min(1.0) } else { 0.0 };

        let c = &mut self.candidates;
        c.clear();
        // The mass of the distribution top_p is measured against (after top_k).
        let mut mass = 0.0f64;
        let filter_min_p_later = top_k > 0 && top_k < logits.len();
        if filter_min_p_later {
            // Select the top_k on the logits (the weight is monotonic in
            // them), then weigh only those.
            c.extend(
                logits
                    .iter()
                    .enumerate()
                    .filter(|(_, &x)| x > f32::NEG_INFINITY)
                    .map(|(i, &x)| (i as u32, x)),
            );
            if top_k < c.len() {
                c.select_nth_unstable_by(top_k - 1, by_weight_desc);
                c.truncate(top_k);
            }
            for e in c.iter_mut() {
                e.1 = weight(e.1);
                mass += f64::from(e.1);
            }
            c.retain(|e| e.1 > 0.0);
        } else {
            // No top_k: min_p (a threshold on the weight) filters while weighing.
            for (i, &x) in logits.iter().enumerate() {
                if x > f32::NEG_INFINITY {
                    let w = weight(x);
                    mass += f64::from(w);
                    if w > 0.0 && w >= min_p {
                        c.push((i as u32, w));
                    }
                }
            }
        }

        if top_p < 1.0 {
            let keep = nucleus_len(c, f64::from(top_p.max(0.0)) * mass);
            c.truncate(keep.max(1));
        }
        if filter_min_p_later && min_p > 0.0 {
            c.retain(|e| e.1 >= min_p);
        }

        let total: f64 = c.iter().map(|e| f64::from(e.1)).sum();
        let u = self.rng.random::<f64>() * total;
        let mut cum = 0.0f64;
        for &(token, w) in c.iter() {
            cum += f64::from(w);
            if cum > u {
                return token;
            }
        }
        // Rounding: the last candidate (the max is always among them).
        c.last().map_or_else(|| argmax(logits), |e| e.0)
    }
}

pub use ragd_core::argmax;

/// The largest logit, NaN skipped (-inf when there is none).
fn max_logit(logits: &[f32]) -> f32 {
    logits
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// Most likely first, then the lowest token id.
fn by_weight_desc(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Sorts the head of `c` (most likely first) only as far as needed, and
/// returns how many of the most likely candidates it takes for their
/// weights to add up to `target`: at least 1, all of them if they never do.
/// Works in chunks of doubling size (select, then sort the chunk), so a
/// peaked distribution costs about one linear pass.
fn nucleus_len(c: &mut [(u32, f32)], target: f64) -> usize {
    let mut cum = 0.0f64;
    let mut done = 0;
    let mut chunk = 64;
    while done < c.len() {
        let rest = &mut c[done..];
        let n = chunk.min(rest.len());
        if n < rest.len() {
            rest.select_nth_unstable_by(n - 1, by_weight_desc);
        }
        rest[..n].sort_unstable_by(by_weight_desc);
        for (j, e) in rest[..n].iter().enumerate() {
            cum += f64::from(e.1);
            if cum >= target {
                return done + j + 1;
            }
        }
        done += n;
        chunk *= 2;
    }
    c.len()
}

/// The normaliser of a row's log-softmax, computed stably.
#[derive(Debug, Clone, Copy)]
enum LogNorm {
    /// The row's max, and the log of the sum of exp(logit - max): kept
    /// apart so that a logprob near 0 keeps its precision at large logits.
    Finite { max: f32, ln_sum: f32 },
    /// Some logits are +inf: they share all the mass (ln of how many).
    PosInf(f32),
    /// No logit above -inf (or only NaN): uniform (ln of the row's length).
    Uniform(f32),
}

impl LogNorm {
    fn of(logits: &[f32]) -> Self {
        let max = max_logit(logits);
        if max == f32::INFINITY {
            let n = logits.iter().filter(|&&x| x == f32::INFINITY).count();
            LogNorm::PosInf((n as f32).ln())
        } else if max == f32::NEG_INFINITY {
            LogNorm::Uniform((logits.len().max(1) as f32).ln())
        } else {
            let sum: f64 = logits
                .iter()
                .filter(|&&x| x > f32::NEG_INFINITY)
                .map(|&x| f64::from((x - max).exp()))
                .sum();
            LogNorm::Finite {
                max,
                ln_sum: sum.ln() as f32,
            }
        }
    }

    /// log-softmax of one logit of the row. Never NaN.
    fn logprob(self, x: f32) -> f32 {
        match self {
            LogNorm::Finite { max, ln_sum } if x > f32::NEG_INFINITY => ((x - max) - ln_sum).min(0.0),
            LogNorm::PosInf(ln_n) if x == f32::INFINITY => -ln_n,
            LogNorm::Uniform(ln_n) => -ln_n,
            _ => f32::NEG_INFINITY,
        }
    }
}

/// The k most likely tokens of the row with their logprobs, most likely
/// first, lowest id first on ties; tokens of probability 0 left out.
/// One pass, k <= 20.
fn top_logprobs(logits: &[f32], k: usize, norm: LogNorm) -> Vec<(u32, f32)> {
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return top;
    }
    for (i, &x) in logits.iter().enumerate() {
        let lp = norm.logprob(x);
        if lp == f32::NEG_INFINITY || (top.len() == k && lp <= top[k - 1].1) {
            continue;
        }
        let pos = top.partition_point(|&(_, v)| v >= lp);
        top.insert(pos, (i as u32, lp));
        top.truncate(k);
    }
    top
}

#[cfg(test)]
mod tests;
