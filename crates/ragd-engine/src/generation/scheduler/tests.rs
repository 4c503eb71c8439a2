use super::*;

fn sched(blocks: usize, block_size: usize, budget: usize, max_running: usize) -> Scheduler<()> {
    Scheduler::new(BlockPool::new(blocks, block_size), budget, max_running).with_watermark(0)
}

/// Runs `plan` as if the model did, then appends `token` to every
/// sequence that got logits.
fn run(s: &mut Scheduler<()>, plan: &StepPlan, token: u32) {
    s.commit(plan);
    for c in plan.chunks.iter().filter(|c| c.want_logits) {
        s.get_mut(c.id).unwrap().push_token(token);
    }
}

fn chunk(c: &PlannedChunk) -> (SeqId, usize, usize, bool) {
    (c.id, c.start, c.len, c.want_logits)
}

#[test]
fn decodes_come_first_and_prefill_is_chunked_to_the_budget() {
    let mut s = sched(100, 4, 8, 64);
    let a = s.add(vec![1, 2, 3], ());
    let plan = s.schedule();
    assert_eq!(
        plan.chunks.iter().map(chunk).collect::<Vec<_>>(),
        vec![(a, 0, 3, true)]
    );
    assert_eq!(plan.admitted, vec![a]);
    run(&mut s, &plan, 9);
    let b = s.add((0..20).collect(), ());
    let plan = s.schedule();
    let got: Vec<_> = plan.chunks.iter().map(chunk).collect();
    assert_eq!(got, vec![(a, 3, 1, true), (b, 0, 7, false)]);
    assert!(plan.chunks[0].is_decode());
    run(&mut s, &plan, 9);
    let plan = s.schedule();
    let got: Vec<_> = plan.chunks.iter().map(chunk).collect();
    assert_eq!(got, vec![(a, 4, 1, true), (b, 7, 7, false)]);
    run(&mut s, &plan, 9);
    let plan = s.schedule();
    let got: Vec<_> = plan.chunks.iter().map(chunk).collect();
    assert_eq!(got, vec![(a, 5, 1, true), (b, 14, 6, true)]);
    run(&mut s, &plan, 9);
    let plan = s.schedule();
    assert!(plan.chunks.iter().all(|c| c.is_decode()));
    assert_eq!(plan.num_tokens(), 2);
    // Blocks cover what was written.
    assert_eq!(s.running()[1].blocks().len(), 6);
}

#[test]
fn the_first_in_line_is_not_overtaken() {
    // 4 blocks of 4. A takes 3 blocks; B (8 tokens) cannot start; C
    // (2 tokens) would fit but must not overtake B.
    let mut s = sched(4, 4, 64, 64);
    let a = s.add((0..12).collect(), ());
    let plan = s.schedule();
    run(&mut s, &plan, 1);
    let b = s.add((0..8).collect(), ());
    let _c = s.add(vec![1, 2], ());
    let plan = s.schedule();
    // A decodes into its 4th block; B gets what is left: nothing.
    let got: Vec<_> = plan.chunks.iter().map(chunk).collect();
    assert_eq!(got, vec![(a, 12, 1, true)]);
    assert_eq!(s.waiting().next().unwrap().id(), b);
    assert_eq!(s.waiting_len(), 2);
}

#[test]
fn admission_takes_a_partial_chunk_when_blocks_are_short() {
    let mut s = sched(4, 4, 64, 64);
    let a = s.add((0..8).collect(), ());
    let b = s.add((0..12).collect(), ());
    let plan = s.schedule();
    let got: Vec<_> = plan.chunks.iter().map(chunk).collect();
    assert_eq!(got, vec![(a, 0, 8, true), (b, 0, 8, false)]);
    assert_eq!(s.pool().free_blocks(), 0);
}

#[test]
fn admission_leaves_the_watermark_free_while_others_run() {
    let mut s = sched(8, 4, 64, 64).with_watermark(2);
    let a = s.add((0..20).collect(), ());
    let b = s.add((0..20).collect(), ());
    let plan = s.schedule();
    // A starts alone: no watermark. B gets 8 blocks - 5 - 2 = 1 block.
    let got: Vec<_> = plan.chunks.iter().map(chunk).collect();
    assert_eq!(got, vec![(a, 0, 20, true), (b, 0, 4, false)]);
    assert_eq!(s.pool().free_blocks(), 2);
    // A's decode takes a watermark block; B, running, may take the last.
    run(&mut s, &plan, 7);
    let plan = s.schedule();
    let got: Vec<_> = plan.chunks.iter().map(chunk).collect();
    assert_eq!(got, vec![(a, 20, 1, true), (b, 4, 4, false)]);
    assert_eq!(s.pool().free_blocks(), 0);
    assert_eq!(Scheduler::<()>::new(BlockPool::new(250, 4), 8, 8).watermark, 3);
}

