//! The scheduling decisions of continuous batching, kept pure and
//! synchronous (no threads, no channels, no model) so they can be tested
//! directly.
//!
//! Each step, [`Scheduler::schedule`] decides which sequences run and what
//! chunk each one feeds:
//!
//! 1. Running sequences are visited in admission order. A decoding sequence
//!    (its prompt is in the cache; only its last sampled token is not) feeds
//!    one token; a sequence still prefilling feeds the next chunk of its
//!    prompt, as much as the token budget leaves once every pending decode
//!    has its token. Decodes are placed first in the step.
//! 2. Each chunk gets the KV blocks for the positions it writes. When the
//!    pool is short, a prefill chunk shrinks to what is free; when not even
//!    one token fits, the most recently admitted running sequence is
//!    preempted (its blocks freed, it goes back to the front of the waiting
//!    queue, to be recomputed later from its prompt and the tokens generated
//!    so far). Victims are always taken from the end of the admission order,
//!    so the oldest sequence always makes progress.
//! 3. If nothing was preempted, waiting sequences are admitted while the
//!    token budget, `max_running` and free blocks allow, leaving a watermark
//!    of 1% of the blocks free while others run (room for their next
//!    decodes). Preempted sequences come first (the oldest evicted first);
//!    then fresh requests, round-robin across tenants (one request per
//!    tenant per turn) and first come, first served within a tenant, so one
//!    tenant's long queue does not hold back another tenant's request. The
//!    first in line that cannot get a block stops admission: no overtaking.
//!
//! With the prefix cache on ([`Scheduler::with_prefix_cache`]), a sequence
//! being admitted first adopts the longest run of cached full blocks of
//! its tenant matching its tokens (never all of them: its last token is
//! always computed, for its logits), starts computed up to there and
//! prefills only the rest; blocks a committed chunk fills join the cache,
//! and stay there (evictable, LRU) after the sequence ends or is
//! preempted, so a restart finds its own blocks again. Cached blocks count
//! as free room: reserving evicts them before anything is preempted.
//!
//! Priority (a request's `priority`; lower is served earlier, 0 by default)
//! orders admission only: waiting requests are grouped into classes by
//! priority and the best class goes first, with the order above within a
//! class; a class passed over 8 times in a row (`PASS_OVER_LIMIT`) goes next,
//! so lower priorities are slowed, never starved. A preempted sequence keeps
//! its priority: it restarts before fresh requests of the same or a worse
//! priority, after those of a better one (and, likewise, once better fresh
//! ones went first 8 times in a row, it goes next). Running sequences are never
//! preempted for a better waiting one, and preemption still evicts the most
//! recently admitted. With every priority equal this is the order above.

use std::collections::VecDeque;

use ragd_core::SeqChunk;

use crate::fair::{drain_where, FairQueue, Priority, TenantKey, PASS_OVER_LIMIT};
use crate::kv_blocks::{BlockHash, BlockPool, BlockTable};

/// The scheduler's id of a sequence.
pub type SeqId = u64;

/// One sequence: its tokens (prompt, then the tokens generated so far), how
/// many of them are in the KV cache, its blocks, and the caller's `payload`
/// (the sampler and the reply channel in the engine).
pub struct Sequence<T> {
    id: SeqId,
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Positions `0..computed` are in the KV cache.
    computed: usize,
    table: BlockTable,
    /// Hashes of its full blocks so far (prefix cache; see `kv_blocks`).
    hashes: Vec<BlockHash>,
    /// Leading blocks of `table` already offered to the prefix cache.
    registered: usize,
    /// Prompt tokens found in the prefix cache at its first admission.
    cached: usize,
    /// Whether it was ever admitted (false: a fresh request in the queue).
    started: bool,
    tenant: Option<TenantKey>,
    priority: Priority,
    pub payload: T,
}

impl<T> Sequence<T> {
    pub fn id(&self) -> SeqId {
        self.id
    }

