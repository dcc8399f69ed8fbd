//! The catalog: every object of a registry revision, indexed, with references resolved and checked.

pub mod expr;
pub mod load;
pub mod locate;
pub mod object;
pub mod results;
pub mod rules;
pub mod schema;
pub mod validate;
pub mod view;
pub mod windows;
pub mod yaml;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use slipway_crd::{Group, Kind, ModelAlias, ModelDeployment, ModelVersion, RegisteredModel};

pub use self::load::{SourceFile, load_files};
pub use self::object::{Object, ObjectKey, Origin, Resource, cluster_path};
pub use self::view::View;
use crate::diagnostics::{Category, Diagnostic, FieldPath};
use rules::{CompiledPolicy, PolicySet};

/// (namespace, model, label) of a version or an alias.
type Triple = (String, String, String);

/// Every object of one revision, indexed. Cheap to copy: objects are shared, and the indexes are
/// persistent maps, so an amended catalog ([`Catalog::amended`]) copies a list of pointers and
/// pays for its changes, not for every object's indexing and checks again.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    // Persistent, as the indexes: an amended copy shares what did not change.
    objects: imbl::Vector<Arc<Object>>,
    by_key: imbl::HashMap<ObjectKey, usize>,
    versions: imbl::HashMap<Triple, usize>,
    aliases: imbl::HashMap<Triple, usize>,
    /// Compiled policies (only those that compiled), shared by amended copies.
    pub policies: Arc<PolicySet>,
}

impl Catalog {
    /// Loads files into a catalog and checks it. Every problem is reported; valid objects are kept.
    pub fn from_files(files: &[SourceFile]) -> (Catalog, Vec<Diagnostic>) {
        let (objects, diags) = load_files(files);
        Catalog::from_loaded(objects, diags)
    }

    /// [`Catalog::from_files`], checking against the CRD schemas only the documents `passes`
    /// does not know to pass (and noting in it those that pass now).
    pub fn from_files_remembering(
        files: &[SourceFile],
        passes: &schema::Passes,
    ) -> (Catalog, Vec<Diagnostic>) {
        let (objects, diags) =
            load::load_files_checking(files, load::SchemaCheck::Remembering(passes));
        Catalog::from_loaded(objects, diags)
    }

    /// Loads two revisions, parsing each file that is identical in both (same path and content id) once.
    /// Head files identical to a base file need no content (see `GitRepo::read_since`).
    pub fn from_revisions(
        base: &[SourceFile],
        head: &[SourceFile],
    ) -> ((Catalog, Vec<Diagnostic>), (Catalog, Vec<Diagnostic>)) {
        let base_ids: HashMap<&str, &str> = base
            .iter()
            .filter_map(|f| Some((f.path.as_str(), f.id.as_deref()?)))
            .collect();
        let unchanged: std::collections::HashSet<&str> = head
            .iter()
            .filter(|f| f.id.is_some() && base_ids.get(f.path.as_str()).copied() == f.id.as_deref())
            .map(|f| f.path.as_str())
            .collect();
        let changed: Vec<SourceFile> = head
            .iter()
            .filter(|f| !unchanged.contains(f.path.as_str()))
            .cloned()
            .collect();
        let (base_objects, base_diags) = load_files(base);
        let (mut head_objects, mut head_diags) = load_files(&changed);
        head_objects.extend(
            base_objects
                .iter()
                .filter(|o| unchanged.contains(&*o.origin.file))
                .cloned(),
        );
        head_diags.extend(
            base_diags
                .iter()
                .filter(|d| unchanged.contains(d.file.as_str()))
                .cloned(),
        );
        // Same order as a plain load, so "already defined at" points at the same first object.
        head_objects.sort_by(|a, b| {
            (&a.origin.file, a.origin.first_line).cmp(&(&b.origin.file, b.origin.first_line))
        });
        (
            Catalog::from_loaded(base_objects, base_diags),
            Catalog::from_loaded(head_objects, head_diags),
        )
    }

