//! The one reading of a YAML document: saphyr-parser's events turned into the JSON the API server
//! stores — plain scalars read as `kubectl` and the API server read them (YAML 1.1, Go's
//! yaml.v2: `yes`/`no`/`on`/`off` are booleans, `0…` is octal, `1_000` a number), quoted, block
//! and `!!str` scalars as strings. The typed parse, the CRD-schema check and the admission
//! webhook all start from this one value: a document is parsed once.
//!
//! Bounded against hostile input: a key may not repeat in a mapping, collections nest at most
//! [`MAX_DEPTH`] deep, and aliases may not expand the document past [`MAX_NODES`] nodes.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::Value;

use crate::diagnostics::FieldPath;

/// How deep collections may nest (serde_yaml's limit, which the corpus's positions were taken
/// with).
pub const MAX_DEPTH: usize = 128;

/// How many nodes a document may have, aliases expanded.
pub const MAX_NODES: usize = 1_000_000;

/// Why a document cannot be read.
#[derive(Debug, PartialEq)]
pub enum Unreadable {
    /// Not YAML, nested too deep or expanding past [`MAX_NODES`]: at (1-based line, 1-based
    /// column), when known.
    Syntax {
        /// What is wrong.
        message: String,
        /// Where.
        at: Option<(usize, usize)>,
    },
    /// A key repeats in a mapping (the field is the second one).
    Repeated(FieldPath),
    /// A scalar JSON cannot hold.
    Other(String),
}

impl From<String> for Unreadable {
    fn from(s: String) -> Self {
        Unreadable::Other(s)
    }
}

enum Frame {
    /// A mapping, the key waiting for its value, its anchor and its size so far.
    Map(serde_json::Map<String, Value>, Option<String>, usize, usize),
    /// A sequence, its anchor and its size so far.
    Seq(Vec<Value>, usize, usize),
}

/// The path of the node being built (for repeated keys and scalars as written).
fn path_of(stack: &[Frame]) -> FieldPath {
    let mut path = FieldPath::root();
    for f in stack {
        path = match f {
            Frame::Map(_, Some(k), _, _) => path.key(k.clone()),
            Frame::Map(_, None, _, _) => path,
            Frame::Seq(items, _, _) => path.index(items.len()),
        };
    }
    path
}

/// A scan error where it is: at the tab itself for a tab the indentation may not hold (the
/// parser stops just after it).
fn syntax(text: &str, e: &saphyr_parser::ScanError) -> Unreadable {
    let (line, mut col) = (e.marker().line(), e.marker().col() + 1);
    if e.info().contains("tab")
        && let Some(tab) = text
            .lines()
            .nth(line.saturating_sub(1))
            .and_then(|l| l.find('\t'))
    {
        col = col.min(tab + 1);
    }
    let mut message = e.info().to_string();
    // A tab where YAML wants spaces: said as such, whatever the parser's words for it.
    let tabbed = (line.saturating_sub(1)..=line + 1)
        .filter(|l| *l >= 1)
        .find(|l| text.lines().nth(l - 1).is_some_and(|t| t.contains('\t')));
    if let Some(l) = tabbed {
        message.push_str(&format!(
            "; line {l} has a tab: YAML indents with spaces only — replace the tab with spaces"
        ));
    }
    Unreadable::Syntax {
        message,
        at: Some((line, col)),
    }
}

/// Reads the first document of `text` as the API server would store it.
pub fn read(text: &str) -> Result<Value, Unreadable> {
    read_noting(text, None)
}

/// The plain scalars that are not strings to the API server, as written, by field path (for
/// advice on an error; it reads the document again).
pub fn written(text: &str) -> HashMap<String, String> {
    let mut written = HashMap::new();
    let _ = read_noting(text, Some(&mut written));
    written
}

fn read_noting(
    text: &str,
    written: Option<&mut HashMap<String, String>>,
) -> Result<Value, Unreadable> {
    let mut r = Reader {
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        nodes: 0,
        written,
    };
    let mut parser = Parser::new_from_str(text);
    let mut started = false;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| syntax(text, &e))?;
        let (value, anchor, size) = match event {
            Event::DocumentStart(_) if started => break,
            Event::DocumentStart(_) => {
                started = true;
                continue;
            }
            Event::MappingStart(..) | Event::SequenceStart(..) if r.stack.len() >= MAX_DEPTH => {
                return Err(Unreadable::Syntax {
                    message: format!("collections nest more than {MAX_DEPTH} deep"),
                    at: Some((span.start.line(), span.start.col() + 1)),
                });
            }
            Event::MappingStart(anchor, _) => {
                r.stack
                    .push(Frame::Map(serde_json::Map::new(), None, anchor, 1));
                continue;
            }
            Event::SequenceStart(anchor, _) => {
                r.stack.push(Frame::Seq(Vec::new(), anchor, 1));
                continue;
            }
            Event::MappingEnd => match r.stack.pop() {
                Some(Frame::Map(m, _, anchor, size)) => (Value::Object(m), anchor, size),
                _ => return Err(Unreadable::Other("unbalanced mapping".into())),
            },
            Event::SequenceEnd => match r.stack.pop() {
                Some(Frame::Seq(items, anchor, size)) => (Value::Array(items), anchor, size),
                _ => return Err(Unreadable::Other("unbalanced sequence".into())),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                match r.scalar(text, style, tagged_str)? {
                    Some(value) => (value, anchor, 1),
                    None => continue,
                }
            }
            Event::Alias(id) => match r.anchors.get(&id) {
                Some((v, size)) => (v.clone(), 0, *size),
                None => (Value::Null, 0, 1),
            },
            _ => continue,
        };
        r.place(value, anchor, size)?;
    }
    Ok(r.root.unwrap_or(Value::Null))
}

