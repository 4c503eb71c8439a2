//! Bookkeeping of the paged KV cache: which fixed-size blocks are free,
//! which blocks each sequence holds, and which full blocks are kept as a
//! prefix cache. The KV tensors themselves live in the model; this only
//! hands out block ids.
//!
//! A [`BlockTable`] returns its blocks to the pool when dropped (RAII), so a
//! finished, cancelled or preempted sequence can never leak cache memory.
//!
//! Prefix caching (as vLLM's and SGLang's automatic prefix caching): a full
//! block whose KV is written can be registered under its [`BlockHash`], a
//! hash chain over the tokens of the sequence up to and including the
//! block, salted with the tenant ([`BlockPool::block_hash`]). Blocks are
//! reference-counted: a registered block stays in the cache when the last
//! table holding it lets go (unreferenced, evictable), and a later sequence
//! of the same tenant with the same tokens up to there adopts it
//! ([`BlockTable::adopt_cached`]) instead of recomputing it. Only full,
//! immutable blocks are shared (nobody writes into a block below its
//! sequence's computed length), so there is no copy-on-write. When the free
//! list is empty, [`BlockTable::reserve`] evicts unreferenced cached blocks,
//! least recently used first (a released sequence's last block before its
//! first, so a shared head outlives the tails behind it).
//!
//! The cache key holds the tenant itself besides the hash, so two tenants
//! never share a block even if their hashes collided; the hash is keyed
//! per process (two random SipHash keys, 128 bits), so collisions cannot be
//! crafted offline.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fair::TenantKey;

/// Not enough free blocks for the request; nothing was allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("KV cache full: {needed} blocks needed, {free} free")]
pub struct OutOfBlocks {
    pub needed: usize,
    pub free: usize,
}

/// The identity of a full block's content: a hash of its parent block's
/// hash, its tenant and its tokens (see [`BlockPool::block_hash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHash(u64, u64);

/// Where a cached block is found: its tenant (the salt, compared exactly)
/// and its hash.
#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    tenant: Option<TenantKey>,
    hash: BlockHash,
}

#[derive(Default)]
struct BlockState {
    /// Tables holding the block.
    refs: u32,
    /// Its key while it is in the prefix cache.
    key: Option<CacheKey>,
    /// Its place in `Pool::evictable` while unreferenced and cached.
    tick: u64,
}

/// Counters of the prefix cache since the pool was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Cached blocks taken back for other content (LRU).
    pub evictions: u64,
}

struct Pool {
    /// Blocks holding nothing worth keeping, handed out first.
    free: Vec<u32>,
    total: usize,
    blocks: Vec<BlockState>,
    /// Registered full blocks by content.
    cached: HashMap<CacheKey, u32>,
    /// Unreferenced cached blocks by last use (the lowest tick goes first).
    evictable: BTreeMap<u64, u32>,
    tick: u64,
    stats: CacheStats,
}

