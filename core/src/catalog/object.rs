//! Typed objects of a catalog and where each came from.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use slipway_crd::{
    Approval, Evaluation, Group, Kind, ModelAlias, ModelDeployment, ModelVersion, PromotionPolicy,
    RegisteredModel,
};

use super::locate::Positions;
use crate::diagnostics::{Category, Diagnostic, FieldPath};

/// Namespace of objects that do not name one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One typed Slipway object. Shared: in a cluster the catalog holds the very objects the
/// watches hold (one copy of each in memory, not two).
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    /// A `RegisteredModel`.
    RegisteredModel(Arc<RegisteredModel>),
    /// A `ModelVersion`.
    ModelVersion(Arc<ModelVersion>),
    /// A `ModelAlias`.
    ModelAlias(Arc<ModelAlias>),
    /// An `Evaluation`.
    Evaluation(Arc<Evaluation>),
    /// A `ModelDeployment`.
    ModelDeployment(Arc<ModelDeployment>),
    /// A `PromotionPolicy`.
    PromotionPolicy(Arc<PromotionPolicy>),
    /// An `Approval`.
    Approval(Arc<Approval>),
    /// A `Group`.
    Group(Arc<Group>),
}

impl Resource {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::RegisteredModel(_) => Kind::RegisteredModel,
            Resource::ModelVersion(_) => Kind::ModelVersion,
            Resource::ModelAlias(_) => Kind::ModelAlias,
            Resource::Evaluation(_) => Kind::Evaluation,
            Resource::ModelDeployment(_) => Kind::ModelDeployment,
            Resource::PromotionPolicy(_) => Kind::PromotionPolicy,
            Resource::Approval(_) => Kind::Approval,
            Resource::Group(_) => Kind::Group,
        }
    }

    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Resource::RegisteredModel(o) => &o.metadata,
            Resource::ModelVersion(o) => &o.metadata,
            Resource::ModelAlias(o) => &o.metadata,
            Resource::Evaluation(o) => &o.metadata,
            Resource::ModelDeployment(o) => &o.metadata,
            Resource::PromotionPolicy(o) => &o.metadata,
            Resource::Approval(o) => &o.metadata,
            Resource::Group(o) => &o.metadata,
        }
    }

    /// The spec as JSON, for diffs.
    pub fn spec_json(&self) -> serde_json::Value {
        let spec = match self {
            Resource::RegisteredModel(o) => serde_json::to_value(&o.spec),
            Resource::ModelVersion(o) => serde_json::to_value(&o.spec),
            Resource::ModelAlias(o) => serde_json::to_value(&o.spec),
            Resource::Evaluation(o) => serde_json::to_value(&o.spec),
            Resource::ModelDeployment(o) => serde_json::to_value(&o.spec),
            Resource::PromotionPolicy(o) => serde_json::to_value(&o.spec),
            Resource::Approval(o) => serde_json::to_value(&o.spec),
            Resource::Group(o) => serde_json::to_value(&o.spec),
        };
        // Specs are plain data (strings, numbers, maps with string keys), which always serialize.
        spec.unwrap_or(serde_json::Value::Null)
    }

    /// The model the object belongs to, for kinds that have one.
    pub fn model(&self) -> Option<&str> {
        match self {
            Resource::RegisteredModel(o) => o.metadata.name.as_deref(),
            Resource::ModelVersion(o) => Some(&o.spec.model),
            Resource::ModelAlias(o) => Some(&o.spec.model),
            Resource::Evaluation(o) => Some(&o.spec.model),
            Resource::ModelDeployment(o) => Some(&o.spec.model),
            _ => None,
        }
    }
}

/// Identity of an object: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// The file name a cluster object has in diagnostics: `Kind/namespace/name.yaml`.
pub fn cluster_path(key: &ObjectKey) -> String {
    format!("{}/{}/{}.yaml", key.kind.as_str(), key.namespace, key.name)
}

/// Where a document came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    /// File path, relative to the folder or repository root.
    pub file: Arc<str>,
    /// 1-based line where the document starts in the file.
    pub first_line: usize,
    /// The document's text.
    pub text: Arc<str>,
}

impl Origin {
    /// A diagnostic pointing at `field` of this document (at the field's value, or its nearest existing parent).
    pub fn diagnostic(
        &self,
        key: Option<&ObjectKey>,
        field: &FieldPath,
        category: Category,
        message: impl Into<String>,
    ) -> Diagnostic {
        let positions = Positions::of(&self.text);
        let at = if category == Category::UnknownField {
            positions.key_of(field)
        } else {
            positions.value_of(field)
        };
        self.diagnostic_at(key, field, at, category, message)
    }

    /// A diagnostic at an explicit position within the document (1-based line within the document).
    pub fn diagnostic_at(
        &self,
        key: Option<&ObjectKey>,
        field: &FieldPath,
        at: Option<(usize, usize)>,
        category: Category,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = at.unwrap_or((1, 1));
        Diagnostic {
            file: self.file.to_string(),
            line: self.first_line + line - 1,
            column,
            kind: key.map(|k| k.kind.as_str().to_string()),
            object: key.map(|k| format!("{}/{}", k.namespace, k.name)),
            field: field.to_string(),
            category,
            message: message.into(),
            unloaded: None,
        }
    }
}

/// A typed object and its origin.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// The object.
    pub resource: Resource,
    /// Its identity.
    pub key: ObjectKey,
    /// Where it was read from.
    pub origin: Origin,
}

impl Object {
    /// An object read from the API server (typed already, and checked against its CRD's schema
    /// there): its origin names it as `Kind/namespace/name.yaml`, the way admission names the
    /// requested object, with no source text (its problems are reported by field, not line).
    /// `None` for an object without a name.
    pub fn from_cluster(resource: Resource) -> Option<Object> {
        let meta = resource.meta();
        let key = ObjectKey {
            kind: resource.kind(),
            namespace: meta
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            name: meta.name.clone()?,
        };
        let origin = Origin {
            file: Arc::from(cluster_path(&key).as_str()),
            first_line: 1,
            // Its own (empty) text: identity of the text is what marks an object unchanged
            // between two catalogs.
            text: Arc::from(""),
        };
        Some(Object {
            resource,
            key,
            origin,
        })
    }

    /// A diagnostic about `field` of this object.
    pub fn diagnostic(
        &self,
        field: &FieldPath,
        category: Category,
        message: impl Into<String>,
    ) -> Diagnostic {
        self.origin
            .diagnostic(Some(&self.key), field, category, message)
    }
}
