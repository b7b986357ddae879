//! A fresh PostgreSQL database for each test.
//!
//! ```no_run
//! # async fn example() -> Result<(), zerotrust_testkit::postgres::PostgresFixtureError> {
//! use zerotrust_testkit::postgres::PostgresDatabase;
//!
//! let database = PostgresDatabase::create().await?;
//! let url = database.url(); // postgres://postgres@127.0.0.1:<port>/zt_test_…
//! # let _ = url;
//! # Ok(())
//! # }
//! ```
//!
//! [`PostgresDatabase::create`] makes a database with a unique name, so tests
//! can run in parallel, on a server chosen in this order:
//!
//! 1. If `ZEROTRUST_TEST_DATABASE_URL` is set, the server it names. The URL
//!    must let its user run `CREATE DATABASE`, and its database part is
//!    replaced by the new database's name. Each database is dropped again when
//!    its fixture is dropped.
//! 2. Otherwise a throwaway cluster made with `initdb` and started with
//!    `pg_ctl` on a free port of 127.0.0.1, with trust authentication for the
//!    `postgres` user and `fsync` off. The programs are looked up on `PATH` and
//!    then in `/usr/lib/postgresql/<version>/bin`, where Debian installs them.
//!    All fixtures of a test process share the cluster, and the last one to be
//!    dropped stops it and removes its directory. A process killed with
//!    `SIGKILL` leaves the cluster running.
//!
//! PostgreSQL refuses to run as root. When the tests run as root, as CI does,
//! the fixture runs `initdb` and `pg_ctl` as the `postgres` system user through
//! `runuser`, which the Debian `postgresql` package creates. `psql` runs as the
//! calling user and connects over TCP.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that names an existing PostgreSQL server to use
/// instead of a throwaway cluster.
pub const DATABASE_URL_ENV: &str = "ZEROTRUST_TEST_DATABASE_URL";

/// The user that owns a throwaway cluster when the tests run as root.
pub const CLUSTER_OS_USER: &str = "postgres";

/// How often starting a cluster is tried on a new port, because another
/// process may take the free port first.
const START_ATTEMPTS: u32 = 3;

/// How long `pg_ctl start` waits for the server to accept connections.
const START_TIMEOUT_SECS: &str = "30";

/// Numbers the databases of this process, so their names never repeat.
static DATABASE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The cluster that the live fixtures of this process share.
static SHARED_CLUSTER: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());

/// An error while preparing a test database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresFixtureError {
    /// A PostgreSQL program was not found and no URL was configured.
    #[error(
        "{program} was not found on PATH or in /usr/lib/postgresql/*/bin and \
         {DATABASE_URL_ENV} is not set: install PostgreSQL (apt-get install postgresql) \
         or set {DATABASE_URL_ENV}=postgres://user@host:port/postgres"
    )]
    NotInstalled {
        /// The program that is missing.
        program: &'static str,
    },
    /// The tests run as root and the `postgres` user does not exist.
    #[error(
        "the tests run as root, and PostgreSQL refuses to run as root, but the \
         {CLUSTER_OS_USER} user does not exist: create it \
         (useradd --system --home-dir /var/lib/postgresql {CLUSTER_OS_USER}), \
         run the tests as another user, or set {DATABASE_URL_ENV}"
    )]
    NoClusterUser,
    /// A program could not be run.
    #[error("running {program} failed: {source}")]
    Spawn {
        /// The program that failed to run.
        program: String,
        /// The operating system error.
        source: std::io::Error,
    },
    /// A program ran and reported a failure.
    #[error("{program} failed with {status}: {stderr}")]
    Failed {
        /// The program and its first argument.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// No free local port could be found.
    #[error("finding a free port on 127.0.0.1 failed: {0}")]
    NoFreePort(std::io::Error),
    /// `ZEROTRUST_TEST_DATABASE_URL` is not a `postgres://` URL with a path.
    #[error(
        "{DATABASE_URL_ENV} is not a postgres:// URL ending in /<database>: \
         expected postgres://user@host:port/postgres"
    )]
    InvalidUrl,
}

/// A database made for one test. See the [module docs](crate::postgres).
#[derive(Debug)]
pub struct PostgresDatabase {
    url: String,
    name: String,
    /// The URL of the server's `postgres` database, for `DROP DATABASE`.
    admin_url: String,
    psql: PathBuf,
    _cluster: Option<Arc<Cluster>>,
}