    fn from_loaded(objects: Vec<Object>, mut diags: Vec<Diagnostic>) -> (Catalog, Vec<Diagnostic>) {
        // What failed to load is reported once: what refers to it is not broken on top.
        let unloaded: std::collections::HashSet<crate::diagnostics::Unloaded> = diags
            .iter()
            .filter_map(|d| d.unloaded.as_deref().cloned())
            .collect();
        let (catalog, mut more) = Catalog::build_knowing(objects, &unloaded);
        diags.append(&mut more);
        diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        (catalog, diags)
    }

    /// Indexes objects and checks duplicates, invariants and references.
    pub fn build(objects: Vec<Object>) -> (Catalog, Vec<Diagnostic>) {
        Catalog::build_knowing(objects, &Default::default())
    }

    /// [`Catalog::build`], knowing the documents that failed to load (`unloaded`): a reference
    /// to one of them is not reported as broken (its own errors say what is wrong).
    fn build_knowing(
        objects: Vec<Object>,
        unloaded: &std::collections::HashSet<crate::diagnostics::Unloaded>,
    ) -> (Catalog, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut catalog = Catalog::default();
        for obj in objects {
            if let Err(d) = catalog.insert(Arc::new(obj)) {
                diags.push(*d);
            }
        }
        for obj in &catalog.objects {
            diags.extend(validate::object(obj));
            diags.extend(validate::references(obj, &catalog, unloaded));
        }
        let (policies, more) = compile_policies(&catalog.objects);
        diags.extend(more.into_iter().map(|(_, d)| d));
        catalog.policies = Arc::new(policies);
        (catalog, diags)
    }

    /// This catalog with each named object replaced (or removed, with `None`; the last change of
    /// a key wins), and the problems of the new objects alone: what admission and the watches ask
    /// of a change, without checking every other object again. Objects are shared with `self`;
    /// policies are compiled again only when a policy changed.
    pub fn amended(
        &self,
        changes: impl IntoIterator<Item = (ObjectKey, Option<Object>)>,
    ) -> (Catalog, Vec<Diagnostic>) {
        let changes: HashMap<ObjectKey, Option<Object>> = changes.into_iter().collect();
        let mut catalog = Catalog {
            policies: Arc::default(),
            ..self.clone()
        };
        for key in changes.keys() {
            catalog.remove(key);
        }
        let policy_changed = changes.keys().any(|k| k.kind == Kind::PromotionPolicy);
        let mut diags = Vec::new();
        let mut added = Vec::new();
        for (_, new) in changes {
            if let Some(obj) = new {
                match catalog.insert(Arc::new(obj)) {
                    Ok(()) => added.extend(catalog.objects.last().cloned()),
                    Err(d) => diags.push(*d),
                }
            }
        }
        for obj in &added {
            diags.extend(validate::object(obj));
            diags.extend(validate::references(obj, &catalog, &Default::default()));
        }
        catalog.policies = if policy_changed {
            let (mut policies, all) = compile_policies(&catalog.objects);
            policies.fallback = self.policies.fallback.clone();
            let added: std::collections::HashSet<&ObjectKey> =
                added.iter().map(|o| &o.key).collect();
            diags.extend(
                all.into_iter()
                    .filter(|(k, _)| added.contains(k))
                    .map(|(_, d)| d),
            );
            Arc::new(policies)
        } else {
            self.policies.clone()
        };
        (catalog, diags)
    }

    /// This catalog with the policies of namespace `ns` governing every namespace that has none
    /// of its own (by default those of [`crate::policy::DEFAULT_POLICY_NAMESPACE`]).
    pub fn with_policy_namespace(mut self, ns: &str) -> Catalog {
        Arc::make_mut(&mut self.policies).fallback = Some(ns.to_string());
        self
    }

    /// This catalog holding `objects` in place of the ones of the same key, whose spec they
    /// share (a status write the watch saw): nothing is indexed or checked again, and the old
    /// copies can be freed. Objects of keys it does not hold are left out.
    pub fn refreshed(&self, objects: impl IntoIterator<Item = Object>) -> Catalog {
        let mut catalog = self.clone();
        for obj in objects {
            if let Some(&idx) = catalog.by_key.get(&obj.key) {
                catalog.objects.set(idx, Arc::new(obj));
            }
        }
        catalog
    }

