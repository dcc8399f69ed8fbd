//! Parses YAML files into typed objects, collecting every problem instead of stopping at the first.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use slipway_crd::{API_VERSION, GROUP, Kind};

use serde_json::Value;

use super::locate::{Positions, from_ignored, from_tracked};
use super::object::{DEFAULT_NAMESPACE, Object, ObjectKey, Origin, Resource};
use super::yaml;
use crate::diagnostics::{Category, Diagnostic, FieldPath, did_you_mean};

/// A file to load: its path (relative, for messages) and its bytes.
#[derive(Clone, Debug, Default)]
pub struct SourceFile {
    /// Path relative to the folder or repository root.
    pub path: String,
    /// Content.
    pub content: Vec<u8>,
    /// Content id when known (the git blob id), so unchanged files are parsed once.
    pub id: Option<String>,
    /// Read back from the API server, which checked it against the CRD's schema already: the
    /// loader does not check it again.
    pub from_api_server: bool,
}

/// Whether a file name is a YAML file Slipway reads.
pub fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// Splits a YAML stream into documents at `---` / `...` markers at the start of a line.
///
/// YAML forbids those markers inside content at column 0, so this split is exact, and a syntax
/// error in one document does not hide the others. Returns (first line, text) pairs.
pub fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = |m: &str| {
            bare.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if (is_marker("---") || is_marker("...")) && offset > start {
            docs.push((start_line, &text[start..offset]));
            start = offset;
            start_line = i + 1;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs.into_iter()
        .filter(|(_, d)| !is_blank_document(d))
        .collect()
}

fn is_blank_document(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// How documents are checked against the schemas their CRDs publish ([`super::schema`]).
#[derive(Clone, Copy, Debug)]
pub enum SchemaCheck<'a> {
    /// Not at all (objects read from an API server, which checked them).
    Off,
    /// Every document.
    On,
    /// Every document not known to pass; what passes is noted in the [`super::schema::Passes`].
    Remembering(&'a super::schema::Passes),
}

/// Loads every document of every file. Objects that parse are returned even when others fail.
/// Files are parsed on all cores; the result keeps the input order.
pub fn load_files(files: &[SourceFile]) -> (Vec<Object>, Vec<Diagnostic>) {
    load_files_checking(files, SchemaCheck::On)
}

/// [`load_files`], checking documents read from files as `check` says.
pub fn load_files_checking(
    files: &[SourceFile],
    check: SchemaCheck,
) -> (Vec<Object>, Vec<Diagnostic>) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads == 1 || files.len() < 64 {
        return load_sequentially(files, check);
    }
    let chunk = files.len().div_ceil(threads);
    let parts: Vec<(Vec<Object>, Vec<Diagnostic>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|c| scope.spawn(move || load_sequentially(c, check)))
            .collect();
        handles
            .into_iter()
            // A panic while parsing is a bug; re-raise it rather than lose files silently.
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut objects = Vec::with_capacity(files.len());
    let mut diags = Vec::new();
    for (mut o, mut d) in parts {
        objects.append(&mut o);
        diags.append(&mut d);
    }
    (objects, diags)
}

fn load_sequentially(files: &[SourceFile], check: SchemaCheck) -> (Vec<Object>, Vec<Diagnostic>) {
    let mut objects = Vec::new();
    let mut diags = Vec::new();
    for file in files {
        let path: Arc<str> = Arc::from(file.path.as_str());
        let text = match std::str::from_utf8(&file.content) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic {
                    file: file.path.clone(),
                    line: 1,
                    column: 1,
                    kind: None,
                    object: None,
                    field: String::new(),
                    category: Category::Syntax,
                    message: format!("file is not UTF-8 ({e}); save it as UTF-8"),
                    unloaded: None,
                });
                continue;
            }
        };
        let docs = split_documents(text);
        for (i, (first_line, doc)) in docs.iter().enumerate() {
            let origin = Origin {
                file: path.clone(),
                first_line: *first_line,
                text: Arc::from(*doc),
            };
            let check = if file.from_api_server {
                SchemaCheck::Off
            } else {
                check
            };
            match load_document_checking(origin, check) {
                Ok(obj) => objects.push(obj),
                Err(mut errs) => {
                    // A field missing from a document that the next one (without a kind of its
                    // own) seems to continue: a stray `---` split them; point at it.
                    if let Some((next_line, next)) = docs.get(i + 1)
                        && scan_header(next).is_none()
                        && !next.lines().any(|l| l.starts_with("kind:"))
                    {
                        for d in errs.iter_mut().filter(|d| {
                            d.category == Category::MissingField
                                && !d.field.is_empty()
                                && !d.field.contains(['.', '['])
                        }) {
                            d.line = *next_line;
                            d.column = 1;
                            d.message.push_str(&format!(
                                "; the document separator `---` at line {next_line} ends this document — remove it if the lines after it belong here"
                            ));
                        }
                    }
                    diags.append(&mut errs)
                }
            }
        }
    }
    (objects, diags)
}

