//! The view of the cluster both the controllers and the admission webhook decide from: one typed
//! watch per kind (kube-runtime reflectors), shared — each controller's trigger stream is a
//! subscription to it, not a watch of its own —, and each namespace's catalog kept up to date
//! by applying the changes the watches see (no objects re-serialised and parsed again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Resource as _;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use slipway_crd::approval::ApprovalDecision;
use slipway_crd::{
    Approval, Evaluation, Kind, ModelAlias, ModelDeployment, ModelVersion, PromotionPolicy,
    RegisteredModel,
};
use tokio::sync::broadcast;

use crate::decide::catalog::{Object, ObjectKey, Resource, View};

/// Label of every object a `ModelDeployment` owns.
pub const DEPLOYMENT_LABEL: &str = "slipway.dev/deployment";
/// Label of the version a per-version `Deployment` serves.
pub const VERSION_LABEL: &str = "slipway.dev/version";

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

/// What a shared watch holds: a typed object kube can list and watch, shared between threads.
pub trait Watchable:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watchable for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// A guarded object: the typed object, or why the stored one does not parse as its type.
pub type Guarded<K> = DeserializeGuard<K>;

/// How many changes a controller may fall behind before it is handed every object again.
const CHANGES: usize = 1024;

/// One watched kind, shared by every controller, the admission webhook and the catalogs: its
/// store, and the stream of its changes for controllers to react to.
pub struct Watched<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store: Store<K>,
    changes: broadcast::Sender<Arc<K>>,
    /// True once the watch has listed, and while it has not failed since it last delivered
    /// (after an error its store may be behind).
    current: Arc<AtomicBool>,
}

impl<K> Watched<K>
where
    K: Watchable,
{
    /// Watches `api` (slimmed, quick backoff), calling `seen` with each event after the store
    /// has it; the task ends with the runtime.
    fn start(
        api: Api<K>,
        config: watcher::Config,
        mut seen: impl FnMut(&watcher::Event<K>, &Store<K>) + Send + 'static,
    ) -> Watched<K> {
        let (reader, writer) = reflector::store();
        let (changes, _) = broadcast::channel(CHANGES);
        let (store, tx) = (reader.clone(), changes.clone());
        let current = Arc::new(AtomicBool::new(false));
        let current_now = current.clone();
        let mut listed = false;
        tokio::spawn(
            reflector::reflector(writer, watcher(api, config).modify(slim::<K>))
                .backoff(QuickBackoff::default())
                .for_each(move |event| {
                    listed |= matches!(event, Ok(watcher::Event::InitDone));
                    current_now.store(listed && event.is_ok(), Ordering::Relaxed);
                    if let Ok(event) = &event {
                        seen(event, &store);
                        // Nobody listening (no controllers on this replica) is not an error.
                        match event {
                            watcher::Event::Apply(o) => {
                                let held = store.get(&ObjectRef::from_obj(o));
                                let _ = tx.send(held.unwrap_or_else(|| Arc::new(o.clone())));
                            }
                            watcher::Event::Delete(o) => {
                                let _ = tx.send(Arc::new(o.clone()));
                            }
                            watcher::Event::InitDone => {
                                for o in store.state() {
                                    let _ = tx.send(o);
                                }
                            }
                            watcher::Event::Init | watcher::Event::InitApply(_) => {}
                        }
                    }
                    std::future::ready(())
                }),
        );
        Watched {
            store: reader,
            changes,
            current,
        }
    }

    /// Whether the watch has listed and has not failed since it last delivered.
    pub fn is_current(&self) -> bool {
        self.current.load(Ordering::Relaxed)
    }

    /// The store.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every object now, then each one that changes (deleted ones included), for a controller's
    /// trigger. One that falls more than [`CHANGES`] behind is handed every object again.
    pub fn changes(&self) -> impl futures::Stream<Item = Arc<K>> + Send + 'static {
        let rx = self.changes.subscribe();
        let now = futures::stream::iter(self.store.state());
        let later =
            futures::stream::unfold((rx, self.store.clone()), |(mut rx, store)| async move {
                let batch = match rx.recv().await {
                    Ok(o) => vec![o],
                    Err(broadcast::error::RecvError::Lagged(_)) => store.state(),
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((futures::stream::iter(batch), (rx, store)))
            })
            .flatten();
        now.chain(later)
    }

    /// The objects of namespace `ns`.
    fn within(&self, ns: &str) -> impl Iterator<Item = Arc<K>> {
        let ns = ns.to_string();
        self.store
            .state()
            .into_iter()
            .filter(move |o| o.meta().namespace.as_deref() == Some(ns.as_str()))
    }
}

