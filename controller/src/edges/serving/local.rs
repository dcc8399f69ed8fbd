//! The local deployment target: one model-server process per version (command, port, health
//! path), a traffic router per deployment, crash restarts with backoff.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use slipway_crd::model_deployment::LocalTarget as Spec;

use super::router::{Exported, TrafficRouter};
use crate::decide::rollout::Window;

/// Errors of the local target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The router port is taken.
    #[error(
        "cannot listen on 127.0.0.1:{port} for deployment {deployment}: {source}; free the port or change target.local.port"
    )]
    Listen {
        /// Deployment.
        deployment: String,
        /// Port.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
    /// A server could not be started.
    #[error(
        "cannot start the model server of {deployment} version {version} (`{program}`): {source}"
    )]
    Start {
        /// Deployment.
        deployment: String,
        /// Version.
        version: String,
        /// Program.
        program: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The version's artifact is not what its digest declares.
    #[error("will not serve {deployment} version {version}: {why}")]
    Unverified {
        /// Deployment.
        deployment: String,
        /// Version.
        version: String,
        /// What does not match.
        why: String,
    },
    /// The async runtime could not start.
    #[error("cannot start the router runtime: {0}")]
    Runtime(std::io::Error),
}

/// The artifact a server serves: its URI, and the digest the version registered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    /// `MODEL_URI`.
    pub uri: String,
    /// Its declared digest, verified before a server starts.
    pub digest: String,
}

struct Server {
    child: Child,
    port: u16,
    model: Model,
    restarts: u32,
    next_restart: Option<Instant>,
}

struct Deployment {
    spec: Spec,
    router: TrafficRouter,
    servers: BTreeMap<String, Server>,
}

/// Key of a deployment: (namespace, name).
pub type Key = (String, String);

