//! The loader's document splitting and messages.

use super::*;

#[test]
fn documents_split_at_markers_with_their_first_lines() {
    let docs = split_documents("a: 1\n---\nb: 2\n--- # c\nc: 3\n---\n");
    assert_eq!(docs.iter().map(|d| d.0).collect::<Vec<_>>(), vec![1, 2, 4]);
    assert!(docs[1].1.contains("b: 2"));
}

#[test]
fn block_scalars_with_dashes_are_not_split() {
    let docs = split_documents("a: |\n  ---\n  x\n");
    assert_eq!(docs.len(), 1);
}

#[test]
fn location_suffixes_are_removed() {
    assert_eq!(strip_location("bad thing at line 3 column 4"), "bad thing");
    assert_eq!(
        strip_location("x at line 1 column 2, while parsing y at line 3 column 1"),
        "x, while parsing y"
    );
}