#[test]
fn a_decode_without_a_block_preempts_the_latest_admitted() {
    // 4 blocks of 2: A and B hold 2 each after their prompts.
    let mut s = sched(4, 2, 64, 64);
    let a = s.add(vec![1, 2, 3, 4], ());
    let b = s.add(vec![5, 6, 7, 8], ());
    let plan = s.schedule();
    run(&mut s, &plan, 42);
    assert_eq!(s.pool().free_blocks(), 0);
    let plan = s.schedule();
    assert_eq!(plan.preempted, vec![b]);
    assert!(plan.admitted.is_empty());
    let got: Vec<_> = plan.chunks.iter().map(chunk).collect();
    assert_eq!(got, vec![(a, 4, 1, true)]);
    assert_eq!(s.preemptions(), 1);
    // B waits first in line with its generated token, nothing cached.
    let w = s.waiting().next().unwrap();
    assert_eq!(
        (w.id(), w.tokens(), w.computed(), w.blocks().len()),
        (b, &[5, 6, 7, 8, 42][..], 0, 0)
    );
    assert_eq!(w.generated(), &[42]);
    run(&mut s, &plan, 43);
    // A finishes; B is recomputed (prompt + its token) in one chunk.
    s.remove(a).unwrap();
    let plan = s.schedule();
    let got: Vec<_> = plan.chunks.iter().map(chunk).collect();
    assert_eq!(got, vec![(b, 0, 5, true)]);
    assert!(plan.admitted.is_empty(), "a restart is not a fresh admission");
}

#[test]
fn an_older_sequence_evicts_a_newer_one_first() {
    let mut s = sched(4, 2, 64, 64);
    let a = s.add(vec![1, 2, 3, 4], ());
    let b = s.add(vec![5, 6, 7], ());
    let plan = s.schedule();
    run(&mut s, &plan, 42);
    // A (4 cached + 1) needs a 3rd block: B is evicted, though B itself
    // would have fit in its own 2nd block.
    let plan = s.schedule();
    assert_eq!(plan.preempted, vec![b]);
    assert_eq!(
        plan.chunks.iter().map(chunk).collect::<Vec<_>>(),
        vec![(a, 4, 1, true)]
    );
}

#[test]
fn the_latest_admitted_preempts_itself() {
    let mut s = sched(4, 2, 64, 64);
    let a = s.add(vec![1, 2, 3], ());
    let b = s.add(vec![5, 6, 7, 8], ());
    let plan = s.schedule();
    run(&mut s, &plan, 42);
    // A writes position 3 in its own 2nd block; B needs a 3rd: none free.
    let plan = s.schedule();
    assert_eq!(plan.preempted, vec![b]);
    assert_eq!(
        plan.chunks.iter().map(chunk).collect::<Vec<_>>(),
        vec![(a, 3, 1, true)]
    );
    assert_eq!(s.pool().used_blocks(), 2);
}

#[test]
fn the_budget_and_max_running_bound_a_step() {
    let mut s = sched(100, 4, 10, 2);
    for _ in 0..3 {
        s.add(vec![1; 4], ());
    }
    let plan = s.schedule();
    assert_eq!(plan.chunks.len(), 2);
    assert_eq!(s.running_len(), 2);
    assert_eq!(s.waiting_len(), 1);
    let mut s = sched(100, 4, 6, 64);
    for _ in 0..3 {
        s.add(vec![1; 4], ());
    }
    let plan = s.schedule();
    let lens: Vec<_> = plan.chunks.iter().map(|c| (c.len, c.want_logits)).collect();
    assert_eq!(lens, vec![(4, true), (2, false)]);
}

