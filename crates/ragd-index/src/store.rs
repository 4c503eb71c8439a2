//! The whole data folder: every tenant's collections.
//!
//! Layout: `<dir>/LOCK` (held while open), `<dir>/tenants/<tenant>/<name>/`
//! one folder per collection. The folder tree is the catalogue: creating a
//! collection builds its folder under a hidden staging name and renames it
//! into place, deleting one renames it to a hidden trash name first, each
//! rename fsynced with its directory. A crash therefore leaves a collection
//! either fully there or fully gone; hidden leftovers are removed on open.
//! (Tenant ids and collection names cannot start with `.`.)
//!
//! Tenants are isolated by construction: every lookup is keyed by the
//! tenant, so a tenant naming another tenant's collection gets the same
//! `NotFound` as for a collection that does not exist.
//!
//! One collection never keeps the store from opening: a collection that
//! fails to open (a damaged log or snapshot, an unreadable file, even a
//! panic) is *quarantined*: left on disk untouched, listed by
//! [`Store::quarantined`], answered with [`IndexError::Quarantined`], while
//! every other collection serves. Its name stays taken: creating a
//! collection of that name is refused too, so the evidence is never
//! overwritten. Deleting it renames its folder to a hidden
//! `.quarantine-<name>-<nanos>` (which open leaves alone, for an operator
//! to inspect and remove) and frees the name.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::collection::{Collection, CONFIG_FILE};
use crate::config::{CollectionConfig, StoreOptions};
use crate::document::StoreStats;
use crate::fsutil::{create_dir, file_options, restrict, sync_dir};
use crate::names::{validate_collection, validate_tenant};
use crate::{IndexError, Result};

const STAGING_PREFIX: &str = ".staging-";
const TRASH_PREFIX: &str = ".trash-";
const QUARANTINE_PREFIX: &str = ".quarantine-";

/// A collection name's entry: the collection, or why it failed to open.
#[derive(Clone)]
enum Slot {
    Open(Arc<Collection>),
    Quarantined(String),
}

type Tenants = BTreeMap<String, BTreeMap<String, Slot>>;

/// A collection that failed to open (see [`Store::quarantined`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct QuarantinedCollection {
    pub tenant: String,
    /// The collection's name; empty when the tenant's whole folder could
    /// not be read.
    pub name: String,
    /// Why it failed to open (may name files: for logs and operators).
    pub error: String,
}