    /// Removes an object and its index entries (the last object takes its place).
    fn remove(&mut self, key: &ObjectKey) {
        let Some(idx) = self.by_key.remove(key) else {
            return;
        };
        // Swap-remove: the last object takes the freed place, so other indexes stay valid.
        let Some(last) = self.objects.pop_back() else {
            return;
        };
        let gone = if idx < self.objects.len() {
            self.objects.set(idx, last)
        } else {
            last
        };
        if let Some((versions, t)) = triple(&gone) {
            if versions {
                &mut self.versions
            } else {
                &mut self.aliases
            }
            .remove(&t);
        }
        if let Some(moved) = self.objects.get(idx) {
            self.by_key.insert(moved.key.clone(), idx);
            if let Some((versions, t)) = triple(moved) {
                if versions {
                    &mut self.versions
                } else {
                    &mut self.aliases
                }
                .insert(t, idx);
            }
        }
    }

    /// Adds one object to the indexes, or says why it cannot be (a duplicate name or label).
    fn insert(&mut self, obj: Arc<Object>) -> Result<(), Box<Diagnostic>> {
        if let Some(&first) = self.by_key.get(&obj.key) {
            let f = &self.objects[first].origin;
            return Err(Box::new(obj.diagnostic(
                &FieldPath::parse("metadata.name"),
                Category::Duplicate,
                format!(
                    "{} is already defined at {}:{}; rename or remove one",
                    obj.key, f.file, f.first_line
                ),
            )));
        }
        let idx = self.objects.len();
        let indexed = triple(&obj).map(|(versions, t)| {
            if versions {
                (&mut self.versions, t, "spec.version", "version")
            } else {
                (&mut self.aliases, t, "spec.alias", "alias")
            }
        });
        if let Some((index, t, field, what)) = indexed {
            if let Some(&first) = index.get(&t) {
                let other = &self.objects[first];
                return Err(Box::new(obj.diagnostic(
                    &FieldPath::parse(field),
                    Category::Duplicate,
                    format!(
                        "model `{}` already has {what} `{}` ({} at {}:{}); each {what} label must be unique within a model",
                        t.1, t.2, other.key, other.origin.file, other.origin.first_line
                    ),
                )));
            }
            index.insert(t, idx);
        }
        self.by_key.insert(obj.key.clone(), idx);
        self.objects.push_back(obj);
        Ok(())
    }

    /// All objects, in load order (until one is removed: the last takes its place).
    pub fn objects(&self) -> &imbl::Vector<Arc<Object>> {
        &self.objects
    }

