//! Per-tenant fairness for the engine's queues.
//!
//! Every queue (the generation engine's waiting line, a batch worker's)
//! admits a request only while the queue as a whole and the request's
//! tenant are both under their caps ([`Admission`]): one tenant may hold at
//! most its share of the waiting slots, so a burst from one tenant cannot
//! make every other tenant's requests `Overloaded`. Waiting requests are
//! then served round-robin across tenants, first come first served within
//! a tenant ([`FairQueue`]), so one tenant's 500 queued requests do not put
//! another tenant's single request 500 places back.
//!
//! Requests submitted without a tenant share one anonymous lane: it takes
//! its turn in the round-robin like a tenant, but only the global capacity
//! bounds it (the behaviour before tenants were known).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::EngineError;

/// Whose request this is: the server's tenant id. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantKey(Arc<str>);

impl TenantKey {
    pub fn new(id: &str) -> Self {
        Self(Arc::from(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for TenantKey {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for TenantKey {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

impl From<Arc<str>> for TenantKey {
    fn from(id: Arc<str>) -> Self {
        Self(id)
    }
}

/// The per-tenant cap when none is configured: a quarter of the queue, at
/// least 1.
pub(crate) fn default_share(queue_capacity: usize) -> usize {
    (queue_capacity / 4).max(1)
}

/// Why [`Admission::try_acquire`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The whole queue is at its capacity.
    Full { capacity: usize },
    /// The tenant already holds its share of the queue.
    TenantShare { capacity: usize },
}

impl Refused {
    /// The engine's error for this refusal.
    pub(crate) fn overloaded(self, model: &str) -> EngineError {
        let (capacity, tenant_share) = match self {
            Self::Full { capacity } => (capacity, false),
            Self::TenantShare { capacity } => (capacity, true),
        };
        EngineError::Overloaded {
            model: model.to_string(),
            capacity,
            tenant_share,
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_tenant: HashMap<TenantKey, usize>,
}

/// The waiting slots of one queue, counted globally and per tenant.
pub(crate) struct Admission {
    capacity: usize,
    per_tenant: usize,
    counts: Mutex<Counts>,
}

impl Admission {
    pub(crate) fn new(capacity: usize, per_tenant: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            per_tenant,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a waiting slot for `tenant` (`None`: the anonymous lane, held
    /// to the global capacity only). The slot is given back when the
    /// permit is dropped.
    pub(crate) fn try_acquire(self: &Arc<Self>, tenant: Option<&TenantKey>) -> Result<Permit, Refused> {
        let mut c = self.counts();
        if c.total >= self.capacity {
            return Err(Refused::Full {
                capacity: self.capacity,
            });
        }
        if let Some(t) = tenant {
            let held = c.by_tenant.get(t).copied().unwrap_or(0);
            if held >= self.per_tenant {
                return Err(Refused::TenantShare {
                    capacity: self.per_tenant,
                });
            }
            c.by_tenant.insert(t.clone(), held + 1);
        }
        c.total += 1;
        Ok(Permit {
            admission: self.clone(),
            tenant: tenant.cloned(),
        })
    }

    /// Slots held now (all tenants).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.counts().total
    }
}

/// One waiting slot; dropping it frees the slot (the request started, was
/// withdrawn, or failed).
pub(crate) struct Permit {
    admission: Arc<Admission>,
    tenant: Option<TenantKey>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.admission.counts();
        c.total -= 1;
        if let Some(t) = &self.tenant {
            if let Some(n) = c.by_tenant.get_mut(t) {
                *n -= 1;
                if *n == 0 {
                    c.by_tenant.remove(t);
                }
            }
        }
    }
}

/// One tenant's line in a [`FairQueue`].
struct Lane<T> {
    tenant: Option<TenantKey>,
    items: VecDeque<T>,
}

/// Waiting items, served round-robin across tenants (one item per tenant
/// per turn) and in arrival order within a tenant.
pub(crate) struct FairQueue<T> {
    /// Lanes with something waiting; the front one is served next.
    lanes: VecDeque<Lane<T>>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self {
            lanes: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> FairQueue<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `item` at the back of its tenant's lane; a tenant with
    /// nothing waiting joins the round at its end.
    pub(crate) fn push(&mut self, tenant: Option<TenantKey>, item: T) {
        self.len += 1;
        if let Some(lane) = self.lanes.iter_mut().find(|l| l.tenant == tenant) {
            lane.items.push_back(item);
        } else {
            self.lanes.push_back(Lane {
                tenant,
                items: VecDeque::from([item]),
            });
        }
    }

    /// The item served next.
    pub(crate) fn front(&self) -> Option<&T> {
        self.lanes.front().and_then(|l| l.items.front())
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut T> {
        self.lanes.front_mut().and_then(|l| l.items.front_mut())
    }

    /// Takes the item served next; its tenant's turn passes to the next
    /// tenant.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let mut lane = self.lanes.pop_front()?;
        let item = lane.items.pop_front();
        if !lane.items.is_empty() {
            self.lanes.push_back(lane);
        }
        if item.is_some() {
            self.len -= 1;
        }
        item
    }

    /// Every item in the order it would be served if nothing else came.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        let rounds = self.lanes.iter().map(|l| l.items.len()).max().unwrap_or(0);
        (0..rounds).flat_map(move |k| self.lanes.iter().filter_map(move |l| l.items.get(k)))
    }

    /// Takes out the first item (in any lane) for which `pick` is true.
    pub(crate) fn remove_first(&mut self, mut pick: impl FnMut(&T) -> bool) -> Option<T> {
        let (li, ii) = self
            .lanes
            .iter()
            .enumerate()
            .find_map(|(li, l)| l.items.iter().position(&mut pick).map(|ii| (li, ii)))?;
        let item = self.lanes[li].items.remove(ii);
        if self.lanes[li].items.is_empty() {
            self.lanes.remove(li);
        }
        self.len -= 1;
        item
    }

    /// Takes out every item for which `drop_it` is true; the others keep
    /// their places.
    pub(crate) fn extract_where(&mut self, mut drop_it: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        for lane in &mut self.lanes {
            drain_where(&mut lane.items, &mut drop_it, &mut out);
        }
        self.lanes.retain(|l| !l.items.is_empty());
        self.len -= out.len();
        out
    }
}

/// Moves the items of `items` for which `drop_it` is true to `out`, in
/// order; the others keep their places.
pub(crate) fn drain_where<T>(items: &mut VecDeque<T>, mut drop_it: impl FnMut(&T) -> bool, out: &mut Vec<T>) {
    let mut kept = VecDeque::with_capacity(items.len());
    for item in items.drain(..) {
        if drop_it(&item) {
            out.push(item);
        } else {
            kept.push_back(item);
        }
    }
    *items = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str) -> Option<TenantKey> {
        Some(TenantKey::new(id))
    }

    #[test]
    fn tenants_take_turns_and_each_keeps_its_order() {
        let mut q = FairQueue::default();
        for i in 0..5 {
            q.push(t("a"), ("a", i));
        }
        q.push(t("b"), ("b", 0));
        q.push(None, ("-", 0));
        q.push(t("b"), ("b", 1));
        let planned: Vec<_> = q.iter().copied().collect();
        let mut served = Vec::new();
        while let Some(x) = q.pop_front() {
            served.push(x);
        }
        let want = vec![
            ("a", 0),
            ("b", 0),
            ("-", 0),
            ("a", 1),
            ("b", 1),
            ("a", 2),
            ("a", 3),
            ("a", 4),
        ];
        assert_eq!(served, want);
        assert_eq!(planned, want);
        assert!(q.is_empty());
    }

    #[test]
    fn removal_keeps_the_rest_in_place() {
        let mut q = FairQueue::default();
        for i in 0..3 {
            q.push(t("a"), i);
            q.push(t("b"), 10 + i);
        }
        assert_eq!(q.remove_first(|&x| x == 10), Some(10));
        assert_eq!(q.extract_where(|&x| x == 1 || x >= 11), vec![1, 11, 12]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(q.front(), Some(&0));
    }

    #[test]
    fn a_tenant_is_held_to_its_share_and_slots_come_back_on_drop() {
        let adm = Admission::new(4, 2);
        let a1 = adm.try_acquire(t("a").as_ref()).unwrap();
        let _a2 = adm.try_acquire(t("a").as_ref()).unwrap();
        assert_eq!(
            adm.try_acquire(t("a").as_ref()).err(),
            Some(Refused::TenantShare { capacity: 2 })
        );
        let _b1 = adm.try_acquire(t("b").as_ref()).unwrap();
        let _anon = adm.try_acquire(None).unwrap();
        assert_eq!(
            adm.try_acquire(t("c").as_ref()).err(),
            Some(Refused::Full { capacity: 4 })
        );
        drop(a1);
        assert_eq!(adm.waiting(), 3);
        let _a3 = adm.try_acquire(t("a").as_ref()).unwrap();
        assert_eq!(default_share(1024), 256);
        assert_eq!(default_share(2), 1);
    }
}
