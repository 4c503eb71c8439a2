//! Bookkeeping of the paged KV cache: which fixed-size blocks are free, and
//! which blocks each sequence holds. The KV tensors themselves live in the
//! model; this only hands out block ids.
//!
//! A [`BlockTable`] returns its blocks to the pool when dropped (RAII), so a
//! finished, cancelled or preempted sequence can never leak cache memory.

use std::sync::{Arc, Mutex, MutexGuard};

/// Not enough free blocks for the request; nothing was allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("KV cache full: {needed} blocks needed, {free} free")]
pub struct OutOfBlocks {
    pub needed: usize,
    pub free: usize,
}

struct Pool {
    free: Vec<u32>,
    total: usize,
}

/// The pool of KV blocks, shared by every sequence's table.
#[derive(Clone)]
pub struct BlockPool {
    pool: Arc<Mutex<Pool>>,
    block_size: usize,
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
            })),
            block_size,
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

    pub fn free_blocks(&self) -> usize {
        self.lock().free.len()
    }

    pub fn used_blocks(&self) -> usize {
        let p = self.lock();
        p.total - p.free.len()
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

    /// Grows the table to hold at least `tokens` token slots. All or
    /// nothing: on failure the table and the pool are unchanged.
    pub fn reserve(&mut self, tokens: usize) -> Result<(), OutOfBlocks> {
        let needed = self.pool.blocks_for(tokens).saturating_sub(self.blocks.len());
        if needed == 0 {
            return Ok(());
        }
        let mut pool = self.pool.lock();
        if pool.free.len() < needed {
            return Err(OutOfBlocks {
                needed,
                free: pool.free.len(),
            });
        }
        let at = pool.free.len() - needed;
        self.blocks.extend(pool.free.drain(at..).rev());
        Ok(())
    }

    /// (block id, offset in block) of token position `pos`, if reserved.
    pub fn slot(&self, pos: usize) -> Option<(u32, usize)> {
        let bs = self.pool.block_size;
        self.blocks.get(pos / bs).map(|&b| (b, pos % bs))
    }

    /// Returns every block to the pool (preemption); the table stays usable.
    pub fn release(&mut self) {
        if self.blocks.is_empty() {
            return;
        }
        let mut pool = self.pool.lock();
        pool.free.extend(self.blocks.drain(..).rev());
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
