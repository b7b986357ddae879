//! A Redis server for tests.
//!
//! ```no_run
//! # async fn example() -> Result<(), zerotrust_testkit::redis::RedisFixtureError> {
//! use zerotrust_testkit::redis::RedisServer;
//!
//! let server = RedisServer::start().await?;
//! let url = server.url(); // redis://127.0.0.1:<port>
//! let prefix = server.key_prefix(); // unique to this fixture, ends with ':'
//! # let _ = (url, prefix);
//! # Ok(())
//! # }
//! ```
//!
//! [`RedisServer::start`] picks the server in this order:
//!
//! 1. If `ZEROTRUST_TEST_REDIS_URL` is set, it uses that server. Tests then share
//!    it, so each fixture returns its own [`key_prefix`](RedisServer::key_prefix)
//!    and tests must put it in front of every key they write. Nothing is flushed.
//! 2. Otherwise it spawns `redis-server` from `PATH` on a free port of 127.0.0.1,
//!    without persistence, waits until it replies to `PING`, and kills it when the
//!    fixture is dropped.
//!
//! A spawned server can be paused (`SIGSTOP`), resumed, stopped and restarted on
//! the same port, for tests of timeouts and reconnects.
//!
//! [`RedisCluster::start`] spawns a three-node Redis Cluster on loopback ports,
//! for tests of cluster hash slots.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The environment variable that names an existing Redis server to use instead
/// of spawning one.
pub const REDIS_URL_ENV: &str = "ZEROTRUST_TEST_REDIS_URL";

/// How long a spawned server may take to reply to `PING`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The delay between `PING` attempts while a server starts.
const STARTUP_POLL: Duration = Duration::from_millis(25);

/// How often `start` retries on a new port when a spawned server exits at once,
/// which happens when another process took the port first.
const SPAWN_ATTEMPTS: u32 = 3;

/// Numbers the fixtures of this process, so key prefixes never repeat.
static FIXTURE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The number of primary nodes in a [`RedisCluster`], the minimum that
/// `redis-cli --cluster create` accepts.
pub const CLUSTER_NODES: usize = 3;

/// How long a new cluster may take to report `cluster_state:ok` on every node.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The highest client port a cluster node may use: its cluster bus listens on
/// the port plus 10,000, which must stay below 65,536.
const MAX_CLUSTER_PORT: u16 = 55_535;

/// How many random ports a cluster fixture tries for each node.
const CLUSTER_PORT_ATTEMPTS: u32 = 200;

/// An error while starting or controlling the test Redis server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisFixtureError {
    /// `redis-server` is not on `PATH` and no URL was configured.
    #[error(
        "redis-server was not found on PATH and {REDIS_URL_ENV} is not set: \
         install it (apt-get install redis-server) or set {REDIS_URL_ENV}=redis://host:port"
    )]
    NotInstalled,
    /// Spawning `redis-server` or signalling it failed.
    #[error("running {program} failed: {source}")]
    Spawn {
        /// The program that failed to run.
        program: &'static str,
        /// The operating system error.
        source: std::io::Error,
    },
    /// The spawned server exited before it replied to `PING`.
    #[error("redis-server on port {port} exited during startup with {status}")]
    Exited {
        /// The port it was given.
        port: u16,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The spawned server did not reply to `PING` in time.
    #[error("redis-server on port {port} did not reply to PING within {timeout:?}")]
    StartupTimeout {
        /// The port it was given.
        port: u16,
        /// How long the fixture waited.
        timeout: Duration,
    },
    /// The operation needs a server that the fixture spawned, but it uses the
    /// server from `ZEROTRUST_TEST_REDIS_URL`.
    #[error(
        "{operation} works only on a spawned redis-server, not on the one from {REDIS_URL_ENV}"
    )]
    NotSpawned {
        /// The operation that was requested.
        operation: &'static str,
    },
    /// No free local port could be found.
    #[error("finding a free port on 127.0.0.1 failed: {0}")]
    NoFreePort(std::io::Error),
    /// `redis-cli --cluster create` failed.
    #[error("redis-cli --cluster create failed with {status}: {output}")]
    ClusterCreate {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard output and error, trimmed.
        output: String,
    },
    /// The cluster nodes did not all report `cluster_state:ok` in time.
    #[error("redis cluster on ports {ports:?} was not ready within {timeout:?}")]
    ClusterTimeout {
        /// The client ports of the nodes.
        ports: Vec<u16>,
        /// How long the fixture waited.
        timeout: Duration,
    },
}

