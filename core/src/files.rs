//! What a spec points at in the registry's repository: the files its commands run, the datasets
//! and artifacts it reads, and the digests declared for them.
//!
//! Pure: the caller lists and reads the files (a git tree in `plan`, the folder on disk in
//! `validate` and `slipway run`); this module says which paths an object uses, which of them
//! changed between two listings, and whether content matches a declared digest.
//!
//! Paths are `/`-separated and relative to the repository's root; the registry folder is a
//! prefix of them (empty when the registry is the root). A spec's relative paths are relative to
//! the registry folder, a command's to its working directory there.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use slipway_crd::common::{DatasetRef, LocalRunner};

use crate::catalog::{Object, Resource};
use crate::diagnostics::{Category, Diagnostic, FieldPath};

/// A listing of files: path → an id of its content (a git blob id, a hash).
pub type Listing = BTreeMap<String, String>;

/// One path a spec uses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Use {
    /// The field that names it: `spec.evaluations[0].runner.local.command`.
    pub field: String,
    /// The path (a file, or a folder and everything under it).
    pub path: String,
    /// The digest declared for its content (`sha256:…`), for datasets and artifacts.
    pub digest: Option<String>,
}

/// The local path a dataset or artifact URI names: `file://PATH` or a path without a scheme,
/// relative to the registry folder; None for other schemes and for absolute paths (outside the
/// repository).
pub fn local_path(uri: &str) -> Option<&str> {
    let path = match uri.strip_prefix("file://") {
        Some(p) => p,
        None if uri.contains("://") => return None,
        None => uri,
    };
    (!path.is_empty() && !path.starts_with('/')).then_some(path)
}

