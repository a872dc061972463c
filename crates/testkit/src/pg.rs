//! Throwaway Postgres clusters.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

use crate::process::{data_dir, find_exe, free_port, spawn_tied, wait_or_kill};

const INSTALL_HINT: &str =
    "no Postgres for the tests: set DATABASE_URL to a server whose role may \
CREATE DATABASE, or install the PostgreSQL server binaries (Debian: apt-get install postgresql; \
they live in /usr/lib/postgresql/<version>/bin) so the tests can start their own";

/// Debian keeps the server binaries off `PATH`: newest version first.
fn pg_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort_by_key(|d| {
        std::cmp::Reverse(
            d.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    dirs
}

/// A `postgres` cluster in a temporary folder, listening on 127.0.0.1 only,
/// user `postgres` with trust authentication.
pub struct PgServer {
    pub port: u16,
    dir: PathBuf,
    postgres: PathBuf,
    durable: bool,
    child: Mutex<Option<Child>>,
}

impl PgServer {
    /// A cluster tuned for tests (`fsync=off`): fast, not crash-safe.
    pub fn start() -> Self {
        Self::start_with(free_port(), false)
    }

    /// A cluster on `port`; `durable` keeps Postgres's default fsync and
    /// synchronous commit, for benchmarks and the native launcher.
    pub fn start_with(port: u16, durable: bool) -> Self {
        let extra = pg_bin_dirs();
        let initdb = find_exe("initdb", &extra).unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        // A symlink on PATH: the sibling tools live beside the real file.
        let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        let postgres = initdb.with_file_name("postgres");
        assert!(
            postgres.is_file(),
            "{INSTALL_HINT} (no postgres beside {})",
            initdb.display()
        );
        let dir = data_dir("pg");
        let data = dir.join("data");
        let mut cmd = Command::new(&initdb);
        cmd.arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null());
        as_unprivileged(&mut cmd, &dir);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", initdb.display()));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let server = PgServer {
            port,
            dir,
            postgres,
            durable,
            child: Mutex::new(None),
        };
        server.launch();
        server
    }

    fn launch(&self) {
        let data = self.dir.join("data");
        let mut cmd = Command::new(&self.postgres);
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "max_connections=300", "-c", "shared_buffers=128MB"])
            .args(["-c", "log_min_messages=warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.join("postgres.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            );
        if !self.durable {
            cmd.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        }
        as_unprivileged(&mut cmd, &self.dir);
        // SIGQUIT: Postgres's immediate shutdown, which also stops its children.
        let child = spawn_tied(cmd, libc::SIGQUIT)
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.postgres.display()));
        *self.child.lock().unwrap() = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let isready = self.postgres.with_file_name("pg_isready");
        loop {
            if let Some(status) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log =
                    std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
                panic!(
                    "postgres on port {} exited at start ({status}): {log}",
                    self.port
                );
            }
            let ok = Command::new(&isready)
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres on port {} not ready within 30 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// URL of the `postgres` database (the admin one).
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Fast shutdown (SIGINT): sessions are cut, as a `docker restart` does.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            crate::process::signal(child.id(), libc::SIGINT);
            wait_or_kill(&mut child, Duration::from_secs(30));
        }
    }

    /// Starts a stopped server again with the same data.
    pub fn start_again(&self) {
        if self.child.lock().unwrap().is_none() {
            self.launch();
        }
    }

    pub fn restart(&self) {
        self.stop();
        self.launch();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            crate::process::signal(child.id(), libc::SIGQUIT);
            wait_or_kill(&mut child, Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Postgres refuses to run as root: as root, run it as the `postgres` user (or
/// `nobody`) and give that user the folder.
fn as_unprivileged(cmd: &mut Command, dir: &std::path::Path) {
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let (uid, gid) = ["postgres", "nobody"]
        .iter()
        .find_map(|name| lookup_user(name))
        .expect(
            "running as root, and neither a postgres nor a nobody user exists to run Postgres as",
        );
    chown_recursive(dir, uid, gid);
    // The folder's parents must be traversable by that user.
    let mut p = dir.parent();
    while let Some(parent) = p {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(parent) {
            let mode = meta.permissions().mode();
            if mode & 0o001 == 0 {
                let _ =
                    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode | 0o001));
            }
        }
        p = parent.parent();
    }
    use std::os::unix::process::CommandExt;
    cmd.uid(uid).gid(gid);
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn chown_recursive(path: &std::path::Path, uid: u32, gid: u32) {
    let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            chown_recursive(&e.path(), uid, gid);
        }
    }
}

/// A Postgres for one test: its own database, freshly created.
pub struct TestPg {
    /// URL of the test's own database.
    pub url: String,
    pub database: String,
}

/// The Postgres of this test binary: `DATABASE_URL` if set (its role needs
/// CREATEDB), else one throwaway cluster shared by the binary's tests. Each
/// call creates a fresh, empty database.
pub async fn postgres() -> TestPg {
    static SHARED: OnceLock<PgServer> = OnceLock::new();
    let admin_url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => tokio::task::spawn_blocking(|| SHARED.get_or_init(PgServer::start).url())
            .await
            .expect("starting Postgres"),
    };
    create_database(&admin_url).await
}

/// Creates a fresh database on the server of `admin_url`.
pub async fn create_database(admin_url: &str) -> TestPg {
    let database = crate::unique_name("test").to_lowercase();
    let mut conn = PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connecting to Postgres for the tests: {e}\n{INSTALL_HINT}"));
    let create = format!("CREATE DATABASE \"{database}\"");
    conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(create)))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE (the role needs CREATEDB): {e}"));
    let _ = conn.close().await;
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("a database URL has a path");
    let query = admin_url
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    TestPg {
        url: format!("{base}/{database}{query}"),
        database,
    }
}