/// Finds top-level `apiVersion:` and `kind:` lines without parsing the document (to tell a
/// document of its own from the rest of one a stray `---` split).
///
/// Keys at column 0 are top-level keys in block style; anything unusual (flow style, quotes
/// with escapes, repeated keys) returns `None`.
fn scan_header(text: &str) -> Option<(String, String)> {
    let (mut api_version, mut kind) = (None, None);
    for line in text.lines() {
        let slot = if let Some(rest) = line.strip_prefix("apiVersion:") {
            (&mut api_version, rest)
        } else if let Some(rest) = line.strip_prefix("kind:") {
            (&mut kind, rest)
        } else {
            continue;
        };
        let (target, rest) = slot;
        let value = rest.split(" #").next().unwrap_or("").trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        if target.is_some()
            || value.is_empty()
            || value.contains(['\\', '"', '\'', '{', '[', '&', '*', '!'])
        {
            return None;
        }
        *target = Some(value.to_string());
    }
    Some((api_version?, kind?))
}

/// Loads one document.
///
/// With `check_schema`, a document that parses as its kind is also checked against the schema
/// its CRD publishes ([`super::schema`]).
pub fn load_document(origin: Origin, check_schema: bool) -> Result<Object, Vec<Diagnostic>> {
    let check = if check_schema {
        SchemaCheck::On
    } else {
        SchemaCheck::Off
    };
    load_document_checking(origin, check)
}

fn load_document_checking(origin: Origin, check: SchemaCheck) -> Result<Object, Vec<Diagnostic>> {
    // The one parse: typed object, schema check and identity all read this value.
    let document = yaml::read(&origin.text).map_err(|why| vec![unreadable(&origin, why)])?;
    let kind = header(&origin, &document)?;
    let marked = |mut errs: Vec<Diagnostic>| {
        if let Some(first) = errs.first_mut() {
            first.unloaded = identity(&document, kind)
                .map(|key| Box::new(crate::diagnostics::Unloaded::of(&document, key)));
        }
        errs
    };
    let resource = typed_resource(&origin, kind, &document, check).map_err(marked)?;
    let key = key_of(&origin, kind, &resource).map_err(marked)?;
    let refused = match check {
        SchemaCheck::Off => Vec::new(),
        SchemaCheck::On => super::schema::check(&origin, kind, Some(&key), &document),
        SchemaCheck::Remembering(passes) => passes.check(&origin, kind, Some(&key), &document),
    };
    if !refused.is_empty() {
        return Err(marked(refused));
    }
    Ok(Object {
        resource,
        key,
        origin,
    })
}

