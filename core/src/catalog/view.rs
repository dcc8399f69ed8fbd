//! A namespace as Kubernetes mode sees it: the catalog of its objects and the evaluation results
//! in it, kept up to date by applying each watched change instead of rebuilding it.

use std::sync::Arc;

use super::{Catalog, Object, ObjectKey, Resource};
use crate::catalog::results::{Results, Slot, slot_of};

/// A namespace's catalog and its evaluation results.
#[derive(Debug, Default)]
pub struct View {
    /// The catalog.
    pub catalog: Catalog,
    /// Evaluation results in it.
    pub results: Arc<Results>,
    /// An object was left out as a duplicate of another (name or label): which one is kept
    /// depends on the order changes came in, so the next change rebuilds the view instead.
    pub shadowed: bool,
}

impl View {
    /// The view of the objects of a namespace.
    pub fn of(objects: Vec<Object>) -> View {
        let (catalog, diags) = Catalog::build(objects);
        View::with(catalog, shadowing(&diags))
    }

    /// [`View::of`], where a namespace without policies of its own is governed by those of
    /// `policy_namespace` (which `objects` should include).
    pub fn governed(objects: Vec<Object>, policy_namespace: &str) -> View {
        let (catalog, diags) = Catalog::build(objects);
        View::with(
            catalog.with_policy_namespace(policy_namespace),
            shadowing(&diags),
        )
    }

    fn with(catalog: Catalog, shadowed: bool) -> View {
        // Only evaluations that run a suite as its model declares it feed policy.
        let mut results = Results::default();
        results.add_judging(
            &catalog,
            catalog.objects().iter().filter_map(|o| match &o.resource {
                Resource::Evaluation(e) => Some(&**e),
                _ => None,
            }),
        );
        View {
            catalog,
            results: Arc::new(results),
            shadowed,
        }
    }

    /// This view with `changes` applied (an object as it is now, or `None` when deleted).
    pub fn amended(&self, changes: Vec<(ObjectKey, Option<Object>)>) -> View {
        // A model's suites and a version's artifact decide which evaluations count: changing
        // either re-reads the results. A version that is new has no results to drop; one that is
        // removed or changed does, or they would still count for a version re-registered with
        // another artifact.
        let reread = changes.iter().any(|(k, _)| match k.kind {
            slipway_crd::Kind::RegisteredModel => true,
            slipway_crd::Kind::ModelVersion => self.catalog.get(k).is_some(),
            _ => false,
        });
        // A changed evaluation re-reads only its own slot (and the one it left).
        let evaluation = |o: Option<&Object>| match o.map(|o| &o.resource) {
            Some(Resource::Evaluation(e)) => Some(slot_of(e)),
            _ => None,
        };
        let mut slots: Vec<Slot> = changes
            .iter()
            .filter(|(k, _)| k.kind == slipway_crd::Kind::Evaluation)
            .flat_map(|(k, new)| [evaluation(self.catalog.get(k)), evaluation(new.as_ref())])
            .flatten()
            .collect();
        slots.sort();
        slots.dedup();
        let (catalog, diags) = self.catalog.amended(changes);
        let shadowed = self.shadowed || shadowing(&diags);
        if reread {
            return View::with(catalog, shadowed);
        }
        let results = if slots.is_empty() {
            self.results.clone()
        } else {
            Arc::new(self.results.amended(&catalog, &slots))
        };
        View {
            results,
            catalog,
            shadowed,
        }
    }
}

impl View {
    /// This view holding `objects` (status writes of objects whose spec did not change) in place
    /// of its older copies: what it decides from is the same, and it no longer keeps the
    /// copies the watches have replaced.
    pub fn refreshed(&self, objects: impl IntoIterator<Item = Object>) -> View {
        View {
            catalog: self.catalog.refreshed(objects),
            results: self.results.clone(),
            shadowed: self.shadowed,
        }
    }
}

