//! Each document checked against the very schema its CRD publishes (the API server's view), in
//! addition to the typed parse: an unquoted `version: 8` or `commit: 0000…1` is a number where the
//! CRD says string, and `kubectl apply` refuses it, so `validate` does too. Duplicate keys
//! anywhere in a document are refused as the API server's YAML reader refuses them. Names and
//! namespaces must be what the API server accepts (DNS subdomain / label).
//!
//! The schemas are compiled once per kind. A document text that passed is remembered by its
//! digest ([`Passes`]), so `slipway run` checks only what changed since its last pass.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest as _, Sha256};

use serde_json::{Value, json};
use slipway_crd::Kind;

use super::locate::Positions;
use super::object::Origin;
use crate::diagnostics::{Category, Diagnostic, FieldPath};

/// A DNS-1123 subdomain: object names.
const SUBDOMAIN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A DNS-1123 label: namespaces.
const LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// The CRD's OpenAPI schema as JSON Schema: `nullable` as a `null` type, Kubernetes extensions
/// dropped, and `metadata` checked the way the API server checks it.
pub fn api_server_schema(kind: Kind) -> Value {
    let mut schema = kind.openapi_schema();
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "metadata".into(),
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 253, "pattern": SUBDOMAIN},
                    "namespace": {"type": "string", "maxLength": 63, "pattern": LABEL},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            }),
        );
    }
    schema
}

fn validators() -> &'static HashMap<&'static str, Result<jsonschema::Validator, String>> {
    static V: OnceLock<HashMap<&'static str, Result<jsonschema::Validator, String>>> =
        OnceLock::new();
    V.get_or_init(|| {
        Kind::ALL
            .into_iter()
            .map(|k| {
                let compiled = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .build(&api_server_schema(k))
                    .map_err(|e| e.to_string());
                (k.as_str(), compiled)
            })
            .collect()
    })
}

/// Bump when [`check`] refuses something it did not before, so remembered passes are forgotten.
const CHECK_REVISION: u32 = 2;

/// What the verdicts of this build depend on: its version, its check's revision and every
/// kind's schema, as hex.
pub fn fingerprint() -> &'static str {
    static F: OnceLock<String> = OnceLock::new();
    F.get_or_init(|| {
        let mut h = Sha256::new();
        h.update(env!("CARGO_PKG_VERSION"));
        h.update(CHECK_REVISION.to_le_bytes());
        for k in Kind::ALL {
            h.update(api_server_schema(k).to_string());
        }
        crate::hex(&h.finalize())
    })
}

/// The digest a document's verdict is remembered by: this build's [`fingerprint`], its kind and
/// its text.
pub type Digest = [u8; 32];

/// Document texts known to pass [`check`] under this build (loaded from the state store by the
/// caller), and those that passed for the first time while loading (for it to remember).
#[derive(Debug, Default)]
pub struct Passes {
    known: HashSet<Digest>,
    new: Mutex<Vec<Digest>>,
}

impl Passes {
    /// Passes known from earlier loads.
    pub fn new(known: impl IntoIterator<Item = Digest>) -> Passes {
        Passes {
            known: known.into_iter().collect(),
            new: Mutex::default(),
        }
    }

    fn digest(kind: Kind, text: &str) -> Digest {
        let mut h = Sha256::new();
        h.update(fingerprint());
        h.update(kind.as_str());
        h.update([0]);
        h.update(text);
        h.finalize().into()
    }

    /// [`check`], skipped for a text known to pass; a text that passes now is noted.
    pub fn check(
        &self,
        origin: &Origin,
        kind: Kind,
        key: Option<&super::ObjectKey>,
        document: &Value,
    ) -> Vec<Diagnostic> {
        let digest = Passes::digest(kind, &origin.text);
        if self.known.contains(&digest) {
            return Vec::new();
        }
        let refused = check(origin, kind, key, document);
        if refused.is_empty() {
            self.new
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(digest);
        }
        refused
    }

    /// The texts that passed for the first time, to remember; from now on they are known.
    pub fn settle(&mut self) -> Vec<Digest> {
        let new = std::mem::take(self.new.get_mut().unwrap_or_else(|p| p.into_inner()));
        self.known.extend(new.iter().copied());
        new
    }
}

/// A JSON pointer (`/spec/steps/0/weight`) as a field path.
fn field_of(pointer: &str) -> FieldPath {
    let mut path = FieldPath::root();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        path = match seg.parse::<usize>() {
            Ok(i) => path.index(i),
            Err(_) => path.key(seg),
        };
    }
    path
}

/// What to do about a value of the wrong JSON type (`written`: the plain scalar as written).
fn advice(value: &Value, message: &str, written: Option<&str>) -> String {
    let wants_string = message.contains("\"string\"");
    let what = match value {
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        _ => return String::new(),
    };
    match written {
        Some(w) if wants_string => {
            format!("; `{w}` unquoted is {what} to the API server (YAML 1.1): quote it, \"{w}\"")
        }
        _ => String::new(),
    }
}