/// The processes and routers of every local deployment. Dropping it stops them all.
pub struct LocalTarget {
    /// Always `Some` until dropped (the drop shuts it down before the servers stop).
    runtime: Option<tokio::runtime::Runtime>,
    root: PathBuf,
    logs: PathBuf,
    deployments: HashMap<Key, Deployment>,
    /// Where routers export what they observe (`/metrics`).
    traffic: Option<crate::edges::metrics::Traffic>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Stops servers recorded in `pid_dir` that still run the recorded command line.
fn reap_orphans(pid_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pid_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        let recorded = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let running = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        // Only a process still running the same command is ours; a reused pid is left alone.
        // The program may show as a full path (a launcher such as pyenv execs the real binary),
        // so the program is compared by file name and the arguments exactly.
        let split = |s: &str| -> Vec<String> {
            let mut parts: Vec<String> = s
                .split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(first) = parts.first_mut() {
                *first = Path::new(first.as_str())
                    .file_name()
                    .map(|f| f.to_string_lossy().to_string())
                    .unwrap_or_default();
            }
            parts
        };
        if !recorded.is_empty() && split(&recorded) == split(&running) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

/// GET `path` on a local port; true on a 2xx answer within a second.
fn healthy(port: u16, path: &str) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

impl LocalTarget {
    /// A target running servers from `root` (the registry folder), logging to `logs`.
    ///
    /// Servers left behind by a previous Slipway that was killed outright (SIGKILL, power loss)
    /// are found through the pid files beside the logs and stopped first.
    pub fn new(root: &Path, logs: &Path) -> Result<Self, TargetError> {
        reap_orphans(&logs.join("pids"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(TargetError::Runtime)?;
        Ok(LocalTarget {
            runtime: Some(runtime),
            root: root.to_path_buf(),
            logs: logs.to_path_buf(),
            deployments: HashMap::new(),
            traffic: None,
        })
    }

    /// Where servers started from now on run (the checkout of the revision being served).
    pub fn set_root(&mut self, root: &Path) {
        self.root = root.to_path_buf();
    }

    /// Routers started from now on export what they observe to `traffic` (`/metrics`).
    pub fn exporting(mut self, traffic: crate::edges::metrics::Traffic) -> Self {
        self.traffic = Some(traffic);
        self
    }

    /// Makes sure a deployment's router listens on its port.
    pub fn ensure(&mut self, key: &Key, spec: &Spec) -> Result<(), TargetError> {
        if let Some(d) = self.deployments.get_mut(key) {
            if d.spec.port == spec.port {
                d.spec = spec.clone();
                return Ok(());
            }
            self.deployments.remove(key);
        }
        let Some(runtime) = &self.runtime else {
            return Err(TargetError::Runtime(std::io::Error::other(
                "the router runtime has stopped",
            )));
        };
        let router = runtime
            .block_on(TrafficRouter::start(
                spec.port,
                self.traffic.clone().map(|traffic| Exported {
                    traffic,
                    namespace: key.0.clone(),
                    deployment: key.1.clone(),
                }),
            ))
            .map_err(|source| TargetError::Listen {
                deployment: format!("{}/{}", key.0, key.1),
                port: spec.port,
                source,
            })?;
        self.deployments.insert(
            key.clone(),
            Deployment {
                spec: spec.clone(),
                router,
                servers: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn spawn(
        &self,
        key: &Key,
        spec: &Spec,
        version: &str,
        model: &Model,
    ) -> Result<Server, TargetError> {
        crate::edges::source::dir::verify(
            &self.root,
            "spec.artifact.uri",
            &model.uri,
            Some(&model.digest),
        )
        .map_err(|why| TargetError::Unverified {
            deployment: format!("{}/{}", key.0, key.1),
            version: version.into(),
            why,
        })?;
        let port = free_port().map_err(|source| TargetError::Start {
            deployment: format!("{}/{}", key.0, key.1),
            version: version.into(),
            program: String::new(),
            source,
        })?;
        let program = spec.command.first().cloned().unwrap_or_default();
        let _ = std::fs::create_dir_all(&self.logs);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{}-{}-{version}.log", key.0, key.1)));
        let (out, err) = match log.and_then(|l| Ok((l.try_clone()?, l))) {
            Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
            Err(_) => (Stdio::null(), Stdio::null()),
        };
        let cwd = spec
            .working_dir
            .as_ref()
            .map_or(self.root.clone(), |d| self.root.join(d));
        let child = Command::new(&program)
            .args(spec.command.iter().skip(1))
            .current_dir(cwd)
            // A clean environment, as for evaluations: the reconciler's own (its tokens, cloud
            // credentials) is not the model server's.
            .env_clear()
            .envs(crate::edges::runners::local::passed_through())
            .envs(&spec.env)
            .env("PORT", port.to_string())
            .env("MODEL_URI", &model.uri)
            .env("MODEL_VERSION", version)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| TargetError::Start {
                deployment: format!("{}/{}", key.0, key.1),
                version: version.into(),
                program: program.clone(),
                source,
            })?;
        let pid_dir = self.logs.join("pids");
        let _ = std::fs::create_dir_all(&pid_dir);
        let _ = std::fs::write(
            pid_dir.join(child.id().to_string()),
            spec.command.join("\0"),
        );
        Ok(Server {
            child,
            port,
            model: model.clone(),
            restarts: 0,
            next_restart: None,
        })
    }

    /// Starts a version's server unless it runs.
    pub fn start(&mut self, key: &Key, version: &str, model: &Model) -> Result<(), TargetError> {
        let Some(d) = self.deployments.get(key) else {
            return Ok(());
        };
        if d.servers.contains_key(version) {
            return Ok(());
        }
        let spec = d.spec.clone();
        let server = self.spawn(key, &spec, version, model)?;
        if let Some(d) = self.deployments.get_mut(key) {
            d.servers.insert(version.to_string(), server);
        }
        Ok(())
    }

    /// Whether a version's server runs (it may not be healthy yet).
    pub fn running(&self, key: &Key, version: &str) -> bool {
        self.deployments
            .get(key)
            .is_some_and(|d| d.servers.contains_key(version))
    }

    /// Stops a version's server.
    pub fn stop(&mut self, key: &Key, version: &str) {
        // Drain: requests already forwarded to this version finish first (at most 5 s).
        if let Some(d) = self.deployments.get(key) {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while d.router.in_flight(version) > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(mut s) = self
            .deployments
            .get_mut(key)
            .and_then(|d| d.servers.remove(version))
        {
            self.kill(&mut s.child);
        }
    }

    fn kill(&self, child: &mut Child) {
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(self.logs.join("pids").join(child.id().to_string()));
    }

    /// Routes traffic by weight.
    pub fn route(&mut self, key: &Key, weights: &BTreeMap<String, u32>) {
        if let Some(d) = self.deployments.get(key) {
            let ports: BTreeMap<String, u16> =
                d.servers.iter().map(|(v, s)| (v.clone(), s.port)).collect();
            d.router.set(weights, &ports);
        }
    }

    /// Routes the deployment's requests by these rules before its weights.
    pub fn set_routing(&self, key: &Key, routing: &crate::decide::rollout::routing::Routing) {
        if let Some(d) = self.deployments.get(key) {
            d.router.set_routing(routing);
        }
    }

    /// The router's current weights.
    pub fn weights(&self, key: &Key) -> BTreeMap<String, u32> {
        self.deployments
            .get(key)
            .map(|d| d.router.weights())
            .unwrap_or_default()
    }

    /// Whether a version's server answers its health check.
    pub fn ready(&mut self, key: &Key, version: &str) -> bool {
        let Some(d) = self.deployments.get_mut(key) else {
            return false;
        };
        let path = d.spec.health_path.clone().unwrap_or_else(|| "/".into());
        match d.servers.get_mut(version) {
            Some(s) => matches!(s.child.try_wait(), Ok(None)) && healthy(s.port, &path),
            None => false,
        }
    }

    /// While a version is not ready: what it waits for, for the status (and a failure at the
    /// deadline) to say — its server's exit, or the health check it does not pass yet, with
    /// where its log is.
    pub fn waiting(&mut self, key: &Key, version: &str) -> Option<String> {
        let log = self
            .logs
            .join(format!("{}-{}-{version}.log", key.0, key.1))
            .display()
            .to_string();
        let d = self.deployments.get_mut(key)?;
        let path = d.spec.health_path.clone().unwrap_or_else(|| "/".into());
        let Some(s) = d.servers.get_mut(version) else {
            return Some(format!("version {version}'s server to start"));
        };
        Some(match s.child.try_wait() {
            Ok(Some(status)) => format!(
                "version {version}'s server, which exited with {status} and was restarted {} times; its log: {log}",
                s.restarts
            ),
            _ => format!(
                "version {version}'s server to answer GET {path} on 127.0.0.1:{}; its log: {log}",
                s.port
            ),
        })
    }

    /// What the router observed for a version since the weights last changed.
    pub fn window(&self, key: &Key, version: &str) -> Window {
        self.deployments
            .get(key)
            .map(|d| d.router.window(version))
            .unwrap_or_default()
    }

    /// Restarts crashed servers with exponential backoff (1 s, 2 s, 4 s… up to a minute);
    /// returns what happened, for the history.
    pub fn supervise(&mut self) -> Vec<(Key, String, String)> {
        let mut events = Vec::new();
        let keys: Vec<Key> = self.deployments.keys().cloned().collect();
        for key in keys {
            let crashed: Vec<(String, Model, u32, Option<Instant>)> = self.deployments[&key]
                .servers
                .iter()
                .map(|(v, s)| (v.clone(), s.model.clone(), s.restarts, s.next_restart))
                .collect();
            for (version, uri, restarts, next) in crashed {
                let exited = self
                    .deployments
                    .get_mut(&key)
                    .and_then(|d| d.servers.get_mut(&version))
                    .and_then(|s| s.child.try_wait().ok().flatten());
                let Some(status) = exited else { continue };
                let now = Instant::now();
                match next {
                    None => {
                        let delay = Duration::from_secs(1 << restarts.min(6));
                        if let Some(s) = self
                            .deployments
                            .get_mut(&key)
                            .and_then(|d| d.servers.get_mut(&version))
                        {
                            s.next_restart = Some(now + delay);
                        }
                        events.push((key.clone(), version.clone(), format!("model server of version {version} exited ({status}); restarting in {delay:?}")));
                    }
                    Some(at) if now >= at => {
                        let spec = self.deployments[&key].spec.clone();
                        match self.spawn(&key, &spec, &version, &uri) {
                            Ok(mut server) => {
                                server.restarts = restarts + 1;
                                let port = server.port;
                                if let Some(d) = self.deployments.get_mut(&key) {
                                    d.servers.insert(version.clone(), server);
                                    let weights = d.router.weights();
                                    let ports: BTreeMap<String, u16> = d
                                        .servers
                                        .iter()
                                        .map(|(v, s)| (v.clone(), s.port))
                                        .collect();
                                    d.router.set(&weights, &ports);
                                }
                                events.push((key.clone(), version.clone(), format!("model server of version {version} restarted on port {port} (restart {})", restarts + 1)));
                            }
                            Err(e) => events.push((key.clone(), version.clone(), e.to_string())),
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        events
    }

    /// The address of a deployment's router.
    pub fn address(&self, key: &Key) -> Option<std::net::SocketAddr> {
        self.deployments.get(key).map(|d| d.router.addr)
    }
}

impl Drop for LocalTarget {
    fn drop(&mut self) {
        // Stop taking requests first (routers and in-flight forwards end with the runtime), so no
        // client is sent to a server that is being stopped.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
        let deployments = std::mem::take(&mut self.deployments);
        for (_, d) in deployments {
            for (_, mut s) in d.servers {
                self.kill(&mut s.child);
            }
        }
    }
}
