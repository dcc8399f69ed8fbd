//! A git repository as the source of `slipway run`: fetched with git2 into the state folder, each
//! new commit checked out into its own folder (evaluation jobs and model servers run from it).

use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{FetchOptions, Repository};

use super::git::{GitError, GitRepo, Revision};
use crate::catalog::SourceFile;

/// A fetched repository.
pub struct Remote {
    url: String,
    reference: String,
    subdir: String,
    mirror: PathBuf,
    checkouts: PathBuf,
}

/// One revision of the source, ready to reconcile.
pub struct Snapshot {
    /// The commit.
    pub revision: Revision,
    /// The registry's files at that commit.
    pub files: Vec<SourceFile>,
    /// A checkout of the commit's registry folder.
    pub root: PathBuf,
}

impl Remote {
    /// A source that follows `reference` (a branch) of `url` (`file://…` or a local path).
    pub fn new(url: &str, reference: &str, subdir: &str, state: &Path) -> Self {
        // libgit2 resolves relative checkout targets against the repository, not the process.
        let state = std::path::absolute(state).unwrap_or_else(|_| state.to_path_buf());
        Remote {
            url: url.to_string(),
            reference: reference.to_string(),
            subdir: subdir.trim_matches('/').to_string(),
            mirror: state.join("source.git"),
            checkouts: state.join("checkouts"),
        }
    }

    /// Fetches and returns the branch's newest commit.
    pub fn fetch(&self) -> Result<Snapshot, GitError> {
        let repo = match Repository::open_bare(&self.mirror) {
            Ok(r) => r,
            Err(_) => Repository::init_bare(&self.mirror)?,
        };
        let mut remote = repo.remote_anonymous(&self.url)?;
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.reference);
        remote
            .fetch(&[refspec.as_str()], Some(&mut FetchOptions::new()), None)
            .map_err(|source| GitError::BadRevision {
                rev: self.reference.clone(),
                repo: self.url.clone(),
                source,
            })?;
        drop(remote);
        let git = GitRepo::from_repository(repo, &self.url);
        let revision = git.resolve(&format!("refs/remotes/origin/{}", self.reference))?;
        let files = git.read(&revision, &self.subdir)?;
        let dir = self.checkouts.join(&revision.commit);
        if !dir.is_dir() {
            let tmp = self.checkouts.join(format!("{}.partial", revision.commit));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp)
                .map_err(|e| GitError::Other(git2::Error::from_str(&e.to_string())))?;
            let repo = git.repository();
            let commit = repo.find_commit(git2::Oid::from_str(&revision.commit)?)?;
            repo.checkout_tree(
                commit.as_object(),
                Some(CheckoutBuilder::new().force().target_dir(&tmp)),
            )?;
            // Renamed into place only when complete, so a crash never leaves half a checkout.
            std::fs::rename(&tmp, &dir)
                .map_err(|e| GitError::Other(git2::Error::from_str(&e.to_string())))?;
        }
        let root = if self.subdir.is_empty() {
            dir
        } else {
            dir.join(&self.subdir)
        };
        Ok(Snapshot {
            revision,
            files,
            root,
        })
    }
}

/// Whether a `slipway run` source argument names a git repository rather than a folder.
pub fn is_git_url(source: &str) -> bool {
    source.contains("://") || source.ends_with(".git")
}
