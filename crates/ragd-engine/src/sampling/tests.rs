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
