//! Settings from the environment.
//!
//! Each binary has one typed clap struct whose fields carry `env = "..."`, so
//! every setting is an environment variable (the names of the course and of the
//! original stack) and `--help` documents them all. The groups that several
//! services share ([`RedisArgs`], [`PostgresArgs`], [`AdminArgs`], [`LogArgs`],
//! [`crate::options::OptionArgs`]) live here and are `#[command(flatten)]`ed.
//!
//! Two conventions on top of clap:
//! - **`*_FILE` secrets.** For every setting `X`, `X_FILE=/run/secrets/x` reads
//!   the value from that file (Docker secrets), as the official `postgres` image
//!   does. [`parse`] applies it before clap sees the environment.
//! - **One clear line.** A missing or malformed setting stops the process at
//!   start with a message that names the variable (clap's value name is the
//!   variable's name), never a panic backtrace.

use std::fmt;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{Args, Parser, ValueEnum};
use sqlx::postgres::PgConnectOptions;

/// Parses `T` from the arguments and the environment, after resolving the
/// `*_FILE` variables of every setting `T` knows. Exits with status 2 and a
/// message naming the variable on a bad setting, like clap does for flags.
///
/// Call it first thing in `main`, before any thread is started: it may set
/// environment variables.
pub fn parse<T: Parser>() -> T {
    if let Err(line) = resolve_file_vars(&T::command()) {
        eprintln!("error: {line}");
        std::process::exit(2);
    }
    T::parse()
}

/// For each setting `X` of `cmd` (and its subcommands) with `X_FILE` set and `X`
/// unset, reads the file into `X`, trimming one trailing newline.
fn resolve_file_vars(cmd: &clap::Command) -> Result<(), String> {
    let mut names = Vec::new();
    collect_env_names(cmd, &mut names);
    for name in names {
        let file_var = format!("{name}_FILE");
        let Some(path) = std::env::var_os(&file_var) else {
            continue;
        };
        if std::env::var_os(&name).is_some() {
            return Err(format!("both {name} and {file_var} are set; set only one"));
        }
        let value = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{file_var}: cannot read {}: {e}",
                std::path::Path::new(&path).display()
            )
        })?;
        let value = value
            .strip_suffix('\n')
            .map(|v| v.strip_suffix('\r').unwrap_or(v))
            .unwrap_or(&value);
        // Single-threaded at this point (see `parse`), so this is sound.
        std::env::set_var(&name, value);
    }
    Ok(())
}

fn collect_env_names(cmd: &clap::Command, out: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        if let Some(env) = arg.get_env() {
            out.push(env.to_string_lossy().into_owned());
        }
    }
    for sub in cmd.get_subcommands() {
        collect_env_names(sub, out);
    }
}

/// A value that must never reach a log: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Where Redis is: `REDIS_URL`, or `REDIS_HOST` and `REDIS_PORT`.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis server host name.
    #[arg(long, env = "REDIS_HOST", default_value = "redis")]
    pub redis_host: String,
    /// Redis server port.
    #[arg(long, env = "REDIS_PORT", default_value_t = 6379)]
    pub redis_port: u16,
    /// Full Redis URL (`redis://[:password@]host:port/db`); overrides REDIS_HOST and REDIS_PORT.
    #[arg(long, env = "REDIS_URL", value_parser = parse_redis_url)]
    pub redis_url: Option<Secret>,
}

fn parse_redis_url(s: &str) -> Result<Secret, String> {
    redis::parse_redis_url(s)
        .ok_or_else(|| "not a redis:// URL".to_owned())
        .map(|_| Secret::new(s))
}

impl RedisArgs {
    /// The URL to connect to.
    pub fn url(&self) -> Secret {
        match &self.redis_url {
            Some(url) => url.clone(),
            None => Secret::new(format!("redis://{}:{}/", self.redis_host, self.redis_port)),
        }
    }

    /// Settings for a given URL, for tests and tools.
    pub fn from_url(url: &str) -> Self {
        Self {
            redis_host: String::new(),
            redis_port: 0,
            redis_url: Some(Secret::new(url)),
        }
    }

    /// A short description for logs, without any password.
    pub fn describe(&self) -> String {
        match &self.redis_url {
            Some(url) => redis::parse_redis_url(url.expose())
                .map(|u| {
                    format!(
                        "{}:{}",
                        u.host_str().unwrap_or("?"),
                        u.port().unwrap_or(6379)
                    )
                })
                .unwrap_or_else(|| "redis".to_owned()),
            None => format!("{}:{}", self.redis_host, self.redis_port),
        }
    }
}