/// A document being read: the collections open around the next node, the anchored nodes, the
/// root once it is complete, and the nodes counted so far.
struct Reader<'w> {
    stack: Vec<Frame>,
    /// An anchored node's value and size (nodes, for the alias budget).
    anchors: HashMap<usize, (Value, usize)>,
    root: Option<Value>,
    nodes: usize,
    /// Where plain scalars that are not strings are noted as written, when asked.
    written: Option<&'w mut HashMap<String, String>>,
}

impl Reader<'_> {
    /// A scalar: a mapping's key, taken as written (it may not repeat), gives no value yet;
    /// otherwise its value — a plain scalar read as the API server reads it (and noted as
    /// written when that is not a string), any other as a string.
    fn scalar(
        &mut self,
        text: Cow<'_, str>,
        style: ScalarStyle,
        tagged_str: bool,
    ) -> Result<Option<Value>, Unreadable> {
        if let Some(Frame::Map(m, None, _, _)) = self.stack.last() {
            if m.contains_key(text.as_ref()) {
                let parent = path_of(&self.stack);
                return Err(Unreadable::Repeated(parent.key(text.into_owned())));
            }
            if let Some(Frame::Map(_, key, _, _)) = self.stack.last_mut() {
                *key = Some(text.into_owned());
            }
            return Ok(None);
        }
        let value = if style == ScalarStyle::Plain && !tagged_str {
            plain_scalar(&text)?
        } else {
            Value::String(text.to_string())
        };
        if let Some(w) = self.written.as_deref_mut()
            && !value.is_string()
        {
            w.insert(path_of(&self.stack).to_string(), text.into_owned());
        }
        Ok(Some(value))
    }

    /// Places a complete node (its value, anchor and size in nodes) in the collection open
    /// around it, or as the root: refused past the node budget, or when it is a key that
    /// repeats; noted under its anchor.
    fn place(&mut self, value: Value, anchor: usize, size: usize) -> Result<(), Unreadable> {
        self.nodes += size;
        if self.nodes > MAX_NODES {
            return Err(Unreadable::Syntax {
                message: format!(
                    "the document expands to more than {MAX_NODES} nodes (aliases repeat what their anchors hold); write it out without aliases"
                ),
                at: None,
            });
        }
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), size));
        }
        let mut repeated = None;
        match self.stack.last_mut() {
            Some(Frame::Map(m, key, _, total)) => {
                *total += size;
                if let Some(k) = key.take() {
                    m.insert(k, value);
                } else {
                    // A key that is not a plain scalar (an alias, a collection) may not repeat
                    // either.
                    let k = match value {
                        Value::String(k) => k,
                        other => other.to_string(),
                    };
                    if m.contains_key(&k) {
                        repeated = Some(k);
                    } else {
                        *key = Some(k);
                    }
                }
            }
            Some(Frame::Seq(items, _, total)) => {
                *total += size;
                items.push(value);
            }
            None => self.root = Some(value),
        }
        if let Some(k) = repeated {
            return Err(Unreadable::Repeated(path_of(&self.stack).key(k)));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    }

    #[test]
    fn documents_are_read_as_the_api_server_reads_them() {
        let v = read("a: '8'\nb: 8\nc: !!str 8\nd: &x [1, \"2\"]\ne: *x\nf: yes\n").unwrap();
        assert_eq!(
            v,
            json!({"a": "8", "b": 8, "c": "8", "d": [1, "2"], "e": [1, "2"], "f": true})
        );
        let w = written("a: '8'\nb: 8\nf: yes\n");
        assert_eq!(w.get("b").map(String::as_str), Some("8"));
        assert_eq!(w.get("f").map(String::as_str), Some("yes"));
        assert!(!w.contains_key("a"));
    }

    #[test]
    fn repeated_keys_deep_nesting_and_alias_bombs_are_refused() {
        assert_eq!(
            read("a:\n  b: 1\n  b: 2\n"),
            Err(Unreadable::Repeated(FieldPath::parse("a.b")))
        );
        let deep = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
        match read(&deep) {
            Err(Unreadable::Syntax { at, .. }) => assert_eq!(at, Some((1, 4 + MAX_DEPTH - 1))),
            other => panic!("{other:?}"),
        }
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, c) in ('b'..='h').enumerate() {
            let prev = (b'a' + i as u8) as char;
            bomb.push_str(&format!(
                "{c}: &{c} [{}]\n",
                vec![format!("*{prev}"); 10].join(", ")
            ));
        }
        assert!(
            matches!(read(&bomb), Err(Unreadable::Syntax { message, at: None }) if message.contains("expands"))
        );
    }

    #[test]
    fn a_key_that_repeats_through_an_alias_is_refused() {
        let doc = "metadata: {labels: {note: &k version}}\nspec:\n  version: \"7\"\n  *k : \"8\"\n";
        assert!(
            matches!(read(doc), Err(Unreadable::Repeated(_))),
            "{:?}",
            read(doc)
        );
    }

    #[test]
    fn bad_yaml_says_where() {
        match read("a: {b: [c\nd: 1\n") {
            Err(Unreadable::Syntax {
                at: Some((line, _)),
                ..
            }) => assert!(line >= 1),
            other => panic!("{other:?}"),
        }
    }
}
