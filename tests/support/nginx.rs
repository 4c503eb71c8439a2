//! A real nginx (Debian's package) in front of ragd replicas on loopback:
//! its own prefix folder and config, a free port, no root needed, stopped
//! when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "install nginx with `apt-get install nginx`; this test needs it and does not skip";

/// The config: round robin over `upstreams` (`127.0.0.1:PORT`), passed
/// on as the compose file's nginx does (`docker/nginx/ragd-proxy.conf`: a
/// replica that refuses a connection, times out or answers 502 or 503 is skipped
/// for the next, for idempotent requests and any request not yet sent to
/// it); a failed replica is left alone for 2 s. Every answer names the
/// replicas tried in `X-Upstream` (nginx's `$upstream_addr`: `A, B` when A
/// failed first).
pub fn config(listen_port: u16, upstreams: &[String], as_root: bool) -> String {
    let proxy = crate::repo_root().join("docker/nginx/ragd-proxy.conf");
    let proxy = proxy.display();
    let servers: String = upstreams
        .iter()
        .map(|u| format!("    server {u} max_fails=1 fail_timeout=2s;\n"))
        .collect();
    // Workers of a root master switch to `user`; a non-root master ignores it.
    let user = if as_root { "user root;\n" } else { "" };
    format!(
        "{user}worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log access.log;
  client_body_temp_path tmp/body;
  proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi;
  scgi_temp_path tmp/scgi;
  upstream ragd {{
{servers}  }}
  server {{
    listen 127.0.0.1:{listen_port};
    client_max_body_size 8m;
    location / {{
      include {proxy};
      add_header X-Upstream $upstream_addr always;
    }}
  }}
}}
"
    )
}

/// nginx in the foreground (`daemon off`), its master a child of the test.
pub struct Nginx {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Nginx {
    /// Writes [`config`] into `prefix`, starts nginx there on `port` and
    /// waits until it accepts connections.
    pub fn start(prefix: &Path, port: u16, upstreams: &[String]) -> Self {
        let nginx = crate::tool_on_path("nginx", INSTALL);
        std::fs::create_dir_all(prefix.join("tmp")).expect("nginx temp folder");
        let as_root = rustix::process::geteuid().is_root();
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config(port, upstreams, as_root)).expect("write nginx.conf");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            // The log nginx opens before it reads the config.
            .arg("-e")
            .arg(prefix.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut nginx = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.child.try_wait().expect("nginx status") {
                let log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
                panic!("nginx exited ({status}):\n{log}");
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "nginx did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }
}

impl Drop for Nginx {
    /// SIGTERM (fast shutdown: the master stops its workers); SIGKILL
    /// would orphan the workers, still listening.
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let t0 = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