/// Every tenant's collections, loaded from and kept durable in one folder.
///
/// `Send + Sync`: share it behind an `Arc` and call it from blocking tasks.
pub struct Store {
    root: PathBuf,
    options: StoreOptions,
    tenants: RwLock<Tenants>,
    /// Holds the advisory lock on `<dir>/LOCK` while the store is open.
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and recovers every
    /// collection: snapshot loaded, log replayed, torn last records dropped.
    /// Fails with `Locked` if another store has the folder open.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        let tenants_dir = root.join("tenants");
        create_dir(&tenants_dir, true)?;
        // Owner-only even if an older version made it world-readable (the
        // data folder itself is the operator's to choose, if it existed).
        restrict(&tenants_dir, true)?;
        let lock_path = root.join("LOCK");
        let lock = file_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| IndexError::io(&lock_path, e))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => IndexError::Locked(root.clone()),
            std::fs::TryLockError::Error(e) => IndexError::io(&lock_path, e),
        })?;

        let mut tenants = Tenants::new();
        for (tenant, tenant_dir) in subdirs(&tenants_dir)? {
            if validate_tenant(&tenant).is_err() {
                continue; // not ours
            }
            let mut collections = BTreeMap::new();
            let entries = match subdirs(&tenant_dir) {
                Ok(entries) => entries,
                Err(e) => {
                    // Nothing of this tenant can be served; quarantined
                    // under the empty name, the others go on.
                    collections.insert(String::new(), Slot::Quarantined(e.to_string()));
                    tenants.insert(tenant, collections);
                    continue;
                }
            };
            for (name, dir) in entries {
                if name.starts_with(STAGING_PREFIX) || name.starts_with(TRASH_PREFIX) {
                    // An interrupted create or delete: finish it (or leave
                    // it for the next open, if that fails: it is hidden).
                    let _ = std::fs::remove_dir_all(&dir);
                } else if validate_collection(&name).is_ok() && dir.join(CONFIG_FILE).exists() {
                    collections.insert(name.clone(), open_or_quarantine(&dir, &name, &options));
                }
            }
            if !collections.is_empty() {
                tenants.insert(tenant, collections);
            }
        }
        Ok(Self {
            root,
            options,
            tenants: RwLock::new(tenants),
            _lock: lock,
        })
    }

    /// Creates an empty collection for `tenant`; durable when it returns.
    pub fn create_collection(
        &self,
        tenant: &str,
        name: &str,
        config: CollectionConfig,
    ) -> Result<Arc<Collection>> {
        validate_tenant(tenant)?;
        validate_collection(name)?;
        config.validate()?;
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        match tenants.get(tenant).and_then(|c| c.get(name)) {
            Some(Slot::Open(_)) => return Err(IndexError::AlreadyExists(name.to_string())),
            Some(Slot::Quarantined(_)) => return Err(IndexError::Quarantined(name.to_string())),
            None => {}
        }
        let limit = self.options.max_collections_per_tenant;
        if tenants.get(tenant).map_or(0, BTreeMap::len) >= limit {
            return Err(IndexError::LimitExceeded {
                what: "collections per tenant",
                limit,
            });
        }
        let tenant_dir = self.tenant_dir(tenant);
        if !tenant_dir.exists() {
            create_dir(&tenant_dir, true)?;
            sync_dir(&self.root.join("tenants"))?;
        }
        let staging = tenant_dir.join(format!("{STAGING_PREFIX}{name}"));
        let dir = tenant_dir.join(name);
        let built = (|| {
            if staging.exists() {
                std::fs::remove_dir_all(&staging).map_err(|e| IndexError::io(&staging, e))?;
            }
            create_dir(&staging, false)?;
            Collection::create_files(&staging, &config)?;
            std::fs::rename(&staging, &dir).map_err(|e| IndexError::io(&dir, e))?;
            sync_dir(&tenant_dir)
        })();
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let collection = Arc::new(Collection::open(&dir, name, &self.options)?);
        tenants
            .entry(tenant.to_string())
            .or_default()
            .insert(name.to_string(), Slot::Open(collection.clone()));
        Ok(collection)
    }

    /// The collection `name` of `tenant`; `NotFound` if that tenant has none
    /// by that name (whether or not another tenant does), `Quarantined` if
    /// it failed to open.
    pub fn collection(&self, tenant: &str, name: &str) -> Result<Arc<Collection>> {
        validate_tenant(tenant)?;
        validate_collection(name)?;
        match self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .and_then(|c| c.get(name))
        {
            Some(Slot::Open(c)) => Ok(c.clone()),
            Some(Slot::Quarantined(_)) => Err(IndexError::Quarantined(name.to_string())),
            None => Err(IndexError::NotFound(name.to_string())),
        }
    }

    /// Names of `tenant`'s collections that serve, sorted (quarantined ones
    /// are left out: see [`Self::quarantined`]).
    pub fn list_collections(&self, tenant: &str) -> Result<Vec<String>> {
        validate_tenant(tenant)?;
        Ok(self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .map(|c| {
                c.iter()
                    .filter(|(_, slot)| matches!(slot, Slot::Open(_)))
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The collections that failed to open, by tenant and name, with why.
    /// They stay on disk untouched until deleted (see the module docs).
    pub fn quarantined(&self) -> Vec<QuarantinedCollection> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        tenants
            .iter()
            .flat_map(|(tenant, collections)| {
                collections.iter().filter_map(move |(name, slot)| match slot {
                    Slot::Quarantined(error) => Some(QuarantinedCollection {
                        tenant: tenant.clone(),
                        name: name.clone(),
                        error: error.clone(),
                    }),
                    Slot::Open(_) => None,
                })
            })
            .collect()
    }

    /// Tenants that have at least one collection, sorted.
    pub fn list_tenants(&self) -> Vec<String> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Deletes a collection and its files; durable when it returns. Handles
    /// to it that callers still hold answer `NotFound` from then on. A
    /// quarantined collection's files are moved aside instead (kept under
    /// a hidden `.quarantine-` name for an operator), freeing its name.
    pub fn delete_collection(&self, tenant: &str, name: &str) -> Result<()> {
        validate_tenant(tenant)?;
        validate_collection(name)?;
        let tenant_dir = self.tenant_dir(tenant);
        let trash = {
            let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
            let collections = tenants
                .get_mut(tenant)
                .filter(|c| c.contains_key(name))
                .ok_or_else(|| IndexError::NotFound(name.to_string()))?;
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = tenant_dir.join(name);
            let trash = match &collections[name] {
                Slot::Open(collection) => {
                    let trash = tenant_dir.join(format!("{TRASH_PREFIX}{name}-{nanos}"));
                    // The store lock is held until the collection is
                    // retired, so the name cannot be reused while its old
                    // files are in use.
                    collection.retire(|| {
                        std::fs::rename(&dir, &trash).map_err(|e| IndexError::io(&dir, e))?;
                        sync_dir(&tenant_dir)
                    })?;
                    Some(trash)
                }
                Slot::Quarantined(_) => {
                    let aside = tenant_dir.join(format!("{QUARANTINE_PREFIX}{name}-{nanos}"));
                    std::fs::rename(&dir, &aside).map_err(|e| IndexError::io(&dir, e))?;
                    sync_dir(&tenant_dir)?;
                    None
                }
            };
            collections.remove(name);
            if collections.is_empty() {
                tenants.remove(tenant);
            }
            trash
        };
        // Already deleted for good; a failure here leaves a hidden folder
        // that the next open removes.
        if let Some(trash) = trash {
            let _ = std::fs::remove_dir_all(&trash);
        }
        Ok(())
    }

    /// Checkpoints every collection (e.g. at shutdown, for a fast restart).
    pub fn checkpoint_all(&self) -> Result<()> {
        for c in self.all_collections() {
            match c.checkpoint() {
                Ok(()) | Err(IndexError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Totals over every tenant.
    pub fn stats(&self) -> StoreStats {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        let mut stats = StoreStats {
            tenants: tenants.len(),
            ..StoreStats::default()
        };
        for c in tenants.values().flat_map(BTreeMap::values).filter_map(Slot::open) {
            stats.collections += 1;
            if let Ok(s) = c.stats() {
                stats.documents += s.documents;
                stats.chunks += s.chunks;
            }
        }
        stats
    }

    /// The folder the store lives in.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn all_collections(&self) -> Vec<Arc<Collection>> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        tenants
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(Slot::open)
            .cloned()
            .collect()
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.root.join("tenants").join(tenant)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Slot {
    fn open(&self) -> Option<&Arc<Collection>> {
        match self {
            Slot::Open(c) => Some(c),
            Slot::Quarantined(_) => None,
        }
    }
}

/// Opens the collection in `dir`, or quarantines it with the reason it
/// failed: an error, or a panic while loading it (its files are not ours
/// to guess about, and one collection must not take the store down).
fn open_or_quarantine(dir: &Path, name: &str, options: &StoreOptions) -> Slot {
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Collection::open(dir, name, options)
    }));
    match opened {
        Ok(Ok(c)) => Slot::Open(Arc::new(c)),
        Ok(Err(e)) => Slot::Quarantined(e.to_string()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Slot::Quarantined(format!("opening {} panicked: {what}", dir.display()))
        }
    }
}

/// `(name, path)` of the subfolders of `dir` with UTF-8 names.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| IndexError::io(dir, e))? {
        let entry = entry.map_err(|e| IndexError::io(dir, e))?;
        let is_dir = entry
            .file_type()
            .map_err(|e| IndexError::io(entry.path(), e))?
            .is_dir();
        if let (true, Ok(name)) = (is_dir, entry.file_name().into_string()) {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}
