//! The API keys file: which key belongs to which tenant.
//!
//! The file stores only the SHA-256 of each key (hex), never the key: a
//! copy of the file does not let anyone in. It is TOML, or JSON when its
//! name ends in `.json`, with one entry per key:
//!
//! ```toml
//! [[keys]]
//! id = "key_3f9c0b1e2a4d5f60"
//! tenant = "acme"
//! name = "ci"                 # optional
//! prefix = "rk-3f9c0b1e"      # the key's first characters, to recognise it
//! sha256 = "9b74c9897bac770ffc029102a200c5de..."
//! created = 1767225600        # unix seconds
//! ```
//!
//! A tenant may also have its own guard policy (see
//! `ragd_service::guard_policy`), kept in the same file:
//!
//! ```toml
//! [guard_policies.acme]
//! input = true
//! context = true
//! output = true
//! threshold = 0.8
//! action = "flag"             # block, redact (default) or flag
//! allow = ["ignore the previous formatting"]
//! ```
//!
//! The admin endpoints change it; every change is written to a temporary
//! file, fsynced and renamed over the old one (then the folder is fsynced),
//! so a crash leaves the old file or the new one, never a mix. Edits by hand
//! take effect at the next start.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use ragd_service::guard_policy::GuardPolicy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Every key starts with this, so a leaked one is easy to recognise (and
/// to find with secret scanners).
pub const KEY_PREFIX: &str = "rk-";
/// Characters of a key shown in listings and logs (`rk-` and 8 hex digits).
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 8;

/// One key as stored: everything but the key itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Stable id, used to revoke the key.
    pub id: String,
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The key's first characters (not enough to use it).
    #[serde(default)]
    pub prefix: String,
    /// SHA-256 of the key, lowercase hex.
    pub sha256: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyRecord>,
    /// Tenants' own guard policies (others use the server's flags).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    guard_policies: BTreeMap<String, GuardPolicy>,
}

/// SHA-256 of `key`, lowercase hex.
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A fresh random key: `rk-` and 64 hex digits (244 random bits from the
/// operating system's generator, through UUID v4).
fn new_key() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{KEY_PREFIX}{a}{b}")
}

/// The first characters of a key, safe to show.
pub fn shown(key: &str) -> String {
    let cut = key.char_indices().nth(SHOWN_CHARS).map_or(key.len(), |(i, _)| i);
    key[..cut].to_string()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where the keys live.
pub(super) enum Source {
    /// The keys file.
    File(PathBuf),
    /// Postgres, shared by replicas (`--keys postgres`, see `keys_pg`).
    Postgres(super::keys_pg::PgSource),
}

/// The keys of every tenant, loaded from and saved to one file, or kept in
/// Postgres with a copy here refreshed every second.
pub struct KeyRing {
    pub(super) source: Source,
    pub(super) table: RwLock<Table>,
    /// Held while a change is written, so changes reach the file in order.
    pub(super) writer: Mutex<()>,
}

/// Who a key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyOwner {
    /// The key's record id (stable, not secret).
    pub key_id: String,
    pub tenant: String,
}

#[derive(Clone, Default)]
pub(super) struct Table {
    records: Vec<KeyRecord>,
    by_hash: HashMap<String, KeyOwner>,
    policies: BTreeMap<String, GuardPolicy>,
}

impl Table {
    pub(super) fn new(records: Vec<KeyRecord>, policies: BTreeMap<String, GuardPolicy>) -> Self {
        let by_hash = records
            .iter()
            .map(|r| {
                let owner = KeyOwner {
                    key_id: r.id.clone(),
                    tenant: r.tenant.clone(),
                };
                (r.sha256.clone(), owner)
            })
            .collect();
        Self {
            records,
            by_hash,
            policies,
        }
    }
}

