//! The local target's deployments over time: crashed servers and routers started again, and
//! deployments that are gone retired (with what an earlier `slipway run` left serving for them).

use std::time::{Duration, Instant};

use super::control;
use super::processes::{self, Proc};
use super::{Deployment, Key, LocalTarget, Model};

impl LocalTarget {
    /// Stops the routers and servers of deployments not in `keep` — those this target runs and
    /// those an earlier `slipway run` left behind.
    pub fn retire_except(&mut self, keep: &[Key]) {
        let gone: Vec<Key> = self
            .deployments
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(d) = self.deployments.remove(&key) {
                self.stop_deployment(&key, d);
            }
        }
        for record in processes::records(&self.logs) {
            let key = (record.namespace.clone(), record.name.clone());
            if keep.contains(&key) || self.deployments.contains_key(&key) {
                continue;
            }
            if let Some(r) = &record.router
                && processes::runs(r.pid, &r.started)
            {
                // Stopped as any router is (told, then killed after 6 s).
                processes::Router {
                    proc: Proc::Adopted {
                        pid: r.pid,
                        started: r.started.clone(),
                    },
                    port: r.port,
                    socket: control::socket_for(&processes::folder(&self.logs), &key, r.port),
                    command: r.command.clone(),
                }
                .stop();
            }
            for s in record.servers.into_values() {
                Proc::Adopted {
                    pid: s.pid,
                    started: s.started,
                }
                .kill();
            }
            processes::remove_record(&self.logs, &key);
        }
    }

    /// Stops a deployment: its router first (requests in flight finish), then its servers.
    pub(super) fn stop_deployment(&self, key: &Key, d: Deployment) {
        if let Some(traffic) = &self.traffic {
            traffic.forget(key);
        }
        d.router.stop();
        for (_, mut s) in d.servers {
            s.proc.kill();
        }
        processes::remove_record(&self.logs, key);
    }

    /// Restarts crashed servers with exponential backoff (1 s, 2 s, 4 s… up to a minute), and a
    /// router that stopped at once with the weights and rules it had; returns what happened, for
    /// the history.
    pub fn supervise(&mut self) -> Vec<(Key, String, String)> {
        let mut events = Vec::new();
        let keys: Vec<Key> = self.deployments.keys().cloned().collect();
        for key in keys {
            self.supervise_router(&key, &mut events);
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
                    .and_then(|s| s.proc.exited());
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
                                }
                                let weights = self.deployments[&key].weights.clone();
                                self.route(&key, &weights);
                                self.record(&key);
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

    /// Starts a deployment's router again if it stopped, with the weights and rules it had.
    fn supervise_router(&mut self, key: &Key, events: &mut Vec<(Key, String, String)>) {
        let Some(d) = self.deployments.get_mut(key) else {
            return;
        };
        let Some(how) = d.router.proc.exited() else {
            return;
        };
        let port = d.router.port;
        let serving = d
            .weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(v, _)| v.clone())
            .next_back()
            .unwrap_or_default();
        match self.start_router(key, port) {
            Ok(router) => {
                if let Some(traffic) = &self.traffic {
                    traffic.serve(key, &router.socket);
                }
                if let Some(d) = self.deployments.get_mut(key) {
                    d.router = router;
                    let routing = d.routing.take();
                    let weights = d.weights.clone();
                    self.route(key, &weights);
                    if let Some(routing) = routing {
                        self.set_routing(key, &routing);
                    }
                }
                self.record(key);
                events.push((
                    key.clone(),
                    serving,
                    format!("the router on port {port} exited ({how}); started again with the same weights"),
                ));
            }
            Err(e) => events.push((key.clone(), serving, e.to_string())),
        }
    }
}
