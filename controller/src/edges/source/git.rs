//! Reading YAML files from a git revision without a checkout.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{ObjectType, Repository, TreeWalkMode, TreeWalkResult};

use crate::decide::catalog::SourceFile;
use crate::decide::catalog::load::is_yaml;
use crate::decide::files::Content;

impl From<git2::Error> for GitError {
    fn from(e: git2::Error) -> Self {
        GitError::Other(e)
    }
}

/// Errors reading a git repository.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The folder is not in a git repository.
    // libgit2's words are in the message; a `source` too would print them twice.
    #[error("{path} is not inside a git repository ({}); pass --repo PATH", .cause.message())]
    NotARepo {
        /// The path.
        path: String,
        /// Cause.
        cause: git2::Error,
    },
    /// The repository belongs to another user, and git's `safe.directory` does not name it.
    #[error(
        "{path}: the git repository {repo} is owned by another user, so git will not read it; if you trust it, run `git config --global --add safe.directory {repo}`"
    )]
    NotOwned {
        /// The path.
        path: String,
        /// The repository's folder, as libgit2 names it.
        repo: String,
        /// Cause.
        source: git2::Error,
    },
    /// A revision does not resolve.
    #[error(
        "revision `{rev}` not found in {repo} ({}); fetch it first (e.g. `git fetch origin {rev}`) or check the name", .cause.message()
    )]
    BadRevision {
        /// The revision.
        rev: String,
        /// Repository path.
        repo: String,
        /// Cause.
        cause: git2::Error,
    },
    /// The sub-folder does not exist at that revision.
    #[error("`{path}` does not exist at revision {rev}")]
    NoSuchPath {
        /// The path.
        path: String,
        /// The revision.
        rev: String,
    },
    /// `git fetch` failed or could not run.
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// The repository URL, credentials removed.
        url: String,
        /// What git said, or why it could not run.
        message: String,
    },
    /// Another libgit2 error.
    #[error("git: {}", .0.message())]
    Other(git2::Error),
}

/// A resolved revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// As given, e.g. `origin/main`.
    pub name: String,
    /// Full commit id.
    pub commit: String,
}

/// An opened repository.
pub struct GitRepo {
    repo: Repository,
    path: String,
}

/// A state of a file: the commit that brought it, when that commit landed, and the content.
pub type FileState = (String, chrono::DateTime<chrono::Utc>, Vec<u8>);

impl GitRepo {
    /// Opens the repository containing `path`.
    pub fn open(path: &Path) -> Result<Self, GitError> {
        let repo = Repository::discover(path).map_err(|source| {
            let path = path.display().to_string();
            if source.code() == git2::ErrorCode::Owner {
                // libgit2 says "repository path '/x' is not owned by current user".
                let repo = source
                    .message()
                    .split('\'')
                    .nth(1)
                    .map_or_else(|| path.clone(), str::to_string);
                GitError::NotOwned { path, repo, source }
            } else {
                GitError::NotARepo {
                    path,
                    cause: source,
                }
            }
        })?;
        Ok(GitRepo {
            repo,
            path: path.display().to_string(),
        })
    }

    /// Wraps an already opened repository.
    pub fn from_repository(repo: Repository, path: &str) -> Self {
        GitRepo {
            repo,
            path: path.to_string(),
        }
    }

    /// The underlying repository.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Resolves a revision (branch, tag, `HEAD~1`, commit id) to a commit.
    pub fn resolve(&self, rev: &str) -> Result<Revision, GitError> {
        let obj = self
            .repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(|cause| GitError::BadRevision {
                rev: rev.to_string(),
                repo: self.path.clone(),
                cause,
            })?;
        Ok(Revision {
            name: rev.to_string(),
            commit: obj.id().to_string(),
        })
    }

