//! The controllers' view of the cluster: one watch per kind (kube-runtime reflectors) instead of
//! listing a namespace on every reconcile, and the namespace's catalog built from it — rebuilt
//! only when something changed, and at most every [`REBUILD`] during bursts of changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use slipway_crd::{
    Approval, Evaluation, ModelAlias, ModelDeployment, ModelVersion, PromotionPolicy,
    RegisteredModel,
};

use crate::decide::admission::{Cluster, file_of};
use crate::decide::catalog::{Catalog, Resource as CatalogResource};
use crate::decide::policy::context::Results;

/// Label of every object a `ModelDeployment` owns.
pub const DEPLOYMENT_LABEL: &str = "slipway.dev/deployment";
/// Label of the version a per-version `Deployment` serves.
pub const VERSION_LABEL: &str = "slipway.dev/version";

/// How often a namespace's catalog may be rebuilt while its objects keep changing.
pub const REBUILD: Duration = Duration::from_millis(250);

/// Retry delays of watches: 250 ms doubling to at most 5 s, reset by the first success. (The
/// default grows to 30 s, which turns a few seconds of API-server restart into half a minute of
/// blindness.)
#[derive(Clone, Debug)]
pub struct QuickBackoff {
    next: Duration,
}

impl QuickBackoff {
    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for QuickBackoff {
    fn default() -> Self {
        QuickBackoff { next: Self::MIN }
    }
}

impl Iterator for QuickBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(d)
    }
}

impl kube::runtime::utils::Backoff for QuickBackoff {
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

/// Which changes of a kind make catalogs stale.
#[derive(Clone, Copy, Debug)]
enum Invalidates {
    /// Spec changes, creations and deletions (not status writes).
    OnSpec,
    /// Every change (evaluation results live in status).
    Always,
    /// None: decisions read these objects from the watch directly.
    Never,
}

/// Drops from a watched object what no decision reads and what often outweighs the rest:
/// `managedFields` and kubectl's last-applied copy of the object.
pub fn slim<K: kube::Resource>(o: &mut K) {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A slimmed, cached watch of `api` for a controller: its store and its trigger stream
/// (for `Controller::for_stream`).
pub fn primary<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).modify(slim::<K>))
        .backoff(QuickBackoff::default())
        .applied_objects();
    (reader, stream)
}

/// A namespace's catalog and its evaluation results.
pub struct View {
    /// The catalog.
    pub catalog: Catalog,
    /// Evaluation results in it.
    pub results: Results,
}

struct Built {
    at: Instant,
    generation: u64,
    view: Arc<View>,
}

/// Watched objects of every Slipway kind.
pub struct Cache {
    kinds: Vec<(ApiResource, Store<DynamicObject>)>,
    approvals: (ApiResource, Store<DynamicObject>),
    deployments: Store<k8s_openapi::api::apps::v1::Deployment>,
    generation: Arc<AtomicU64>,
    built: Mutex<HashMap<String, Built>>,
}

fn erase<K: kube::Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

