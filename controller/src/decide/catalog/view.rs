//! A namespace as Kubernetes mode sees it: the catalog of its objects and the evaluation results
//! in it, kept up to date by applying each watched change instead of rebuilding it.

use std::sync::Arc;

use super::{Catalog, Object, ObjectKey, Resource};
use crate::decide::policy::context::Results;

/// A namespace's catalog and its evaluation results.
#[derive(Debug, Default)]
pub struct View {
    /// The catalog.
    pub catalog: Catalog,
    /// Evaluation results in it.
    pub results: Arc<Results>,
}

impl View {
    /// The view of the objects of a namespace.
    pub fn of(objects: Vec<Object>) -> View {
        let (catalog, _) = Catalog::build(objects);
        View::with(catalog)
    }

    fn with(catalog: Catalog) -> View {
        let mut results = Results::default();
        results.add(catalog.objects().iter().filter_map(|o| match &o.resource {
            Resource::Evaluation(e) => Some(e),
            _ => None,
        }));
        View {
            catalog,
            results: Arc::new(results),
        }
    }

    /// This view with `changes` applied (an object as it is now, or `None` when deleted).
    pub fn amended(&self, changes: Vec<(ObjectKey, Option<Object>)>) -> View {
        let evaluations = changes
            .iter()
            .any(|(k, _)| k.kind == slipway_crd::Kind::Evaluation);
        let (catalog, _) = self.catalog.amended(changes);
        if evaluations {
            return View::with(catalog);
        }
        View {
            results: self.results.clone(),
            catalog,
        }
    }
}