    /// The contents file `path` (repository-relative) had along the first-parent history of
    /// `rev` — the states the branch itself was in, not those of branches merged into it —
    /// newest first, each once in a row with the newest commit that had it, looking at most
    /// `limit` commits back and stopping at the first commit without the file (an older file
    /// of that path is another story).
    pub fn file_history(
        &self,
        rev: &Revision,
        path: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, GitError> {
        let mut walk = self.repo.revwalk()?;
        walk.simplify_first_parent()?;
        walk.push(git2::Oid::from_str(&rev.commit)?)?;
        let mut last = None;
        let mut out = Vec::new();
        for id in walk.take(limit) {
            let id = id?;
            let tree = self.repo.find_commit(id)?.tree()?;
            let Ok(entry) = tree.get_path(Path::new(path)) else {
                break;
            };
            if last == Some(entry.id()) {
                continue;
            }
            last = Some(entry.id());
            out.push((
                id.to_string(),
                self.repo.find_blob(entry.id())?.content().to_vec(),
            ));
        }
        Ok(out)
    }

    /// [`GitRepo::file_history`] with, for each state of the file, the commit that brought it and
    /// when that commit was made (its committer's time: when it landed on the branch, at the
    /// earliest that of an older state), newest first; a state whose commit has a time out of
    /// range is left out.
    pub fn file_states(
        &self,
        rev: &Revision,
        path: &str,
        limit: usize,
    ) -> Result<Vec<FileState>, GitError> {
        let mut walk = self.repo.revwalk()?;
        walk.simplify_first_parent()?;
        walk.push(git2::Oid::from_str(&rev.commit)?)?;
        // (blob, the oldest commit seen with it so far) of the state being walked through.
        let mut run: Option<(git2::Oid, git2::Oid)> = None;
        let mut out = Vec::new();
        let mut close = |run: Option<(git2::Oid, git2::Oid)>| -> Result<(), GitError> {
            if let Some((blob, commit)) = run {
                let when = self.repo.find_commit(commit)?.committer().when();
                if let Some(at) = chrono::DateTime::from_timestamp(when.seconds(), 0) {
                    let content = self.repo.find_blob(blob)?.content().to_vec();
                    out.push((commit.to_string(), at, content));
                }
            }
            Ok(())
        };
        for id in walk.take(limit) {
            let id = id?;
            let tree = self.repo.find_commit(id)?.tree()?;
            let Ok(entry) = tree.get_path(Path::new(path)) else {
                break;
            };
            match &mut run {
                Some((blob, oldest)) if *blob == entry.id() => *oldest = id,
                _ => {
                    close(run.take())?;
                    run = Some((entry.id(), id));
                }
            }
        }
        close(run)?;
        // A commit dated before an older one cannot have landed then (one dated in the future
        // has served nothing yet: the reader counts up to its own now).
        let mut floor = chrono::DateTime::<chrono::Utc>::MIN_UTC;
        for (_, at, _) in out.iter_mut().rev() {
            *at = (*at).max(floor);
            floor = *at;
        }
        Ok(out)
    }

    /// The content of file `path` (repository-relative) at `commit`, if it has that file.
    pub fn file_at(&self, commit: &str, path: &str) -> Option<Vec<u8>> {
        let tree = self
            .repo
            .find_commit(git2::Oid::from_str(commit).ok()?)
            .ok()?
            .tree()
            .ok()?;
        let entry = tree.get_path(Path::new(path)).ok()?;
        Some(self.repo.find_blob(entry.id()).ok()?.content().to_vec())
    }

    /// Every file of the repository at a revision: path → blob id.
    pub fn listing(&self, rev: &Revision) -> Result<BTreeMap<String, String>, GitError> {
        let mut out = BTreeMap::new();
        self.blobs(rev, |path, entry| {
            out.insert(path, entry.id().to_string());
        })?;
        Ok(out)
    }

    /// Calls `each` with every blob of the tree at `rev` and its path.
    fn blobs(
        &self,
        rev: &Revision,
        mut each: impl FnMut(String, &git2::TreeEntry<'_>),
    ) -> Result<(), GitError> {
        let tree = self
            .repo
            .find_commit(git2::Oid::from_str(&rev.commit)?)?
            .tree()?;
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(ObjectType::Blob) {
                let name = entry.name().unwrap_or_default();
                each(format!("{dir}{name}"), entry);
            }
            TreeWalkResult::Ok
        })?;
        Ok(())
    }