    /// The object with a key.
    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.by_key.get(key).map(|&i| &*self.objects[i])
    }

    /// A model by name.
    pub fn model(&self, ns: &str, name: &str) -> Option<&RegisteredModel> {
        let key = ObjectKey {
            kind: Kind::RegisteredModel,
            namespace: ns.into(),
            name: name.into(),
        };
        match self.get(&key).map(|o| &o.resource) {
            Some(Resource::RegisteredModel(m)) => Some(m),
            _ => None,
        }
    }

    /// A version by model and label.
    pub fn version(&self, ns: &str, model: &str, version: &str) -> Option<&ModelVersion> {
        match self
            .versions
            .get(&(ns.into(), model.into(), version.into()))
            .map(|&i| &self.objects[i].resource)
        {
            Some(Resource::ModelVersion(v)) => Some(v),
            _ => None,
        }
    }

    /// An alias by model and alias name.
    pub fn alias(&self, ns: &str, model: &str, alias: &str) -> Option<&ModelAlias> {
        match &self.alias_object(ns, model, alias)?.resource {
            Resource::ModelAlias(a) => Some(a),
            _ => None,
        }
    }

    /// The object of alias `alias` of `model` in `ns`, with where it was read from.
    pub fn alias_object(&self, ns: &str, model: &str, alias: &str) -> Option<&Object> {
        self.aliases
            .get(&(ns.into(), model.into(), alias.into()))
            .map(|&i| &*self.objects[i])
    }

    /// Labels of a model's versions, in natural order (`9` before `10`).
    pub fn version_labels(&self, ns: &str, model: &str) -> Vec<&str> {
        labels_of(&self.versions, ns, model)
    }

    /// Names of a model's aliases, in natural order.
    pub fn alias_names(&self, ns: &str, model: &str) -> Vec<&str> {
        labels_of(&self.aliases, ns, model)
    }

    /// A group by name.
    pub fn group(&self, ns: &str, name: &str) -> Option<&Group> {
        let key = ObjectKey {
            kind: Kind::Group,
            namespace: ns.into(),
            name: name.into(),
        };
        match self.get(&key).map(|o| &o.resource) {
            Some(Resource::Group(g)) => Some(g),
            _ => None,
        }
    }

    /// Groups (in a namespace) that list a user.
    pub fn groups_of(&self, ns: &str, user: &str) -> Vec<String> {
        self.objects
            .iter()
            .filter_map(|o| match &o.resource {
                Resource::Group(g)
                    if o.key.namespace == ns && g.spec.members.iter().any(|m| m == user) =>
                {
                    Some(o.key.name.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Deployments that follow an alias.
    pub fn deployments_following(
        &self,
        ns: &str,
        model: &str,
        alias: &str,
    ) -> Vec<&ModelDeployment> {
        self.objects
            .iter()
            .filter_map(|o| match &o.resource {
                Resource::ModelDeployment(d)
                    if o.key.namespace == ns
                        && d.spec.model == model
                        && d.spec.alias.as_deref() == Some(alias) =>
                {
                    Some(&**d)
                }
                _ => None,
            })
            .collect()
    }
}

/// The (namespace, model, label) of a version (`true`) or an alias (`false`).
fn triple(obj: &Object) -> Option<(bool, Triple)> {
    let ns = obj.key.namespace.clone();
    match &obj.resource {
        Resource::ModelVersion(v) => {
            Some((true, (ns, v.spec.model.clone(), v.spec.version.clone())))
        }
        Resource::ModelAlias(a) => Some((false, (ns, a.spec.model.clone(), a.spec.alias.clone()))),
        _ => None,
    }
}

/// Compiles the policies among `objects`; the problems of those that do not compile, by policy.
fn compile_policies(
    objects: &imbl::Vector<Arc<Object>>,
) -> (PolicySet, Vec<(ObjectKey, Diagnostic)>) {
    let mut diags = Vec::new();
    let mut policies = Vec::new();
    for obj in objects {
        let Resource::PromotionPolicy(p) = &obj.resource else {
            continue;
        };
        match CompiledPolicy::compile(&obj.key.name, &obj.key.namespace, &p.spec) {
            Ok(c) => policies.push(c),
            Err(errors) => {
                for (i, msg) in errors {
                    diags.push((
                        obj.key.clone(),
                        obj.diagnostic(
                            &FieldPath::parse(&format!("spec.rules[{i}].expression")),
                            Category::Invalid,
                            msg,
                        ),
                    ));
                }
            }
        }
    }
    policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    (
        PolicySet {
            policies: Arc::new(policies),
            fallback: None,
        },
        diags,
    )
}

/// The third parts of an index's keys for one (namespace, model), in natural order.
fn labels_of<'a>(index: &'a imbl::HashMap<Triple, usize>, ns: &str, model: &str) -> Vec<&'a str> {
    let mut v: Vec<&str> = index
        .keys()
        .filter(|(n, m, _)| n == ns && m == model)
        .map(|(_, _, l)| l.as_str())
        .collect();
    v.sort_by(|a, b| natural(a).cmp(&natural(b)));
    v
}

/// Sort key that orders `"9"` before `"10"`.
pub fn natural(s: &str) -> (u64, &str) {
    (s.parse().unwrap_or(u64::MAX), s)
}
