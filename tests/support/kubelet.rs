//! Plays the kubelet and the Deployment controller for the tests (no nodes run): every per-version
//! Deployment Slipway creates becomes available with all its replicas, unless its version is
//! marked failing, in which case it reports `ProgressDeadlineExceeded`, or starting, in which case
//! its pods never become available (and nothing says why).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};

/// A client for one of the test users.
pub async fn client(kubeconfig: &Path, user: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let options = kube::config::KubeConfigOptions {
        context: Some(user.to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

pub struct Kubelet {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Versions whose Deployments fail.
    pub failing: Arc<Mutex<BTreeSet<String>>>,
    /// Versions whose Deployments stay unavailable without failing.
    pub starting: Arc<Mutex<BTreeSet<String>>>,
}

impl Kubelet {
    pub fn start(kubeconfig: &Path, namespace: &str) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let failing = Arc::new(Mutex::new(BTreeSet::new()));
        let starting = Arc::new(Mutex::new(BTreeSet::new()));
        let (s, f, st) = (stop.clone(), failing.clone(), starting.clone());
        let (kubeconfig, namespace) = (kubeconfig.to_path_buf(), namespace.to_string());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = client(&kubeconfig, "admin").await;
                let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
                let api: Api<Deployment> = Api::namespaced(client, &namespace);
                while !s.load(Ordering::Relaxed) {
                    let list = api
                        .list(&ListParams::default().labels("slipway.dev/deployment"))
                        .await;
                    for d in list.map(|l| l.items).unwrap_or_default() {
                        let name = d.metadata.name.clone().unwrap_or_default();
                        let version = d
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("slipway.dev/version"))
                            .cloned()
                            .unwrap_or_default();
                        let replicas = d.spec.replicas.unwrap_or(1);
                        let generation = d.metadata.generation.unwrap_or(0);
                        let status = if st.lock().unwrap().contains(&version) {
                            serde_json::json!({"status": {
                                "observedGeneration": generation, "replicas": replicas,
                                "availableReplicas": 0, "readyReplicas": 0, "updatedReplicas": replicas,
                                "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}})
                        } else if f.lock().unwrap().contains(&version) {
                            crash_loop(&pods, &d).await;
                            serde_json::json!({"status": {
                                "observedGeneration": generation, "replicas": replicas,
                                "availableReplicas": 0, "readyReplicas": 0, "updatedReplicas": replicas,
                                "conditions": [{"type": "Progressing", "status": "False",
                                    "reason": "ProgressDeadlineExceeded",
                                    "message": format!("ReplicaSet \"{name}-1\" has timed out progressing.")}]}})
                        } else {
                            serde_json::json!({"status": {
                                "observedGeneration": generation, "replicas": replicas,
                                "availableReplicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas,
                                "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}})
                        };
                        let current = serde_json::to_value(&d.status).unwrap_or_default();
                        if current.get("observedGeneration") != status["status"].get("observedGeneration")
                            || current.get("availableReplicas") != status["status"].get("availableReplicas")
                            || current.get("conditions").map(|c| c.to_string()).unwrap_or_default().contains("ProgressDeadlineExceeded")
                                != status.to_string().contains("ProgressDeadlineExceeded")
                        {
                            let _ = api
                                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                                .await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            });
        });
        Kubelet {
            stop,
            thread: Some(thread),
            failing,
            starting,
        }
    }
}

/// Gives a failing version's Deployment one pod whose container crash-loops (exit code 1), as
/// a kubelet would report it.
async fn crash_loop(pods: &Api<Pod>, d: &Deployment) {
    let name = format!("{}-crash", d.metadata.name.clone().unwrap_or_default());
    if pods.get_opt(&name).await.ok().flatten().is_some() {
        return;
    }
    let labels = d
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "model-server", "image": "model-server:test"}]},
    }))
    .unwrap();
    if pods.create(&Default::default(), &pod).await.is_err() {
        return;
    }
    let status = serde_json::json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "model-server", "image": "model-server:test", "imageID": "", "ready": false,
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff",
            "message": "back-off 1m20s restarting failed container=model-server"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}});
    let _ = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await;
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
