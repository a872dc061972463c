//! Spawning child processes that die with the test process.

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` from the long-lived spawner thread with `PR_SET_PDEATHSIG`, so
/// the kernel sends `death_signal` to it when this process ends.
pub(crate) fn spawn_tied(mut cmd: Command, death_signal: i32) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                // Lives until the process exits: the children's death signal is
                // tied to this thread.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                loop {
                    std::thread::park();
                }
            })
            .expect("spawning the testkit spawner thread");
        Mutex::new(tx)
    });
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() == 1 {
                libc::raise(death_signal);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .expect("spawner thread alive");
    reply_rx.recv().expect("spawner thread replies")
}

/// Sends `sig` to `pid`.
pub(crate) fn signal(pid: u32, sig: i32) {
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Waits for `child` to exit, up to `timeout`; SIGKILL after that.
pub(crate) fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                return child.wait().ok();
            }
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A fresh folder under `$TMPDIR/voting-testkit`, named after this process so
/// that the folders of dead processes can be recognised and removed.
pub(crate) fn data_dir(kind: &str) -> PathBuf {
    static CLEANED: OnceLock<()> = OnceLock::new();
    let root = std::env::temp_dir().join("voting-testkit");
    CLEANED.get_or_init(|| remove_stale(&root));
    let dir = root.join(crate::unique_name(&format!(
        "{}-{kind}",
        std::process::id()
    )));
    std::fs::create_dir_all(&dir).expect("creating a testkit data folder");
    dir
}

fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Finds an executable on `PATH` or in `extra` folders.
pub(crate) fn find_exe(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// One of the project's binaries running as a child process, with its output
/// in a log file; SIGTERM (then SIGKILL after 10 s) when dropped.
pub struct Service {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Service {
    /// Starts `exe` with `envs` on top of the current environment (minus the
    /// app's own settings, so a developer's shell cannot leak into a test).
    pub fn spawn(
        name: &str,
        exe: &Path,
        args: &[&str],
        envs: &[(&str, String)],
    ) -> std::io::Result<Service> {
        let log = data_dir(&format!("log-{name}")).join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (k, _) in std::env::vars_os() {
            if is_app_setting(&k) {
                cmd.env_remove(&k);
            }
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("TESTKIT_RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = spawn_tied(cmd, libc::SIGKILL)?;
        Ok(Service {
            name: name.to_owned(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// What the process has written so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal(child.id(), libc::SIGTERM);
        wait_or_kill(&mut child, timeout)
    }

    /// SIGKILL, as `kill -9` would.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(10));
    }
}

fn is_app_setting(k: &OsString) -> bool {
    let k = k.to_string_lossy();
    const PREFIXES: [&str; 6] = [
        "REDIS_",
        "POSTGRES_",
        "OPTION_",
        "VOTES_",
        "RESULT_",
        "VOTE_",
    ];
    PREFIXES.iter().any(|p| k.starts_with(p))
        || matches!(
            k.as_ref(),
            "DATABASE_URL" | "BIND_PORT" | "ADMIN_PORT" | "LOG_FORMAT"
        )
}