impl PostgresDatabase {
    /// Creates a database with a unique name, as the [module docs](crate::postgres)
    /// describe.
    ///
    /// # Errors
    ///
    /// [`PostgresFixtureError::NotInstalled`] when neither the URL nor the
    /// PostgreSQL programs are available, [`PostgresFixtureError::NoClusterUser`]
    /// as root without a `postgres` user, and the other variants when a program
    /// fails.
    pub async fn create() -> Result<Self, PostgresFixtureError> {
        let psql = find_program("psql")?;
        let name = unique_database_name();

        let (admin_url, url, cluster) = match std::env::var(DATABASE_URL_ENV) {
            Ok(base) if !base.is_empty() => (
                with_database(&base, "postgres")?,
                with_database(&base, &name)?,
                None,
            ),
            _ => {
                let cluster = shared_cluster()?;
                (cluster.url("postgres"), cluster.url(&name), Some(cluster))
            }
        };

        run(
            Command::new(&psql)
                .arg(&admin_url)
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
                .arg(format!("CREATE DATABASE \"{name}\"")),
            "psql",
        )?;
        tracing::debug!(target: "zerotrust::testkit", database = name, "created test database");

        Ok(Self {
            url,
            name,
            admin_url,
            psql,
            _cluster: cluster,
        })
    }

    /// Returns the database URL, such as `postgres://postgres@127.0.0.1:5433/zt_test_1`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns the database name. It contains only ASCII letters, digits and `_`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        // WITH (FORCE) ends connections that a test left open (PostgreSQL 13+).
        let dropped = run(
            Command::new(&self.psql)
                .arg(&self.admin_url)
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
                .arg(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                )),
            "psql",
        );
        if let Err(error) = dropped {
            tracing::warn!(target: "zerotrust::testkit", database = self.name, %error, "dropping test database failed");
        }
    }
}

/// A throwaway cluster, stopped and removed on drop.
#[derive(Debug)]
struct Cluster {
    port: u16,
    directory: PathBuf,
    pg_ctl: PathBuf,
    run_as: Option<&'static str>,
}

impl Cluster {
    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn data_directory(&self) -> PathBuf {
        self.directory.join("data")
    }

    fn start() -> Result<Self, PostgresFixtureError> {
        let initdb = find_program("initdb")?;
        let pg_ctl = find_program("pg_ctl")?;
        let run_as = if running_as_root()? {
            if !user_exists(CLUSTER_OS_USER)? {
                return Err(PostgresFixtureError::NoClusterUser);
            }
            Some(CLUSTER_OS_USER)
        } else {
            None
        };

        // mktemp runs as the cluster's user, so that user owns the directory.
        let created_directory = run(
            as_user(run_as, Path::new("mktemp")).args(["-d", "/tmp/zerotrust-pg-XXXXXX"]),
            "mktemp",
        )?;
        let directory = PathBuf::from(String::from_utf8_lossy(&created_directory.stdout).trim());
        let mut cluster = Self {
            port: 0,
            directory,
            pg_ctl,
            run_as,
        };

        run(
            as_user(run_as, &initdb)
                .arg("-D")
                .arg(cluster.data_directory())
                .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
                .arg("--no-instructions"),
            "initdb",
        )?;

        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            cluster.port = free_port()?;
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                cluster.port,
                cluster.directory.display()
            );
            let started = run(
                as_user(run_as, &cluster.pg_ctl)
                    .arg("-D")
                    .arg(cluster.data_directory())
                    .arg("-l")
                    .arg(cluster.directory.join("server.log"))
                    .args(["-w", "-t", START_TIMEOUT_SECS, "-o", &options, "start"]),
                "pg_ctl",
            );
            match started {
                Ok(_) => {
                    tracing::debug!(target: "zerotrust::testkit", port = cluster.port, "started postgres cluster");
                    return Ok(cluster);
                }
                // The usual cause is a port taken between the probe and the start.
                Err(error) => last_error = Some(error),
            }
        }
        Err(
            last_error.unwrap_or(PostgresFixtureError::NoFreePort(std::io::Error::other(
                "no start attempt was made",
            ))),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let stopped = run(
                as_user(self.run_as, &self.pg_ctl)
                    .arg("-D")
                    .arg(self.data_directory())
                    .args(["-m", "immediate", "-w", "stop"]),
                "pg_ctl",
            );
            if let Err(error) = stopped {
                tracing::warn!(target: "zerotrust::testkit", port = self.port, %error, "stopping postgres cluster failed");
            }
        }
        if let Err(error) = std::fs::remove_dir_all(&self.directory) {
            tracing::warn!(target: "zerotrust::testkit", directory = %self.directory.display(), %error, "removing postgres cluster directory failed");
        }
    }
}