/// The kind a document declares, when it is a mapping with a known `kind` and the one
/// `apiVersion` Slipway supports.
fn header(origin: &Origin, document: &Value) -> Result<Kind, Vec<Diagnostic>> {
    let Some(top) = document.as_object() else {
        return Err(vec![origin.diagnostic_at(
            None,
            &FieldPath::root(),
            None,
            Category::Syntax,
            "document is not a mapping; a Slipway document has apiVersion, kind, metadata and spec",
        )]);
    };
    let text_of = |k: &str| top.get(k).and_then(Value::as_str).map(str::to_string);
    let (api_version, kind_name) = (text_of("apiVersion"), text_of("kind"));
    let Some(kind_name) = kind_name else {
        return Err(vec![origin.diagnostic(
            None,
            &FieldPath::root().key("kind"),
            Category::MissingField,
            format!("missing `kind`; add one of: {}", kind_list()),
        )]);
    };
    let Some(kind) = Kind::ALL.into_iter().find(|k| k.as_str() == kind_name) else {
        let hint = match did_you_mean(&kind_name, Kind::ALL.map(Kind::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("Slipway kinds are: {}", kind_list()),
        };
        return Err(vec![origin.diagnostic(
            None,
            &FieldPath::root().key("kind"),
            Category::UnknownKind,
            format!("unknown kind `{kind_name}`; {hint}"),
        )]);
    };
    api_version_supported(origin, api_version.as_deref(), &kind_name)?;
    Ok(kind)
}

/// Whether a document of kind `kind_name` declares the `apiVersion` Slipway supports; the
/// diagnostic tells another version of Slipway's API from another tool's document.
fn api_version_supported(
    origin: &Origin,
    api_version: Option<&str>,
    kind_name: &str,
) -> Result<(), Vec<Diagnostic>> {
    match api_version {
        Some(API_VERSION) => Ok(()),
        Some(other) => {
            let hint = if other.starts_with(&format!("{GROUP}/")) {
                format!("this Slipway supports `{API_VERSION}` only")
            } else {
                format!(
                    "Slipway documents use `apiVersion: {API_VERSION}`; keep other tools' files outside the registry folder"
                )
            };
            Err(vec![origin.diagnostic(
                None,
                &FieldPath::root().key("apiVersion"),
                Category::UnknownKind,
                format!("unknown apiVersion `{other}` for kind {kind_name}; {hint}"),
            )])
        }
        None => Err(vec![origin.diagnostic(
            None,
            &FieldPath::root().key("apiVersion"),
            Category::MissingField,
            format!("missing `apiVersion`; add `apiVersion: {API_VERSION}`"),
        )]),
    }
}

/// The document read as its kind's typed resource (the typed parse's errors when it does not
/// read).
fn typed_resource(
    origin: &Origin,
    kind: Kind,
    d: &Value,
    check: SchemaCheck,
) -> Result<Resource, Vec<Diagnostic>> {
    let resource = match kind {
        Kind::RegisteredModel => {
            typed(origin, kind, d).map(|o| Resource::RegisteredModel(Arc::new(o)))
        }
        Kind::ModelVersion => typed(origin, kind, d).map(|o| Resource::ModelVersion(Arc::new(o))),
        Kind::ModelAlias => typed(origin, kind, d).map(|o| Resource::ModelAlias(Arc::new(o))),
        Kind::Evaluation => typed(origin, kind, d).map(|o| Resource::Evaluation(Arc::new(o))),
        Kind::ModelDeployment => {
            typed(origin, kind, d).map(|o| Resource::ModelDeployment(Arc::new(o)))
        }
        Kind::PromotionPolicy => {
            typed(origin, kind, d).map(|o| Resource::PromotionPolicy(Arc::new(o)))
        }
        Kind::Approval => typed(origin, kind, d).map(|o| Resource::Approval(Arc::new(o))),
        Kind::Group => typed(origin, kind, d).map(|o| Resource::Group(Arc::new(o))),
    };
    match (resource, check) {
        (Ok(r), _) => Ok(r),
        (Err(errs), SchemaCheck::Off) => Err(errs),
        // A value of the wrong type is what the schema check says best (with advice such as
        // quoting an unquoted number): when it finds one too, its words replace the typed
        // parse's.
        (Err(mut errs), _) => {
            if errs.iter().any(|e| e.category == Category::WrongType) {
                let key = identity(d, kind);
                let schema = super::schema::check(origin, kind, key.as_ref(), d);
                if schema.iter().any(|e| e.category == Category::WrongType) {
                    errs.retain(|e| e.category != Category::WrongType);
                    errs.extend(schema);
                }
            }
            Err(errs)
        }
    }
}

/// A resource's key: its kind, namespace (the default one when it names none) and name, which
/// every object must have.
fn key_of(origin: &Origin, kind: Kind, resource: &Resource) -> Result<ObjectKey, Vec<Diagnostic>> {
    let meta = resource.meta();
    let Some(name) = meta.name.clone() else {
        return Err(vec![origin.diagnostic(
            None,
            &FieldPath::parse("metadata.name"),
            Category::MissingField,
            format!(
                "{} has no `metadata.name`; every object needs a name",
                kind.as_str()
            ),
        )]);
    };
    let namespace = meta
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    Ok(ObjectKey {
        kind,
        namespace,
        name,
    })
}

/// Field names the schema allows at `parent` (empty when the schema is open there).
fn known_fields(kind: Kind, parent: &FieldPath) -> Vec<String> {
    let schema = kind.json_schema();
    let mut node = &schema;
    for seg in &parent.0 {
        node = match seg {
            crate::diagnostics::Seg::Key(k) => {
                match node.get("properties").and_then(|p| p.get(k)) {
                    Some(n) => n,
                    None => return Vec::new(),
                }
            }
            crate::diagnostics::Seg::Index(_) => match node.get("items") {
                Some(n) => n,
                None => return Vec::new(),
            },
        };
    }
    node.get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn kind_list() -> String {
    Kind::ALL.map(Kind::as_str).join(", ")
}

/// Deserializes the document as `T`, reporting unknown fields and type errors with their paths.
fn typed<T: DeserializeOwned>(
    origin: &Origin,
    kind: Kind,
    document: &Value,
) -> Result<T, Vec<Diagnostic>> {
    let mut unknown = Vec::new();
    let de = document;
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(from_ignored(&path));
    let ignored = serde_ignored::Deserializer::new(de, &mut record);
    let result: Result<T, _> = serde_path_to_error::deserialize(ignored);
    // The generated root types read apiVersion/kind through `Resource`, not as fields.
    unknown.retain(|p| {
        !(p.0.len() == 1 && (p.to_string() == "apiVersion" || p.to_string() == "kind"))
    });
    let result = match result {
        Ok(v) if unknown.is_empty() => return Ok(v),
        other => other,
    };
    // Only now, on the error path, read the object's identity for the messages.
    let header_key = identity(document, kind);
    let key = header_key.as_ref();
    let mut diags: Vec<Diagnostic> = unknown
        .into_iter()
        .map(|p| {
            let parent = FieldPath(p.0[..p.0.len().saturating_sub(1)].to_vec());
            let name = match p.0.last() {
                Some(crate::diagnostics::Seg::Key(k)) => k.clone(),
                _ => p.to_string(),
            };
            let known = known_fields(kind, &parent);
            let where_ = if parent.is_root() {
                "at the top level".to_string()
            } else {
                format!("in `{parent}`")
            };
            let hint = match did_you_mean(&name, known.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if known.is_empty() => format!("see `slipway schema {}`", kind.as_str()),
                None => format!("known fields: {}", known.join(", ")),
            };
            origin.diagnostic(
                key,
                &p,
                Category::UnknownField,
                format!(
                    "unknown field `{name}`: {} has no such field {where_}; {hint}",
                    kind.as_str()
                ),
            )
        })
        .collect();
    match result {
        Ok(_) => Err(diags),
        Err(e) => {
            let path = from_tracked(e.path());
            let inner = e.into_inner();
            let raw = strip_location(&inner.to_string());
            // serde_yaml prefixes its own copy of the path; ours is structured.
            let msg = match raw.split_once(": ") {
                Some((prefix, rest)) if !prefix.contains(' ') => rest.to_string(),
                _ => raw,
            };
            let (category, advice) = classify(&msg);
            let mut field = path.clone();
            if category == Category::MissingField
                && let Some(name) = msg.split('`').nth(1)
            {
                field = field.key(name);
            }
            let positions = Positions::of(&origin.text);
            let at = positions
                .value_of(&field)
                .or_else(|| positions.value_of(&path));
            diags.push(origin.diagnostic_at(key, &field, at, category, format!("{msg}{advice}")));
            Err(diags)
        }
    }
}

fn classify(msg: &str) -> (Category, &'static str) {
    if msg.starts_with("missing field") {
        (Category::MissingField, "; add it")
    } else if msg.starts_with("unknown variant")
        || msg.starts_with("invalid type")
        || msg.starts_with("invalid value")
    {
        (Category::WrongType, "")
    } else if msg.starts_with("duplicate field") || msg.contains("duplicate entry") {
        (Category::Duplicate, "; remove one of them")
    } else {
        (Category::Invalid, "")
    }
}

/// Drops serde_yaml's " at line L column C" suffix (positions are reported separately).
fn strip_location(s: &str) -> String {
    match s.find(" at line ") {
        Some(i) => {
            let rest = &s[i + " at line ".len()..];
            let tail = rest.find(", ").map(|j| &rest[j..]).unwrap_or("");
            format!("{}{}", &s[..i], strip_location(tail))
        }
        None => s.to_string(),
    }
}

/// The object's identity (kind, namespace, name) as the document gives it, if it names itself.
fn identity(document: &Value, kind: Kind) -> Option<ObjectKey> {
    let meta = document.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_string();
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string();
    Some(ObjectKey {
        kind,
        namespace,
        name,
    })
}

/// The diagnostic of a document that cannot be read.
fn unreadable(origin: &Origin, why: yaml::Unreadable) -> Diagnostic {
    match why {
        yaml::Unreadable::Syntax { message, at } => origin.diagnostic_at(
            None,
            &FieldPath::root(),
            at,
            Category::Syntax,
            format!("invalid YAML: {message}; check indentation and quoting around this point"),
        ),
        yaml::Unreadable::Repeated(field) => {
            let name = match field.0.last() {
                Some(crate::diagnostics::Seg::Key(k)) => k.clone(),
                _ => field.to_string(),
            };
            let at = Positions::of(&origin.text).key_of(&field);
            origin.diagnostic_at(
                None,
                &field,
                at,
                Category::Duplicate,
                format!("key `{name}` appears twice in the same mapping; keep one"),
            )
        }
        yaml::Unreadable::Other(why) => {
            origin.diagnostic(None, &FieldPath::root(), Category::WrongType, why)
        }
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
