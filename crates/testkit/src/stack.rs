//! The whole stack as native processes: Redis, Postgres and the project's
//! binaries on free (or given) ports. `cargo xtask up` runs it for people;
//! end-to-end tests and benchmarks use it directly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::{free_port, port_open, Service};
use crate::{PgServer, RedisServer};

/// The services `cargo xtask up` starts, in start order. A service joins the
/// launcher by being listed here.
pub const SERVICES: &[&str] = &["worker", "vote", "result"];

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Binaries to start, from [`SERVICES`].
    pub services: Vec<String>,
    /// Folder holding the built binaries (`target/debug`).
    pub bin_dir: PathBuf,
    /// Fixed ports, or free ones when `None`.
    pub vote_port: Option<u16>,
    pub result_port: Option<u16>,
    pub redis_port: Option<u16>,
    pub postgres_port: Option<u16>,
    /// Postgres with its default fsync and synchronous commit (benchmarks, `up`)
    /// rather than the fast, unsafe test settings.
    pub durable_postgres: bool,
    /// Extra environment for every service (OPTION_A, RUST_LOG, ...).
    pub env: Vec<(String, String)>,
}

impl StackOptions {
    pub fn new(services: &[&str]) -> Self {
        Self {
            services: services.iter().map(|s| s.to_string()).collect(),
            bin_dir: bin_dir(),
            vote_port: None,
            result_port: None,
            redis_port: None,
            postgres_port: None,
            durable_postgres: false,
            env: Vec::new(),
        }
    }
}

/// A running stack; everything stops when it is dropped.
pub struct Stack {
    // Dropped in field order: services first, then the servers they use.
    pub services: Vec<Service>,
    pub redis: RedisServer,
    pub pg: PgServer,
    pub ports: Ports,
    pub queue: String,
}

/// Where each part listens on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Ports {
    pub vote: u16,
    pub result: u16,
    /// Admin port of each started service, by name.
    pub admin: Vec<(String, u16)>,
    pub redis: u16,
    pub postgres: u16,
}

impl Ports {
    pub fn admin(&self, service: &str) -> Option<u16> {
        self.admin
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, p)| *p)
    }
}

impl Stack {
    /// Starts Redis, Postgres, then each service, waiting for each one's
    /// `/healthz`. Blocking; call it from `spawn_blocking` in async code.
    pub fn start(opts: StackOptions) -> anyhow::Result<Stack> {
        let redis = RedisServer::start_on(opts.redis_port.unwrap_or_else(free_port));
        let pg = PgServer::start_with(
            opts.postgres_port.unwrap_or_else(free_port),
            opts.durable_postgres,
        );
        let ports = Ports {
            vote: opts.vote_port.unwrap_or_else(free_port),
            result: opts.result_port.unwrap_or_else(free_port),
            admin: opts
                .services
                .iter()
                .map(|s| (s.clone(), free_port()))
                .collect(),
            redis: redis.port,
            postgres: pg.port,
        };
        let mut stack = Stack {
            services: Vec::new(),
            redis,
            pg,
            ports,
            queue: "votes".into(),
        };
        for name in &opts.services {
            stack.start_service(name, &opts.bin_dir, &opts.env)?;
        }
        Ok(stack)
    }

    /// The environment a service of this stack gets.
    pub fn env_for(&self, service: &str) -> Vec<(&'static str, String)> {
        let bind = match service {
            "vote" => self.ports.vote,
            "result" => self.ports.result,
            _ => free_port(),
        };
        vec![
            ("REDIS_URL", self.redis.url()),
            ("DATABASE_URL", self.pg.url()),
            ("VOTES_QUEUE", self.queue.clone()),
            ("BIND_PORT", bind.to_string()),
            (
                "ADMIN_PORT",
                self.ports
                    .admin(service)
                    .unwrap_or_else(free_port)
                    .to_string(),
            ),
            ("VOTE_URL", format!("http://127.0.0.1:{}/", self.ports.vote)),
            (
                "RESULT_URL",
                format!("http://127.0.0.1:{}/", self.ports.result),
            ),
        ]
    }

    /// Starts (or starts again) one service and waits for its `/healthz`.
    pub fn start_service(
        &mut self,
        name: &str,
        bin_dir: &Path,
        extra: &[(String, String)],
    ) -> anyhow::Result<()> {
        let exe = bin_dir.join(name);
        anyhow::ensure!(
            exe.is_file(),
            "{} not found: build it first (cargo build --bins)",
            exe.display()
        );
        let mut env = self.env_for(name);
        if !self.ports.admin.iter().any(|(s, _)| s == name) {
            self.ports.admin.push((name.to_owned(), free_port()));
        }
        let admin = self.ports.admin(name).expect("just added");
        env.retain(|(k, _)| *k != "ADMIN_PORT");
        env.push(("ADMIN_PORT", admin.to_string()));
        let mut all: Vec<(&str, String)> = env;
        for (k, v) in extra {
            all.push((k.as_str(), v.clone()));
        }
        let mut svc = Service::spawn(name, &exe, &[], &all)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let healthy = || {
            port_open(admin)
                && common::admin::probe(admin, "/healthz", Duration::from_secs(1))
                    .is_ok_and(|c| c == 200)
        };
        while !healthy() {
            if let Some(status) = svc.try_status() {
                anyhow::bail!("{name} exited at start ({status}):\n{}", svc.output());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name} not healthy within 30 s:\n{}",
                svc.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.services.retain(|s| s.name != name);
        self.services.push(svc);
        Ok(())
    }

    /// The running service called `name`.
    pub fn service(&mut self, name: &str) -> Option<&mut Service> {
        self.services.iter_mut().find(|s| s.name == name)
    }

    /// Stops one service with SIGTERM and returns it (for its exit status and output).
    pub fn stop_service(&mut self, name: &str) -> Option<Service> {
        let i = self.services.iter().position(|s| s.name == name)?;
        let mut svc = self.services.remove(i);
        svc.terminate(Duration::from_secs(20));
        Some(svc)
    }
}

/// The folder of the project's binaries for the running test or tool:
/// `target/<profile>`, found from the current executable
/// (`target/<profile>/deps/<test>` or `target/<profile>/<tool>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe has a folder");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}