    /// Prompt and generated tokens.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn prompt(&self) -> &[u32] {
        &self.tokens[..self.prompt_len]
    }

    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// Positions already in the KV cache.
    pub fn computed(&self) -> usize {
        self.computed
    }

    pub fn blocks(&self) -> &[u32] {
        self.table.blocks()
    }

    /// Prompt tokens taken from the prefix cache at its first admission
    /// (not prefilled).
    pub fn cached_tokens(&self) -> usize {
        self.cached
    }

    /// Whether it was ever admitted.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whose request it is (`None`: submitted without a tenant).
    pub fn tenant(&self) -> Option<&TenantKey> {
        self.tenant.as_ref()
    }

    /// Its priority (lower is admitted earlier; see the module docs).
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Appends a sampled token; the next step feeds it (a decode).
    pub fn push_token(&mut self, token: u32) {
        self.tokens.push(token);
    }

    /// Prompt, generated tokens and the payload at once (for sampling).
    pub fn parts_mut(&mut self) -> (&[u32], &[u32], &mut T) {
        let (prompt, generated) = self.tokens.split_at(self.prompt_len);
        (prompt, generated, &mut self.payload)
    }

    /// Tokens not yet in the cache.
    fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }

    /// Past its prefill: only the last sampled token is to be fed.
    fn is_decode(&self) -> bool {
        self.computed > 0 && self.pending() == 1
    }

    /// Lets go of its blocks (preempted, or not admitted after all): it
    /// will be recomputed from the start (or from what the prefix cache
    /// still holds).
    fn forget_blocks(&mut self) {
        self.table.release();
        self.computed = 0;
        self.registered = 0;
    }

    /// Offers its full, computed blocks not offered yet to the prefix cache.
    fn register_full_blocks(&mut self, pool: &BlockPool) {
        let full = self.computed / pool.block_size();
        if full <= self.registered {
            return;
        }
        pool.extend_hashes(
            &mut self.hashes,
            self.tenant.as_ref(),
            &self.tokens[..full * pool.block_size()],
        );
        for i in self.registered..full {
            self.table.register(i, self.tenant.as_ref(), self.hashes[i]);
        }
        self.registered = full;
    }
}

/// Adopts the longest cached run of `seq`'s full blocks (its tenant's
/// only), leaving at least its last token to compute (its logits are
/// needed); returns the tokens adopted, now `seq`'s computed length.
fn adopt_cached_prefix<T>(pool: &BlockPool, seq: &mut Sequence<T>) -> usize {
    let bs = pool.block_size();
    let most = (seq.tokens.len() - 1) / bs;
    pool.extend_hashes(&mut seq.hashes, seq.tenant.as_ref(), &seq.tokens[..most * bs]);
    let adopted = seq.table.adopt_cached(seq.tenant.as_ref(), &seq.hashes[..most]);
    seq.computed = adopted * bs;
    seq.registered = adopted;
    seq.computed
}

/// One sequence's chunk in a step: `tokens[start..start + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedChunk {
    pub id: SeqId,
    pub start: usize,
    pub len: usize,
    /// The chunk ends at the sequence's last token: sample after it.
    pub want_logits: bool,
    /// Index in the running list, valid until the scheduler changes.
    index: usize,
}

impl PlannedChunk {
    pub fn is_decode(&self) -> bool {
        self.start > 0 && self.len == 1 && self.want_logits
    }
}

/// What [`Scheduler::schedule`] decided for one step.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepPlan {
    /// Decodes first, then prefill chunks (running ones, then admitted).
    pub chunks: Vec<PlannedChunk>,
    /// Sequences preempted this step, in the order they were evicted.
    pub preempted: Vec<SeqId>,
    /// Fresh requests admitted for the first time this step.
    pub admitted: Vec<SeqId>,
    /// Tokens of the sequences admitted this step (restarts included) that
    /// were looked up in the prefix cache, and those found there.
    pub cache_queried_tokens: usize,
    pub cache_hit_tokens: usize,
    /// Cached blocks evicted this step to make room.
    pub cache_evictions: u64,
}

impl StepPlan {
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn num_tokens(&self) -> usize {
        self.chunks.iter().map(|c| c.len).sum()
    }

    /// Rows of logits the model returns for this step.
    pub fn num_logits(&self) -> usize {
        self.chunks.iter().filter(|c| c.want_logits).count()
    }
}

/// Whether the best waiting restart (of priority `restart`) is admitted
/// before the fresh queue's next (of priority `fresh`; `None`: no fresh
/// request waits), fresh ones having gone first `passed_over` times in a
/// row while restarts waited.
fn restart_first(restart: Priority, fresh: Option<Priority>, passed_over: u32) -> bool {
    passed_over >= PASS_OVER_LIMIT || fresh.is_none_or(|f| restart <= f)
}

