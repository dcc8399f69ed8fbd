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

use super::admission::{Cluster, file_of};
use crate::catalog::{Catalog, Resource as CatalogResource};
use crate::policy::context::Results;

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
        let watch = |ar: ApiResource| {
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            let writer = reflector::store::Writer::new(ar.clone());
            let reader = writer.as_reader();
            let generation = generation.clone();
            tokio::spawn(
                reflector::reflector(writer, watcher(api, watcher::Config::default()))
                    .backoff(QuickBackoff::default())
                    .for_each(move |_| {
                        generation.fetch_add(1, Ordering::Relaxed);
                        std::future::ready(())
                    }),
            );
            (ar, reader)
        };
        let kinds = vec![
            watch(erase::<RegisteredModel>()),
            watch(erase::<ModelVersion>()),
            watch(erase::<ModelAlias>()),
            watch(erase::<Evaluation>()),
            watch(erase::<ModelDeployment>()),
            watch(erase::<PromotionPolicy>()),
        ];
        let approvals = watch(erase::<Approval>());
        Arc::new(Cache {
            kinds,
            approvals,
            generation,
            built: Mutex::new(HashMap::new()),
        })
    }

    /// Waits until every watch has listed once.
    pub async fn ready(&self) {
        for (_, store) in self.kinds.iter().chain(std::iter::once(&self.approvals)) {
            let _ = store.wait_until_ready().await;
        }
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