/// Returns the live shared cluster, or starts one.
fn shared_cluster() -> Result<Arc<Cluster>, PostgresFixtureError> {
    // A panic while starting leaves no cluster behind the lock, so a poisoned
    // lock is safe to reuse.
    let mut shared = SHARED_CLUSTER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return Ok(cluster);
    }
    let cluster = Arc::new(Cluster::start()?);
    *shared = Arc::downgrade(&cluster);
    Ok(cluster)
}

fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn run(command: &mut Command, program: &str) -> Result<Output, PostgresFixtureError> {
    let output =
        command
            .stdin(Stdio::null())
            .output()
            .map_err(|source| PostgresFixtureError::Spawn {
                program: program.to_owned(),
                source,
            })?;
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .chars()
        .rev()
        .take(2_000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(PostgresFixtureError::Failed {
        program: program.to_owned(),
        status: output.status,
        stderr: tail.trim().to_owned(),
    })
}

/// Finds `program` on `PATH`, then in the newest `/usr/lib/postgresql/*/bin`.
fn find_program(program: &'static str) -> Result<PathBuf, PostgresFixtureError> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|directory| directory.join(program))
        .find(|candidate| candidate.is_file());
    if let Some(found) = on_path {
        return Ok(found);
    }

    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin").join(program)))
        })
        .filter(|(_, candidate)| candidate.is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, found)| found)
        .ok_or(PostgresFixtureError::NotInstalled { program })
}

fn running_as_root() -> Result<bool, PostgresFixtureError> {
    let output = run(Command::new("id").arg("-u"), "id")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn user_exists(user: &str) -> Result<bool, PostgresFixtureError> {
    let status = Command::new("id")
        .arg("-u")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| PostgresFixtureError::Spawn {
            program: "id".to_owned(),
            source,
        })?;
    Ok(status.success())
}

/// Replaces the database part of a `postgres://` URL, keeping its query.
fn with_database(url: &str, database: &str) -> Result<String, PostgresFixtureError> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let Some(rest) = base
        .strip_prefix("postgres://")
        .or_else(|| base.strip_prefix("postgresql://"))
    else {
        return Err(PostgresFixtureError::InvalidUrl);
    };
    let Some((authority, _old_database)) = rest.split_once('/') else {
        return Err(PostgresFixtureError::InvalidUrl);
    };
    let mut result = format!("postgres://{authority}/{database}");
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    Ok(result)
}

fn unique_database_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("zt_test_{}_{nanos}_{n}", std::process::id())
}

fn free_port() -> Result<u16, PostgresFixtureError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(PostgresFixtureError::NoFreePort)?;
    let port = listener
        .local_addr()
        .map_err(PostgresFixtureError::NoFreePort)?
        .port();
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn databases_are_distinct_and_reachable() {
        let first = PostgresDatabase::create().await.expect("create database");
        let second = PostgresDatabase::create().await.expect("create database");

        assert_ne!(first.name(), second.name());
        let output = run(
            Command::new(&first.psql).arg(first.url()).args([
                "-tA",
                "-c",
                "SELECT current_database()",
            ]),
            "psql",
        )
        .expect("psql connects");
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), first.name());
    }

    #[test]
    fn with_database_replaces_path_and_keeps_query() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "x").unwrap(),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://u@h/db", "x").unwrap(),
            "postgres://u@h/x"
        );
        assert!(with_database("redis://h/0", "x").is_err());
        assert!(with_database("postgres://h", "x").is_err());
    }

    #[test]
    fn database_names_are_unique_identifiers() {
        let first = unique_database_name();
        let second = unique_database_name();

        assert_ne!(first, second);
        assert!(
            first
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        );
        assert!(first.len() < 64, "PostgreSQL truncates names at 63 bytes");
    }
}