/// Where the next sequence to admit waits.
#[derive(Clone, Copy)]
enum InLine {
    /// `restarts[i]`.
    Restart(usize),
    /// The front of the fresh queue.
    Fresh,
}

/// Waiting and running sequences, and the decisions over them.
pub struct Scheduler<T> {
    pool: BlockPool,
    max_batch_tokens: usize,
    max_running: usize,
    /// Preempted sequences, admitted again before any fresh request of
    /// the same or a worse priority; the oldest evicted first.
    restarts: VecDeque<Sequence<T>>,
    /// Fresh requests admitted (with a better priority) while restarts
    /// waited, since a restart last was.
    restarts_passed_over: u32,
    /// Fresh requests, by priority class, round-robin across tenants.
    fresh: FairQueue<Sequence<T>>,
    /// In admission order: the last one is the next victim.
    running: Vec<Sequence<T>>,
    next_id: SeqId,
    preemptions: u64,
    /// Blocks admission leaves free while sequences run (1% of the cache).
    watermark: usize,
    /// Reuse cached full blocks of a prompt's prefix (see `kv_blocks`).
    prefix_cache: bool,
}

impl<T> Scheduler<T> {
    /// Budgets below 1 are raised to 1; `max_running` is capped at
    /// `max_batch_tokens`, so every running sequence can decode every step.
    pub fn new(pool: BlockPool, max_batch_tokens: usize, max_running: usize) -> Self {
        let max_batch_tokens = max_batch_tokens.max(1);
        Self {
            max_batch_tokens,
            max_running: max_running.clamp(1, max_batch_tokens),
            restarts: VecDeque::new(),
            restarts_passed_over: 0,
            fresh: FairQueue::default(),
            running: Vec::new(),
            next_id: 0,
            preemptions: 0,
            watermark: pool.total_blocks().div_ceil(100),
            prefix_cache: false,
            pool,
        }
    }

    /// Turns automatic prefix caching on or off (off by default): full
    /// blocks whose KV is written are kept, by content and tenant, after
    /// their sequence ends, and an admitted sequence adopts the longest
    /// cached run of its tokens' blocks and prefills only the rest.
    pub fn with_prefix_cache(mut self, on: bool) -> Self {
        self.prefix_cache = on;
        self
    }