#[test]
fn fresh_requests_are_admitted_round_robin_across_tenants() {
    let mut s = sched(100, 4, 64, 64);
    let (a, b) = (Some(TenantKey::new("a")), Some(TenantKey::new("b")));
    let a_ids: Vec<_> = (0..4).map(|_| s.add_as(a.clone(), vec![1; 4], ())).collect();
    let b0 = s.add_as(b.clone(), vec![2; 4], ());
    let n0 = s.add(vec![3; 4], ());
    let b1 = s.add_as(b, vec![2; 4], ());
    let order: Vec<_> = s.waiting().map(|q| q.id()).collect();
    assert_eq!(order, vec![a_ids[0], b0, n0, a_ids[1], b1, a_ids[2], a_ids[3]]);
    assert_eq!(
        s.waiting().nth(1).unwrap().tenant().map(TenantKey::as_str),
        Some("b")
    );
    // Removing one keeps the others' places: B's next takes its turn.
    s.remove(b0).unwrap();
    let plan = s.schedule();
    assert_eq!(
        plan.admitted,
        vec![a_ids[0], b1, n0, a_ids[1], a_ids[2], a_ids[3]]
    );
}

#[test]
fn a_preempted_sequence_restarts_before_other_tenants_fresh_requests() {
    // 4 blocks of 2, as in the preemption test; B's request waits.
    let mut s = sched(4, 2, 64, 64);
    let a = Some(TenantKey::new("a"));
    let x = s.add_as(a.clone(), vec![1, 2, 3, 4], ());
    let y = s.add_as(a, vec![5, 6, 7, 8], ());
    let plan = s.schedule();
    run(&mut s, &plan, 42);
    let z = s.add_as(Some(TenantKey::new("b")), vec![9, 9], ());
    let plan = s.schedule();
    assert_eq!(plan.preempted, vec![y]);
    let order: Vec<_> = s.waiting().map(|q| q.id()).collect();
    assert_eq!(order, vec![y, z]);
    run(&mut s, &plan, 43);
    s.remove(x).unwrap();
    let plan = s.schedule();
    assert_eq!(plan.chunks[0].id, y);
    assert_eq!(plan.admitted, vec![z]);
}

/// Runs everything to the end with `max_tokens` 1 each; the ids in the
/// order they were admitted (restarts included).
fn admission_order(s: &mut Scheduler<()>) -> Vec<SeqId> {
    let mut order = Vec::new();
    while s.has_work() {
        let plan = s.schedule();
        order.extend(plan.chunks.iter().filter(|c| c.start == 0).map(|c| c.id));
        run(s, &plan, 7);
        for c in plan.chunks.iter().filter(|c| c.want_logits) {
            s.remove(c.id).unwrap();
        }
    }
    order
}

#[test]
fn a_better_priority_submitted_last_is_admitted_first_when_one_fits() {
    let mut s = sched(100, 4, 64, 1);
    let (a, b) = (Some(TenantKey::new("a")), Some(TenantKey::new("b")));
    let a0 = s.add_as(a.clone(), vec![1; 4], ());
    let a1 = s.add_as(a.clone(), vec![1; 4], ());
    let b0 = s.add_as(b.clone(), vec![2; 4], ());
    let late = s.add_with_priority(b.clone(), 1, vec![3; 4], ());
    let urgent = s.add_with_priority(a, -10, vec![4; 4], ());
    assert_eq!(s.waiting().next().unwrap().priority(), -10);
    let planned: Vec<_> = s.waiting().map(|q| q.id()).collect();
    let plan = s.schedule();
    assert_eq!(plan.admitted, vec![urgent], "room for one: the urgent one");
    run(&mut s, &plan, 7);
    s.remove(urgent).unwrap();
    // Then priority 0, round-robin and in order within a tenant, then 1.
    let rest = admission_order(&mut s);
    assert_eq!(rest, vec![a0, b0, a1, late]);
    assert_eq!(planned, vec![urgent, a0, b0, a1, late]);
}

#[test]
fn with_equal_priorities_admission_is_unchanged() {
    // The same requests, once with no priority and once all at 3: the
    // same round-robin, first come first served order.
    let orders: Vec<Vec<SeqId>> = [None, Some(3)]
        .into_iter()
        .map(|priority| {
            let mut s = sched(100, 4, 64, 1);
            for tenant in ["a", "a", "b", "a", "c", "b"] {
                let tenant = Some(TenantKey::new(tenant));
                match priority {
                    None => s.add_as(tenant, vec![1; 4], ()),
                    Some(p) => s.add_with_priority(tenant, p, vec![1; 4], ()),
                };
            }
            admission_order(&mut s)
        })
        .collect();
    assert_eq!(orders[0], vec![0, 2, 4, 1, 5, 3]);
    assert_eq!(orders[1], orders[0]);
}