impl KeyRing {
    /// Loads `path`; a missing file is an empty key ring (the first key
    /// created writes it). A file that cannot be parsed, or holds a bad
    /// entry, is an error: better not to start than to start with the
    /// wrong keys.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let file = match std::fs::read_to_string(path) {
            Ok(text) => parse(path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeysFile::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read keys file {}", path.display())),
        };
        Ok(Self {
            source: Source::File(path.to_path_buf()),
            table: RwLock::new(Table::new(file.keys, file.guard_policies)),
            writer: Mutex::new(()),
        })
    }

    /// Where the keys are, for logs: the file's path, or `postgres`.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::File(path) => path.display().to_string(),
            Source::Postgres(_) => "postgres".into(),
        }
    }

    /// Who `key` belongs to, if it is a known key.
    pub fn owner_of(&self, key: &str) -> Option<KeyOwner> {
        let hash = hash_key(key);
        self.read().by_hash.get(&hash).cloned()
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Vec<KeyRecord> {
        self.read().records.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.read().records.is_empty()
    }

    /// Creates a key for `tenant` and saves the file. Returns its record
    /// and the key itself, which is never stored and cannot be shown again.
    /// Blocks on disk.
    pub fn create(&self, tenant: &str, name: Option<String>) -> std::io::Result<(KeyRecord, String)> {
        let key = new_key();
        let record = KeyRecord {
            id: format!("key_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
            tenant: tenant.to_string(),
            name,
            prefix: shown(&key),
            sha256: hash_key(&key),
            created: unix_now(),
        };
        match &self.source {
            Source::File(_) => self.change(|file| file.keys.push(record.clone()))?,
            Source::Postgres(pg) => self.publish(pg.insert(&record)?),
        }
        Ok((record, key))
    }

    /// Revokes the key `id` and saves the file; `false` if there is none.
    /// Blocks on disk.
    pub fn delete(&self, id: &str) -> std::io::Result<bool> {
        if let Source::Postgres(pg) = &self.source {
            let (found, table) = pg.delete(id)?;
            self.publish(table);
            return Ok(found);
        }
        let mut found = false;
        self.change(|file| {
            let before = file.keys.len();
            file.keys.retain(|r| r.id != id);
            found = file.keys.len() != before;
        })?;
        Ok(found)
    }

    /// `tenant`'s own guard policy, if it has one.
    pub fn guard_policy(&self, tenant: &str) -> Option<GuardPolicy> {
        self.read().policies.get(tenant).cloned()
    }

    /// Sets (`Some`) or removes (`None`) `tenant`'s guard policy and saves
    /// the file; returns whether the tenant had one. Blocks on disk.
    pub fn set_guard_policy(&self, tenant: &str, policy: Option<GuardPolicy>) -> std::io::Result<bool> {
        if let Source::Postgres(pg) = &self.source {
            let (had, table) = pg.set_policy(tenant, policy.as_ref())?;
            self.publish(table);
            return Ok(had);
        }
        let mut had = false;
        self.change(|file| {
            had = match policy {
                Some(p) => file.guard_policies.insert(tenant.to_string(), p),
                None => file.guard_policies.remove(tenant),
            }
            .is_some();
        })?;
        Ok(had)
    }

    /// Applies `edit` to a copy, writes the copy to disk, then publishes it:
    /// the keys in use are always the ones in the file.
    fn change(&self, edit: impl FnOnce(&mut KeysFile)) -> std::io::Result<()> {
        let Source::File(path) = &self.source else {
            return Err(std::io::Error::other("the keys are not in a file"));
        };
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = {
            let table = self.read();
            KeysFile {
                keys: table.records.clone(),
                guard_policies: table.policies.clone(),
            }
        };
        edit(&mut file);
        let bytes = serialize(path, &file)?;
        write_atomic(path, &bytes)?;
        self.publish(Table::new(file.keys, file.guard_policies));
        Ok(())
    }

    /// Makes `table` the keys in use.
    pub(super) fn publish(&self, table: Table) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

fn parse(path: &Path, text: &str) -> anyhow::Result<KeysFile> {
    let file: KeysFile = if is_json(path) {
        serde_json::from_str(text).with_context(|| format!("invalid JSON in keys file {}", path.display()))?
    } else {
        toml::from_str(text).with_context(|| format!("invalid TOML in keys file {}", path.display()))?
    };
    let mut ids = std::collections::HashSet::new();
    let mut hashes = std::collections::HashSet::new();
    for (i, r) in file.keys.iter().enumerate() {
        let at = || format!("keys file {}, entry {} (id `{}`)", path.display(), i + 1, r.id);
        if r.id.is_empty() || !ids.insert(r.id.as_str()) {
            bail!("{}: ids must be present and unique", at());
        }
        if r.sha256.len() != 64
            || !r
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            bail!(
                "{}: `sha256` must be 64 lowercase hex digits (the SHA-256 of the key)",
                at()
            );
        }
        if !hashes.insert(r.sha256.as_str()) {
            bail!("{}: the same key appears twice", at());
        }
        if let Err(reason) = check_tenant(&r.tenant) {
            bail!("{}: tenant `{}` {reason}", at(), r.tenant);
        }
    }
    for (tenant, policy) in &file.guard_policies {
        if let Err(reason) = check_tenant(tenant) {
            bail!(
                "keys file {}: guard policy of tenant `{tenant}`: {reason}",
                path.display()
            );
        }
        if let Err(reason) = policy.validate() {
            bail!(
                "keys file {}: guard policy of tenant `{tenant}`: {reason}",
                path.display()
            );
        }
    }
    Ok(file)
}

fn serialize(path: &Path, file: &KeysFile) -> std::io::Result<Vec<u8>> {
    let text = if is_json(path) {
        serde_json::to_string_pretty(file).map_err(std::io::Error::other)?
    } else {
        let body = toml::to_string(file).map_err(std::io::Error::other)?;
        format!("# ragd API keys: SHA-256 of each key, never the key. Managed by /admin/keys.\n\n{body}")
    };
    Ok(text.into_bytes())
}

/// Tenant ids name folders in the data directory: `[A-Za-z0-9_-]{1,64}`
/// (what `ragd_index` accepts).
pub fn check_tenant(tenant: &str) -> Result<(), &'static str> {
    if tenant.is_empty() || tenant.len() > ragd_index::MAX_NAME_LEN {
        return Err("must be 1 to 64 characters long");
    }
    if !tenant
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("may only contain ASCII letters, digits, `_` and `-`");
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// folder, fsynced, renamed over `path`, then the folder fsynced.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let file_name = path
        .file_name()
        .map_or_else(|| "keys".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        #[cfg(unix)]
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_as_hashes_and_survive_a_reload() {
        for file in ["keys.toml", "keys.json"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("sub").join(file);
            let ring = KeyRing::load(&path).unwrap();
            assert!(ring.is_empty());
            let (a, key_a) = ring.create("acme", Some("ci".into())).unwrap();
            let (b, key_b) = ring.create("globex", None).unwrap();
            assert!(key_a.starts_with(KEY_PREFIX) && key_a.len() == 67);
            assert_ne!(key_a, key_b);
            assert_eq!(a.prefix, key_a[..11]);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains(&key_a) && text.contains(&a.sha256), "{text}");

            let ring = KeyRing::load(&path).unwrap();
            assert_eq!(ring.owner_of(&key_a).map(|o| o.tenant).as_deref(), Some("acme"));
            assert_eq!(ring.owner_of(&key_b).map(|o| o.tenant).as_deref(), Some("globex"));
            assert_eq!(ring.owner_of("rk-nope"), None);
            assert_eq!(ring.list(), vec![a.clone(), b.clone()]);

            assert!(ring.delete(&a.id).unwrap());
            assert!(!ring.delete(&a.id).unwrap());
            assert_eq!(ring.owner_of(&key_a), None);
            let ring = KeyRing::load(&path).unwrap();
            assert_eq!(ring.list(), vec![b]);
            let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
            assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        }
    }

    #[test]
    fn bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let good = format!(
            "[[keys]]\nid = \"k1\"\ntenant = \"acme\"\nsha256 = \"{}\"\n",
            hash_key("x")
        );
        std::fs::write(&path, &good).unwrap();
        assert_eq!(
            KeyRing::load(&path)
                .unwrap()
                .owner_of("x")
                .map(|o| o.tenant)
                .as_deref(),
            Some("acme")
        );
        for bad in [
            "not toml [".to_string(),
            good.replace("acme", "a/b"),
            good.replace(&hash_key("x"), "abc"),
            format!("{good}{}", good.replace("k1", "k2")),
            format!("{good}{}", good.replace(&hash_key("x"), &hash_key("y"))),
        ] {
            std::fs::write(&path, &bad).unwrap();
            assert!(KeyRing::load(&path).is_err(), "{bad}");
        }
    }
}