impl<K> Watched<Guarded<K>>
where
    K: Watchable,
{
    /// The catalog objects of namespace `ns` (those that parse as their type).
    fn objects(&self, ns: &str, to: fn(K) -> Resource) -> impl Iterator<Item = Object> {
        self.typed(ns, |k| Some(k.clone()))
            .into_iter()
            .filter_map(move |k| Object::from_cluster(to(k)))
    }

    /// The objects of namespace `ns` that parse as their type, each passed to `f`.
    fn typed<T>(&self, ns: &str, mut f: impl FnMut(&K) -> Option<T>) -> Vec<T> {
        self.within(ns)
            .filter_map(|o| o.0.as_ref().ok().and_then(&mut f))
            .collect()
    }
}

/// Changes of catalog objects not yet applied to the namespaces' views.
#[derive(Default)]
struct Pending {
    /// By namespace, for namespaces that have a view.
    changes: HashMap<String, Vec<(ObjectKey, Option<Object>)>>,
    /// Namespaces whose view must be built again from the stores (a watch listed again, or too
    /// many changes piled up).
    rebuild: HashSet<String>,
    /// Every view must be built again.
    all: bool,
}

/// The most changes held for one namespace before its view is built again from the stores.
const PENDING: usize = 4096;

/// Watched objects of every Slipway kind, and the per-Deployment workloads.
pub struct Cache {
    /// `RegisteredModel`s.
    pub models: Watched<Guarded<RegisteredModel>>,
    /// `ModelVersion`s.
    pub versions: Watched<Guarded<ModelVersion>>,
    /// `ModelAlias`es.
    pub aliases: Watched<Guarded<ModelAlias>>,
    /// `Evaluation`s.
    pub evaluations: Watched<Guarded<Evaluation>>,
    /// `ModelDeployment`s.
    pub deployments: Watched<Guarded<ModelDeployment>>,
    /// `PromotionPolicy`s.
    pub policies: Watched<Guarded<PromotionPolicy>>,
    /// `Approval`s.
    pub approvals: Watched<Guarded<Approval>>,
    /// The per-version `Deployment`s Slipway manages.
    pub workloads: Watched<Deployment>,
    /// The `Service`s Slipway manages (one per `ModelDeployment` with a kubernetes target).
    pub services: Watched<Service>,
    pending: Arc<Mutex<Pending>>,
    built: Arc<Mutex<HashMap<String, Arc<View>>>>,
}

