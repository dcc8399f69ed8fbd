//! The local deployment target: one model-server process per version (command, port, health
//! path), a traffic router process per deployment, crash restarts with backoff; what an earlier
//! `slipway run` left serving is adopted, not restarted.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slipway_crd::model_deployment::LocalTarget as Spec;

use super::control::{self, Ask, Reply};
use super::processes::{self, Proc, Router};
use crate::decide::rollout::Window;
use crate::decide::rollout::routing::Routing;

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
    /// The executable routers run cannot be found.
    #[error("cannot find the slipway executable that runs the routers: {0}")]
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
    proc: Proc,
    port: u16,
    model: Model,
    restarts: u32,
    next_restart: Option<Instant>,
    command: Vec<String>,
}

struct Deployment {
    spec: Spec,
    router: Router,
    servers: BTreeMap<String, Server>,
    /// The weights the router was last given (given again to a router started anew).
    weights: BTreeMap<String, u32>,
    /// The request rules the router was last given (None: not known — an adopted router —, so
    /// the next rules are sent whatever they are).
    routing: Option<Routing>,
}

/// Key of a deployment: (namespace, name).
pub type Key = (String, String);

/// The processes and routers of every local deployment. Dropping it stops them all, unless it
/// keeps them serving ([`LocalTarget::keep_serving`]).
pub struct LocalTarget {
    /// The `slipway` executable routers run.
    program: PathBuf,
    root: PathBuf,
    logs: PathBuf,
    deployments: HashMap<Key, Deployment>,
    /// Where routers' observations are exported from (`/metrics`).
    traffic: Option<crate::edges::metrics::Traffic>,
    /// Leave routers and servers serving when dropped.
    keep: bool,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
    // The whole answer is read (64 KiB at most) before the connection closes: a server whose
    // reply is cut short logs a broken connection for every check.
    let mut answer = Vec::new();
    let _ = (&mut s).take(64 << 10).read_to_end(&mut answer);
    answer.len() >= 12 && answer.starts_with(b"HTTP/1.") && answer[9] == b'2'
}

impl LocalTarget {
    /// A target running servers from `root` (the registry folder), logging to `logs`; routers
    /// run this very executable (`slipway router`).
    ///
    /// Routers and servers an earlier `slipway run` left serving are adopted deployment by
    /// deployment ([`LocalTarget::ensure`]); those of deployments that are gone are stopped by
    /// [`LocalTarget::retire_except`].
    pub fn new(root: &Path, logs: &Path) -> Result<Self, TargetError> {
        processes::reap_orphans(&logs.join("pids"));
        let program = std::env::current_exe().map_err(TargetError::Runtime)?;
        // Absolute: a router does not depend on where `slipway run` was started.
        let logs = std::path::absolute(logs).unwrap_or_else(|_| logs.to_path_buf());
        Ok(LocalTarget {
            program,
            root: root.to_path_buf(),
            logs,
            deployments: HashMap::new(),
            traffic: None,
            keep: false,
        })
    }

    /// Whether an earlier `slipway run` left routers or servers to adopt or stop in `logs`.
    pub fn left_behind(logs: &Path) -> bool {
        !processes::records(logs).is_empty()
    }

    /// Where servers started from now on run (the checkout of the revision being served).
    pub fn set_root(&mut self, root: &Path) {
        self.root = root.to_path_buf();
    }

    /// Routers' observations are exported through `traffic` (`/metrics`).
    pub fn exporting(mut self, traffic: crate::edges::metrics::Traffic) -> Self {
        self.traffic = Some(traffic);
        self
    }

