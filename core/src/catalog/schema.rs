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
const CHECK_REVISION: u32 = 1;

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
    ) -> Vec<Diagnostic> {
        let digest = Passes::digest(kind, &origin.text);
        if self.known.contains(&digest) {
            return Vec::new();
        }
        let refused = check(origin, kind, key);
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

/// What a plain (unquoted) scalar is to the API server's YAML reader (`kubectl` and the API
/// server read YAML 1.1, as Go's yaml.v2 does): `yes`/`no`/`on`/`off` are booleans, `0…` is
/// octal, `1_000` a number. A number that JSON cannot hold is an error.
fn plain_scalar(s: &str) -> Result<Value, String> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Ok(Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Ok(Value::Bool(false));
        }
        _ => {}
    }
    if !s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')) {
        return Ok(Value::String(s.to_string()));
    }
    let plain = s.replace('_', "");
    if let Some(n) = go_int(&plain) {
        return Ok(n);
    }
    let float_like = {
        let body = plain.strip_prefix(['-', '+']).unwrap_or(&plain);
        let (mantissa, exponent) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        let mantissa_ok = match mantissa.split_once('.') {
            Some(("", frac)) => digits(frac),
            Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
            None => digits(mantissa),
        };
        let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
        mantissa_ok && exponent_ok
    };
    if float_like && let Ok(f) = plain.parse::<f64>() {
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("`{s}` is a number JSON cannot hold; quote it"));
    }
    if [
        ".inf", "-.inf", "+.inf", ".Inf", "-.Inf", "+.Inf", ".INF", "-.INF", "+.INF", ".nan",
        ".NaN", ".NAN",
    ]
    .contains(&s)
    {
        return Err(format!(
            "`{s}` is a number JSON cannot hold; quote it if it is text"
        ));
    }
    Ok(Value::String(s.to_string()))
}

/// An integer as Go's `strconv.ParseInt(s, 0, 64)` (then `ParseUint`) reads it: `0x`, `0o`,
/// `0b` prefixes and a leading `0` for octal.
fn go_int(s: &str) -> Option<Value> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (radix, digits) =
        if let Some(d) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, d)
        } else if let Some(d) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, d)
        } else if let Some(d) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, d)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        let v = i64::try_from(magnitude)
            .ok()
            .map(|m| -m)
            .or_else(|| (magnitude == 1 << 63).then_some(i64::MIN))?;
        Some(Value::from(v))
    } else {
        Some(Value::from(magnitude))
    }
}

/// Why a document cannot be read as JSON.
#[derive(Debug)]
enum Unreadable {
    /// A key repeats in a mapping (the field is the second one).
    Repeated(FieldPath),
    /// Anything else, said in words.
    Other(String),
}

impl From<String> for Unreadable {
    fn from(s: String) -> Self {
        Unreadable::Other(s)
    }
}

/// The document as the API server's reader turns it into JSON (see [`plain_scalar`]); quoted and
/// block scalars, and `!!str`-tagged ones, are strings.
fn as_api_server_reads(text: &str) -> Result<(Value, HashMap<String, String>), Unreadable> {
    use saphyr_parser::{Event, Parser, ScalarStyle};
    enum Frame {
        Map(serde_json::Map<String, Value>, Option<String>, usize),
        Seq(Vec<Value>, usize),
    }
    // The path of the node being built, for repeated keys.
    let path_of = |stack: &[Frame]| {
        let mut path = FieldPath::root();
        for f in stack {
            path = match f {
                Frame::Map(_, Some(k), _) => path.key(k.clone()),
                Frame::Map(_, None, _) => path,
                Frame::Seq(items, _) => path.index(items.len()),
            };
        }
        path
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Value> = HashMap::new();
    let mut root = None;
    let mut written: HashMap<String, String> = HashMap::new();
    let mut nodes = 0usize;
    let mut parser = Parser::new_from_str(text);
    let mut started = false;
    while let Some(next) = parser.next_event() {
        let (event, _) = next.map_err(|e| Unreadable::Other(format!("invalid YAML: {e}")))?;
        nodes += 1;
        if nodes > 1_000_000 {
            return Err(Unreadable::Other(
                "the document expands to more than a million nodes".into(),
            ));
        }
        let (value, anchor) = match event {
            Event::DocumentStart(_) if started => break,
            Event::DocumentStart(_) => {
                started = true;
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(serde_json::Map::new(), None, anchor));
                continue;
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(Vec::new(), anchor));
                continue;
            }
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(m, _, anchor)) => (Value::Object(m), anchor),
                _ => return Err(Unreadable::Other("unbalanced mapping".into())),
            },
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(items, anchor)) => (Value::Array(items), anchor),
                _ => return Err(Unreadable::Other("unbalanced sequence".into())),
            },
            Event::Scalar(text, style, anchor, tag) => {
                // A key is taken as written; it may not repeat.
                if let Some(Frame::Map(m, None, _)) = stack.last() {
                    if m.contains_key(text.as_ref()) {
                        let parent = path_of(&stack);
                        return Err(Unreadable::Repeated(parent.key(text.into_owned())));
                    }
                    if let Some(Frame::Map(_, key, _)) = stack.last_mut() {
                        *key = Some(text.into_owned());
                    }
                    continue;
                }
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !tagged_str {
                    plain_scalar(&text)?
                } else {
                    Value::String(text.to_string())
                };
                if !value.is_string() {
                    written.insert(path_of(&stack).to_string(), text.into_owned());
                }
                (value, anchor)
            }
            Event::Alias(id) => (anchors.get(&id).cloned().unwrap_or(Value::Null), 0),
            _ => continue,
        };
        if anchor > 0 {
            anchors.insert(anchor, value.clone());
        }
        match stack.last_mut() {
            Some(Frame::Map(m, key, _)) => {
                if let Some(k) = key.take() {
                    m.insert(k, value);
                } else if let Value::String(k) = value {
                    *key = Some(k);
                } else {
                    *key = Some(value.to_string());
                }
            }
            Some(Frame::Seq(items, _)) => items.push(value),
            None => root = Some(value),
        }
    }
    Ok((root.unwrap_or(Value::Null), written))
}