/// Records a watched change of a catalog kind for the views (`OnSpec`: only when the spec changed).
fn recorder<K>(
    pending: &Arc<Mutex<Pending>>,
    built: &Arc<Mutex<HashMap<String, Arc<View>>>>,
    invalidates: Invalidates,
    resource: fn(K) -> Resource,
) -> impl FnMut(&watcher::Event<Guarded<K>>, &Store<Guarded<K>>) + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (pending, built) = (pending.clone(), built.clone());
    let kind = Kind::parse(&K::kind(&()));
    // uid → metadata.generation: a status write does not change it, a spec change does.
    let mut seen: HashMap<String, i64> = HashMap::new();
    move |event, _| {
        let (o, deleted) = match event {
            watcher::Event::Apply(o) => (o, false),
            watcher::Event::Delete(o) => (o, true),
            watcher::Event::InitApply(o) => {
                let meta = o.meta();
                seen.insert(
                    meta.uid.clone().unwrap_or_default(),
                    meta.generation.unwrap_or(0),
                );
                return;
            }
            watcher::Event::Init => return,
            watcher::Event::InitDone => {
                lock(&pending).all = true;
                return;
            }
        };
        let meta = o.meta();
        let uid = meta.uid.clone().unwrap_or_default();
        let generation = meta.generation.unwrap_or(0);
        let changed = if deleted {
            seen.remove(&uid);
            true
        } else {
            seen.insert(uid, generation) != Some(generation)
        };
        if !changed && matches!(invalidates, Invalidates::OnSpec) {
            return;
        }
        let Some(name) = meta.name.clone() else {
            return;
        };
        let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
        if !lock(&built).contains_key(&ns) {
            // No view yet: the first one reads the stores.
            return;
        }
        let Some(kind) = kind else {
            return;
        };
        let key = ObjectKey {
            kind,
            namespace: ns.clone(),
            name,
        };
        let object = match (&o.0, deleted) {
            (Ok(k), false) => Object::from_cluster(resource(k.clone())),
            _ => None,
        };
        let mut p = lock(&pending);
        if p.rebuild.contains(&ns) {
            return;
        }
        let list = p.changes.entry(ns.clone()).or_default();
        list.push((key, object));
        if list.len() > PENDING {
            p.changes.remove(&ns);
            p.rebuild.insert(ns);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

impl Cache {
    /// Starts watching (in `namespace`, or everywhere); the tasks end with the runtime.
    pub fn start(client: &kube::Client, namespace: Option<&str>) -> Arc<Cache> {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let built = Arc::new(Mutex::new(HashMap::new()));
        let all = watcher::Config::default;
        // Status writes of aliases and deployments (mostly the controller's own) change no
        // catalog; their spec changes do.
        Arc::new(Cache {
            models: Watched::start(
                scoped(client, namespace),
                all(),
                recorder(
                    &pending,
                    &built,
                    Invalidates::OnSpec,
                    Resource::RegisteredModel,
                ),
            ),
            versions: Watched::start(
                scoped(client, namespace),
                all(),
                recorder(
                    &pending,
                    &built,
                    Invalidates::OnSpec,
                    Resource::ModelVersion,
                ),
            ),
            aliases: Watched::start(
                scoped(client, namespace),
                all(),
                recorder(&pending, &built, Invalidates::OnSpec, Resource::ModelAlias),
            ),
            evaluations: Watched::start(
                scoped(client, namespace),
                all(),
                recorder(&pending, &built, Invalidates::Always, Resource::Evaluation),
            ),
            deployments: Watched::start(
                scoped(client, namespace),
                all(),
                recorder(
                    &pending,
                    &built,
                    Invalidates::OnSpec,
                    Resource::ModelDeployment,
                ),
            ),
            policies: Watched::start(
                scoped(client, namespace),
                all(),
                recorder(
                    &pending,
                    &built,
                    Invalidates::OnSpec,
                    Resource::PromotionPolicy,
                ),
            ),
            approvals: Watched::start(scoped(client, namespace), all(), |_, _| {}),
            workloads: Watched::start(
                scoped(client, namespace),
                all().labels(DEPLOYMENT_LABEL),
                |_, _| {},
            ),
            services: Watched::start(
                scoped(client, namespace),
                all().labels(DEPLOYMENT_LABEL),
                |_, _| {},
            ),
            pending,
            built,
        })
    }

    /// Whether every watch admission reads from has listed and is delivering (see
    /// [`Watched::is_current`]).
    pub fn is_current(&self) -> bool {
        self.models.is_current()
            && self.versions.is_current()
            && self.aliases.is_current()
            && self.evaluations.is_current()
            && self.deployments.is_current()
            && self.policies.is_current()
            && self.approvals.is_current()
    }

    /// Waits until every watch has listed once.
    pub async fn ready(&self) {
        let _ = self.models.store.wait_until_ready().await;
        let _ = self.versions.store.wait_until_ready().await;
        let _ = self.aliases.store.wait_until_ready().await;
        let _ = self.evaluations.store.wait_until_ready().await;
        let _ = self.deployments.store.wait_until_ready().await;
        let _ = self.policies.store.wait_until_ready().await;
        let _ = self.approvals.store.wait_until_ready().await;
        let _ = self.workloads.store.wait_until_ready().await;
        let _ = self.services.store.wait_until_ready().await;
    }

    /// The Deployments of a `ModelDeployment`, by the version they serve.
    pub fn deployments_of(&self, ns: &str, name: &str) -> BTreeMap<String, Deployment> {
        self.workloads
            .within(ns)
            .filter_map(|d| {
                let labels = d.metadata.labels.as_ref()?;
                (labels.get(DEPLOYMENT_LABEL).map(String::as_str) == Some(name))
                    .then(|| Some((labels.get(VERSION_LABEL)?.clone(), (*d).clone())))
                    .flatten()
            })
            .collect()
    }

    /// The `Service` of `ModelDeployment` `name` in `ns`, from the watch.
    pub fn service(&self, ns: &str, name: &str) -> Option<Service> {
        self.services
            .within(ns)
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .map(|s| (*s).clone())
    }

    /// The `ModelAlias` for `alias` of `model` in `ns`, from the watch.
    fn find_alias(&self, ns: &str, model: &str, alias: &str) -> Option<ModelAlias> {
        self.aliases
            .typed(ns, |a| {
                (a.spec.model == model && a.spec.alias == alias).then(|| a.clone())
            })
            .pop()
    }

    /// The version alias `alias` of `model` in `ns` asks for (`spec.version`).
    pub fn alias_target(&self, ns: &str, model: &str, alias: &str) -> Option<String> {
        Some(self.find_alias(ns, model, alias)?.spec.version)
    }

    /// The name of the `ModelAlias` for `alias` of `model` in `ns`.
    pub fn alias_name(&self, ns: &str, model: &str, alias: &str) -> Option<String> {
        self.find_alias(ns, model, alias)?.metadata.name
    }

    /// The version alias `alias` of `model` in `ns` resolves to now, read from the watch.
    pub fn resolved(&self, ns: &str, model: &str, alias: &str) -> Option<String> {
        self.find_alias(ns, model, alias)?.status?.resolved_version
    }

    /// The artifact (URI, digest) of `model` version `version` in `ns`, read from the watch.
    pub fn artifact(&self, ns: &str, model: &str, version: &str) -> Option<(String, String)> {
        self.versions
            .typed(ns, |v| {
                (v.spec.model == model && v.spec.version == version)
                    .then(|| (v.spec.artifact.uri.clone(), v.spec.artifact.digest.clone()))
            })
            .pop()
    }

    /// The versions of `model` in `ns`, and where each of its aliases resolves to.
    pub fn model_summary(&self, ns: &str, model: &str) -> (Vec<String>, BTreeMap<String, String>) {
        let versions = self.versions.typed(ns, |v| {
            (v.spec.model == model).then(|| v.spec.version.clone())
        });
        let aliases = self
            .aliases
            .typed(ns, |a| {
                let resolved = a.status.as_ref()?.resolved_version.clone()?;
                (a.spec.model == model).then(|| (a.spec.alias.clone(), resolved))
            })
            .into_iter()
            .collect();
        (versions, aliases)
    }

    /// Names of the `Approval`s in `ns` that sign off moving alias object `alias` to `version`.
    pub fn approvals_for(&self, ns: &str, alias: &str, version: &str) -> Vec<String> {
        self.approvals.typed(ns, |a| {
            (a.spec.target.kind == "ModelAlias"
                && a.spec.target.name == alias
                && a.spec.version == version
                && a.spec.decision != ApprovalDecision::Reject)
                .then(|| a.metadata.name.clone())
                .flatten()
        })
    }

    /// The `Approval`s of `ns`.
    pub fn approvals_in(&self, ns: &str) -> Vec<Approval> {
        self.approvals.typed(ns, |a| Some(a.clone()))
    }

    /// The names of the `ModelAlias`es of `model` in `ns`.
    pub fn aliases_of(&self, ns: &str, model: &str) -> Vec<String> {
        self.aliases.typed(ns, |a| {
            (a.spec.model == model)
                .then(|| a.metadata.name.clone())
                .flatten()
        })
    }

    /// The namespace's objects of the catalog kinds, from the stores.
    fn objects(&self, ns: &str) -> Vec<Object> {
        (self.models.objects(ns, Resource::RegisteredModel))
            .chain(self.versions.objects(ns, Resource::ModelVersion))
            .chain(self.aliases.objects(ns, Resource::ModelAlias))
            .chain(self.evaluations.objects(ns, Resource::Evaluation))
            .chain(self.deployments.objects(ns, Resource::ModelDeployment))
            .chain(self.policies.objects(ns, Resource::PromotionPolicy))
            .collect()
    }

    /// The namespace's catalog and results as the watches have them now: the last view with the
    /// changes seen since applied (or one built from the stores after a watch listed again).
    pub fn view(&self, ns: &str) -> Arc<View> {
        // Hold the views' lock throughout, so two callers do not build the same view twice.
        let mut built = lock(&self.built);
        let (changes, rebuild) = {
            let mut p = lock(&self.pending);
            if p.all {
                p.all = false;
                p.changes.clear();
                p.rebuild.clear();
                built.clear();
            }
            (
                p.changes.remove(ns).unwrap_or_default(),
                p.rebuild.remove(ns),
            )
        };
        let view = match built.get(ns) {
            Some(v) if !rebuild && changes.is_empty() => return v.clone(),
            // A view that refused a duplicate rebuilds on its next change: removing the object
            // that the duplicate clashed with must bring the duplicate in.
            Some(v) if !rebuild && !v.shadowed => Arc::new(v.amended(changes)),
            _ => Arc::new(View::of(self.objects(ns))),
        };
        built.insert(ns.to_string(), view.clone());
        view
    }
}
