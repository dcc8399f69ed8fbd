//! The view of the cluster both the controllers and the admission webhook decide from: one typed
//! watch per kind (kube-runtime reflectors), shared — each controller's trigger stream is a
//! subscription to it, not a watch of its own —, and each namespace's catalog kept up to date
//! by applying the changes the watches see (no objects re-serialised and parsed again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Resource as _;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use slipway_crd::{
    Approval, Evaluation, Kind, ModelAlias, ModelDeployment, ModelVersion, PromotionPolicy,
    RegisteredModel,
};

pub use super::watch::{Changes, Groups, Guarded, QuickBackoff, Watchable, Watched, slim};
use crate::decide::catalog::{Object, ObjectKey, Resource, View};

/// Label of every object a `ModelDeployment` owns.
pub const DEPLOYMENT_LABEL: &str = "slipway.dev/deployment";
/// Label of the version a per-version `Deployment` serves.
pub const VERSION_LABEL: &str = "slipway.dev/version";

/// Which changes of a kind make catalogs stale.
#[derive(Clone, Copy, Debug)]
enum Invalidates {
    /// Spec changes, creations and deletions (not status writes).
    OnSpec,
    /// Every change (evaluation results live in status).
    Always,
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
    /// Objects whose status alone changed, by namespace: the views take them in place of their
    /// copies (so that the watch's new object and the view's old one are not both kept).
    refreshes: HashMap<String, HashMap<ObjectKey, Object>>,
    /// The namespace whose policies govern namespaces without their own: every view holds
    /// them, so a change of one rebuilds every view.
    policy_namespace: String,
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
    /// The names of the versions of each model.
    version_groups: Arc<Groups>,
    /// The names of the aliases of each model.
    alias_groups: Arc<Groups>,
    /// The names of the per-version Deployments of each `ModelDeployment`.
    workload_groups: Arc<Groups>,
    pending: Arc<Mutex<Pending>>,
    built: Arc<Mutex<HashMap<String, Arc<View>>>>,
}

