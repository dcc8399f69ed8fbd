//! Slipway's API types: the `slipway.dev/v1alpha1` kinds, their CRDs and JSON Schemas.
//!
//! This crate has no controller dependencies; the `slipway` binary and any other client can use it.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod approval;
pub mod common;
pub mod evaluation;
pub mod gateway;
pub mod group;
pub mod model_alias;
pub mod model_deployment;
pub mod model_version;
pub mod promotion_policy;
pub mod registered_model;
pub mod serving;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

pub use approval::{Approval, ApprovalSpec};
pub use evaluation::{Evaluation, EvaluationSpec, EvaluationStatus};
pub use group::{Group, GroupSpec};
pub use model_alias::{ModelAlias, ModelAliasSpec};
pub use model_deployment::{ModelDeployment, ModelDeploymentSpec};
pub use model_version::{ModelVersion, ModelVersionSpec};
pub use promotion_policy::{PromotionPolicy, PromotionPolicySpec};
pub use registered_model::{RegisteredModel, RegisteredModelSpec};

/// API group of every kind.
pub const GROUP: &str = "slipway.dev";
/// `apiVersion` of every kind.
pub const API_VERSION: &str = "slipway.dev/v1alpha1";

/// Every kind Slipway defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// [`RegisteredModel`]
    RegisteredModel,
    /// [`ModelVersion`]
    ModelVersion,
    /// [`ModelAlias`]
    ModelAlias,
    /// [`Evaluation`]
    Evaluation,
    /// [`ModelDeployment`]
    ModelDeployment,
    /// [`PromotionPolicy`]
    PromotionPolicy,
    /// [`Approval`]
    Approval,
    /// [`Group`]
    Group,
}

impl Kind {
    /// All kinds, in the order resources are usually read.
    pub const ALL: [Kind; 8] = [
        Kind::RegisteredModel,
        Kind::ModelVersion,
        Kind::ModelAlias,
        Kind::Evaluation,
        Kind::ModelDeployment,
        Kind::PromotionPolicy,
        Kind::Approval,
        Kind::Group,
    ];

    /// The kind's name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RegisteredModel => "RegisteredModel",
            Kind::ModelVersion => "ModelVersion",
            Kind::ModelAlias => "ModelAlias",
            Kind::Evaluation => "Evaluation",
            Kind::ModelDeployment => "ModelDeployment",
            Kind::PromotionPolicy => "PromotionPolicy",
            Kind::Approval => "Approval",
            Kind::Group => "Group",
        }
    }

    /// Parses a kind name, case-insensitively, also accepting the plural and short names.
    pub fn parse(name: &str) -> Option<Kind> {
        let lower = name.to_ascii_lowercase();
        Kind::ALL.into_iter().find(|k| {
            let crd = k.crd();
            lower == k.as_str().to_ascii_lowercase()
                || lower == crd.spec.names.plural
                || crd
                    .spec
                    .names
                    .short_names
                    .iter()
                    .flatten()
                    .any(|s| *s == lower)
        })
    }

    /// The kind's CustomResourceDefinition.
    pub fn crd(self) -> CustomResourceDefinition {
        let mut crd = self.generated_crd();
        for v in &mut crd.spec.versions {
            if let Some(schema) = v
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                let mut json = serde_json::to_value(&*schema).unwrap_or(Value::Null);
                not_nullable(&mut json);
                if let Ok(s) = serde_json::from_value(json) {
                    *schema = s;
                }
            }
        }
        crd
    }

    /// The CRD as kube's derive generates it: an optional field is `nullable`.
    fn generated_crd(self) -> CustomResourceDefinition {
        match self {
            Kind::RegisteredModel => RegisteredModel::crd(),
            Kind::ModelVersion => ModelVersion::crd(),
            Kind::ModelAlias => ModelAlias::crd(),
            Kind::Evaluation => Evaluation::crd(),
            Kind::ModelDeployment => ModelDeployment::crd(),
            Kind::PromotionPolicy => PromotionPolicy::crd(),
            Kind::Approval => Approval::crd(),
            Kind::Group => Group::crd(),
        }
    }

    /// The CRD's published OpenAPI schema as JSON Schema: OpenAPI's `nullable` as a `null`
    /// type, Kubernetes' `x-kubernetes-*` extensions dropped; objects stay open, as the API
    /// server's checks are (it prunes unknown fields rather than refusing them).
    pub fn openapi_schema(self) -> Value {
        // The generated schema, `nullable` kept: the API server prunes a null it does not
        // allow, so such a document is accepted there, and must be here.
        let crd = self.generated_crd();
        let mut schema = crd
            .spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        as_json_schema(&mut schema);
        schema
    }

    /// A JSON Schema (draft 2020-12) of a whole document of this kind, for editors and CI linters.
    ///
    /// It is the CRD's OpenAPI schema plus `apiVersion`, `kind` and `metadata`, with
    /// `additionalProperties: false` on every object that lists its properties, because
    /// Slipway rejects unknown fields.
    pub fn json_schema(self) -> Value {
        let mut schema = self.openapi_schema();
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert("apiVersion".into(), json!({"const": API_VERSION}));
            props.insert("kind".into(), json!({"const": self.as_str()}));
            props.insert(
                "metadata".into(),
                json!({
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
                        "namespace": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
                    }
                }),
            );
        }
        if let Some(obj) = schema.as_object_mut() {
            let mut required = vec![json!("apiVersion"), json!("kind"), json!("metadata")];
            if let Some(Value::Array(r)) = obj.get("required") {
                required.extend(r.iter().cloned());
            }
            obj.insert("required".into(), Value::Array(required));
        }
        close_objects(&mut schema);
        let mut out = serde_json::Map::new();
        out.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        out.insert(
            "$id".into(),
            json!(format!(
                "https://slipway.dev/schemas/v1alpha1/{}.json",
                self.as_str()
            )),
        );
        out.insert("title".into(), json!(self.as_str()));
        if let Value::Object(m) = schema {
            out.extend(m);
        }
        Value::Object(out)
    }
}

/// The published schema without `nullable`: `kubectl explain` lists no fields of a nullable
/// object (kube-rs#1078), so a typo inside one went unseen; the API server prunes an explicit
/// null of a field that does not allow it, as Slipway never writes one.
fn not_nullable(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                map.remove("nullable");
            }
            map.values_mut().for_each(not_nullable);
        }
        Value::Array(items) => items.iter_mut().for_each(not_nullable),
        _ => {}
    }
}

/// OpenAPI `nullable` as a JSON Schema `null` type; Kubernetes extensions dropped.
fn as_json_schema(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with("x-kubernetes-"));
            if map.remove("nullable") == Some(Value::Bool(true))
                && let Some(Value::String(t)) = map.get("type").cloned()
            {
                map.insert("type".into(), json!([t, "null"]));
            }
            for v in map.values_mut() {
                as_json_schema(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(as_json_schema),
        _ => {}
    }
}

/// Adds `additionalProperties: false` to every object schema that lists properties.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for v in map.values_mut() {
                close_objects(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// Every CRD, in [`Kind::ALL`] order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    Kind::ALL.into_iter().map(Kind::crd).collect()
}
