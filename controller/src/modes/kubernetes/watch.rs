//! One shared, typed watch of a kind ([`Watched`]): a kube-runtime reflector whose store every
//! reader shares, and a fan-out of its changes for the controllers that react to them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::broadcast;

use crate::decide::catalog::{Object, Resource};

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

/// A guarded object: the typed object, or why the stored one does not parse as its type (as
/// kube's `DeserializeGuard`, whose object this is). The typed object is behind an `Arc` so
/// that the namespaces' catalogs hold the very object the watch holds, not a copy of it; the
/// rare invalid object is boxed, so that each of the store's entries takes 16 bytes instead of
/// the 400 of an `ObjectMeta` (9 MB for 20,000 versions).
#[derive(Clone, Debug)]
pub struct Guarded<K>(pub Result<Arc<K>, Box<InvalidObject>>);

impl<K> Guarded<K> {
    /// A guarded object that parsed.
    pub fn typed(k: K) -> Guarded<K> {
        Guarded(Ok(Arc::new(k)))
    }
}

impl<'de, K> serde::Deserialize<'de> for Guarded<K>
where
    K: serde::Deserialize<'de> + kube::Resource,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DeserializeGuard::<K>::deserialize(d).map(|g| Guarded(g.0.map(Arc::new).map_err(Box::new)))
    }
}