/// Whether any object was left out for clashing with another.
fn shadowing(diags: &[crate::diagnostics::Diagnostic]) -> bool {
    diags
        .iter()
        .any(|d| d.category == crate::diagnostics::Category::Duplicate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{SourceFile, load_files};

    fn alias(name: &str, version: &str) -> Object {
        let yaml = format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: {name}}}\nspec: {{model: m, alias: production, version: \"{version}\"}}\n"
        );
        let (mut o, d) = load_files(&[SourceFile {
            path: format!("{name}.yaml"),
            content: yaml.into_bytes(),
            id: None,
            from_api_server: true,
        }]);
        assert!(d.is_empty(), "{d:#?}");
        o.pop().unwrap()
    }

    /// Results count for the artifact they were produced from: a version removed, then
    /// registered again with another artifact, does not inherit them.
    #[test]
    fn a_version_re_registered_with_another_artifact_loses_its_results() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut files = crate::testing::read_folder(&root.join("football-frames"));
        files.extend(crate::testing::read_folder(
            &root.join("promotion-pr/results"),
        ));
        let (objects, d) = load_files(&files);
        assert!(d.is_empty(), "{d:#?}");
        let eight = objects
            .iter()
            .find(|o| o.key.kind == slipway_crd::Kind::ModelVersion && o.key.name.ends_with("-8"))
            .unwrap()
            .clone();
        let results = |v: &View| {
            v.results
                .of("default", "pitch-frame-classifier", "8")
                .map_or(0, |r| r.len())
        };
        let mut other = eight.clone();
        if let crate::catalog::Resource::ModelVersion(v) = &mut other.resource {
            Arc::make_mut(v).spec.artifact.digest = format!("sha256:{}", "e".repeat(64));
        }
        let view = View::of(objects);
        assert_eq!(results(&view), 1, "the recorded result judges version 8");

        let changed = view.amended(vec![(other.key.clone(), Some(other.clone()))]);
        assert_eq!(
            results(&changed),
            0,
            "changed in place: not this artifact's result"
        );
        let removed = view.amended(vec![(eight.key.clone(), None)]);
        assert_eq!(results(&removed), 0, "no version, no results");
        let again = removed.amended(vec![(other.key.clone(), Some(other))]);
        assert_eq!(
            results(&again),
            0,
            "registered again with another artifact: none"
        );
    }

    /// A status write takes the place of the view's copy (the old one can be freed), without
    /// changing what is indexed; an object the view does not hold is not brought in.
    #[test]
    fn a_refreshed_view_holds_the_new_object_in_place_of_its_copy() {
        let first = alias("a", "7");
        let view = View::of(vec![first.clone()]);
        let mut written = first.clone();
        if let Resource::ModelAlias(a) = &mut written.resource {
            Arc::make_mut(a).status = Some(Default::default());
        }
        assert_ne!(written, first);
        let stranger = alias("b", "8");
        let refreshed = view.refreshed(vec![written.clone(), stranger.clone()]);
        let held = refreshed.catalog.get(&first.key).expect("still indexed");
        assert_eq!(held, &written, "the written object, not the old copy");
        assert_eq!(
            view.catalog.get(&first.key),
            Some(&first),
            "the old view is as it was"
        );
        assert!(refreshed.catalog.get(&stranger.key).is_none());
        assert_eq!(refreshed.catalog.objects().len(), 1);
        assert!(
            refreshed
                .catalog
                .alias("default", "m", "production")
                .is_some()
        );
    }

    /// A view that left an object out as a duplicate says so, so that its owner rebuilds it
    /// from the stores when the object it clashed with goes away.
    #[test]
    fn a_view_that_left_a_duplicate_out_is_marked() {
        let first = alias("a", "7");
        let view = View::of(vec![first.clone()]);
        assert!(!view.shadowed);
        let twin = alias("b", "8");
        let view = view.amended(vec![(twin.key.clone(), Some(twin.clone()))]);
        assert!(view.shadowed);
        assert!(view.catalog.get(&twin.key).is_none());
        // Once marked, it stays marked until rebuilt.
        let view = view.amended(vec![(first.key.clone(), None)]);
        assert!(view.shadowed);
        // A rebuild from the objects as they now are holds the twin.
        assert!(
            View::of(vec![twin.clone()])
                .catalog
                .get(&twin.key)
                .is_some()
        );
    }
}