/// Checks a document that parsed as its kind; returns what the API server would refuse.
pub fn check(origin: &Origin, kind: Kind, key: Option<&super::ObjectKey>) -> Vec<Diagnostic> {
    // One more parse, with the API server's reading of plain scalars; repeated keys anywhere
    // are refused (the typed parse takes the last of them in `metadata`).
    let (document, written) = match as_api_server_reads(&origin.text) {
        Ok(v) => v,
        Err(Unreadable::Repeated(field)) => {
            let name = match field.0.last() {
                Some(crate::diagnostics::Seg::Key(k)) => k.clone(),
                _ => field.to_string(),
            };
            let at = Positions::of(&origin.text).key_of(&field);
            return vec![origin.diagnostic_at(
                key,
                &field,
                at,
                Category::Duplicate,
                format!("key `{name}` appears twice in the same mapping; keep one"),
            )];
        }
        Err(Unreadable::Other(why)) => {
            return vec![origin.diagnostic(key, &FieldPath::root(), Category::WrongType, why)];
        }
    };
    let Some(Ok(validator)) = validators().get(kind.as_str()) else {
        // The built-in schema did not compile: a bug of this build, not of the document.
        return Vec::new();
    };
    let mut positions: Option<Positions> = None;
    let mut out = Vec::new();
    for error in validator.iter_errors(&document) {
        let pointer = error.instance_path().to_string();
        let field = field_of(&pointer);
        let positions = positions.get_or_insert_with(|| Positions::of(&origin.text));
        let message = error.to_string();
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
        let d = check(
            &origin(
                "apiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {name: m-8}\nspec:\n  model: m\n  version: 8\n  artifact: {uri: x, digest: \"sha256:ab\"}\n",
            ),
            Kind::ModelVersion,
            None,
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].line, d[0].column), (6, 12));
        assert_eq!(d[0].category, Category::WrongType);
        assert!(d[0].message.contains("quote it, \"8\""), "{}", d[0].message);
    }

    #[test]
    fn plain_scalars_are_read_as_the_api_server_reads_them() {
        let cases = [
            ("8", json!(8)),
            ("0000000000000000000000000000000000000001", json!(1)),
            ("08", json!(8.0)),
            ("1_000", json!(1000)),
            ("0x1f", json!(31)),
            ("1.5e3", json!(1500.0)),
            ("yes", json!(true)),
            ("Off", json!(false)),
            ("~", Value::Null),
            ("sha256:0a", json!("sha256:0a")),
            ("1a2b", json!("1a2b")),
            ("-", json!("-")),
            ("2026-11-29", json!("2026-11-29")),
        ];
        for (text, want) in cases {
            assert_eq!(plain_scalar(text).unwrap(), want, "{text}");
        }
        assert!(plain_scalar(".inf").is_err());
        let (doc, written) =
            as_api_server_reads("a: '8'\nb: 8\nc: !!str 8\nd: &x [1, \"2\"]\ne: *x\n").unwrap();
        assert_eq!(written.get("b").map(String::as_str), Some("8"));
        assert_eq!(
            doc,
            json!({"a": "8", "b": 8, "c": "8", "d": [1, "2"], "e": [1, "2"]})
        );
    }

    #[test]
    fn names_and_namespaces_are_what_the_api_server_accepts() {
        let d = check(
            &origin(
                "apiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata: {name: Team_A, namespace: ../x}\nspec: {members: []}\n",
            ),
            Kind::Group,
            None,
        );
        let fields: Vec<&str> = d.iter().map(|d| d.field.as_str()).collect();
        assert!(fields.contains(&"metadata.name"), "{d:?}");
        assert!(fields.contains(&"metadata.namespace"), "{d:?}");
    }

    #[test]
    fn a_repeated_key_anywhere_is_refused_where_it_repeats() {
        let d = check(
            &origin(
                "apiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata:\n  name: a\n  name: b\nspec: {members: []}\n",
            ),
            Kind::Group,
            None,
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].category, Category::Duplicate);
        assert_eq!(d[0].line, 5, "{d:?}");
    }

    #[test]
    fn a_text_that_passed_is_not_checked_again_and_any_change_is() {
        let good = "apiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata: {name: team-a}\nspec: {members: []}\n";
        let bad = "apiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata: {name: Team_A}\nspec: {members: []}\n";
        let mut first = Passes::default();
        assert!(first.check(&origin(good), Kind::Group, None).is_empty());
        assert!(!first.check(&origin(bad), Kind::Group, None).is_empty());
        let remembered = first.settle();
        assert_eq!(remembered.len(), 1, "only what passed is remembered");
        assert!(first.settle().is_empty());
        // Settled, it is known to the same process's next load too: nothing new to remember.
        assert!(first.check(&origin(good), Kind::Group, None).is_empty());
        assert!(first.settle().is_empty());

        // The next load knows the good text: nothing new to remember for it; the bad one is
        // refused again, and the same text under another kind is checked anew.
        let mut next = Passes::new(remembered.clone());
        assert!(next.check(&origin(good), Kind::Group, None).is_empty());
        assert!(next.settle().is_empty());
        assert!(!next.check(&origin(bad), Kind::Group, None).is_empty());
        assert_ne!(Passes::digest(Kind::Approval, good), remembered[0]);
        assert_eq!(fingerprint().len(), 64);
    }
}