/// Records a watched change of a catalog kind for the views (`OnSpec`: only when the spec changed).
fn recorder<K>(
    pending: &Arc<Mutex<Pending>>,
    built: &Arc<Mutex<HashMap<String, Arc<View>>>>,
    invalidates: Invalidates,
    resource: fn(Arc<K>) -> Resource,
) -> impl FnMut(&watcher::Event<Guarded<K>>, &Store<Guarded<K>>) + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (pending, built) = (pending.clone(), built.clone());
    let kind = Kind::parse(&K::kind(&()));
    let mut seen = Changes::of_spec();
    move |event, _| {
        let (o, deleted) = match event {
            watcher::Event::Apply(o) => (o, false),
            watcher::Event::Delete(o) => (o, true),
            watcher::Event::InitApply(o) => {
                seen.note(o.meta());
                return;
            }
            watcher::Event::Init => return,
            watcher::Event::InitDone => {
                lock(&pending).all = true;
                return;
            }
        };
        let meta = o.meta();
        let changed = seen.changed(meta, deleted);
        let refresh = !changed && matches!(invalidates, Invalidates::OnSpec);
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
        if kind == Kind::PromotionPolicy && ns == p.policy_namespace {
            p.all = true;
            return;
        }
        if p.rebuild.contains(&ns) {
            return;
        }
        if refresh {
            if let Some(object) = object {
                let refreshes = p.refreshes.entry(ns).or_default();
                // Bounded as the changes are: past it the views keep their copies a while.
                if refreshes.len() < PENDING {
                    refreshes.insert(key, object);
                }
            }
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

/// What the watches of the catalog kinds are started with.
struct CatalogWatches<'a> {
    client: &'a kube::Client,
    namespace: Option<&'a str>,
    pending: &'a Arc<Mutex<Pending>>,
    built: &'a Arc<Mutex<HashMap<String, Arc<View>>>>,
}

impl CatalogWatches<'_> {
    /// The watch of one catalog kind, recording its changes for the namespaces' views.
    fn start<K>(
        &self,
        invalidates: Invalidates,
        resource: fn(Arc<K>) -> Resource,
    ) -> Watched<Guarded<K>>
    where
        K: Watchable + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Watched::start(
            scoped(self.client, self.namespace),
            watcher::Config::default(),
            recorder(self.pending, self.built, invalidates, resource),
        )
    }

    /// [`CatalogWatches::start`], also keeping `groups` (names by model) up to date.
    fn start_grouped<K>(
        &self,
        invalidates: Invalidates,
        resource: fn(Arc<K>) -> Resource,
        groups: &Arc<Groups>,
        group: fn(&Guarded<K>) -> Option<String>,
    ) -> Watched<Guarded<K>>
    where
        K: Watchable + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let mut record = recorder(self.pending, self.built, invalidates, resource);
        let groups = groups.clone();
        Watched::start(
            scoped(self.client, self.namespace),
            watcher::Config::default(),
            move |event, store| {
                groups.follow(event, group);
                record(event, store);
            },
        )
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
    /// Starts watching (in `namespace`, or everywhere); the tasks end with the runtime. The
    /// policies of `policy_namespace` govern every namespace that has none of its own.
    pub fn start(
        client: &kube::Client,
        namespace: Option<&str>,
        policy_namespace: &str,
    ) -> Arc<Cache> {
        let pending = Arc::new(Mutex::new(Pending {
            policy_namespace: policy_namespace.to_string(),
            ..Pending::default()
        }));
        let built = Arc::new(Mutex::new(HashMap::new()));
        let all = watcher::Config::default;
        let watches = CatalogWatches {
            client,
            namespace,
            pending: &pending,
            built: &built,
        };
        let (version_groups, alias_groups) = (Arc::default(), Arc::default());
        let workload_groups: Arc<Groups> = Arc::default();
        let follow_workloads = workload_groups.clone();
        // Status writes of aliases and deployments (mostly the controller's own) change no
        // catalog; their spec changes do.
        Arc::new(Cache {
            models: watches.start(Invalidates::OnSpec, Resource::RegisteredModel),
            versions: watches.start_grouped(
                Invalidates::OnSpec,
                Resource::ModelVersion,
                &version_groups,
                |v| Some(v.0.as_ref().ok()?.spec.model.clone()),
            ),
            aliases: watches.start_grouped(
                Invalidates::OnSpec,
                Resource::ModelAlias,
                &alias_groups,
                |a| Some(a.0.as_ref().ok()?.spec.model.clone()),
            ),
            version_groups,
            alias_groups,
            evaluations: watches.start(Invalidates::Always, Resource::Evaluation),
            deployments: watches.start(Invalidates::OnSpec, Resource::ModelDeployment),
            policies: watches.start(Invalidates::OnSpec, Resource::PromotionPolicy),
            approvals: Watched::start(scoped(client, namespace), all(), |_, _| {}),
            workloads: Watched::start(
                scoped(client, namespace),
                all().labels(DEPLOYMENT_LABEL),
                move |event, _| {
                    follow_workloads.follow(event, |d: &Deployment| {
                        d.metadata.labels.as_ref()?.get(DEPLOYMENT_LABEL).cloned()
                    })
                },
            ),
            workload_groups,
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
        let _ = self.models.store().wait_until_ready().await;
        let _ = self.versions.store().wait_until_ready().await;
        let _ = self.aliases.store().wait_until_ready().await;
        let _ = self.evaluations.store().wait_until_ready().await;
        let _ = self.deployments.store().wait_until_ready().await;
        let _ = self.policies.store().wait_until_ready().await;
        let _ = self.approvals.store().wait_until_ready().await;
        let _ = self.workloads.store().wait_until_ready().await;
        let _ = self.services.store().wait_until_ready().await;
    }

    /// The Deployments of a `ModelDeployment`, by the version they serve.
    pub fn deployments_of(&self, ns: &str, name: &str) -> BTreeMap<String, Deployment> {
        self.workloads
            .named(ns, &self.workload_groups.names(ns, name))
            .into_iter()
            .filter_map(|d| {
                let labels = d.metadata.labels.as_ref()?;
                (labels.get(DEPLOYMENT_LABEL).map(String::as_str) == Some(name))
                    .then(|| Some((labels.get(VERSION_LABEL)?.clone(), (*d).clone())))
                    .flatten()
            })
            .collect()
    }

    /// The per-version Services of deployment `name` in `ns` (labelled with its name and a
    /// version), by version.
    pub fn version_services(&self, ns: &str, name: &str) -> BTreeMap<String, String> {
        self.services
            .store()
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .filter_map(|s| {
                let labels = s.metadata.labels.as_ref()?;
                (labels.get(DEPLOYMENT_LABEL).map(String::as_str) == Some(name))
                    .then(|| labels.get(VERSION_LABEL))
                    .flatten()
                    .map(|v| (v.clone(), s.metadata.name.clone().unwrap_or_default()))
            })
            .collect()
    }

    /// The `Service` of `ModelDeployment` `name` in `ns` (or any of its Services by name), from
    /// the watch.
    pub fn service(&self, ns: &str, name: &str) -> Option<Service> {
        self.services
            .store()
            .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))
            .map(|s| (*s).clone())
    }

    /// The `ModelAlias` for `alias` of `model` in `ns`, from the watch.
    pub fn find_alias(&self, ns: &str, model: &str, alias: &str) -> Option<ModelAlias> {
        self.model_aliases(ns, model)
            .into_iter()
            .rfind(|a| a.spec.alias == alias)
    }

    /// The version alias `alias` of `model` in `ns` asks for (`spec.version`).
    pub fn alias_target(&self, ns: &str, model: &str, alias: &str) -> Option<String> {
        Some(self.find_alias(ns, model, alias)?.spec.version)
    }

    /// The name of the `ModelAlias` for `alias` of `model` in `ns`.
    pub fn alias_name(&self, ns: &str, model: &str, alias: &str) -> Option<String> {
        self.find_alias(ns, model, alias)?.metadata.name
    }

    /// The recorded moves of alias `alias` of `model` in `ns`, from the watch.
    pub fn alias_history(
        &self,
        ns: &str,
        model: &str,
        alias: &str,
    ) -> Vec<slipway_crd::model_alias::AliasMove> {
        self.find_alias(ns, model, alias)
            .and_then(|a| a.status)
            .map(|s| s.history)
            .unwrap_or_default()
    }

    /// The version alias `alias` of `model` in `ns` resolves to now, read from the watch.
    pub fn resolved(&self, ns: &str, model: &str, alias: &str) -> Option<String> {
        self.find_alias(ns, model, alias)?.status?.resolved_version
    }

    /// The artifact (URI, digest) of `model` version `version` in `ns`, read from the watch.
    pub fn artifact(&self, ns: &str, model: &str, version: &str) -> Option<(String, String)> {
        // From the namespace's view (indexed), not a scan of every watched version.
        let view = self.view(ns);
        let v = view.catalog.version(ns, model, version)?;
        Some((v.spec.artifact.uri.clone(), v.spec.artifact.digest.clone()))
    }

    /// The versions of `model` in `ns`, and where each of its aliases resolves to.
    pub fn model_summary(&self, ns: &str, model: &str) -> (Vec<String>, BTreeMap<String, String>) {
        let versions = self
            .versions
            .named(ns, &self.version_groups.names(ns, model))
            .into_iter()
            .filter_map(|v| {
                let v = v.0.as_ref().ok()?;
                (v.spec.model == model).then(|| v.spec.version.clone())
            })
            .collect();
        let aliases = self
            .model_aliases(ns, model)
            .into_iter()
            .filter_map(|a| {
                let resolved = a.status.as_ref()?.resolved_version.clone()?;
                Some((a.spec.alias.clone(), resolved))
            })
            .collect();
        (versions, aliases)
    }

    /// The `ModelAlias`es of `model` in `ns`, from the watch (by the model's index).
    fn model_aliases(&self, ns: &str, model: &str) -> Vec<ModelAlias> {
        self.aliases
            .named(ns, &self.alias_groups.names(ns, model))
            .into_iter()
            .filter_map(|a| a.0.as_deref().ok().cloned())
            .filter(|a| a.spec.model == model)
            .collect()
    }

    /// The `Approval`s of `ns`.
    pub fn approvals_in(&self, ns: &str) -> Vec<Approval> {
        self.approvals.typed(ns, |a| Some(Approval::clone(a)))
    }

    /// The names of the `ModelVersion`s of `model` in `ns`.
    pub fn versions_of(&self, ns: &str, model: &str) -> Vec<String> {
        self.version_groups.names(ns, model)
    }

    /// The names of the `ModelAlias`es of `model` in `ns`.
    pub fn aliases_of(&self, ns: &str, model: &str) -> Vec<String> {
        self.alias_groups.names(ns, model)
    }

    /// The namespace's objects of the catalog kinds, from the stores.
    fn objects(&self, ns: &str) -> Vec<Object> {
        let governing = self.policy_namespace();
        (self.models.objects(ns, Resource::RegisteredModel))
            .chain(self.versions.objects(ns, Resource::ModelVersion))
            .chain(self.aliases.objects(ns, Resource::ModelAlias))
            .chain(self.evaluations.objects(ns, Resource::Evaluation))
            .chain(self.deployments.objects(ns, Resource::ModelDeployment))
            .chain(self.policies.objects(ns, Resource::PromotionPolicy))
            .chain(
                (ns != governing)
                    .then(|| self.policies.objects(&governing, Resource::PromotionPolicy))
                    .into_iter()
                    .flatten(),
            )
            .collect()
    }

    /// The namespace whose policies govern namespaces without their own.
    pub fn policy_namespace(&self) -> String {
        lock(&self.pending).policy_namespace.clone()
    }

    /// The namespace's catalog and results as the watches have them now: the last view with the
    /// changes seen since applied (or one built from the stores after a watch listed again).
    pub fn view(&self, ns: &str) -> Arc<View> {
        // Hold the views' lock throughout, so two callers do not build the same view twice.
        let mut built = lock(&self.built);
        let (changes, rebuild, mut refreshes) = {
            let mut p = lock(&self.pending);
            if p.all {
                p.all = false;
                p.changes.clear();
                p.rebuild.clear();
                p.refreshes.clear();
                built.clear();
            }
            (
                p.changes.remove(ns).unwrap_or_default(),
                p.rebuild.remove(ns),
                p.refreshes.remove(ns).unwrap_or_default(),
            )
        };
        let view = match built.get(ns) {
            Some(v) if !rebuild && changes.is_empty() && refreshes.is_empty() => return v.clone(),
            // A view that refused a duplicate rebuilds on its next change: removing the object
            // that the duplicate clashed with must bring the duplicate in.
            Some(v) if !rebuild && !v.shadowed => {
                // A spec change's own object stands (a refresh of its key may be older).
                for (key, _) in &changes {
                    refreshes.remove(key);
                }
                let amended = (!changes.is_empty()).then(|| v.amended(changes));
                Arc::new(
                    amended
                        .as_ref()
                        .unwrap_or(v)
                        .refreshed(refreshes.into_values()),
                )
            }
            _ => Arc::new(View::governed(self.objects(ns), &self.policy_namespace())),
        };
        built.insert(ns.to_string(), view.clone());
        view
    }
}