/// Checks a document that parsed as its kind; returns what the API server would refuse.
pub fn check(
    origin: &Origin,
    kind: Kind,
    key: Option<&super::ObjectKey>,
    document: &Value,
) -> Vec<Diagnostic> {
    let Some(Ok(validator)) = validators().get(kind.as_str()) else {
        // The built-in schema did not compile: a bug of this build, not of the document.
        return Vec::new();
    };
    let mut positions: Option<Positions> = None;
    let mut written: Option<HashMap<String, String>> = None;
    let mut out = Vec::new();
    for error in validator.iter_errors(document) {
        let pointer = error.instance_path().to_string();
        let field = field_of(&pointer);
        let positions = positions.get_or_insert_with(|| Positions::of(&origin.text));
        let message = error.to_string();
        let written = written.get_or_insert_with(|| super::yaml::written(&origin.text));
        let as_written = written.get(&field.to_string());
        let hint = advice(error.instance(), &message, as_written.map(String::as_str));
        let category = if message.contains("is not of type") {
            Category::WrongType
        } else {
            Category::Invalid
        };
        let shown = if field.is_root() {
            message
        } else {
            format!("{message} (the CRD's schema for `{field}`)")
        };
        out.push(origin.diagnostic_at(
            key,
            &field,
            positions.value_of(&field),
            category,
            format!("{shown}{hint}"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn origin(text: &str) -> Origin {
        Origin {
            file: Arc::from("f.yaml"),
            first_line: 1,
            text: Arc::from(text),
        }
    }

    /// [`check`] of a document as the loader reads it.
    fn checked(text: &str, kind: Kind) -> Vec<Diagnostic> {
        check(
            &origin(text),
            kind,
            None,
            &super::super::yaml::read(text).unwrap(),
        )
    }

    fn passes(p: &Passes, text: &str) -> bool {
        p.check(
            &origin(text),
            Kind::Group,
            None,
            &super::super::yaml::read(text).unwrap(),
        )
        .is_empty()
    }

    #[test]
    fn every_kind_has_a_compiling_schema() {
        for k in Kind::ALL {
            assert!(
                validators()[k.as_str()].is_ok(),
                "{}: {:?}",
                k.as_str(),
                validators()[k.as_str()].as_ref().err()
            );
        }
    }

    #[test]
    fn an_unquoted_number_where_the_crd_says_string_is_refused_at_its_line() {
        let d = checked(
            "apiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {name: m-8}\nspec:\n  model: m\n  version: 8\n  artifact: {uri: x, digest: \"sha256:ab\"}\n",
            Kind::ModelVersion,
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].line, d[0].column), (6, 12));
        assert_eq!(d[0].category, Category::WrongType);
        assert!(d[0].message.contains("quote it, \"8\""), "{}", d[0].message);
    }

    #[test]
    fn names_and_namespaces_are_what_the_api_server_accepts() {
        let d = checked(
            "apiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata: {name: Team_A, namespace: ../x}\nspec: {members: []}\n",
            Kind::Group,
        );
        let fields: Vec<&str> = d.iter().map(|d| d.field.as_str()).collect();
        assert!(fields.contains(&"metadata.name"), "{d:?}");
        assert!(fields.contains(&"metadata.namespace"), "{d:?}");
    }

    #[test]
    fn a_repeated_key_anywhere_is_refused_where_it_repeats() {
        let d = super::super::load::load_document(
            origin(
                "apiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata:\n  name: a\n  name: b\nspec: {members: []}\n",
            ),
            true,
        )
        .unwrap_err();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].category, Category::Duplicate);
        assert_eq!(d[0].line, 5, "{d:?}");
    }

    #[test]
    fn a_text_that_passed_is_not_checked_again_and_any_change_is() {
        let good = "apiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata: {name: team-a}\nspec: {members: []}\n";
        let bad = "apiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata: {name: Team_A}\nspec: {members: []}\n";
        let mut first = Passes::default();
        assert!(passes(&first, good));
        assert!(!passes(&first, bad));
        let remembered = first.settle();
        assert_eq!(remembered.len(), 1, "only what passed is remembered");
        assert!(first.settle().is_empty());
        // Settled, it is known to the same process's next load too: nothing new to remember.
        assert!(passes(&first, good));
        assert!(first.settle().is_empty());

        // The next load knows the good text: nothing new to remember for it; the bad one is
        // refused again, and the same text under another kind is checked anew.
        let mut next = Passes::new(remembered.clone());
        assert!(passes(&next, good));
        assert!(next.settle().is_empty());
        assert!(!passes(&next, bad));
        assert_ne!(Passes::digest(Kind::Approval, good), remembered[0]);
        assert_eq!(fingerprint().len(), 64);
    }
}