impl Pool {
    /// Blocks a reservation can get: free ones and evictable cached ones.
    fn available(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    /// Takes a block for new content: a free one, else the least recently
    /// used unreferenced cached one (dropped from the cache).
    fn take(&mut self) -> Option<u32> {
        let b = match self.free.pop() {
            Some(b) => b,
            None => {
                let (_, b) = self.evictable.pop_first()?;
                let key = self.blocks[b as usize]
                    .key
                    .take()
                    .expect("evictable blocks are cached");
                self.cached.remove(&key);
                self.stats.evictions += 1;
                b
            }
        };
        self.blocks[b as usize].refs = 1;
        Some(b)
    }

    /// One table lets go of `b`.
    fn unref(&mut self, b: u32) {
        let state = &mut self.blocks[b as usize];
        state.refs -= 1;
        if state.refs > 0 {
            return;
        }
        if state.key.is_some() {
            self.tick += 1;
            state.tick = self.tick;
            self.evictable.insert(self.tick, b);
        } else {
            self.free.push(b);
        }
    }

    /// A table takes a cached block (pinned: not evictable while held).
    fn pin(&mut self, b: u32) {
        let state = &mut self.blocks[b as usize];
        if state.refs == 0 {
            self.evictable.remove(&state.tick);
        }
        state.refs += 1;
    }
}

/// The pool of KV blocks, shared by every sequence's table.
#[derive(Clone)]
pub struct BlockPool {
    pool: Arc<Mutex<Pool>>,
    block_size: usize,
    /// The keys of the block hash (random per pool).
    hasher: Arc<[RandomState; 2]>,
}

impl BlockPool {
    /// `total_blocks` blocks of `block_size` token slots each.
    pub fn new(total_blocks: usize, block_size: usize) -> Self {
        assert!(block_size > 0, "block size must be positive");
        // Hand out low ids first: popping from the end of a reversed list.
        let free = (0..total_blocks as u32).rev().collect();
        Self {
            pool: Arc::new(Mutex::new(Pool {
                free,
                total: total_blocks,
                blocks: (0..total_blocks).map(|_| BlockState::default()).collect(),
                cached: HashMap::new(),
                evictable: BTreeMap::new(),
                tick: 0,
                stats: CacheStats::default(),
            })),
            block_size,
            hasher: Arc::new([RandomState::new(), RandomState::new()]),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // The pool's invariants hold between statements, so a panic while
        // holding the lock leaves it usable.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn total_blocks(&self) -> usize {
        self.lock().total
    }

    /// Blocks a reservation can get: free ones, and cached ones no table
    /// holds (evicted on demand).
    pub fn free_blocks(&self) -> usize {
        self.lock().available()
    }

    /// Blocks some table holds.
    pub fn used_blocks(&self) -> usize {
        let p = self.lock();
        p.total - p.available()
    }

    /// Blocks in the prefix cache, held by a table or not.
    pub fn cached_blocks(&self) -> usize {
        self.lock().cached.len()
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.lock().stats
    }

    /// Blocks needed to hold `tokens` token slots.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// An empty table drawing from this pool.
    pub fn table(&self) -> BlockTable {
        BlockTable {
            pool: self.clone(),
            blocks: Vec::new(),
        }
    }

    /// The hash of a full block holding `tokens` (`block_size` of them),
    /// following the block whose hash is `parent` (`None`: the first block
    /// of a sequence), for `tenant`: equal only for the same tenant and the
    /// same tokens from the start of the sequence to the block's end.
    pub fn block_hash(
        &self,
        parent: Option<BlockHash>,
        tenant: Option<&TenantKey>,
        tokens: &[u32],
    ) -> BlockHash {
        debug_assert_eq!(tokens.len(), self.block_size);
        let content = (parent, tenant.map(TenantKey::as_str), tokens);
        let [a, b] = &*self.hasher;
        BlockHash(a.hash_one(content), b.hash_one(content))
    }

    /// The hashes of every full block of `tokens` past the first
    /// `hashes.len()` (whose hashes `hashes` holds), appended to `hashes`.
    pub fn extend_hashes(&self, hashes: &mut Vec<BlockHash>, tenant: Option<&TenantKey>, tokens: &[u32]) {
        let full = tokens.len() / self.block_size;
        for i in hashes.len()..full {
            let block = &tokens[i * self.block_size..(i + 1) * self.block_size];
            let h = self.block_hash(hashes.last().copied(), tenant, block);
            hashes.push(h);
        }
    }
}

/// The blocks of one sequence, in order: token `t` lives in slot
/// `t % block_size` of block `blocks()[t / block_size]`.
pub struct BlockTable {
    pool: BlockPool,
    blocks: Vec<u32>,
}

impl BlockTable {
    pub fn blocks(&self) -> &[u32] {
        &self.blocks
    }

    /// Token slots the table holds.
    pub fn capacity(&self) -> usize {
        self.blocks.len() * self.pool.block_size
    }

    /// Grows the table to hold at least `tokens` token slots, from free
    /// blocks first, then by evicting unreferenced cached ones. All or
    /// nothing: on failure the table and the pool are unchanged.
    pub fn reserve(&mut self, tokens: usize) -> Result<(), OutOfBlocks> {
        let needed = self.pool.blocks_for(tokens).saturating_sub(self.blocks.len());
        if needed == 0 {
            return Ok(());
        }
        let mut pool = self.pool.lock();
        if pool.available() < needed {
            return Err(OutOfBlocks {
                needed,
                free: pool.available(),
            });
        }
        for _ in 0..needed {
            self.blocks.push(pool.take().expect("counted available"));
        }
        Ok(())
    }

    /// Adopts the longest run of cached blocks of `tenant` whose hashes are
    /// `hashes` (the sequence's full blocks, in order) into this empty
    /// table, pinning them; returns how many (0: none cached).
    pub fn adopt_cached(&mut self, tenant: Option<&TenantKey>, hashes: &[BlockHash]) -> usize {
        debug_assert!(self.blocks.is_empty(), "adopting into a table that holds blocks");
        if hashes.is_empty() {
            return 0;
        }
        let mut pool = self.pool.lock();
        let mut key = CacheKey {
            tenant: tenant.cloned(),
            hash: hashes[0],
        };
        for &hash in hashes {
            key.hash = hash;
            let Some(&b) = pool.cached.get(&key) else {
                break;
            };
            pool.pin(b);
            self.blocks.push(b);
        }
        self.blocks.len()
    }