    /// Leaves the routers and servers serving when this target is dropped (`--keep-serving`).
    pub fn keep_serving(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// Writes down a deployment's processes (and tells its router which servers are behind it).
    fn record(&self, key: &Key) {
        let Some(d) = self.deployments.get(key) else {
            return;
        };
        let servers = d
            .servers
            .values()
            .map(|s| (s.proc.id(), s.proc.started().to_string()))
            .collect();
        let _ = d.router.ask(&Ask::Servers { servers });
        processes::write_record(
            &self.logs,
            &processes::Record {
                namespace: key.0.clone(),
                name: key.1.clone(),
                router: Some(d.router.record()),
                servers: d
                    .servers
                    .iter()
                    .map(|(v, s)| {
                        (
                            v.clone(),
                            processes::ServerRecord {
                                pid: s.proc.id(),
                                command: s.command.clone(),
                                started: s.proc.started().to_string(),
                                port: s.port,
                                uri: s.model.uri.clone(),
                                digest: s.model.digest.clone(),
                                restarts: s.restarts,
                            },
                        )
                    })
                    .collect(),
            },
        );
    }

    fn start_router(&self, key: &Key, port: u16) -> Result<Router, TargetError> {
        Router::start(&self.program, &self.logs, key, port).map_err(|why| TargetError::Listen {
            deployment: format!("{}/{}", key.0, key.1),
            port,
            source: std::io::Error::other(why),
        })
    }

    /// Makes sure a deployment's router serves its port: the one already running, the one an
    /// earlier `slipway run` left (adopted with its servers, weights and windows), or a new one.
    pub fn ensure(&mut self, key: &Key, spec: &Spec) -> Result<Option<String>, TargetError> {
        if let Some(d) = self.deployments.get_mut(key) {
            if d.spec.port == spec.port {
                d.spec = spec.clone();
                return Ok(None);
            }
            // Another port: a router for it, the same servers behind it.
            let router = self.start_router(key, spec.port)?;
            if let Some(d) = self.deployments.get_mut(key) {
                let old = std::mem::replace(&mut d.router, router);
                old.stop();
                d.spec = spec.clone();
                let ports = d.servers.iter().map(|(v, s)| (v.clone(), s.port)).collect();
                let _ = d.router.ask(&Ask::Set {
                    weights: d.weights.clone(),
                    ports,
                });
                if let Some(routing) = d.routing.clone() {
                    let _ = d.router.ask(&Ask::Routing { routing });
                }
            }
            self.record(key);
            return Ok(None);
        }
        let record = processes::read_record(&self.logs, key);
        let adopted = record
            .as_ref()
            .and_then(|r| r.router.as_ref())
            .and_then(|r| Router::adopt(&self.logs, key, r, spec.port));
        let adopted_pid = adopted.as_ref().map(|r| r.proc.id());
        let router = match adopted {
            Some(r) => r,
            None => self.start_router(key, spec.port)?,
        };
        let servers: BTreeMap<String, Server> = record
            .map(|r| r.servers)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, s)| processes::runs(s.pid, &s.started))
            .map(|(v, s)| {
                let server = Server {
                    proc: Proc::Adopted {
                        pid: s.pid,
                        started: s.started,
                    },
                    port: s.port,
                    model: Model {
                        uri: s.uri,
                        digest: s.digest,
                    },
                    restarts: s.restarts,
                    next_restart: None,
                    command: s.command,
                };
                (v, server)
            })
            .collect();
        let weights = match router.ask(&Ask::Weights) {
            Ok(Reply::Weights { weights }) => weights,
            _ => BTreeMap::new(),
        };
        // The ports of the servers that still run (a server that is gone — its version is
        // started again by the rollout's resume — gets no request meanwhile, rather than a 502
        // from a port nobody listens on). The same weights keep the router's windows.
        let ports = servers.iter().map(|(v, s)| (v.clone(), s.port)).collect();
        let _ = router.ask(&Ask::Set {
            weights: weights.clone(),
            ports,
        });
        if let Some(traffic) = &self.traffic {
            traffic.serve(key, &router.socket);
        }
        self.deployments.insert(
            key.clone(),
            Deployment {
                spec: spec.clone(),
                router,
                servers,
                weights,
                routing: None,
            },
        );
        self.record(key);
        let servers: Vec<String> = self.deployments[key].servers.keys().cloned().collect();
        Ok(adopted_pid.map(|pid| {
            format!(
                "ModelDeployment {}/{}: adopted the router on port {} (pid {pid}){} that an earlier `slipway run` left serving",
                key.0,
                key.1,
                spec.port,
                match servers.as_slice() {
                    [] => String::new(),
                    [one] => format!(" and the server of version {one}"),
                    many => format!(" and the servers of versions {}", many.join(", ")),
                }
            )
        }))
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
        let mut command = Command::new(&program);
        command
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
            .stderr(err);
        // Its own process group: a Ctrl-C at the terminal reaches `slipway run`, which decides
        // whether the servers stop (`--keep-serving`); stopping it stops what it started.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(|source| TargetError::Start {
            deployment: format!("{}/{}", key.0, key.1),
            version: version.into(),
            program: program.clone(),
            source,
        })?;
        Ok(Server {
            proc: Proc::own(child),
            port,
            model: model.clone(),
            restarts: 0,
            next_restart: None,
            command: spec.command.clone(),
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
        let mut routed = None;
        if let Some(d) = self.deployments.get_mut(key) {
            d.servers.insert(version.to_string(), server);
            // The router learns the new port at once: a version it weighs (a server started
            // again, or resumed after an adoption). A standing shadow's comes with the routing
            // that lists it again once it is healthy ([`LocalTarget::set_routing`]): the
            // router is told again.
            if d.routing
                .as_ref()
                .is_some_and(|r| r.shadows.iter().any(|(v, _)| v == version))
            {
                d.routing = None;
            }
            if d.weights.get(version).is_some_and(|w| *w > 0) {
                routed = Some(d.weights.clone());
            }
        }
        if let Some(weights) = routed {
            self.route(key, &weights);
        }
        self.record(key);
        Ok(())
    }

    /// The versions whose servers run (healthy or not).
    pub fn versions(&self, key: &Key) -> Vec<String> {
        self.deployments
            .get(key)
            .map(|d| d.servers.keys().cloned().collect())
            .unwrap_or_default()
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
            let ask = Ask::InFlight {
                version: version.to_string(),
            };
            while matches!(d.router.ask(&ask), Ok(Reply::Count { count }) if count > 0)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(mut s) = self
            .deployments
            .get_mut(key)
            .and_then(|d| d.servers.remove(version))
        {
            s.proc.kill();
        }
        self.record(key);
    }

    /// Routes traffic by weight.
    pub fn route(&mut self, key: &Key, weights: &BTreeMap<String, u32>) {
        if let Some(d) = self.deployments.get_mut(key) {
            let ports: BTreeMap<String, u16> =
                d.servers.iter().map(|(v, s)| (v.clone(), s.port)).collect();
            d.weights = weights.clone();
            let _ = d.router.ask(&Ask::Set {
                weights: weights.clone(),
                ports,
            });
        }
    }

    /// Routes the deployment's requests by these rules before its weights.
    pub fn set_routing(&mut self, key: &Key, routing: &Routing) {
        let mut weights = None;
        if let Some(d) = self.deployments.get_mut(key)
            && d.routing.as_ref() != Some(routing)
            && d.router
                .ask(&Ask::Routing {
                    routing: routing.clone(),
                })
                .is_ok()
        {
            let shadows_before = d.routing.as_ref().map(|r| r.shadows.clone());
            if shadows_before.as_ref() != Some(&routing.shadows) && !routing.shadows.is_empty() {
                weights = Some(d.weights.clone());
            }
            d.routing = Some(routing.clone());
        }
        // The router learns the ports of the standing shadows newly mirrored to (the weights
        // kept as they are: new ports alone keep the window).
        if let Some(w) = weights {
            self.route(key, &w);
        }
    }

    /// The router's current weights (as last given, if it does not answer).
    pub fn weights(&self, key: &Key) -> BTreeMap<String, u32> {
        let Some(d) = self.deployments.get(key) else {
            return BTreeMap::new();
        };
        match d.router.ask(&Ask::Weights) {
            Ok(Reply::Weights { weights }) => weights,
            _ => d
                .weights
                .iter()
                .filter(|(_, w)| **w > 0)
                .map(|(v, w)| (v.clone(), *w))
                .collect(),
        }
    }

    /// Whether a version's server answers its health check.
    pub fn ready(&mut self, key: &Key, version: &str) -> bool {
        let Some(d) = self.deployments.get_mut(key) else {
            return false;
        };
        let path = d.spec.health_path.clone().unwrap_or_else(|| "/".into());
        match d.servers.get_mut(version) {
            Some(s) => s.proc.exited().is_none() && healthy(s.port, &path),
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
        Some(match s.proc.exited() {
            Some(status) => format!(
                "version {version}'s server, which exited with {status} and was restarted {} times; its log: {log}",
                s.restarts
            ),
            None => format!(
                "version {version}'s server to answer GET {path} on 127.0.0.1:{}; its log: {log}",
                s.port
            ),
        })
    }

    /// What the router observed for a version since the weights last changed (nothing, if it
    /// does not answer).
    pub fn window(&self, key: &Key, version: &str) -> Window {
        let asked = self.deployments.get(key).map(|d| {
            d.router.ask(&Ask::Window {
                version: version.to_string(),
            })
        });
        match asked {
            Some(Ok(Reply::Window { window })) => window,
            _ => Window::default(),
        }
    }

    /// The address of a deployment's router.
    pub fn address(&self, key: &Key) -> Option<std::net::SocketAddr> {
        self.deployments
            .get(key)
            .map(|d| std::net::SocketAddr::from(([127, 0, 0, 1], d.router.port)))
    }
}

#[path = "local_lifecycle.rs"]
mod lifecycle;

impl Drop for LocalTarget {
    fn drop(&mut self) {
        let deployments = std::mem::take(&mut self.deployments);
        if self.keep {
            // Their records say where they are: the next `slipway run` adopts them.
            return;
        }
        // Each router stops taking requests first (those in flight finish), so no client is
        // sent to a server that is being stopped.
        for (key, d) in deployments {
            self.stop_deployment(&key, d);
        }
    }
}
