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
//! A request may carry a priority (lower is served earlier, 0 by default):
//! the queue then serves the best priority class first, with the order
//! above within each class, and a class passed over [`PASS_OVER_LIMIT`]
//! times in a row goes next, so a priority can slow other requests but not
//! starve them. The per-tenant caps on waiting slots hold at any priority.
//!
//! Requests submitted without a tenant share one anonymous lane: it takes
//! its turn in the round-robin like a tenant, but only the global capacity
//! bounds it (the behaviour before tenants were known).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::ops::Bound::{Excluded, Unbounded};
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

/// A request's priority: lower values are served earlier (as vLLM's
/// `priority`); 0 is the default.
pub type Priority = i32;

/// How many admissions in a row a waiting priority class may be passed
/// over for better classes; then its next item goes first (see
/// [`FairQueue`]).
pub(crate) const PASS_OVER_LIMIT: u32 = 8;

/// The waiting items of one priority, round-robin across tenants.
struct Class<T> {
    /// Lanes with something waiting; the front one is served next.
    lanes: VecDeque<Lane<T>>,
    /// Items served from better classes since this class last was served
    /// (or since it had something waiting).
    passed_over: u32,
}

impl<T> Class<T> {
    fn new() -> Self {
        Self {
            lanes: VecDeque::new(),
            passed_over: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    fn push(&mut self, tenant: Option<TenantKey>, item: T) {
        if let Some(lane) = self.lanes.iter_mut().find(|l| l.tenant == tenant) {
            lane.items.push_back(item);
        } else {
            self.lanes.push_back(Lane {
                tenant,
                items: VecDeque::from([item]),
            });
        }
    }

    fn pop_front(&mut self) -> Option<T> {
        let mut lane = self.lanes.pop_front()?;
        let item = lane.items.pop_front();
        if !lane.items.is_empty() {
            self.lanes.push_back(lane);
        }
        item
    }
}

/// Waiting items, grouped by priority class. The best class (the lowest
/// value) is served first; within a class, round-robin across tenants (one
/// item per tenant per turn) and in arrival order within a tenant. So that
/// a busy better class cannot starve the others, a class passed over
/// [`PASS_OVER_LIMIT`] times in a row is overdue, and overdue classes are
/// served before any other (the most passed-over first): under a steady
/// stream of better items, each worse class still gets one item in every
/// `PASS_OVER_LIMIT` + (number of classes) or so. With one priority (every
/// item pushed with [`push`](Self::push)) this is plain round-robin.
pub(crate) struct FairQueue<T> {
    classes: BTreeMap<Priority, Class<T>>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self {
            classes: BTreeMap::new(),
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

    /// Queues `item` at the default priority (0): see
    /// [`push_at`](Self::push_at).
    pub(crate) fn push(&mut self, tenant: Option<TenantKey>, item: T) {
        self.push_at(0, tenant, item);
    }

    /// Queues `item` at the back of its tenant's lane in its priority's
    /// class; a tenant with nothing waiting there joins the class's round
    /// at its end.
    pub(crate) fn push_at(&mut self, priority: Priority, tenant: Option<TenantKey>, item: T) {
        self.len += 1;
        self.classes
            .entry(priority)
            .or_insert_with(Class::new)
            .push(tenant, item);
    }

    /// The priority of the class served next.
    fn next_class(&self) -> Option<Priority> {
        let overdue = (self.classes.iter())
            .filter(|(_, c)| c.passed_over >= PASS_OVER_LIMIT)
            .max_by_key(|(&p, c)| (c.passed_over, Reverse(p)));
        overdue.or_else(|| self.classes.iter().next()).map(|(&p, _)| p)
    }

    /// The item served next.
    pub(crate) fn front(&self) -> Option<&T> {
        let class = self.classes.get(&self.next_class()?)?;
        class.lanes.front().and_then(|l| l.items.front())
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut T> {
        let class = self.classes.get_mut(&self.next_class()?)?;
        class.lanes.front_mut().and_then(|l| l.items.front_mut())
    }

    /// The priority of the item served next.
    pub(crate) fn front_priority(&self) -> Option<Priority> {
        self.next_class()
    }

    /// Takes the item served next; its tenant's turn in its class passes
    /// to the next tenant, and the worse classes count one more pass-over.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let p = self.next_class()?;
        let class = self.classes.get_mut(&p)?;
        let item = class.pop_front()?;
        class.passed_over = 0;
        if class.is_empty() {
            self.classes.remove(&p);
        }
        for c in self.classes.range_mut((Excluded(p), Unbounded)).map(|(_, c)| c) {
            c.passed_over = c.passed_over.saturating_add(1);
        }
        self.len -= 1;
        Some(item)
    }

    /// Every item in the order it would be served if nothing else came
    /// (a replay of [`pop_front`](Self::pop_front) on a copy of the line).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        let classes = self.classes.iter().map(|(&p, c)| {
            let lanes = (c.lanes.iter())
                .map(|l| Lane {
                    tenant: l.tenant.clone(),
                    items: l.items.iter().collect(),
                })
                .collect();
            (
                p,
                Class {
                    lanes,
                    passed_over: c.passed_over,
                },
            )
        });
        let mut replay = FairQueue {
            classes: classes.collect(),
            len: self.len,
        };
        std::iter::from_fn(move || replay.pop_front())
    }

