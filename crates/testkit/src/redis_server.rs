//! Throwaway Redis servers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::process::{data_dir, find_exe, free_port, spawn_tied, wait_or_kill};

const INSTALL_HINT: &str = "no Redis for the tests: set REDIS_URL to a Redis server, or install \
redis-server (Debian: apt-get install redis-server) so the tests can start their own";

/// A `redis-server` child process on 127.0.0.1, with append-only persistence
/// in its own folder so that a [`restart`](Self::restart) keeps the data, as the
/// compose file's Redis does.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    exe: PathBuf,
    child: Mutex<Option<Child>>,
}

impl RedisServer {
    /// Starts a private server on a free port. Panics with what to install
    /// when `redis-server` is not there.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a private server on `port`.
    pub fn start_on(port: u16) -> Self {
        let exe = find_exe("redis-server", &[]).unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let server = RedisServer {
            port,
            dir: data_dir("redis"),
            exe,
            child: Mutex::new(None),
        };
        server.launch();
        server
    }

    fn launch(&self) {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "no"])
            .args([
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_tied(cmd, libc::SIGKILL)
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.exe.display()));
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Ready means answering commands: a server started on an existing
        // append-only file accepts connections at once but answers `-LOADING`
        // until it has read the file back.
        while !answers_ping(self.port) {
            if let Some(status) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "redis-server on port {} exited at start: {status}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (SIGTERM, as `docker stop` does); the port then refuses connections.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            crate::process::signal(child.id(), libc::SIGTERM);
            wait_or_kill(&mut child, Duration::from_secs(10));
        }
    }

    /// Kills the server without letting it save anything (SIGKILL).
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&self) {
        self.stop();
        self.launch();
    }

    /// Starts a stopped server again.
    pub fn start_again(&self) {
        if self.child.lock().unwrap().is_none() {
            self.launch();
        }
    }
}

/// Whether the server on `port` answers `PING` with `PONG` (not `-LOADING`).
fn answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut buf = [0u8; 64];
    s.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
        && s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis for one test: a URL and a queue name of its own.
#[derive(Clone)]
pub struct TestRedis {
    pub url: String,
    /// A fresh queue name; every key the app uses derives from it.
    pub queue: String,
    _server: Option<Arc<RedisServer>>,
}

/// The Redis of this test binary: `REDIS_URL` if set, else one throwaway
/// server shared by every test of the binary. Each call gets its own queue name.
pub fn redis() -> TestRedis {
    static SHARED: OnceLock<Arc<RedisServer>> = OnceLock::new();
    let queue = crate::unique_name("votes");
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => TestRedis {
            url,
            queue,
            _server: None,
        },
        _ => {
            let server = SHARED
                .get_or_init(|| Arc::new(RedisServer::start()))
                .clone();
            TestRedis {
                url: server.url(),
                queue,
                _server: Some(server),
            }
        }
    }
}