/// `base/rel` with `.` and `..` resolved; None when it leaves the repository (or the file
/// system's root, for an absolute `base`), or `rel` is absolute.
pub fn join(base: &str, rel: &str) -> Option<String> {
    if rel.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in base.split('/').chain(rel.split('/')) {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    let root = if base.starts_with('/') { "/" } else { "" };
    Some(format!("{root}{}", parts.join("/")))
}

/// The paths `resource` uses, for a registry at `registry` (repository-relative). A command's
/// words (and the value after `=` of a `--flag=value` word) that name an existing file or
/// folder (`exists`) from its working directory are its files; a working directory written in
/// the spec is used whole.
pub fn uses(resource: &Resource, registry: &str, exists: &dyn Fn(&str) -> bool) -> Vec<Use> {
    let mut out = Vec::new();
    let data = |out: &mut Vec<Use>, field: String, d: &DatasetRef| {
        if let Some(p) = local_path(&d.uri).and_then(|p| join(registry, p)) {
            out.push(Use {
                field,
                path: p,
                digest: d.digest.clone(),
            });
        }
    };
    match resource {
        Resource::RegisteredModel(m) => {
            for (i, s) in m.spec.evaluations.iter().enumerate() {
                let at = format!("spec.evaluations[{i}]");
                if let Some(local) = &s.runner.local {
                    command(
                        &mut out,
                        &format!("{at}.runner.local"),
                        local,
                        registry,
                        exists,
                    );
                }
                data(&mut out, format!("{at}.dataset.uri"), &s.dataset);
            }
            // Report templates are files of the registry (a ConfigMap's keys in a cluster).
            let templates = m.spec.report.as_ref().filter(|r| r.config_map.is_none());
            for (field, name) in templates.into_iter().flat_map(|r| {
                [("markdown", &r.markdown), ("html", &r.html)]
                    .into_iter()
                    .filter_map(|(f, n)| Some((f, n.as_ref()?)))
            }) {
                if let Some(path) = join(registry, name) {
                    out.push(Use {
                        field: format!("spec.report.{field}"),
                        path,
                        digest: None,
                    });
                }
            }
        }
        Resource::Evaluation(e) => {
            if let Some(local) = &e.spec.runner.local {
                command(&mut out, "spec.runner.local", local, registry, exists);
            }
            data(&mut out, "spec.dataset.uri".into(), &e.spec.dataset);
        }
        Resource::ModelVersion(v) => {
            if let Some(p) = local_path(&v.spec.artifact.uri).and_then(|p| join(registry, p)) {
                out.push(Use {
                    field: "spec.artifact.uri".into(),
                    path: p,
                    digest: Some(v.spec.artifact.digest.clone()),
                });
            }
        }
        Resource::ModelDeployment(d) => {
            if let Some(l) = &d.spec.target.local {
                let runner = LocalRunner {
                    command: l.command.clone(),
                    working_dir: l.working_dir.clone(),
                    env: Default::default(),
                };
                command(&mut out, "spec.target.local", &runner, registry, exists);
            }
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

fn command(
    out: &mut Vec<Use>,
    at: &str,
    local: &LocalRunner,
    registry: &str,
    exists: &dyn Fn(&str) -> bool,
) {
    let Some(cwd) = join(registry, local.working_dir.as_deref().unwrap_or(".")) else {
        return;
    };
    // The working folder is the command's whole: a script imports or reads its neighbours
    // (`import json` finds a `json.py` beside it), and `sh -c` or `-m` name no file.
    let field = if local.working_dir.is_some() {
        format!("{at}.workingDir")
    } else {
        format!("{at}.command")
    };
    out.push(Use {
        field,
        path: cwd.clone(),
        digest: None,
    });
    let inside = |p: &str| cwd.is_empty() || p == cwd || p.starts_with(&format!("{cwd}/"));
    for word in &local.command {
        let value = word.split_once('=').map(|(_, v)| v);
        for w in std::iter::once(word.as_str()).chain(value) {
            // Beyond the folder, what a word names is the command's too.
            if let Some(p) = join(&cwd, w).filter(|p| !p.is_empty() && !inside(p) && exists(p)) {
                out.push(Use {
                    field: format!("{at}.command"),
                    path: p,
                    digest: None,
                });
            }
        }
    }
}

/// `listing` with each symbolic link (`links`: its path → the path it points to, as git stores
/// it) standing for what it points at: its id is the link's own and its target's content
/// ([`content`]), so a change of a file a link reaches inside the repository is a change of
/// the folder that holds the link. A link that leaves the repository (absolute, or `..` past
/// its root) keeps only its own id and says where it points: no plan can show what is there.
/// A link to a link reaches that link's own id.
pub fn followed(listing: &Listing, links: &BTreeMap<String, String>) -> Listing {
    let mut out = listing.clone();
    let none = BTreeSet::new();
    for (link, target) in links {
        let dir = link.rsplit_once('/').map_or("", |(d, _)| d);
        let own = listing.get(link).cloned().unwrap_or_default();
        let reached = match join(dir, target.trim()) {
            Some(t) if !t.is_empty() && t != *link => match content(listing, &t, &none) {
                Some(c) => c,
                None => format!("{t} (missing)"),
            },
            _ => format!("outside the repository: {}", target.trim()),
        };
        out.insert(
            link.clone(),
            hex(&Sha256::digest(format!("{own}->{reached}").as_bytes())),
        );
    }
    out
}

/// Whether `path` is a file of `listing` or a folder holding some.
pub fn present(listing: &Listing, path: &str) -> bool {
    listing.contains_key(path) || under(listing, path).next().is_some()
}

fn under<'a>(listing: &'a Listing, folder: &str) -> impl Iterator<Item = (&'a String, &'a String)> {
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    listing
        .range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
}

/// The files of a folder that count as its content: not `skip` (the registry's own documents,
/// which the plan reads as objects, and the artifacts and datasets specs declare, which are
/// their own changes) nor Markdown documentation.
fn counted<'a>(
    listing: &'a Listing,
    folder: &str,
    skip: &'a BTreeSet<&str>,
) -> impl Iterator<Item = (&'a String, &'a String)> {
    under(listing, folder).filter(move |(p, _)| !skip.contains(p.as_str()) && !p.ends_with(".md"))
}

/// An id of what `path` holds in `listing`: a file's id, or for a folder a hash of its counted
/// files' paths and ids ([`counted`]); None when it holds nothing.
pub fn content(listing: &Listing, path: &str, skip: &BTreeSet<&str>) -> Option<String> {
    if let Some(id) = listing.get(path) {
        return Some(id.clone());
    }
    let mut h = Sha256::new();
    let mut any = false;
    for (p, id) in counted(listing, path, skip) {
        h.update(format!("{id}  {p}\n"));
        any = true;
    }
    any.then(|| hex(&h.finalize()))
}

/// The files at or under `path` whose content differs between `base` and `head`.
fn differing(base: &Listing, head: &Listing, path: &str, skip: &BTreeSet<&str>) -> Vec<String> {
    if base.contains_key(path) || head.contains_key(path) {
        return vec![path.to_string()];
    }
    let (b, h): (Listing, Listing) = (
        counted(base, path, skip)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        counted(head, path, skip)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    let mut out: BTreeSet<&String> = BTreeSet::new();
    out.extend(b.keys().filter(|k| b.get(*k) != h.get(*k)));
    out.extend(h.keys().filter(|k| b.get(*k) != h.get(*k)));
    out.into_iter().cloned().collect()
}

/// The paths objects declare as artifacts and datasets (their own changes, not their folders').
pub fn data_paths<'a>(
    objects: impl IntoIterator<Item = &'a Object>,
    registry: &str,
) -> BTreeSet<String> {
    objects
        .into_iter()
        .flat_map(|o| uses(&o.resource, registry, &|_| false))
        .filter(|u| u.field.ends_with(".uri"))
        .map(|u| u.path)
        .collect()
}

/// A path and what it held before and after a change.
#[derive(Clone, Debug, PartialEq)]
pub struct Changed {
    /// What uses it.
    pub usage: Use,
    /// Its content id before (None: absent).
    pub old: Option<String>,
    /// Its content id after (None: absent).
    pub new: Option<String>,
    /// The files that differ (the path itself, or files under the folder).
    pub files: Vec<String>,
}

/// The paths `resource` uses whose content differs between `base` and `head`.
pub fn changed(
    resource: &Resource,
    registry: &str,
    base: &Listing,
    head: &Listing,
    skip: &BTreeSet<&str>,
) -> Vec<Changed> {
    let exists = |p: &str| present(base, p) || present(head, p);
    uses(resource, registry, &exists)
        .into_iter()
        .filter_map(|usage| {
            let (old, new) = (
                content(base, &usage.path, skip),
                content(head, &usage.path, skip),
            );
            (old != new).then(|| Changed {
                files: differing(base, head, &usage.path, skip),
                usage,
                old,
                new,
            })
        })
        .collect()
}

/// The sha256 digest of a folder's files, as `sha256sum` lists them: each file's hash and path
/// relative to the folder, sorted by path, one `HASH  PATH` line each — what
/// `find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum` prints
/// in the folder.
pub fn folder_digest<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut lines: Vec<(String, String)> = files
        .into_iter()
        .map(|(p, bytes)| (p.to_string(), hex(&Sha256::digest(bytes))))
        .collect();
    lines.sort();
    let mut h = Sha256::new();
    for (p, hash) in lines {
        h.update(format!("{hash}  {p}\n"));
    }
    format!("sha256:{}", hex(&h.finalize()))
}

/// The sha256 digest of a file's content, as declared (`sha256:HEX`).
pub fn file_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Whether `actual` (from [`file_digest`] or [`folder_digest`]) is the `declared` digest of
/// `path`, which `field` names; the error says what to do.
pub fn verify(field: &str, path: &str, declared: &str, actual: &str) -> Result<(), String> {
    if declared.trim().eq_ignore_ascii_case(actual) {
        return Ok(());
    }
    let hint = if !declared.starts_with("sha256:") {
        "Slipway verifies `sha256:HEX` digests of local files: declare the file's sha256"
    } else if field.ends_with("artifact.uri") {
        "the artifact is not what was registered: restore it, or register the new artifact as a new version"
    } else {
        "the dataset is not what was declared: restore it, or declare the new content's digest"
    };
    Err(format!(
        "{path} has digest {actual}, but {declared} is declared: {hint}"
    ))
}

/// What a path holds, as the caller read it.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// A file's bytes.
    File(Vec<u8>),
    /// A folder's files: path relative to the folder, and bytes.
    Folder(Vec<(String, Vec<u8>)>),
}