/// 4 blocks of 2, as in the preemption test: X (priority 0) and Y
/// (priority 5) ran a step; X's next decode takes Y's blocks.
fn x_then_y_at_priority_5(max_running: usize) -> (Scheduler<()>, SeqId, SeqId) {
    let mut s = sched(4, 2, 64, max_running);
    let x = s.add(vec![1, 2, 3, 4], ());
    let y = s.add_with_priority(None, 5, vec![5, 6, 7, 8], ());
    let plan = s.schedule();
    run(&mut s, &plan, 42);
    (s, x, y)
}

#[test]
fn a_preempted_sequence_keeps_its_priority() {
    // Y is preempted; Z, fresh at priority 0, goes before it, and W, fresh
    // at priority 5 like Y, after it.
    let (mut s, x, y) = x_then_y_at_priority_5(64);
    let w = s.add_with_priority(Some(TenantKey::new("b")), 5, vec![9, 9], ());
    let z = s.add_as(Some(TenantKey::new("c")), vec![9, 9], ());
    let plan = s.schedule();
    assert_eq!(plan.preempted, vec![y]);
    assert_eq!(s.waiting().find(|q| q.id() == y).unwrap().priority(), 5);
    let order: Vec<_> = s.waiting().map(|q| q.id()).collect();
    assert_eq!(order, vec![z, y, w]);
    run(&mut s, &plan, 43);
    s.remove(x).unwrap();
    let plan = s.schedule();
    let admitted: Vec<_> = plan.chunks.iter().map(|c| c.id).collect();
    assert_eq!(admitted, vec![z, y], "W waits: Y's restart takes the rest");
    assert_eq!(plan.admitted, vec![z]);
}

#[test]
fn a_preempted_sequence_is_passed_over_a_bounded_number_of_times() {
    // With room for two: Y is preempted, then 20 fresh requests at
    // priority 0 arrive. Y goes after PASS_OVER_LIMIT of them, not after
    // all.
    let (mut s, x, y) = x_then_y_at_priority_5(2);
    let plan = s.schedule();
    assert_eq!(plan.preempted, vec![y]);
    run(&mut s, &plan, 43);
    s.remove(x).unwrap();
    let fresh: Vec<_> = (0..20).map(|_| s.add(vec![9, 9], ())).collect();
    let planned: Vec<_> = s.waiting().map(|q| q.id()).collect();
    let order = admission_order(&mut s);
    let limit = crate::fair::PASS_OVER_LIMIT as usize;
    let mut want = fresh.clone();
    want.insert(limit, y);
    assert_eq!(order, want);
    assert_eq!(planned, want);
}

#[test]
fn removing_frees_blocks_at_once_and_skips_the_waiting() {
    let mut s = sched(8, 2, 64, 64);
    let a = s.add(vec![1; 6], ());
    let _b = s.add(vec![1; 6], ());
    let _ = s.schedule();
    let c = s.add(vec![1; 2], ());
    assert_eq!(s.pool().used_blocks(), 6);
    let gone = s.remove_where(|q| q.id() == a || q.id() == c);
    assert_eq!(gone.len(), 2);
    assert_eq!(s.pool().used_blocks(), 3);
    assert_eq!((s.running_len(), s.waiting_len()), (1, 0));
}

fn cached_sched(blocks: usize, block_size: usize, budget: usize) -> Scheduler<()> {
    sched(blocks, block_size, budget, 64).with_prefix_cache(true)
}

#[test]
fn a_request_with_a_cached_prefix_prefills_only_the_rest() {
    let mut s = cached_sched(100, 4, 64);
    let shared: Vec<u32> = (0..10).collect();
    let a = s.add([&shared[..], &[100, 101]].concat(), ());
    let plan = s.schedule();
    assert_eq!((plan.cache_queried_tokens, plan.cache_hit_tokens), (12, 0));
    run(&mut s, &plan, 7);
    // A's 3 full blocks are cached, and stay so once it ends.
    assert_eq!(s.pool().cached_blocks(), 3);
    s.remove(a).unwrap();
    assert_eq!((s.pool().used_blocks(), s.pool().cached_blocks()), (0, 3));
    // B shares A's first 10 tokens: 2 full blocks (8 tokens).
    let b = s.add([&shared[..], &[200, 201, 202]].concat(), ());
    let plan = s.schedule();
    assert_eq!(
        plan.chunks.iter().map(chunk).collect::<Vec<_>>(),
        vec![(b, 8, 5, true)]
    );
    assert_eq!(plan.admitted, vec![b]);
    assert_eq!((plan.cache_queried_tokens, plan.cache_hit_tokens), (13, 8));
    assert_eq!(s.running()[0].cached_tokens(), 8);
    // B pins the shared blocks and holds them first in its table.
    let a_head: Vec<u32> = s.running()[0].blocks()[..2].to_vec();
    run(&mut s, &plan, 7);
    s.remove(b).unwrap();
    // A's exact prompt again: its 3 full blocks are cached, yet the last
    // one is recomputed, so the model has a token to give logits for.
    let c = s.add([&shared[..], &[100, 101]].concat(), ());
    let plan = s.schedule();
    assert_eq!(
        plan.chunks.iter().map(chunk).collect::<Vec<_>>(),
        vec![(c, 8, 4, true)]
    );
    assert_eq!(s.running()[0].blocks()[..2], a_head[..]);
}