/// A Redis server for one test. See the [module docs](crate::redis).
#[derive(Debug)]
pub struct RedisServer {
    url: String,
    key_prefix: String,
    spawned: Option<SpawnedServer>,
}

#[derive(Debug)]
struct SpawnedServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts or connects to a Redis server, as the [module docs](crate::redis) describe.
    ///
    /// # Errors
    ///
    /// [`RedisFixtureError::NotInstalled`] when neither `ZEROTRUST_TEST_REDIS_URL`
    /// nor `redis-server` is available, and the other variants when the spawned
    /// server fails to start.
    pub async fn start() -> Result<Self, RedisFixtureError> {
        let key_prefix = unique_key_prefix();

        if let Ok(url) = std::env::var(REDIS_URL_ENV)
            && !url.is_empty()
        {
            tracing::debug!(target: "zerotrust::testkit", prefix = key_prefix, "using redis from {REDIS_URL_ENV}");
            return Ok(Self {
                url,
                key_prefix,
                spawned: None,
            });
        }

        Self::spawn().await
    }

    /// Spawns a private `redis-server` from PATH, ignoring `ZEROTRUST_TEST_REDIS_URL`.
    ///
    /// Fault tests use this, because only a spawned server can be paused, stopped
    /// and restarted.
    ///
    /// # Errors
    ///
    /// [`RedisFixtureError::NotInstalled`] when `redis-server` is not on PATH, and
    /// the other variants when the server fails to start.
    pub async fn spawn() -> Result<Self, RedisFixtureError> {
        let key_prefix = unique_key_prefix();
        let mut last_error = None;
        for _ in 0..SPAWN_ATTEMPTS {
            let port = free_port()?;
            match spawn_and_wait(port).await {
                Ok(child) => {
                    tracing::debug!(target: "zerotrust::testkit", port, "spawned redis-server");
                    return Ok(Self {
                        url: format!("redis://127.0.0.1:{port}"),
                        key_prefix,
                        spawned: Some(SpawnedServer {
                            port,
                            child: Some(child),
                        }),
                    });
                }
                // Another process may have taken the port between the probe and
                // the spawn: try another one.
                Err(error @ RedisFixtureError::Exited { .. }) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(RedisFixtureError::NotInstalled))
    }

    /// Returns the server URL, such as `redis://127.0.0.1:6390`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns a key prefix unique to this fixture, ending with `:`.
    ///
    /// It contains only ASCII letters, digits, `-`, `_` and `:`, so it never
    /// contains a Redis Cluster hash tag.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Returns `true` if the fixture spawned the server, and so can pause, stop
    /// and restart it.
    pub fn is_spawned(&self) -> bool {
        self.spawned.is_some()
    }

    /// Suspends the spawned server with `SIGSTOP`: connections stay open, but
    /// no command gets a reply until [`resume`](Self::resume).
    ///
    /// # Errors
    ///
    /// [`RedisFixtureError::NotSpawned`] for a server from
    /// `ZEROTRUST_TEST_REDIS_URL`, or [`RedisFixtureError::Spawn`] if `kill` fails.
    pub fn pause(&self) -> Result<(), RedisFixtureError> {
        self.signal("pause", "-STOP")
    }

    /// Resumes a server suspended by [`pause`](Self::pause) with `SIGCONT`.
    ///
    /// # Errors
    ///
    /// As for [`pause`](Self::pause).
    pub fn resume(&self) -> Result<(), RedisFixtureError> {
        self.signal("resume", "-CONT")
    }

    /// Kills the spawned server. Its data is lost, because it runs without
    /// persistence.
    ///
    /// # Errors
    ///
    /// [`RedisFixtureError::NotSpawned`] for a server from `ZEROTRUST_TEST_REDIS_URL`.
    pub fn stop(&mut self) -> Result<(), RedisFixtureError> {
        let spawned = self
            .spawned
            .as_mut()
            .ok_or(RedisFixtureError::NotSpawned { operation: "stop" })?;
        spawned.kill();
        Ok(())
    }

    /// Starts the spawned server again on the same port, stopping it first if it
    /// still runs, and waits until it replies to `PING`.
    ///
    /// # Errors
    ///
    /// [`RedisFixtureError::NotSpawned`] for a server from
    /// `ZEROTRUST_TEST_REDIS_URL`, and the startup errors of [`start`](Self::start).
    pub async fn restart(&mut self) -> Result<(), RedisFixtureError> {
        let spawned = self.spawned.as_mut().ok_or(RedisFixtureError::NotSpawned {
            operation: "restart",
        })?;
        spawned.kill();
        spawned.child = Some(spawn_and_wait(spawned.port).await?);
        Ok(())
    }

    fn signal(&self, operation: &'static str, signal: &str) -> Result<(), RedisFixtureError> {
        let child = self
            .spawned
            .as_ref()
            .and_then(|spawned| spawned.child.as_ref())
            .ok_or(RedisFixtureError::NotSpawned { operation })?;

        // The kill(1) command sends the signal, because this workspace forbids
        // the unsafe code that calling kill(2) directly needs.
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .map_err(|source| RedisFixtureError::Spawn {
                program: "kill",
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(RedisFixtureError::Spawn {
                program: "kill",
                source: std::io::Error::other(format!("kill {signal} exited with {status}")),
            })
        }
    }
}

impl SpawnedServer {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL ends a paused process too, and wait() then returns at once.
            if let Err(error) = child.kill() {
                tracing::warn!(target: "zerotrust::testkit", port = self.port, %error, "killing redis-server failed");
            }
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(spawned) = self.spawned.as_mut() {
            spawned.kill();
        }
    }
}