    /// Registers the table's `index`-th block, full and with its KV
    /// written, in the prefix cache as `tenant`'s block of hash `hash`.
    /// Nothing happens if it is already cached, or if another block holds
    /// that content (this one then stays private and is freed with the
    /// table).
    pub fn register(&self, index: usize, tenant: Option<&TenantKey>, hash: BlockHash) {
        let b = self.blocks[index];
        let mut pool = self.pool.lock();
        if pool.blocks[b as usize].key.is_some() {
            return;
        }
        let key = CacheKey {
            tenant: tenant.cloned(),
            hash,
        };
        if pool.cached.contains_key(&key) {
            return;
        }
        pool.cached.insert(key.clone(), b);
        pool.blocks[b as usize].key = Some(key);
    }

    /// (block id, offset in block) of token position `pos`, if reserved.
    pub fn slot(&self, pos: usize) -> Option<(u32, usize)> {
        let bs = self.pool.block_size;
        self.blocks.get(pos / bs).map(|&b| (b, pos % bs))
    }

    /// Lets go of every block (preemption); the table stays usable. Cached
    /// blocks stay in the cache (evictable once no table holds them), the
    /// others are free.
    pub fn release(&mut self) {
        if self.blocks.is_empty() {
            return;
        }
        let mut pool = self.pool.lock();
        // Last block first: it gets the older tick and the free list hands
        // the first block out first, as before.
        for b in self.blocks.drain(..).rev() {
            pool.unref(b);
        }
    }
}

impl Drop for BlockTable {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_grows_by_whole_blocks_and_maps_positions() {
        let pool = BlockPool::new(8, 16);
        let mut t = pool.table();
        t.reserve(17).unwrap();
        assert_eq!(t.blocks(), &[0, 1]);
        assert_eq!(t.capacity(), 32);
        assert_eq!(t.slot(0), Some((0, 0)));
        assert_eq!(t.slot(17), Some((1, 1)));
        assert_eq!(t.slot(32), None);
        t.reserve(20).unwrap(); // still fits: no new block
        assert_eq!(pool.used_blocks(), 2);
        t.reserve(33).unwrap();
        assert_eq!(t.blocks(), &[0, 1, 2]);
    }

    #[test]
    fn running_out_is_all_or_nothing() {
        let pool = BlockPool::new(4, 4);
        let mut a = pool.table();
        a.reserve(12).unwrap();
        let mut b = pool.table();
        assert_eq!(b.reserve(8), Err(OutOfBlocks { needed: 2, free: 1 }));
        assert!(b.blocks().is_empty());
        assert_eq!(pool.free_blocks(), 1);
        b.reserve(4).unwrap();
        assert_eq!(pool.free_blocks(), 0);
    }

    #[test]
    fn dropping_or_releasing_a_table_frees_its_blocks() {
        let pool = BlockPool::new(6, 2);
        let mut a = pool.table();
        a.reserve(6).unwrap();
        {
            let mut b = pool.table();
            b.reserve(6).unwrap();
            assert_eq!(pool.free_blocks(), 0);
        }
        assert_eq!(pool.free_blocks(), 3);
        a.release();
        assert_eq!(pool.free_blocks(), 6);
        assert!(a.blocks().is_empty());
        a.reserve(2).unwrap();
        assert_eq!(pool.used_blocks(), 1);
    }

    /// A table holding `tokens` with every full block registered as
    /// `tenant`'s; the hashes of those blocks.
    fn cached_table(
        pool: &BlockPool,
        tenant: Option<&TenantKey>,
        tokens: &[u32],
    ) -> (BlockTable, Vec<BlockHash>) {
        let mut t = pool.table();
        t.reserve(tokens.len()).unwrap();
        let mut hashes = Vec::new();
        pool.extend_hashes(&mut hashes, tenant, tokens);
        for (i, &h) in hashes.iter().enumerate() {
            t.register(i, tenant, h);
        }
        (t, hashes)
    }

    #[test]
    fn released_cached_blocks_are_kept_and_adopted_by_content() {
        let pool = BlockPool::new(8, 2);
        let tokens = [1, 2, 3, 4, 5];
        let (a, hashes) = cached_table(&pool, None, &tokens);
        assert_eq!((hashes.len(), pool.cached_blocks()), (2, 2));
        let a_blocks = a.blocks().to_vec();
        drop(a);
        // The partial third block is free; the two full ones stay cached
        // but count as available.
        assert_eq!(
            (pool.free_blocks(), pool.used_blocks(), pool.cached_blocks()),
            (8, 0, 2)
        );
        let mut b = pool.table();
        assert_eq!(b.adopt_cached(None, &hashes), 2);
        assert_eq!(b.blocks(), &a_blocks[..2]);
        assert_eq!(pool.used_blocks(), 2);
        // A table sharing them pins them too; both let go, they stay.
        let mut c = pool.table();
        assert_eq!(c.adopt_cached(None, &hashes[..1]), 1);
        assert_eq!(pool.used_blocks(), 2);
        drop(b);
        assert_eq!(pool.used_blocks(), 1);
        drop(c);
        assert_eq!((pool.used_blocks(), pool.cached_blocks()), (0, 2));
        // A different first block breaks the chain: nothing matches.
        let mut other = Vec::new();
        pool.extend_hashes(&mut other, None, &[9, 2, 3, 4]);
        assert_eq!(pool.table().adopt_cached(None, &other), 0);
        // The same second block after another first one is another hash.
        assert_ne!(other[1], hashes[1]);
    }

