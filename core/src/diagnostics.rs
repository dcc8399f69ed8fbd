//! Errors a user can cause in their resources: each names the file, line, column, object and field.

use std::fmt;

use serde::Serialize;

/// A path into a document, e.g. `spec.strategy.steps[1].weight`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<Seg>);

/// One segment of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

impl FieldPath {
    /// The empty path (the document itself).
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// Parses `a.b[2].c`. Keys cannot contain dots or brackets here; use [`FieldPath::key`] for those.
    pub fn parse(s: &str) -> Self {
        let mut segs = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            if let Some(open) = rest.find('[') {
                if open > 0 {
                    segs.push(Seg::Key(rest[..open].to_string()));
                }
                rest = &rest[open..];
                while let Some(stripped) = rest.strip_prefix('[') {
                    let close = stripped.find(']').unwrap_or(stripped.len());
                    match stripped[..close].parse() {
                        Ok(i) => segs.push(Seg::Index(i)),
                        Err(_) => segs.push(Seg::Key(stripped[..close].to_string())),
                    }
                    rest = stripped.get(close + 1..).unwrap_or("");
                }
            } else {
                segs.push(Seg::Key(rest.to_string()));
            }
        }
        FieldPath(segs)
    }

    /// This path with a key appended.
    pub fn key(&self, k: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.into()));
        p
    }

    /// This path with an index appended.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if k.contains('.') || k.contains('[') => write!(f, "[{k:?}]")?,
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// What kind of mistake a diagnostic reports; stable strings for JSON output and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// The file could not be read.
    Io,
    /// The YAML does not parse.
    Syntax,
    /// A field Slipway does not know.
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A value of the wrong type or an unknown enum value.
    WrongType,
    /// `apiVersion`/`kind` Slipway does not know.
    UnknownKind,
    /// Two objects with the same identity.
    Duplicate,
    /// A reference to an object that does not exist.
    BrokenReference,
    /// A value that is well-typed but not allowed (bad CEL, empty list, bad duration…).
    Invalid,
    /// A `ModelVersion`'s artifact or source changed.
    Immutable,
}

impl Category {
    /// Short stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Io => "io",
            Category::Syntax => "syntax",
            Category::UnknownField => "unknown-field",
            Category::MissingField => "missing-field",
            Category::WrongType => "wrong-type",
            Category::UnknownKind => "unknown-kind",
            Category::Duplicate => "duplicate",
            Category::BrokenReference => "broken-reference",
            Category::Invalid => "invalid",
            Category::Immutable => "immutable",
        }
    }
}

/// One problem in the user's resources.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnostic {
    /// File, relative to the folder or repository root.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Kind of the document, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `namespace/name` of the document, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Field path within the document (empty for the whole document).
    pub field: String,
    /// Category.
    pub category: Category,
    /// What is wrong and what to do.
    pub message: String,
    /// The document's identity when it failed to load (on its errors only): what refers to it
    /// is not reported again as broken.
    #[serde(skip)]
    pub unloaded: Option<Box<Unloaded>>,
}

/// What a document that failed to load is, as far as it says: its kind, namespace and name,
/// and for versions and aliases the model and label (version or alias name) it gives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unloaded {
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.model`, when the document gives one.
    pub model: Option<String>,
    /// `spec.version` of a version (a number read as its text), `spec.alias` of an alias.
    pub label: Option<String>,
}

impl Unloaded {
    /// What `document`, named `key`, is as far as it says.
    pub fn of(document: &serde_json::Value, key: crate::catalog::ObjectKey) -> Unloaded {
        use serde_json::Value;
        let spec = document.get("spec");
        let text = |v: Option<&Value>| match v? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let label = match key.kind {
            slipway_crd::Kind::ModelVersion => text(spec.and_then(|s| s.get("version"))),
            slipway_crd::Kind::ModelAlias => text(spec.and_then(|s| s.get("alias"))),
            _ => None,
        };
        Unloaded {
            kind: key.kind.as_str().to_string(),
            namespace: key.namespace,
            name: key.name,
            model: text(spec.and_then(|s| s.get("model"))),
            label,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        match (&self.kind, &self.object) {
            (Some(k), Some(o)) => write!(f, "{k} {o}: ")?,
            (Some(k), None) => write!(f, "{k}: ")?,
            _ => {}
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{} [{}]", self.message, self.category.as_str())
    }
}

/// Returns the candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_round_trip_through_text() {
        let p = FieldPath::parse("spec.strategy.steps[1].weight");
        assert_eq!(p.to_string(), "spec.strategy.steps[1].weight");
        assert_eq!(p.0.len(), 5);
        assert_eq!(p.0[3], Seg::Index(1));
    }

    #[test]
    fn dotted_keys_are_quoted() {
        let p = FieldPath::root()
            .key("metadata")
            .key("labels")
            .key("app.kubernetes.io/name");
        assert_eq!(p.to_string(), "metadata.labels[\"app.kubernetes.io/name\"]");
    }

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(
            did_you_mean("ModelAlais", ["ModelAlias", "ModelVersion"]),
            Some("ModelAlias")
        );
        assert_eq!(did_you_mean("Deployment", ["ModelAlias", "Group"]), None);
    }
}