/// A three-node Redis Cluster for one test, each node a `redis-server` on a
/// loopback port, with no replicas and no persistence.
///
/// ```no_run
/// # async fn example() -> Result<(), zerotrust_testkit::redis::RedisFixtureError> {
/// use zerotrust_testkit::redis::RedisCluster;
///
/// let cluster = RedisCluster::start().await?;
/// let url = cluster.url(); // redis-cluster://127.0.0.1:<port>?node=127.0.0.1:<port>&…
/// # let _ = url;
/// # Ok(())
/// # }
/// ```
///
/// The nodes are killed and their working directory removed when the fixture is
/// dropped. `ZEROTRUST_TEST_REDIS_URL` is not used: the cluster is always spawned.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<SpawnedServer>,
    directory: std::path::PathBuf,
    key_prefix: String,
}

impl RedisCluster {
    /// Spawns three cluster-enabled `redis-server` processes, joins them with
    /// `redis-cli --cluster create`, and waits until every node reports
    /// `cluster_state:ok`.
    ///
    /// # Errors
    ///
    /// [`RedisFixtureError::NotInstalled`] when `redis-server` is not on PATH,
    /// [`RedisFixtureError::ClusterCreate`] when `redis-cli` fails, and
    /// [`RedisFixtureError::ClusterTimeout`] when the cluster does not become
    /// ready within 20 seconds.
    pub async fn start() -> Result<Self, RedisFixtureError> {
        let key_prefix = unique_key_prefix();
        let directory = std::env::temp_dir().join(key_prefix.trim_end_matches(':'));
        std::fs::create_dir_all(&directory).map_err(|source| RedisFixtureError::Spawn {
            program: "redis-server",
            source,
        })?;
        let mut cluster = Self {
            nodes: Vec::with_capacity(CLUSTER_NODES),
            directory,
            key_prefix,
        };

        for _ in 0..CLUSTER_NODES {
            let port = free_cluster_port(&cluster.ports())?;
            let config_file = cluster.directory.join(format!("nodes-{port}.conf"));
            let args = [
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-config-file".to_owned(),
                config_file.display().to_string(),
                "--cluster-node-timeout".to_owned(),
                "2000".to_owned(),
                "--dir".to_owned(),
                cluster.directory.display().to_string(),
            ];
            let child = spawn_with_args_and_wait(port, &args).await?;
            cluster.nodes.push(SpawnedServer {
                port,
                child: Some(child),
            });
        }

        cluster.create()?;
        cluster.wait_until_ready().await?;
        tracing::debug!(target: "zerotrust::testkit", ports = ?cluster.ports(), "started redis cluster");
        Ok(cluster)
    }