    /// Blocks admission leaves free while sequences run (default: 1% of
    /// the cache, at least 1).
    pub fn with_watermark(mut self, blocks: usize) -> Self {
        self.watermark = blocks;
        self
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// Queues a fresh request without a tenant (see [`add_as`](Self::add_as)).
    pub fn add(&mut self, prompt: Vec<u32>, payload: T) -> SeqId {
        self.add_as(None, prompt, payload)
    }

    /// Queues a fresh request at the back of its tenant's line (requests
    /// without a tenant share one line). `prompt` must not be empty, and
    /// must fit the whole cache with everything it will generate (the
    /// caller validates), or it can never run.
    pub fn add_as(&mut self, tenant: Option<TenantKey>, prompt: Vec<u32>, payload: T) -> SeqId {
        self.add_with_priority(tenant, 0, prompt, payload)
    }

    /// [`add_as`](Self::add_as) with a priority: lower values are admitted
    /// earlier (see the module docs); 0 is the default.
    pub fn add_with_priority(
        &mut self,
        tenant: Option<TenantKey>,
        priority: Priority,
        prompt: Vec<u32>,
        payload: T,
    ) -> SeqId {
        assert!(!prompt.is_empty(), "empty prompt");
        let id = self.next_id;
        self.next_id += 1;
        let seq = Sequence {
            id,
            prompt_len: prompt.len(),
            tokens: prompt,
            computed: 0,
            table: self.pool.table(),
            hashes: Vec::new(),
            registered: 0,
            cached: 0,
            started: false,
            tenant: tenant.clone(),
            priority,
            payload,
        };
        self.fresh.push_at(priority, tenant, seq);
        id
    }

    pub fn has_work(&self) -> bool {
        !self.restarts.is_empty() || !self.fresh.is_empty() || !self.running.is_empty()
    }

    pub fn waiting_len(&self) -> usize {
        self.restarts.len() + self.fresh.len()
    }

    pub fn running_len(&self) -> usize {
        self.running.len()
    }

    /// Preemptions so far.
    pub fn preemptions(&self) -> u64 {
        self.preemptions
    }

    /// Running sequences, in admission order.
    pub fn running(&self) -> &[Sequence<T>] {
        &self.running
    }

    /// Waiting sequences, first in line first (the order they would be
    /// admitted in if nothing else came).
    pub fn waiting(&self) -> impl Iterator<Item = &Sequence<T>> {
        let mut restarts: Vec<&Sequence<T>> = self.restarts.iter().collect();
        // Stable: the oldest evicted first within a priority.
        restarts.sort_by_key(|s| s.priority);
        let mut restarts = restarts.into_iter().peekable();
        let mut fresh = self.fresh.iter().peekable();
        let mut passed = self.restarts_passed_over;
        std::iter::from_fn(move || {
            let Some(r) = restarts.peek() else {
                return fresh.next();
            };
            if restart_first(r.priority, fresh.peek().map(|f| f.priority), passed) {
                passed = 0;
                restarts.next()
            } else {
                passed += 1;
                fresh.next()
            }
        })
    }

    /// Where the next sequence to admit waits: the best-priority restart
    /// (the oldest evicted among equals), unless the fresh queue's next has
    /// a better priority (see [`restart_first`]).
    fn next_in_line(&self) -> Option<InLine> {
        let restart = (self.restarts.iter().enumerate()).min_by_key(|&(i, s)| (s.priority, i));
        let fresh = self.fresh.front_priority();
        match restart {
            Some((i, r)) if restart_first(r.priority, fresh, self.restarts_passed_over) => {
                Some(InLine::Restart(i))
            }
            _ => fresh.map(|_| InLine::Fresh),
        }
    }

    /// A running sequence.
    pub fn get_mut(&mut self, id: SeqId) -> Option<&mut Sequence<T>> {
        self.running.iter_mut().find(|s| s.id == id)
    }

    /// Takes a sequence out (running or waiting); its blocks are freed now.
    pub fn remove(&mut self, id: SeqId) -> Option<Sequence<T>> {
        let mut seq = if let Some(i) = self.running.iter().position(|s| s.id == id) {
            self.running.remove(i)
        } else if let Some(i) = self.restarts.iter().position(|s| s.id == id) {
            self.restarts.remove(i)?
        } else {
            self.fresh.remove_first(|s| s.id == id)?
        };
        seq.table.release();
        Some(seq)
    }

    /// Takes out every sequence (running or waiting) for which `drop_it`
    /// is true, e.g. those whose caller went away; their blocks are freed
    /// now.
    pub fn remove_where(&mut self, mut drop_it: impl FnMut(&Sequence<T>) -> bool) -> Vec<Sequence<T>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.running.len() {
            if drop_it(&self.running[i]) {
                out.push(self.running.remove(i));
            } else {
                i += 1;
            }
        }
        drain_where(&mut self.restarts, &mut drop_it, &mut out);
        out.extend(self.fresh.extract_where(&mut drop_it));
        for s in &mut out {
            s.table.release();
        }
        out
    }