impl<K: kube::Resource + Clone> kube::Resource for Guarded<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match &self.0 {
            Ok(k) => k.meta(),
            Err(e) => &e.metadata,
        }
    }

    /// Only the watch writes (it slims objects as they arrive, before anyone shares them).
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.0 {
            Ok(k) => Arc::make_mut(k).meta_mut(),
            Err(e) => &mut e.metadata,
        }
    }
}

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
    pub(super) fn start(
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
    pub(super) fn within(&self, ns: &str) -> impl Iterator<Item = Arc<K>> {
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
    pub(super) fn objects(
        &self,
        ns: &str,
        to: fn(Arc<K>) -> Resource,
    ) -> impl Iterator<Item = Object> {
        self.typed(ns, |k| Some(k.clone()))
            .into_iter()
            .filter_map(move |k| Object::from_cluster(to(k)))
    }

    /// The objects of namespace `ns` that parse as their type, each passed to `f`.
    pub(super) fn typed<T>(&self, ns: &str, mut f: impl FnMut(&Arc<K>) -> Option<T>) -> Vec<T> {
        self.within(ns)
            .filter_map(|o| o.0.as_ref().ok().and_then(&mut f))
            .collect()
    }
}

/// The names of a watched kind's objects by (namespace, group) — for versions and aliases, by
/// model — kept up to date from the watch's events, so a reconcile asking for one model's
/// objects does not scan the namespace's.
#[derive(Default)]
pub struct Groups {
    inner: std::sync::RwLock<GroupsInner>,
}

#[derive(Default)]
struct GroupsInner {
    /// (namespace, group) → names.
    by: std::collections::HashMap<(String, String), std::collections::BTreeSet<String>>,
    /// (namespace, name) → group.
    of: std::collections::HashMap<(String, String), String>,
    /// What a relist has delivered so far (it replaces the rest when done).
    next: Option<Box<GroupsInner>>,
}

impl GroupsInner {
    fn insert(&mut self, ns: String, name: String, group: Option<String>) {
        self.remove(&ns, &name);
        if let Some(group) = group {
            self.by
                .entry((ns.clone(), group.clone()))
                .or_default()
                .insert(name.clone());
            self.of.insert((ns, name), group);
        }
    }

    fn remove(&mut self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        if let Some(group) = self.of.remove(&key) {
            let slot = (key.0, group);
            if let Some(names) = self.by.get_mut(&slot) {
                names.remove(name);
                if names.is_empty() {
                    self.by.remove(&slot);
                }
            }
        }
    }
}

impl Groups {
    /// Follows one event of the watch; `group` reads an object's group (None: in none).
    pub(super) fn follow<K: kube::Resource>(
        &self,
        event: &watcher::Event<K>,
        group: fn(&K) -> Option<String>,
    ) {
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let id = |o: &K| {
            (
                o.meta().namespace.clone().unwrap_or_default(),
                o.meta().name.clone().unwrap_or_default(),
            )
        };
        match event {
            watcher::Event::Apply(o) => {
                let (ns, name) = id(o);
                g.insert(ns, name, group(o));
            }
            watcher::Event::Delete(o) => {
                let (ns, name) = id(o);
                g.remove(&ns, &name);
            }
            watcher::Event::Init => g.next = Some(Box::default()),
            watcher::Event::InitApply(o) => {
                let (ns, name) = id(o);
                g.next
                    .get_or_insert_with(Box::default)
                    .insert(ns, name, group(o));
            }
            watcher::Event::InitDone => {
                if let Some(next) = g.next.take() {
                    g.by = next.by;
                    g.of = next.of;
                }
            }
        }
    }

    /// The names in `group` of namespace `ns`.
    pub fn names(&self, ns: &str, group: &str) -> Vec<String> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        g.by.get(&(ns.to_string(), group.to_string()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl<K> Watched<K>
where
    K: Watchable,
{
    /// The objects named `names` in namespace `ns`, as the store holds them now.
    pub fn named(&self, ns: &str, names: &[String]) -> Vec<Arc<K>> {
        names
            .iter()
            .filter_map(|n| self.store.get(&ObjectRef::new(n).within(ns)))
            .collect()
    }
}

/// Which watched changes of one kind a reader counts: by uid, a digest of what it compares, as
/// last seen.
pub struct Changes {
    key: fn(&kube::api::ObjectMeta) -> u64,
    seen: std::collections::HashMap<String, u64>,
}

impl Changes {
    /// Spec changes: the `metadata.generation` (a status write leaves it, a spec change moves
    /// it).
    pub fn of_spec() -> Changes {
        Changes {
            key: |meta| meta.generation.unwrap_or(0) as u64,
            seen: Default::default(),
        }
    }

    /// Someone's requests — a spec change, an annotation (an operator's retry, a nudge), a
    /// deletion mark, a finalizer — rather than the controller's own status writes: a
    /// reconcile's own writes then do not start it again; its outcome's requeue decides when it
    /// looks again.
    pub fn of_requests() -> Changes {
        Changes {
            key: |meta| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                meta.generation.hash(&mut h);
                meta.annotations.hash(&mut h);
                meta.deletion_timestamp.is_some().hash(&mut h);
                meta.finalizers.hash(&mut h);
                h.finish()
            },
            seen: Default::default(),
        }
    }

    /// Notes an object as it is now (listed); says nothing.
    pub fn note(&mut self, meta: &kube::api::ObjectMeta) {
        let key = (self.key)(meta);
        self.seen.insert(meta.uid.clone().unwrap_or_default(), key);
    }

    /// Whether this change of an object (or its deletion) is one this reader counts; notes it.
    pub fn changed(&mut self, meta: &kube::api::ObjectMeta, deleted: bool) -> bool {
        let uid = meta.uid.clone().unwrap_or_default();
        if deleted {
            self.seen.remove(&uid);
            return true;
        }
        let key = (self.key)(meta);
        self.seen.insert(uid, key) != Some(key)
    }
}

/// [`Changes`] of a kind's watch, told apart by its store: a change of an object the store no
/// longer holds is its deletion.
pub struct ChangeFilter<K: Watchable> {
    store: Store<K>,
    seen: std::sync::Mutex<Changes>,
}

impl<K: Watchable> ChangeFilter<K> {
    /// Counts the changes of `watched` that `changes` compares.
    pub fn new(watched: &Watched<K>, changes: Changes) -> ChangeFilter<K> {
        ChangeFilter {
            store: watched.store(),
            seen: std::sync::Mutex::new(changes),
        }
    }

    /// Whether this change of `o` counts; notes it.
    pub fn counts(&self, o: &K) -> bool {
        let gone = self.store.get(&ObjectRef::from_obj(o)).is_none();
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .changed(o.meta(), gone)
    }
}

#[cfg(test)]
mod tests {
    use super::Guarded;

    /// A store entry of every kind is an `Arc` and a word: the invalid case (an `ObjectMeta`
    /// and a message) is boxed, or every entry would take its size.
    #[test]
    fn a_guarded_object_is_two_words() {
        assert_eq!(size_of::<Guarded<slipway_crd::ModelVersion>>(), 16);
        assert_eq!(size_of::<Guarded<slipway_crd::ModelDeployment>>(), 16);
    }
}