    #[test]
    fn tenants_never_share_cached_blocks() {
        let pool = BlockPool::new(8, 2);
        let (a, b) = (TenantKey::new("a"), TenantKey::new("b"));
        let tokens = [1, 2, 3, 4];
        let (t, a_hashes) = cached_table(&pool, Some(&a), &tokens);
        drop(t);
        let mut b_hashes = Vec::new();
        pool.extend_hashes(&mut b_hashes, Some(&b), &tokens);
        assert_ne!(a_hashes, b_hashes, "the tenant salts the hash");
        // Even presenting A's hashes, B (or no tenant) finds nothing: the
        // tenant is part of the key.
        assert_eq!(pool.table().adopt_cached(Some(&b), &a_hashes), 0);
        assert_eq!(pool.table().adopt_cached(None, &a_hashes), 0);
        assert_eq!(pool.table().adopt_cached(Some(&a), &a_hashes), 2);
    }

    #[test]
    fn a_second_block_with_cached_content_stays_private() {
        let pool = BlockPool::new(8, 2);
        let (a, hashes) = cached_table(&pool, None, &[1, 2]);
        let (b, _) = cached_table(&pool, None, &[1, 2]);
        assert_eq!(pool.cached_blocks(), 1);
        let b_block = b.blocks()[0];
        drop(b);
        // B's copy went back to the free list, handed out first.
        let mut t = pool.table();
        t.reserve(1).unwrap();
        assert_eq!(t.blocks(), &[b_block]);
        assert_eq!(pool.table().adopt_cached(None, &hashes), 1);
        drop(a);
    }

    #[test]
    fn eviction_takes_the_least_recently_used_tail_first_and_only_when_free_runs_out() {
        let pool = BlockPool::new(4, 1);
        let (a, a_hashes) = cached_table(&pool, None, &[1, 2]);
        let (b, b_hashes) = cached_table(&pool, None, &[3, 4]);
        let (a_blocks, b_blocks) = (a.blocks().to_vec(), b.blocks().to_vec());
        drop(a); // released first: least recently used
        drop(b);
        assert_eq!(pool.free_blocks(), 4);
        // Using A again makes it the most recent.
        let mut a2 = pool.table();
        assert_eq!(a2.adopt_cached(None, &a_hashes), 2);
        drop(a2);
        let mut t = pool.table();
        t.reserve(1).unwrap();
        assert_eq!(t.blocks(), &[b_blocks[1]], "B's tail goes first");
        assert_eq!(pool.cache_stats().evictions, 1);
        let mut probe = pool.table();
        assert_eq!(probe.adopt_cached(None, &b_hashes), 1, "B's head is still cached");
        drop(probe);
        t.reserve(4).unwrap();
        assert_eq!(&t.blocks()[1..], &[a_blocks[1], a_blocks[0], b_blocks[0]]);
        assert_eq!((pool.cached_blocks(), pool.cache_stats().evictions), (0, 4));
        // Full: all or nothing still.
        assert_eq!(pool.table().reserve(1), Err(OutOfBlocks { needed: 1, free: 0 }));
    }

    #[test]
    fn pinned_cached_blocks_are_never_evicted() {
        let pool = BlockPool::new(3, 1);
        let (a, hashes) = cached_table(&pool, None, &[1, 2]);
        drop(a);
        let mut held = pool.table();
        assert_eq!(held.adopt_cached(None, &hashes[..1]), 1);
        let mut t = pool.table();
        assert_eq!(t.reserve(3), Err(OutOfBlocks { needed: 3, free: 2 }));
        t.reserve(2).unwrap();
        assert!(!t.blocks().contains(&held.blocks()[0]));
        assert_eq!(pool.cached_blocks(), 1);
    }

    #[test]
    fn concurrent_tables_never_share_a_block() {
        let pool = BlockPool::new(64, 8);
        let tables: Vec<BlockTable> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let pool = pool.clone();
                    s.spawn(move || {
                        let mut t = pool.table();
                        t.reserve(64).unwrap();
                        t
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<u32> = tables.iter().flat_map(|t| t.blocks().to_vec()).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 64);
        drop(tables);
        assert_eq!(pool.free_blocks(), 64);
    }
}