impl Cache {
    /// Starts watching (in `namespace`, or everywhere); the tasks end with the runtime.
    pub fn start(client: &kube::Client, namespace: Option<&str>) -> Arc<Cache> {
        let generation = Arc::new(AtomicU64::new(0));
        // Changes of aliases and deployments (mostly the controller's own status writes) do not
        // invalidate catalogs: the decisions read those objects from the watch directly.
        let watch = |ar: ApiResource, invalidates: Invalidates| {
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            let writer = reflector::store::Writer::new(ar.clone());
            let reader = writer.as_reader();
            let generation = generation.clone();
            // uid → metadata.generation: a status write does not change it, a spec change does.
            let mut seen: HashMap<String, i64> = HashMap::new();
            tokio::spawn(
                reflector::reflector(
                    writer,
                    watcher(api, watcher::Config::default()).modify(slim::<DynamicObject>),
                )
                .backoff(QuickBackoff::default())
                .for_each(move |event| {
                    let changed = match (&event, invalidates) {
                        (_, Invalidates::Never) => false,
                        (_, Invalidates::Always) => true,
                        (
                            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)),
                            Invalidates::OnSpec,
                        ) => {
                            let uid = o.metadata.uid.clone().unwrap_or_default();
                            let g = o.metadata.generation.unwrap_or(0);
                            seen.insert(uid, g) != Some(g)
                        }
                        (Ok(watcher::Event::Delete(o)), Invalidates::OnSpec) => {
                            seen.remove(o.metadata.uid.as_deref().unwrap_or_default());
                            true
                        }
                        (Ok(_), Invalidates::OnSpec) => true,
                        (Err(_), _) => false,
                    };
                    if changed {
                        generation.fetch_add(1, Ordering::Relaxed);
                    }
                    std::future::ready(())
                }),
            );
            (ar, reader)
        };
        let kinds = vec![
            watch(erase::<RegisteredModel>(), Invalidates::OnSpec),
            watch(erase::<ModelVersion>(), Invalidates::OnSpec),
            watch(erase::<ModelAlias>(), Invalidates::Never),
            watch(erase::<Evaluation>(), Invalidates::Always),
            watch(erase::<ModelDeployment>(), Invalidates::Never),
            watch(erase::<PromotionPolicy>(), Invalidates::OnSpec),
        ];
        let approvals = watch(erase::<Approval>(), Invalidates::Never);
        // The per-version Deployments Slipway manages.
        let deployments = {
            let api: Api<k8s_openapi::api::apps::v1::Deployment> = match namespace {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let (reader, writer) = reflector::store();
            tokio::spawn(
                reflector::reflector(
                    writer,
                    watcher(api, watcher::Config::default().labels(DEPLOYMENT_LABEL))
                        .modify(slim::<k8s_openapi::api::apps::v1::Deployment>),
                )
                .backoff(QuickBackoff::default())
                .for_each(|_| std::future::ready(())),
            );
            reader
        };
        Arc::new(Cache {
            kinds,
            approvals,
            deployments,
            generation,
            built: Mutex::new(HashMap::new()),
        })
    }

    /// Waits until every watch has listed once.
    pub async fn ready(&self) {
        for (_, store) in self.kinds.iter().chain(std::iter::once(&self.approvals)) {
            let _ = store.wait_until_ready().await;
        }
        let _ = self.deployments.wait_until_ready().await;
    }

    /// The Deployments of a `ModelDeployment`, by the version they serve.
    pub fn deployments_of(
        &self,
        ns: &str,
        name: &str,
    ) -> std::collections::BTreeMap<String, k8s_openapi::api::apps::v1::Deployment> {
        self.deployments
            .state()
            .iter()
            .filter(|d| d.metadata.namespace.as_deref() == Some(ns))
            .filter_map(|d| {
                let labels = d.metadata.labels.as_ref()?;
                (labels.get(DEPLOYMENT_LABEL).map(String::as_str) == Some(name))
                    .then(|| Some((labels.get(VERSION_LABEL)?.clone(), (**d).clone())))
                    .flatten()
            })
            .collect()
    }

    fn objects(ar: &ApiResource, store: &Store<DynamicObject>, ns: &str) -> Vec<Value> {
        store
            .state()
            .iter()
            .filter(|o| o.metadata.namespace.as_deref() == Some(ns))
            .map(|o| {
                let mut o = (**o).clone();
                o.types = Some(kube::api::TypeMeta {
                    api_version: ar.api_version.clone(),
                    kind: ar.kind.clone(),
                });
                serde_json::to_value(o).unwrap_or_default()
            })
            .collect()
    }

    /// The namespace's objects.
    pub fn cluster(&self, ns: &str) -> Cluster {
        Cluster {
            objects: self
                .kinds
                .iter()
                .flat_map(|(ar, s)| Self::objects(ar, s, ns))
                .collect(),
            approvals: Self::objects(&self.approvals.0, &self.approvals.1, ns),
        }
    }

    /// The `ModelAlias` for `alias` of `model` in `ns`, from the watch.
    fn find_alias(&self, ns: &str, model: &str, alias: &str) -> Option<Arc<DynamicObject>> {
        self.kinds[2].1.state().into_iter().find(|o| {
            o.metadata.namespace.as_deref() == Some(ns)
                && o.data["spec"]["model"].as_str() == Some(model)
                && o.data["spec"]["alias"].as_str() == Some(alias)
        })
    }

    /// The version alias `alias` of `model` in `ns` asks for (`spec.version`).
    pub fn alias_target(&self, ns: &str, model: &str, alias: &str) -> Option<String> {
        let o = self.find_alias(ns, model, alias)?;
        o.data["spec"]["version"].as_str().map(str::to_string)
    }

    /// The name of the `ModelAlias` for `alias` of `model` in `ns`.
    pub fn alias_name(&self, ns: &str, model: &str, alias: &str) -> Option<String> {
        self.find_alias(ns, model, alias)?.metadata.name.clone()
    }

    /// The version alias `alias` of `model` in `ns` resolves to now, read from the watch.
    pub fn resolved(&self, ns: &str, model: &str, alias: &str) -> Option<String> {
        let o = self.find_alias(ns, model, alias)?;
        o.data["status"]["resolvedVersion"]
            .as_str()
            .map(str::to_string)
    }

    /// The artifact (URI, digest) of `model` version `version` in `ns`, read from the watch.
    pub fn artifact(&self, ns: &str, model: &str, version: &str) -> Option<(String, String)> {
        self.kinds[1].1.state().iter().find_map(|o| {
            let spec = &o.data["spec"];
            (o.metadata.namespace.as_deref() == Some(ns)
                && spec["model"].as_str() == Some(model)
                && spec["version"].as_str() == Some(version))
            .then(|| {
                (
                    spec["artifact"]["uri"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    spec["artifact"]["digest"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
        })
    }

    /// The versions of `model` in `ns`, and where each of its aliases resolves to.
    pub fn model_summary(
        &self,
        ns: &str,
        model: &str,
    ) -> (Vec<String>, std::collections::BTreeMap<String, String>) {
        let of_model = |o: &DynamicObject| {
            o.metadata.namespace.as_deref() == Some(ns)
                && o.data["spec"]["model"].as_str() == Some(model)
        };
        let versions = self.kinds[1]
            .1
            .state()
            .iter()
            .filter(|o| of_model(o))
            .filter_map(|o| o.data["spec"]["version"].as_str().map(str::to_string))
            .collect();
        let aliases = self.kinds[2]
            .1
            .state()
            .iter()
            .filter(|o| of_model(o))
            .filter_map(|o| {
                Some((
                    o.data["spec"]["alias"].as_str()?.to_string(),
                    o.data["status"]["resolvedVersion"].as_str()?.to_string(),
                ))
            })
            .collect();
        (versions, aliases)
    }

    /// Names of the `Approval`s in `ns` that sign off moving alias object `alias` to `version`.
    pub fn approvals_for(&self, ns: &str, alias: &str, version: &str) -> Vec<String> {
        self.approvals
            .1
            .state()
            .iter()
            .filter(|o| {
                let spec = &o.data["spec"];
                o.metadata.namespace.as_deref() == Some(ns)
                    && spec["target"]["kind"] == "ModelAlias"
                    && spec["target"]["name"].as_str() == Some(alias)
                    && spec["version"].as_str() == Some(version)
                    && spec["decision"] != "reject"
            })
            .filter_map(|o| o.metadata.name.clone())
            .collect()
    }

    /// The `ModelAlias`es of the namespace, as JSON.
    pub fn aliases(&self, ns: &str) -> Vec<Value> {
        let (ar, store) = &self.kinds[2];
        Self::objects(ar, store, ns)
    }

    /// The namespace's catalog: the one built last if nothing changed since, or if it is younger
    /// than [`REBUILD`]; otherwise a new one.
    pub fn view(&self, ns: &str) -> Arc<View> {
        let generation = self.generation.load(Ordering::Relaxed);
        if let Some(b) = self.built.lock().unwrap_or_else(|p| p.into_inner()).get(ns)
            && (b.generation == generation || b.at.elapsed() < REBUILD)
        {
            return b.view.clone();
        }
        let files: Vec<_> = self.cluster(ns).objects.iter().map(file_of).collect();
        let (catalog, _) = Catalog::from_files(&files);
        let mut results = Results::default();
        results.add(catalog.objects().iter().filter_map(|o| match &o.resource {
            CatalogResource::Evaluation(e) => Some(e),
            _ => None,
        }));
        let view = Arc::new(View { catalog, results });
        self.built.lock().unwrap_or_else(|p| p.into_inner()).insert(
            ns.to_string(),
            Built {
                at: Instant::now(),
                generation,
                view: view.clone(),
            },
        );
        view
    }
}