    /// Takes out the first item (in serving order within a class, classes
    /// best first) for which `pick` is true.
    pub(crate) fn remove_first(&mut self, mut pick: impl FnMut(&T) -> bool) -> Option<T> {
        let (p, li, ii) = self.classes.iter().find_map(|(&p, c)| {
            (c.lanes.iter().enumerate())
                .find_map(|(li, l)| l.items.iter().position(&mut pick).map(|ii| (p, li, ii)))
        })?;
        let class = self.classes.get_mut(&p)?;
        let item = class.lanes[li].items.remove(ii);
        if class.lanes[li].items.is_empty() {
            class.lanes.remove(li);
        }
        if class.is_empty() {
            self.classes.remove(&p);
        }
        self.len -= 1;
        item
    }

    /// Takes out every item for which `drop_it` is true; the others keep
    /// their places.
    pub(crate) fn extract_where(&mut self, mut drop_it: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        for class in self.classes.values_mut() {
            for lane in &mut class.lanes {
                drain_where(&mut lane.items, &mut drop_it, &mut out);
            }
            class.lanes.retain(|l| !l.items.is_empty());
        }
        self.classes.retain(|_, c| !c.is_empty());
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

    /// Serves everything; checks `iter` planned that order.
    fn drain<T: Copy + PartialEq + fmt::Debug>(q: &mut FairQueue<T>) -> Vec<T> {
        let planned: Vec<T> = q.iter().copied().collect();
        let served: Vec<T> = std::iter::from_fn(|| q.pop_front()).collect();
        assert_eq!(planned, served);
        served
    }

    #[test]
    fn a_better_priority_goes_first_and_each_class_is_round_robin() {
        let mut q = FairQueue::default();
        q.push(t("a"), "a0");
        q.push(t("a"), "a1");
        q.push(t("b"), "b0");
        q.push_at(1, t("b"), "b-late");
        // Submitted last, served first.
        q.push_at(-5, t("a"), "a-urgent");
        q.push_at(-5, t("c"), "c-urgent");
        q.push_at(-5, t("a"), "a-urgent2");
        assert_eq!(q.front(), Some(&"a-urgent"));
        assert_eq!(q.front_priority(), Some(-5));
        let served = drain(&mut q);
        let want = ["a-urgent", "c-urgent", "a-urgent2", "a0", "b0", "a1", "b-late"];
        assert_eq!(served, want);
        assert!(q.is_empty() && q.front_priority().is_none());
    }

    #[test]
    fn a_passed_over_class_is_served_after_the_limit() {
        let mut q = FairQueue::default();
        for i in 0..3 {
            q.push_at(5, t("batch"), ('L', i));
        }
        for i in 0..20 {
            q.push_at(-1, t(if i % 2 == 0 { "x" } else { "y" }), ('H', i));
        }
        let served = drain(&mut q);
        let kinds: String = served.iter().map(|&(k, _)| k).collect();
        let limit = PASS_OVER_LIMIT as usize;
        let want = format!(
            "{h}L{h}L{rest}L",
            h = "H".repeat(limit),
            rest = "H".repeat(20 - 2 * limit)
        );
        assert_eq!(kinds, want);
        // Each class keeps its own order.
        let lows: Vec<_> = served.iter().filter(|x| x.0 == 'L').map(|x| x.1).collect();
        assert_eq!(lows, vec![0, 1, 2]);
    }

    #[test]
    fn with_three_busy_classes_every_class_is_served() {
        let mut q = FairQueue::default();
        for i in 0..100 {
            for p in [0, 1, 2] {
                q.push_at(p, t("a"), (p, i));
            }
        }
        let served = drain(&mut q);
        // In the first 3 * (limit + 3) served, every class is served at
        // least once, and the best class most.
        let window = &served[..3 * (PASS_OVER_LIMIT as usize + 3)];
        let count = |p| window.iter().filter(|x| x.0 == p).count();
        assert!(count(2) >= 1 && count(1) >= 1, "{window:?}");
        assert!(count(0) > count(1) + count(2), "{window:?}");
        // Nothing is passed over more than limit + classes times in a row.
        for p in [1, 2] {
            let at: Vec<_> = (served.iter().enumerate())
                .filter(|(_, x)| x.0 == p)
                .map(|(i, _)| i)
                .collect();
            let gaps = at.windows(2).map(|w| w[1] - w[0] - 1).chain([at[0]]);
            assert!(gaps.max().unwrap() <= PASS_OVER_LIMIT as usize + 3, "class {p}");
        }
    }

    #[test]
    fn removal_across_classes_keeps_the_rest_in_place() {
        let mut q = FairQueue::default();
        q.push_at(1, t("a"), 10);
        q.push_at(0, t("a"), 0);
        q.push_at(0, t("b"), 1);
        q.push_at(2, t("b"), 20);
        assert_eq!(q.remove_first(|&x| x >= 10), Some(10));
        assert_eq!(q.extract_where(|&x| x == 0 || x == 20), vec![0, 20]);
        assert_eq!((q.len(), q.front()), (1, Some(&1)));
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), vec![1]);
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