    /// The symbolic links at `rev`: each link's path → the path it points to (as git stores
    /// it, the link's blob).
    pub fn links(&self, rev: &Revision) -> Result<BTreeMap<String, String>, GitError> {
        let mut links = Vec::new();
        self.blobs(rev, |path, entry| {
            if entry.filemode() == 0o120000 {
                links.push((path, entry.id()));
            }
        })?;
        let mut out = BTreeMap::new();
        for (path, id) in links {
            let target = self.repo.find_blob(id)?.content().to_vec();
            out.insert(path, String::from_utf8_lossy(&target).into_owned());
        }
        Ok(out)
    }

    /// What `path` holds at `rev` (a file, or a folder's files), if anything.
    pub fn content(
        &self,
        listing: &BTreeMap<String, String>,
        path: &str,
    ) -> Result<Option<Content>, GitError> {
        let blob = |id: &str| -> Result<Vec<u8>, GitError> {
            Ok(self
                .repo
                .find_blob(git2::Oid::from_str(id)?)?
                .content()
                .to_vec())
        };
        if let Some(id) = listing.get(path) {
            return Ok(Some(Content::File(blob(id)?)));
        }
        let prefix = format!("{path}/");
        let mut files = Vec::new();
        for (p, id) in listing.range(prefix.clone()..) {
            let Some(rel) = p.strip_prefix(&prefix) else {
                break;
            };
            files.push((rel.to_string(), blob(id)?));
        }
        Ok((!files.is_empty()).then_some(Content::Folder(files)))
    }

    /// Reads every YAML file under `subdir` (repository-relative; empty for the root) at a revision.
    /// Hidden folders are skipped, as in folder mode.
    pub fn read(&self, rev: &Revision, subdir: &str) -> Result<Vec<SourceFile>, GitError> {
        self.read_since(rev, subdir, &[])
    }

    /// Like [`GitRepo::read`], but a file identical (same path and blob) to one of `known` is
    /// returned with its id and **without content**: the caller has it already.
    pub fn read_since(
        &self,
        rev: &Revision,
        subdir: &str,
        known: &[SourceFile],
    ) -> Result<Vec<SourceFile>, GitError> {
        let known: std::collections::HashMap<&str, &str> = known
            .iter()
            .filter_map(|f| Some((f.path.as_str(), f.id.as_deref()?)))
            .collect();
        let commit = self.repo.find_commit(git2::Oid::from_str(&rev.commit)?)?;
        let mut tree = commit.tree()?;
        let prefix = subdir.trim_matches('/');
        if !prefix.is_empty() {
            let entry = tree
                .get_path(Path::new(prefix))
                .map_err(|_| GitError::NoSuchPath {
                    path: prefix.to_string(),
                    rev: rev.name.clone(),
                })?;
            tree = self.repo.find_tree(entry.id())?;
        }
        let mut blobs = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            let name = entry.name().unwrap_or_default();
            if entry.kind() == Some(ObjectType::Tree) && name.starts_with('.') {
                return TreeWalkResult::Skip;
            }
            if entry.kind() == Some(ObjectType::Blob) && is_yaml(name) {
                blobs.push((format!("{dir}{name}"), entry.id()));
            }
            TreeWalkResult::Ok
        })?;
        let mut files = Vec::with_capacity(blobs.len());
        for (path, id) in blobs {
            let path = if prefix.is_empty() {
                path
            } else {
                format!("{prefix}/{path}")
            };
            let id = id.to_string();
            let content = if known.get(path.as_str()) == Some(&id.as_str()) {
                Vec::new()
            } else {
                self.repo
                    .find_blob(git2::Oid::from_str(&id)?)?
                    .content()
                    .to_vec()
            };
            files.push(SourceFile {
                id: Some(id),
                path,
                content,
                from_api_server: false,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }
}