/// Where Postgres is: `DATABASE_URL`, or the five `POSTGRES_*` variables of the
/// official image.
#[derive(Debug, Clone, Args)]
pub struct PostgresArgs {
    /// Postgres server host name.
    #[arg(long, env = "POSTGRES_HOST", default_value = "db")]
    pub postgres_host: String,
    /// Postgres server port.
    #[arg(long, env = "POSTGRES_PORT", default_value_t = 5432)]
    pub postgres_port: u16,
    /// Postgres user.
    #[arg(long, env = "POSTGRES_USER", default_value = "postgres")]
    pub postgres_user: String,
    /// Postgres password (or POSTGRES_PASSWORD_FILE).
    #[arg(
        long,
        env = "POSTGRES_PASSWORD",
        default_value = "postgres",
        hide_default_value = true
    )]
    pub postgres_password: Secret,
    /// Postgres database name.
    #[arg(long, env = "POSTGRES_DB", default_value = "postgres")]
    pub postgres_db: String,
    /// Full connection URL (`postgres://user:pass@host:port/db`); overrides the POSTGRES_* settings.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_database_url)]
    pub database_url: Option<Secret>,
}

fn parse_database_url(s: &str) -> Result<Secret, String> {
    if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
        return Err("not a postgres:// URL".to_owned());
    }
    PgConnectOptions::from_str(s)
        .map(|_| Secret::new(s))
        .map_err(|e| format!("not a postgres:// URL: {e}"))
}

impl PostgresArgs {
    /// Connection options; built from parts so that no password needs escaping.
    pub fn connect_options(&self) -> PgConnectOptions {
        match &self.database_url {
            // Validated by the value parser.
            Some(url) => PgConnectOptions::from_str(url.expose()).expect("validated DATABASE_URL"),
            None => PgConnectOptions::new()
                .host(&self.postgres_host)
                .port(self.postgres_port)
                .username(&self.postgres_user)
                .password(self.postgres_password.expose())
                .database(&self.postgres_db),
        }
        .application_name(env!("CARGO_PKG_NAME"))
    }

    /// Settings for a given URL, for tests and tools.
    pub fn from_url(url: &str) -> Self {
        Self {
            postgres_host: String::new(),
            postgres_port: 0,
            postgres_user: String::new(),
            postgres_password: Secret::new(""),
            postgres_db: String::new(),
            database_url: Some(Secret::new(url)),
        }
    }

    /// A short description for logs, without the password.
    pub fn describe(&self) -> String {
        let o = self.connect_options();
        format!(
            "{}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("")
        )
    }
}

/// The admin port: `/healthz`, `/readyz`, `/metrics`.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Port of the admin server (health, readiness, Prometheus metrics).
    #[arg(long, env = "ADMIN_PORT", default_value_t = 5858)]
    pub admin_port: u16,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging: `LOG_FORMAT`; the filter itself is `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format: text or json. The level filter is RUST_LOG (default info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Runs a service's async entry point on a multi-threaded runtime and turns an
/// error into one logged line and exit status 1.
pub fn run<F>(fut: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Before telemetry is set up (a bad RUST_LOG, say) nothing would
            // print the error: say it on stderr then.
            if tracing::dispatcher::has_been_set() {
                tracing::error!(error = format!("{e:#}"), "fatal");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        pg: PostgresArgs,
        #[command(flatten)]
        redis: RedisArgs,
    }

    /// Parses flags only, so that the test runner's own environment (say a
    /// REDIS_URL for the integration tests) cannot change the outcome.
    fn parse_flags(args: &[&str]) -> Result<Cli, clap::Error> {
        use clap::FromArgMatches;
        let cmd = Cli::command().mut_args(|a| a.env(None));
        Cli::from_arg_matches(&cmd.try_get_matches_from(args)?)
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        let pg = PostgresArgs::from_url("postgres://u:hunter2@h:1/d");
        assert!(!format!("{pg:?}").contains("hunter2"));
        assert_eq!(pg.describe(), "h:1/d");
    }

    #[test]
    fn redis_url_overrides_host_and_port() {
        let cli = parse_flags(&["x", "--redis-host", "h", "--redis-port", "7"]).unwrap();
        assert_eq!(cli.redis.url().expose(), "redis://h:7/");
        let cli = parse_flags(&["x", "--redis-url", "redis://other:1/2"]).unwrap();
        assert_eq!(cli.redis.url().expose(), "redis://other:1/2");
        assert_eq!(cli.redis.describe(), "other:1");
    }

    #[test]
    fn malformed_settings_name_the_variable() {
        let err = parse_flags(&["x", "--redis-port", "seventy"]).unwrap_err();
        assert!(err.to_string().contains("REDIS_PORT"), "{err}");
        let err = parse_flags(&["x", "--database-url", "mysql://x"]).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn every_setting_is_found_for_file_resolution() {
        let mut names = Vec::new();
        collect_env_names(&Cli::command(), &mut names);
        for n in [
            "POSTGRES_PASSWORD",
            "DATABASE_URL",
            "REDIS_URL",
            "REDIS_HOST",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
    }

    #[test]
    fn postgres_parts_build_options() {
        let cli = parse_flags(&["x", "--postgres-host", "pg", "--postgres-db", "v"]).unwrap();
        assert_eq!(cli.pg.describe(), "pg:5432/v");
    }
}
