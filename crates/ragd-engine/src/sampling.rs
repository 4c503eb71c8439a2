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

/// Index of the largest logit (the first one on ties; NaN is never chosen
/// unless every logit is NaN or -inf, when it is 0).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_x = f32::NEG_INFINITY;
    for (i, &x) in logits.iter().enumerate() {
        if x > best_x {
            best = i;
            best_x = x;
        }
    }
    best as u32
}

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
mod tests {
    use super::*;

    fn params(temperature: f32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            seed: Some(seed),
            ..SamplingParams::default()
        }
    }

    /// `n` draws, each on a fresh copy of `logits`.
    fn draws(sampler: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
        (0..n)
            .map(|_| sampler.sample(&mut logits.to_vec(), &[], &[]).token)
            .collect()
    }

    fn frequencies(tokens: &[u32], vocab: usize) -> Vec<f64> {
        let mut f = vec![0.0; vocab];
        for &t in tokens {
            f[t as usize] += 1.0;
        }
        f.iter().map(|c| c / tokens.len() as f64).collect()
    }

    fn softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
        let max = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
        let e: Vec<f64> = logits
            .iter()
            .map(|&x| ((f64::from(x) - max) / temperature).exp())
            .collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    /// A deterministic, irregular row.
    fn bumpy_logits(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 % 1000) as f32 / 250.0) - 2.0).collect()
    }

    fn ln_probs(p: &[f32]) -> Vec<f32> {
        p.iter().map(|x| x.ln()).collect()
    }

    #[test]
    fn greedy_picks_argmax_lowest_index_on_ties() {
        let mut s = Sampler::new(SamplingParams::default());
        let logits = [0.1, 2.0, -1.0, 2.0, 1.9];
        for _ in 0..10 {
            let out = s.sample(&mut logits.to_vec(), &[], &[]);
            assert_eq!(
                out,
                Sampled {
                    token: 1,
                    logprobs: None
                }
            );
        }
        assert_eq!(argmax(&[f32::NAN, 1.0, f32::NAN]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
        assert_eq!(argmax(&[]), 0);
        // A negative or NaN temperature is greedy too.
        for t in [-1.0, f32::NAN] {
            let mut s = Sampler::new(params(t, 1));
            assert_eq!(s.sample(&mut logits.to_vec(), &[], &[]).token, 1);
        }
    }

    #[test]
    fn same_seed_same_tokens_different_seed_differs() {
        let logits = bumpy_logits(1000);
        let cfgs = [
            params(1.0, 0),
            SamplingParams {
                top_k: 50,
                top_p: 0.9,
                ..params(0.8, 0)
            },
            SamplingParams {
                min_p: 0.05,
                top_p: 0.95,
                ..params(1.3, 0)
            },
        ];
        for cfg in cfgs {
            let run = |seed| {
                draws(
                    &mut Sampler::new(SamplingParams {
                        seed: Some(seed),
                        ..cfg.clone()
                    }),
                    &logits,
                    300,
                )
            };
            let a = run(42);
            assert_eq!(a, run(42), "{cfg:?}");
            assert_ne!(a, run(43), "{cfg:?}");
            // And it does sample: not one token over and over.
            assert!(a.iter().any(|&t| t != a[0]));
        }
        // Unseeded samplers work (they are seeded from the OS).
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            ..SamplingParams::default()
        });
        assert!(draws(&mut s, &logits, 100).iter().all(|&t| t < 1000));
    }

    #[test]
    fn top_k_1_is_greedy_at_any_temperature() {
        for logits in [bumpy_logits(500), vec![0.5, 3.0, 3.0, -1.0]] {
            let best = argmax(&logits);
            for t in [0.01, 0.7, 1.0, 5.0, 1000.0] {
                let mut s = Sampler::new(SamplingParams {
                    top_k: 1,
                    ..params(t, 7)
                });
                assert!(draws(&mut s, &logits, 50).iter().all(|&x| x == best), "t={t}");
            }
        }
    }

    #[test]
    fn tiny_top_p_keeps_only_the_max() {
        let logits = [1.0, 1.2, 0.9, 1.19, 1.2];
        for top_p in [1e-6, 0.0, -1.0] {
            let mut s = Sampler::new(SamplingParams {
                top_p,
                ..params(3.0, 3)
            });
            assert!(
                draws(&mut s, &logits, 200).iter().all(|&x| x == 1),
                "top_p={top_p}"
            );
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // p = [0.5, 0.3, 0.15, 0.05]: top_p 0.75 needs the first two.
        let logits = ln_probs(&[0.5, 0.3, 0.15, 0.05]);
        let mut s = Sampler::new(SamplingParams {
            top_p: 0.75,
            ..params(1.0, 11)
        });
        let f = frequencies(&draws(&mut s, &logits, 20_000), 4);
        assert_eq!((f[2], f[3]), (0.0, 0.0));
        assert!((f[0] - 0.625).abs() < 0.02, "{f:?}");

        // A flat row over many chunks of the partial sort: the kept set is
        // exactly the reference nucleus.
        let logits: Vec<f32> = (0..1000).map(|i| -(i as f32) * 0.002).collect();
        let p = softmax(&logits, 1.0);
        let (mut cum, mut keep) = (0.0, 0);
        for x in &p {
            keep += 1;
            cum += x;
            if cum >= 0.5 {
                break;
            }
        }
        assert!(keep > 200 && keep < 600, "{keep}");
        let mut s = Sampler::new(SamplingParams {
            top_p: 0.5,
            ..params(1.0, 5)
        });
        let got = draws(&mut s, &logits, 20_000);
        // The last kept token is drawn too (about 50 times); rounding may
        // move the edge by one.
        let kept = *got.iter().max().unwrap() as usize + 1;
        assert!(kept == keep || kept == keep + 1, "{kept} vs {keep}");
    }

    #[test]
    fn top_k_keeps_the_k_most_likely_renormalised() {
        let logits = [1.0, 3.0, 2.0, 0.0, 2.5];
        let mut s = Sampler::new(SamplingParams {
            top_k: 2,
            ..params(1.0, 9)
        });
        let f = frequencies(&draws(&mut s, &logits, 20_000), 5);
        let p = softmax(&[3.0, 2.5], 1.0);
        assert_eq!((f[0], f[2], f[3]), (0.0, 0.0, 0.0));
        assert!((f[1] - p[0]).abs() < 0.02, "{f:?} {p:?}");

        // top_k then top_p on the top_k's distribution: [0.5, 0.3, 0.15 | 0.05]
        // over top_k=3 is [0.526, 0.316, 0.158]; top_p 0.8 keeps two.
        let logits = ln_probs(&[0.15, 0.5, 0.05, 0.3]);
        let mut s = Sampler::new(SamplingParams {
            top_k: 3,
            top_p: 0.8,
            ..params(1.0, 9)
        });
        let f = frequencies(&draws(&mut s, &logits, 10_000), 4);
        assert_eq!((f[0], f[2]), (0.0, 0.0), "{f:?}");
    }

    #[test]
    fn min_p_drops_tokens_below_a_fraction_of_the_max() {
        // p / p_max = [1, 0.6, 0.3, 0.1]: min_p 0.5 keeps the first two.
        let logits = ln_probs(&[0.5, 0.3, 0.15, 0.05]);
        for top_k in [0, 3] {
            let mut s = Sampler::new(SamplingParams {
                min_p: 0.5,
                top_k,
                ..params(1.0, 13)
            });
            let f = frequencies(&draws(&mut s, &logits, 20_000), 4);
            assert_eq!((f[2], f[3]), (0.0, 0.0), "top_k={top_k}");
            assert!((f[0] - 0.625).abs() < 0.02, "{f:?}");
        }
        // min_p >= 1 keeps only the max.
        let mut s = Sampler::new(SamplingParams {
            min_p: 1.5,
            ..params(1.0, 13)
        });
        assert!(draws(&mut s, &logits, 200).iter().all(|&t| t == 0));
    }

    #[test]
    fn temperature_sampling_follows_softmax() {
        let logits = [1.0, 2.0, 0.5, 3.0, -1.0];
        for t in [0.7, 1.0, 2.5] {
            let mut s = Sampler::new(params(t, 2024));
            let n = 40_000;
            let f = frequencies(&draws(&mut s, &logits, n), 5);
            let p = softmax(&logits, f64::from(t));
            for (fi, pi) in f.iter().zip(&p) {
                // 5 standard deviations.
                let tol = 5.0 * (pi * (1.0 - pi) / n as f64).sqrt() + 1e-3;
                assert!((fi - pi).abs() < tol, "t={t}: {f:?} vs {p:?}");
            }
        }
    }

    #[test]
    fn repetition_penalty_applies_once_per_distinct_token() {
        let greedy = |logits: &[f32], rp: f32, prompt: &[u32], generated: &[u32]| {
            let mut s = Sampler::new(SamplingParams {
                repetition_penalty: rp,
                ..SamplingParams::default()
            });
            s.sample(&mut logits.to_vec(), prompt, generated).token
        };
        // Positive logit: divided. 2.0 / 1.2 = 1.67 < 1.9.
        assert_eq!(greedy(&[2.0, 1.9, 0.5], 1.0, &[0], &[]), 0);
        assert_eq!(greedy(&[2.0, 1.9, 0.5], 1.2, &[0], &[]), 1);
        // Negative logit: multiplied. -1.0 * 1.2 = -1.2 < -1.1.
        assert_eq!(greedy(&[-1.0, -1.1], 1.2, &[], &[0]), 1);
        // Once, however often it occurs: 2.0 / 1.2 = 1.67 > 1.5 (1.16 if thrice).
        assert_eq!(greedy(&[2.0, 1.5], 1.2, &[0, 0], &[0]), 0);
        // Out-of-vocabulary ids are ignored.
        assert_eq!(greedy(&[2.0, 1.5], 1.2, &[7], &[99]), 0);
    }

    #[test]
    fn presence_and_frequency_penalties_count_generated_tokens_only() {
        let greedy = |logits: &[f32], pp: f32, fp: f32, prompt: &[u32], generated: &[u32]| {
            let p = SamplingParams {
                presence_penalty: pp,
                frequency_penalty: fp,
                ..SamplingParams::default()
            };
            Sampler::new(p)
                .sample(&mut logits.to_vec(), prompt, generated)
                .token
        };
        let logits = [1.0, 0.8];
        // Presence: once. 1.0 - 0.3 < 0.8; 1.0 - 0.1 > 0.8 (not 3 * 0.1).
        assert_eq!(greedy(&logits, 0.3, 0.0, &[], &[0, 0, 0]), 1);
        assert_eq!(greedy(&logits, 0.1, 0.0, &[], &[0, 0, 0]), 0);
        // Not for prompt tokens.
        assert_eq!(greedy(&logits, 1.0, 1.0, &[0, 0], &[]), 0);
        // Frequency: per occurrence. 1.0 - 3 * 0.1 < 0.8; 1.0 - 0.1 > 0.8.
        assert_eq!(greedy(&logits, 0.0, 0.1, &[], &[0, 0, 0]), 1);
        assert_eq!(greedy(&logits, 0.0, 0.1, &[], &[0]), 0);
        // Negative penalties encourage repetition.
        assert_eq!(greedy(&[0.8, 1.0], -0.5, 0.0, &[], &[0]), 0);
    }

    #[test]
    fn penalties_compose_in_order() {
        let p = SamplingParams {
            repetition_penalty: 2.0,
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..SamplingParams::default()
        };
        let mut s = Sampler::new(p);
        let mut logits = vec![2.0, -1.0, 0.5, 0.1];
        let out = s.sample(&mut logits, &[0, 1], &[0, 0, 2]);
        // 0: 2 / 2 - 0.5 - 2 * 0.25; 1: -1 * 2; 2: 0.5 / 2 - 0.5 - 0.25; 3: untouched.
        assert_eq!(logits, vec![0.0, -2.0, -0.5, 0.1]);
        assert_eq!(out.token, 3);
        // The scratch counters are left clean: the same call gives the same row.
        let mut again = vec![2.0, -1.0, 0.5, 0.1];
        s.sample(&mut again, &[0, 1], &[0, 0, 2]);
        assert_eq!(again, logits);
    }

    #[test]
    fn logprobs_are_a_normalised_log_softmax_most_likely_first() {
        let logits = [0.3, -2.0, 4.0, 1.5, 1.5, 0.0, -7.0, 2.2];
        let mut s = Sampler::new(SamplingParams {
            logprobs: Some(20),
            ..SamplingParams::default()
        });
        let out = s.sample(&mut logits.to_vec(), &[], &[]);
        let lp = out.logprobs.unwrap();
        assert_eq!(out.token, 2);
        assert_eq!(lp.top.len(), logits.len());
        let sum: f64 = lp.top.iter().map(|&(_, l)| f64::from(l).exp()).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        assert_eq!(lp.top[0], (2, lp.logprob));
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
        // Ties: the lower id first.
        assert_eq!((lp.top[2].0, lp.top[3].0), (3, 4));
        let p = softmax(&logits, 1.0);
        for &(t, l) in &lp.top {
            assert!((f64::from(l) - p[t as usize].ln()).abs() < 1e-5);
        }

        // k limits the list; k over 20 is capped.
        let big = bumpy_logits(200);
        for (k, want) in [(0, 0), (3, 3), (100, 20)] {
            let mut s = Sampler::new(SamplingParams {
                logprobs: Some(k),
                ..params(1.0, 1)
            });
            let out = s.sample(&mut big.clone(), &[], &[]);
            let lp = out.logprobs.unwrap();
            assert_eq!(lp.top.len(), want);
            let p = softmax(&big, 1.0);
            assert!((f64::from(lp.logprob) - p[out.token as usize].ln()).abs() < 1e-5);
            let mut sorted: Vec<usize> = (0..big.len()).collect();
            sorted.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let ids: Vec<usize> = lp.top.iter().map(|&(t, _)| t as usize).collect();
            assert_eq!(ids, sorted[..want]);
        }
    }

    #[test]
    fn logprobs_are_stable_for_large_logits() {
        let logits = [1000.0, 999.0, -1000.0];
        let mut s = Sampler::new(SamplingParams {
            logprobs: Some(3),
            ..SamplingParams::default()
        });
        let lp = s.sample(&mut logits.to_vec(), &[], &[]).logprobs.unwrap();
        let want0 = -(1.0 + (-1.0f64).exp()).ln();
        assert!((f64::from(lp.logprob) - want0).abs() < 1e-5);
        assert!((f64::from(lp.top[1].1) - (want0 - 1.0)).abs() < 1e-5);
        assert!(lp.top.iter().all(|&(_, l)| l.is_finite()));
    }

    #[test]
    fn logprobs_come_from_the_raw_logits() {
        // The penalty moves the choice to token 1; logprobs stay raw.
        let logits = [3.0, 2.9, 0.0];
        let p = SamplingParams {
            repetition_penalty: 10.0,
            frequency_penalty: 1.0,
            temperature: 0.5,
            top_k: 1,
            logprobs: Some(2),
            ..SamplingParams::default()
        };
        let mut s = Sampler::new(p);
        let out = s.sample(&mut logits.to_vec(), &[0], &[0]);
        assert_eq!(out.token, 1);
        let lp = out.logprobs.unwrap();
        let raw = softmax(&logits, 1.0);
        assert!((f64::from(lp.logprob) - raw[1].ln()).abs() < 1e-5);
        assert_eq!(lp.top.iter().map(|&(t, _)| t).collect::<Vec<_>>(), vec![0, 1]);
        assert!((f64::from(lp.top[0].1) - raw[0].ln()).abs() < 1e-5);
    }

    #[test]
    fn no_nan_on_infinite_or_masked_logits() {
        let ninf = f32::NEG_INFINITY;
        let masked = [ninf, 1.0, ninf, 0.5, f32::NAN, ninf];
        let cfgs = [
            SamplingParams::default(),
            params(1.0, 1),
            SamplingParams {
                top_k: 3,
                top_p: 0.9,
                min_p: 0.1,
                ..params(0.8, 1)
            },
            SamplingParams {
                top_p: 0.5,
                ..params(2.0, 1)
            },
            SamplingParams {
                repetition_penalty: 1.3,
                presence_penalty: 0.2,
                ..params(1.0, 1)
            },
        ];
        for cfg in cfgs {
            let mut s = Sampler::new(SamplingParams {
                logprobs: Some(5),
                ..cfg.clone()
            });
            for _ in 0..100 {
                let out = s.sample(&mut masked.to_vec(), &[0, 1], &[2]);
                assert!(out.token == 1 || out.token == 3, "{cfg:?}: {out:?}");
                let lp = out.logprobs.unwrap();
                assert!(lp.logprob.is_finite());
                assert_eq!(lp.top.iter().map(|&(t, _)| t).collect::<Vec<_>>(), vec![1, 3]);
                assert!(lp.top.iter().all(|&(_, l)| l.is_finite()));
            }
        }
        // Nothing above -inf: token 0, uniform logprobs.
        let mut s = Sampler::new(SamplingParams {
            logprobs: Some(2),
            ..params(1.0, 1)
        });
        let out = s.sample(&mut [ninf; 4], &[], &[]);
        assert_eq!(out.token, 0);
        let lp = out.logprobs.unwrap();
        assert!((lp.logprob + 4f32.ln()).abs() < 1e-6);
        assert_eq!(lp.top, vec![(0, lp.logprob), (1, lp.logprob)]);
        // A +inf logit takes all the mass.
        let out = s.sample(&mut [0.0, f32::INFINITY, 1.0], &[], &[]);
        assert_eq!(out.token, 1);
        assert_eq!(out.logprobs.unwrap().top, vec![(1, 0.0)]);
        // A vanishing temperature is greedy, not NaN.
        let mut s = Sampler::new(params(f32::from_bits(1), 1));
        assert_eq!(s.sample(&mut [0.0, 2.0, 1.0], &[], &[]).token, 1);
    }
}
