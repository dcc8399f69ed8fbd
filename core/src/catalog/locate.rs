//! Finds where a field path sits in a YAML document's text, for error positions.
//!
//! Only used when something is wrong, so it re-parses the document with a span-keeping parser
//! instead of making the fast typed parse carry positions.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

use crate::diagnostics::{FieldPath, Seg};

/// Positions (1-based line, 1-based column) of the key and of the value of every path in a document.
#[derive(Default, Debug)]
pub struct Positions {
    keys: HashMap<FieldPath, (usize, usize)>,
    values: HashMap<FieldPath, (usize, usize)>,
}

enum Frame {
    Map {
        path: FieldPath,
        key: Option<String>,
    },
    Seq {
        path: FieldPath,
        next: usize,
    },
}

/// The most nodes indexed (each holds its whole path): far more than any Slipway document has.
const MAX_INDEXED: usize = 20_000;

impl Positions {
    /// Indexes the first document of `text`. Parse errors, nesting deeper than the reader allows
    /// and more nodes than it builds end the indexing early; what was seen is kept.
    pub fn of(text: &str) -> Self {
        let mut pos = Positions::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        let mut started = false;
        // Bounded (hostile input reaches here on its error path, before or without the reader's
        // own bounds): no deeper than the reader allows, at most MAX_INDEXED nodes.
        let mut nodes = 0usize;
        while let Some(Ok((event, span))) = parser.next_event() {
            nodes += 1;
            if nodes > MAX_INDEXED || stack.len() > super::yaml::MAX_DEPTH {
                break;
            }
            let here = (span.start.line(), span.start.col() + 1);
            match event {
                Event::DocumentStart(_) if started => break,
                Event::DocumentStart(_) => started = true,
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map { path, key }) = stack.last_mut()
                        && key.is_none()
                    {
                        pos.keys.insert(path.key(value.as_ref()), here);
                        *key = Some(value.into_owned());
                        continue;
                    }
                    let path = Self::value_path(&mut stack);
                    pos.values.entry(path).or_insert(here);
                }
                Event::Alias(_) => {
                    let path = Self::value_path(&mut stack);
                    pos.values.entry(path).or_insert(here);
                }
                Event::MappingStart(..) => {
                    let path = Self::value_path(&mut stack);
                    pos.values.entry(path.clone()).or_insert(here);
                    stack.push(Frame::Map { path, key: None });
                }
                Event::SequenceStart(..) => {
                    let path = Self::value_path(&mut stack);
                    pos.values.entry(path.clone()).or_insert(here);
                    stack.push(Frame::Seq { path, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        pos
    }

    /// The path of the value that starts now, advancing the parent frame.
    fn value_path(stack: &mut [Frame]) -> FieldPath {
        match stack.last_mut() {
            None => FieldPath::root(),
            Some(Frame::Map { path, key }) => {
                let k = key.take().unwrap_or_default();
                path.key(k)
            }
            Some(Frame::Seq { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                p
            }
        }
    }

    /// Position of a field's key (for "unknown field"), else of its value.
    pub fn key_of(&self, path: &FieldPath) -> Option<(usize, usize)> {
        self.keys
            .get(path)
            .or_else(|| self.values.get(path))
            .copied()
    }

    /// Position of a field's value, falling back to its key, then to the nearest ancestor that exists.
    pub fn value_of(&self, path: &FieldPath) -> Option<(usize, usize)> {
        let mut p = path.clone();
        loop {
            if let Some(at) = self.values.get(&p).or_else(|| self.keys.get(&p)) {
                return Some(*at);
            }
            p.0.pop()?;
        }
    }
}

/// Converts a serde_ignored path into a [`FieldPath`].
pub fn from_ignored(path: &serde_ignored::Path<'_>) -> FieldPath {
    use serde_ignored::Path as P;
    match path {
        P::Root => FieldPath::root(),
        P::Seq { parent, index } => from_ignored(parent).index(*index),
        P::Map { parent, key } => from_ignored(parent).key(key.clone()),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            from_ignored(parent)
        }
    }
}

/// Converts a serde_path_to_error path into a [`FieldPath`].
pub fn from_tracked(path: &serde_path_to_error::Path) -> FieldPath {
    use serde_path_to_error::Segment;
    FieldPath(
        path.iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(Seg::Index(*index)),
                Segment::Map { key } => Some(Seg::Key(key.clone())),
                Segment::Enum { .. } | Segment::Unknown => None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "apiVersion: slipway.dev/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: api\nspec:\n  strategy:\n    steps:\n      - weight: 10\n      - weight: 50\n        pause: 30s\n";

    #[test]
    fn nested_sequence_fields_are_found() {
        let pos = Positions::of(DOC);
        let p = FieldPath::parse("spec.strategy.steps[1].pause");
        assert_eq!(pos.key_of(&p), Some((10, 9)));
        assert_eq!(pos.value_of(&p), Some((10, 16)));
        assert_eq!(
            pos.value_of(&FieldPath::parse("spec.strategy.steps[0].weight")),
            Some((8, 17))
        );
    }

    #[test]
    fn missing_fields_fall_back_to_the_nearest_parent() {
        let pos = Positions::of(DOC);
        assert_eq!(
            pos.value_of(&FieldPath::parse("spec.target.local")),
            Some((6, 3))
        );
    }

    #[test]
    fn flow_style_is_located_too() {
        let pos = Positions::of("spec: {model: m, steps: [{weight: 5}]}\n");
        assert_eq!(
            pos.value_of(&FieldPath::parse("spec.steps[0].weight")),
            Some((1, 35))
        );
    }
}