impl Content {
    /// Its sha256 digest ([`file_digest`], [`folder_digest`]).
    pub fn digest(&self) -> String {
        match self {
            Content::File(b) => file_digest(b),
            Content::Folder(files) => {
                folder_digest(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())))
            }
        }
    }
}

/// The paths with a declared digest that `object` uses (a version's artifact, a suite's or an
/// evaluation's dataset), for a registry at `registry`.
pub fn pinned(object: &Object, registry: &str) -> Vec<Use> {
    uses(&object.resource, registry, &|_| false)
        .into_iter()
        .filter(|u| u.digest.is_some())
        .collect()
}

/// A diagnostic at `usage`'s field of `object` when `content` is not the digest declared for it.
pub fn mismatch(object: &Object, usage: &Use, content: &Content) -> Option<Diagnostic> {
    let declared = usage.digest.as_deref()?;
    let why = verify(&usage.field, &usage.path, declared, &content.digest()).err()?;
    Some(object.origin.diagnostic(
        Some(&object.key),
        &FieldPath::parse(&usage.field),
        Category::Invalid,
        why,
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_and_joins() {
        assert_eq!(local_path("file://data/x.csv"), Some("data/x.csv"));
        assert_eq!(local_path("models/7.json"), Some("models/7.json"));
        assert_eq!(local_path("s3://b/k"), None);
        assert_eq!(local_path("file:///etc/passwd"), None);
        assert_eq!(
            join("registry", "./eval/../evaluate.py").as_deref(),
            Some("registry/evaluate.py")
        );
        assert_eq!(
            join("registry", "../scripts/x.py").as_deref(),
            Some("scripts/x.py")
        );
        assert_eq!(join("registry", "../../x"), None);
        assert_eq!(join("", "a"), Some("a".into()));
        assert_eq!(join("/srv/reg", "../x").as_deref(), Some("/srv/x"));
    }

    #[test]
    fn digests_match_sha256sum() {
        // printf 'hello' | sha256sum
        assert_eq!(
            file_digest(b"hello"),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let one = folder_digest([("b", b"2".as_slice()), ("a", b"1".as_slice())]);
        let two = folder_digest([("a", b"1".as_slice()), ("b", b"2".as_slice())]);
        assert_eq!(one, two);
        assert_ne!(
            one,
            folder_digest([("a", b"1".as_slice()), ("b", b"3".as_slice())])
        );
        assert!(
            verify(
                "spec.artifact.uri",
                "x",
                &file_digest(b"hello"),
                &file_digest(b"hello")
            )
            .is_ok()
        );
        let e = verify(
            "spec.dataset.uri",
            "data/x.csv",
            "sha256:00",
            &file_digest(b"hello"),
        )
        .unwrap_err();
        assert!(
            e.contains("data/x.csv has digest sha256:2cf2") && e.contains("sha256:00 is declared"),
            "{e}"
        );
    }

    #[test]
    fn folders_leave_out_the_registry_documents() {
        let l: Listing = [("r/eval/a.py", "1"), ("r/eval/b.yaml", "2"), ("r/x", "3")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let all = content(&l, "r/eval", &BTreeSet::new());
        let skip: BTreeSet<&str> = ["r/eval/b.yaml"].into();
        assert_ne!(all, content(&l, "r/eval", &skip));
        assert_eq!(content(&l, "r/x", &skip).as_deref(), Some("3"));
        assert_eq!(content(&l, "r/none", &skip), None);
        assert!(present(&l, "r/eval") && !present(&l, "r/ev"));
    }
}