    /// Decides the next step (see the module docs). Blocks for the chunks
    /// are reserved; [`commit`](Self::commit) marks them computed once the
    /// model has run them.
    pub fn schedule(&mut self) -> StepPlan {
        let mut plan = StepPlan::default();
        let evictions_before = self.pool.cache_stats().evictions;
        let mut prefills = Vec::new();
        let mut budget = self.max_batch_tokens;
        let mut pending_decodes = self.running.iter().filter(|s| s.is_decode()).count();
        let mut i = 0;
        while i < self.running.len() {
            let decode = self.running[i].is_decode();
            let mut want = if decode {
                pending_decodes -= 1;
                budget.min(1)
            } else {
                self.running[i]
                    .pending()
                    .min(budget.saturating_sub(pending_decodes))
            };
            if want == 0 {
                i += 1;
                continue;
            }
            // Blocks for the positions written this step, evicting from the
            // end of the admission order until they fit.
            let mut evicted_self = false;
            loop {
                let seq = &mut self.running[i];
                if seq.table.reserve(seq.computed + want).is_ok() {
                    break;
                }
                if !decode {
                    let room = seq.table.capacity() + self.pool.free_blocks() * self.pool.block_size();
                    let fit = room.saturating_sub(seq.computed).min(want);
                    if fit > 0 {
                        want = fit;
                        continue;
                    }
                }
                let last = self.running.len() - 1;
                if self.running[last].is_decode() && last != i {
                    pending_decodes -= 1;
                }
                self.preempt_last(&mut plan);
                if last == i {
                    evicted_self = true;
                    break;
                }
            }
            if evicted_self {
                break;
            }
            let seq = &self.running[i];
            let chunk = PlannedChunk {
                id: seq.id,
                start: seq.computed,
                len: want,
                want_logits: seq.computed + want == seq.tokens.len(),
                index: i,
            };
            budget -= want;
            if decode {
                plan.chunks.push(chunk);
            } else {
                prefills.push(chunk);
            }
            i += 1;
        }

        // Admission (by priority; within one, restarts first, then fresh
        // requests round-robin across tenants), unless this step had to
        // evict (the cache is tight: admitting now would only thrash). While
        // others run, a watermark of blocks stays free for their next
        // decodes.
        while plan.preempted.is_empty() && budget > 0 && self.running.len() < self.max_running {
            let Some(in_line) = self.next_in_line() else {
                break;
            };
            let next = match in_line {
                InLine::Restart(i) => self.restarts.get_mut(i),
                InLine::Fresh => self.fresh.front_mut(),
            };
            let Some(seq) = next else {
                break;
            };
            debug_assert!(seq.computed == 0 && seq.table.blocks().is_empty());
            let cached = if self.prefix_cache {
                adopt_cached_prefix(&self.pool, seq)
            } else {
                0
            };
            let keep = if self.running.is_empty() {
                0
            } else {
                self.watermark
            };
            let room = self.pool.free_blocks().saturating_sub(keep) * self.pool.block_size();
            let want = seq.pending().min(budget).min(room);
            if want == 0 || seq.table.reserve(cached + want).is_err() {
                // Let go of the adopted blocks: they wait in the cache.
                seq.forget_blocks();
                break;
            }
            let popped = match in_line {
                InLine::Restart(i) => {
                    self.restarts_passed_over = 0;
                    self.restarts.remove(i)
                }
                InLine::Fresh => {
                    if !self.restarts.is_empty() {
                        self.restarts_passed_over += 1;
                    }
                    self.fresh.pop_front()
                }
            };
            let mut seq = popped.expect("front exists");
            if !seq.started {
                seq.started = true;
                seq.cached = cached;
                plan.admitted.push(seq.id);
            }
            if self.prefix_cache {
                plan.cache_queried_tokens += seq.tokens.len();
                plan.cache_hit_tokens += cached;
            }
            prefills.push(PlannedChunk {
                id: seq.id,
                start: cached,
                len: want,
                want_logits: cached + want == seq.tokens.len(),
                index: self.running.len(),
            });
            budget -= want;
            self.running.push(seq);
        }
        plan.chunks.extend(prefills);
        plan.cache_evictions = self.pool.cache_stats().evictions - evictions_before;
        plan
    }

    /// Evicts the most recently admitted running sequence.
    fn preempt_last(&mut self, plan: &mut StepPlan) {
        let mut seq = self.running.pop().expect("a running sequence to preempt");
        seq.forget_blocks();
        plan.preempted.push(seq.id);
        self.preemptions += 1;
        if self.restarts.is_empty() {
            self.restarts_passed_over = 0;
        }
        self.restarts.push_front(seq);
    }

    /// The model's view of `plan` (call before anything else changes).
    pub fn chunks(&self, plan: &StepPlan) -> Vec<SeqChunk<'_>> {
        plan.chunks
            .iter()
            .map(|c| {
                let seq = &self.running[c.index];
                debug_assert_eq!(seq.id, c.id);
                SeqChunk {
                    tokens: &seq.tokens[c.start..c.start + c.len],
                    start_pos: c.start,
                    blocks: seq.table.blocks(),
                    want_logits: c.want_logits,
                }
            })
            .collect()
    }

    /// Marks `plan`'s chunks as written to the cache (after a good step);
    /// with the prefix cache on, blocks they filled join it.
    pub fn commit(&mut self, plan: &StepPlan) {
        for c in &plan.chunks {
            let seq = &mut self.running[c.index];
            debug_assert_eq!(seq.id, c.id);
            seq.computed = c.start + c.len;
            if self.prefix_cache {
                seq.register_full_blocks(&self.pool);
            }
        }
    }
}

#[cfg(test)]
mod tests;