#[test]
fn tenants_do_not_get_each_others_cached_prefixes() {
    let mut s = cached_sched(100, 4, 64);
    let (a, b) = (Some(TenantKey::new("a")), Some(TenantKey::new("b")));
    let prompt: Vec<u32> = (0..9).collect();
    let first = s.add_as(a.clone(), prompt.clone(), ());
    let plan = s.schedule();
    run(&mut s, &plan, 7);
    s.remove(first).unwrap();
    for (tenant, want_start) in [(b, 0), (None, 0), (a, 8)] {
        let id = s.add_as(tenant, prompt.clone(), ());
        let plan = s.schedule();
        assert_eq!(
            plan.chunks.iter().map(chunk).collect::<Vec<_>>(),
            vec![(id, want_start, 9 - want_start, true)]
        );
        run(&mut s, &plan, 7);
        s.remove(id).unwrap();
    }
}

#[test]
fn without_the_prefix_cache_nothing_is_kept_or_adopted() {
    let mut s = sched(100, 4, 64, 64);
    for _ in 0..2 {
        let id = s.add((0..9).collect(), ());
        let plan = s.schedule();
        assert_eq!(plan.chunks[0].start, 0);
        assert_eq!((plan.cache_queried_tokens, plan.cache_hit_tokens), (0, 0));
        run(&mut s, &plan, 7);
        s.remove(id).unwrap();
        assert_eq!((s.pool().cached_blocks(), s.pool().free_blocks()), (0, 100));
    }
}

#[test]
fn a_preempted_sequence_restarts_from_its_cached_blocks() {
    // 6 blocks of 2. A (4 tokens) and B (6) fill 5 blocks; A's decode
    // takes the 6th, so B, needing a 4th, is preempted. B's 3 full blocks
    // stay cached, and B restarts from them.
    let mut s = cached_sched(6, 2, 64);
    let a = s.add(vec![1, 2, 3, 4], ());
    let b = s.add(vec![5, 6, 7, 8, 9, 10], ());
    let plan = s.schedule();
    run(&mut s, &plan, 42); // A: 4 written + 42; B: 6 written + 42
    let plan = s.schedule(); // A writes 42 at 4 (6th block); B at 6: none left
    assert_eq!(plan.preempted, vec![b]);
    run(&mut s, &plan, 43);
    let plan = s.schedule(); // A writes 43 at 5: in its 3rd block, nothing new
    assert!(plan.preempted.is_empty());
    assert_eq!(
        plan.chunks.iter().map(chunk).collect::<Vec<_>>(),
        vec![(a, 5, 1, true)]
    );
    s.remove(a).unwrap();
    // B's tokens: 6 of prompt + 42; its 3 full blocks were cached.
    let plan = s.schedule();
    assert_eq!(
        plan.chunks.iter().map(chunk).collect::<Vec<_>>(),
        vec![(b, 6, 1, true)]
    );
    assert!(plan.admitted.is_empty());
    assert_eq!(plan.cache_hit_tokens, 6);
    assert_eq!(
        s.running()[0].cached_tokens(),
        0,
        "its prompt was not cached at first admission"
    );
}

#[test]
fn a_cached_prefix_does_not_hold_admission_back_when_blocks_are_short() {
    // Cached blocks count as room: with all 4 blocks cached by A, B (6
    // tokens, a different prompt) evicts them.
    let mut s = cached_sched(4, 2, 64);
    let a = s.add((0..8).collect(), ());
    let plan = s.schedule();
    run(&mut s, &plan, 1);
    s.remove(a).unwrap();
    assert_eq!((s.pool().cached_blocks(), s.pool().free_blocks()), (4, 4));
    let b = s.add((10..16).collect(), ());
    let plan = s.schedule();
    assert_eq!(
        plan.chunks.iter().map(chunk).collect::<Vec<_>>(),
        vec![(b, 0, 6, true)]
    );
    assert_eq!(plan.cache_evictions, 3);
    assert_eq!(s.pool().cached_blocks(), 1);
}