    /// Returns a fred cluster URL naming every node, such as
    /// `redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002`.
    pub fn url(&self) -> String {
        let ports = self.ports();
        let mut url = format!("redis-cluster://127.0.0.1:{}", ports[0]);
        for (i, port) in ports.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{port}"));
        }
        url
    }

    /// Returns the client ports of the nodes.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// Returns a key prefix unique to this fixture, ending with `:` and free of
    /// hash tags.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    fn create(&self) -> Result<(), RedisFixtureError> {
        let mut command = Command::new("redis-cli");
        command.arg("--cluster").arg("create");
        for port in self.ports() {
            command.arg(format!("127.0.0.1:{port}"));
        }
        let output = command
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RedisFixtureError::Spawn {
                program: "redis-cli",
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Err(RedisFixtureError::ClusterCreate {
            status: output.status,
            output: text.trim().to_owned(),
        })
    }

    async fn wait_until_ready(&self) -> Result<(), RedisFixtureError> {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        loop {
            if self.ports().into_iter().all(cluster_state_ok) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RedisFixtureError::ClusterTimeout {
                    ports: self.ports(),
                    timeout: CLUSTER_READY_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if let Err(error) = std::fs::remove_dir_all(&self.directory) {
            tracing::warn!(target: "zerotrust::testkit", directory = %self.directory.display(), %error, "removing cluster directory failed");
        }
    }
}

/// Picks a port at most [`MAX_CLUSTER_PORT`] whose cluster bus port (port plus
/// 10,000) is free too, and that no node of this cluster uses.
fn free_cluster_port(taken: &[u16]) -> Result<u16, RedisFixtureError> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut state = u64::from(seed) ^ (u64::from(std::process::id()) << 32) | 1;
    for _ in 0..CLUSTER_PORT_ATTEMPTS {
        // xorshift: spreads attempts over the range without a random crate.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let span = u64::from(MAX_CLUSTER_PORT - 20_000);
        let port = 20_000 + u16::try_from(state % span).unwrap_or(0);
        let bus_port = port + 10_000;
        if taken.contains(&port) || taken.contains(&bus_port) {
            continue;
        }
        let free = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            && TcpListener::bind((Ipv4Addr::LOCALHOST, bus_port)).is_ok();
        if free {
            return Ok(port);
        }
    }
    Err(RedisFixtureError::NoFreePort(std::io::Error::other(format!(
        "no port below {MAX_CLUSTER_PORT} with a free cluster bus port after {CLUSTER_PORT_ATTEMPTS} attempts"
    ))))
}

/// Asks a node with `redis-cli` whether it reports `cluster_state:ok`.
fn cluster_state_ok(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "cluster", "info"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("cluster_state:ok"))
}

fn unique_key_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = FIXTURE_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("zt-test-{}-{nanos}-{n}:", std::process::id())
}

/// Asks the OS for a free port. Another process may take it before the server
/// binds it, which `start` handles by retrying.
fn free_port() -> Result<u16, RedisFixtureError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(RedisFixtureError::NoFreePort)?;
    let port = listener
        .local_addr()
        .map_err(RedisFixtureError::NoFreePort)?
        .port();
    Ok(port)
}

async fn spawn_and_wait(port: u16) -> Result<Child, RedisFixtureError> {
    spawn_with_args_and_wait(port, &[]).await
}