/// Random workloads through the scheduler and the fake model (which
/// stores tokens in its paged cache), with cancellations: every sequence
/// still produces its solo output, the scheduler never stalls and no block leaks.
#[test]
fn random_workloads_match_the_reference_under_pressure() {
    let (preemptions, hits) = random_workloads(false);
    assert!(preemptions > 10, "too little pressure: {preemptions} preemptions");
    assert_eq!(hits, 0);
}

/// The same with the prefix cache on and prompts sharing prefixes across
/// and within tenants: cached blocks are read back through the fake
/// model's cache, so a wrong adoption changes an output.
#[test]
fn random_workloads_with_the_prefix_cache_match_the_reference() {
    let (preemptions, hits) = random_workloads(true);
    assert!(preemptions > 10, "too little pressure: {preemptions} preemptions");
    assert!(hits > 1000, "too few cache hits: {hits} tokens");
}

/// Preemptions and prefix cache hit tokens over 300 random rounds.
fn random_workloads(prefix_cache: bool) -> (u64, usize) {
    use ragd_core::testing::FakeGenerator;
    use ragd_core::Generator;
    const VOCAB: usize = 50;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let (mut preemptions, mut hits) = (0, 0);
    for round in 0..300 {
        let (block_size, num_blocks) = (1 + rand(4), 6 + rand(20));
        let cache = block_size * num_blocks;
        let mut model = FakeGenerator::new(VOCAB, 4096, block_size, num_blocks);
        let budget = 1 + rand(24);
        let mut s: Scheduler<(usize, Vec<u32>)> =
            Scheduler::new(BlockPool::new(num_blocks, block_size), budget, 1 + rand(8))
                .with_prefix_cache(prefix_cache);
        let prefixes: Vec<Vec<u32>> = (0..2)
            .map(|_| (0..cache / 3).map(|_| rand(VOCAB) as u32).collect())
            .collect();
        let mut expected = Vec::new();
        let mut done = 0;
        let n = 3 + rand(10);
        for _ in 0..n {
            let plen = 1 + rand(cache / 2);
            let max = 1 + rand(cache - plen);
            let mut prompt: Vec<u32> = (0..plen).map(|_| rand(VOCAB) as u32).collect();
            if prefix_cache {
                let shared = &prefixes[rand(2)];
                let n = shared.len().min(plen);
                prompt[..n].copy_from_slice(&shared[..n]);
            }
            expected.push(FakeGenerator::reference(VOCAB, &prompt, max, &[]));
            // Mixed tenants and priorities change the order, never the outputs.
            let tenant = ["a", "b", "c"].get(rand(4)).map(|&t| TenantKey::new(t));
            let tenant = if prefix_cache {
                tenant.filter(|_| rand(2) == 0)
            } else {
                tenant
            };
            s.add_with_priority(tenant, rand(3) as i32 - 1, prompt, (max, Vec::new()));
        }
        let mut steps = 0;
        while s.has_work() {
            steps += 1;
            assert!(steps < 100_000, "round {round}: no progress");
            if rand(15) == 0 {
                // A caller goes away.
                let victim = rand(n) as SeqId;
                done += s.remove_where(|q| q.id() == victim).len();
                continue;
            }
            let plan = s.schedule();
            hits += plan.cache_hit_tokens;
            assert!(plan.num_tokens() <= budget);
            if plan.is_empty() {
                assert!(!plan.preempted.is_empty(), "round {round}: stalled");
                continue;
            }
            let rows = model.step(&s.chunks(&plan)).unwrap();
            s.commit(&plan);
            let with_logits = plan.chunks.iter().filter(|c| c.want_logits);
            for (c, row) in with_logits.zip(rows) {
                let seq = s.get_mut(c.id).unwrap();
                let t = crate::sampling::argmax(&row);
                seq.push_token(t);
                seq.payload.1.push(t);
                if seq.payload.1.len() == seq.payload.0 {
                    let seq = s.remove(c.id).unwrap();
                    assert_eq!(seq.payload.1, expected[c.id as usize], "round {round}");
                    done += 1;
                }
            }
        }
        assert_eq!(done, n);
        assert_eq!(s.pool().used_blocks(), 0);
        preemptions += s.preemptions();
    }
    (preemptions, hits)
}