async fn spawn_with_args_and_wait(
    port: u16,
    extra_args: &[String],
) -> Result<Child, RedisFixtureError> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => RedisFixtureError::NotInstalled,
            _ => RedisFixtureError::Spawn {
                program: "redis-server",
                source,
            },
        })?;

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(RedisFixtureError::Exited { port, status });
        }
        if replies_to_ping(port) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RedisFixtureError::StartupTimeout {
                port,
                timeout: STARTUP_TIMEOUT,
            });
        }
        tokio::time::sleep(STARTUP_POLL).await;
    }
}

/// Sends an inline `PING` and checks for `+PONG`, with short timeouts so a
/// half-started server cannot stall the caller.
fn replies_to_ping(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let timeout = Duration::from_millis(200);
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawned_server_pings_and_stops_on_drop() {
        let server = RedisServer::spawn().await.expect("spawn redis-server");
        let port: u16 = server
            .url()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("url ends with a port");

        assert!(server.url().starts_with("redis://127.0.0.1:"));
        assert!(replies_to_ping(port));
        assert!(server.key_prefix().ends_with(':'));

        drop(server);
        assert!(!replies_to_ping(port));
    }

    #[tokio::test]
    async fn pause_resume_stop_restart_control_spawned_server() {
        let mut server = RedisServer::spawn().await.expect("spawn redis-server");
        let port: u16 = server.url().rsplit(':').next().unwrap().parse().unwrap();

        server.pause().unwrap();
        assert!(!replies_to_ping(port), "a paused server must not reply");
        server.resume().unwrap();
        assert!(replies_to_ping(port));

        server.stop().unwrap();
        assert!(!replies_to_ping(port));
        server.restart().await.unwrap();
        assert!(replies_to_ping(port));
    }

    #[tokio::test]
    async fn cluster_starts_three_ready_nodes_and_cleans_up() {
        let cluster = RedisCluster::start().await.expect("start redis cluster");
        let ports = cluster.ports();
        let directory = cluster.directory.clone();

        assert_eq!(ports.len(), CLUSTER_NODES);
        assert!(ports.iter().all(|port| *port <= MAX_CLUSTER_PORT));
        assert!(ports.iter().all(|port| cluster_state_ok(*port)));
        assert!(cluster.url().starts_with("redis-cluster://127.0.0.1:"));
        assert_eq!(cluster.url().matches("node=").count(), CLUSTER_NODES - 1);

        drop(cluster);
        assert!(ports.iter().all(|port| !replies_to_ping(*port)));
        assert!(!directory.exists());
    }

    #[test]
    fn key_prefixes_are_unique_and_tag_free() {
        let first = unique_key_prefix();
        let second = unique_key_prefix();

        assert_ne!(first, second);
        assert!(!first.contains('{'));
        assert!(!first.contains('}'));
    }

    #[test]
    fn fixture_errors_format() {
        let errors = [
            RedisFixtureError::NotInstalled,
            RedisFixtureError::Spawn {
                program: "redis-server",
                source: std::io::Error::other("denied"),
            },
            RedisFixtureError::Exited {
                port: 1,
                status: std::os::unix::process::ExitStatusExt::from_raw(256),
            },
            RedisFixtureError::StartupTimeout {
                port: 1,
                timeout: Duration::from_secs(1),
            },
            RedisFixtureError::NotSpawned { operation: "pause" },
            RedisFixtureError::NoFreePort(std::io::Error::other("none")),
            RedisFixtureError::ClusterCreate {
                status: std::os::unix::process::ExitStatusExt::from_raw(256),
                output: "ERR".into(),
            },
            RedisFixtureError::ClusterTimeout {
                ports: vec![1, 2, 3],
                timeout: Duration::from_secs(1),
            },
        ];
        for error in errors {
            assert!(!error.to_string().is_empty());
        }
        assert!(
            RedisFixtureError::NotInstalled
                .to_string()
                .contains("apt-get install redis-server")
        );
    }
}
