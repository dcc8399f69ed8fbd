//! A git repository as the source of `slipway run`: fetched into a bare mirror in the state
//! folder; the catalog is read from git objects, and a commit is checked out into a folder of
//! its own only when something runs from it (a local evaluation job or model server).
//!
//! Fetching runs the `git` executable (as Argo CD does), so every transport and credential setup
//! the user's git already has works unchanged: `https://` with credential helpers or `GIT_ASKPASS`,
//! `ssh://` and `git@host:org/repo` with the ssh agent, keys and `known_hosts`, proxies, `file://`.
//! git never prompts (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode) and a fetch that hangs is killed
//! after [`FETCH_TIMEOUT`]. Reading and checking out commits stays in-process with libgit2.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use git2::Repository;
use git2::build::CheckoutBuilder;

use super::git::{GitError, GitRepo, Revision};
use crate::decide::catalog::SourceFile;

/// How long one `git fetch` may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// A fetched repository.
pub struct Remote {
    url: String,
    /// An HTTP header git sends with every request to the remote (a token, as
    /// `Authorization: Basic …`): passed in git's environment, never on its command line.
    header: Option<String>,
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
    /// The commit's registry folder on disk, checked out when first asked for.
    pub root: Root,
}

/// Where a revision's files are on disk, for what runs from them (local evaluation jobs and
/// model servers): a folder source's own folder, or a commit checked out the first time one of
/// them asks — a pass that runs nothing locally writes no file (checking out a large
/// registry's thousands of files was most of a first pass).
#[derive(Clone, Debug)]
pub struct Root(Arc<Place>);

#[derive(Debug)]
enum Place {
    Folder(PathBuf),
    Commit {
        mirror: PathBuf,
        commit: String,
        checkouts: PathBuf,
        subdir: String,
        done: OnceLock<Result<PathBuf, String>>,
    },
}

impl Root {
    /// A folder that is the registry as it is.
    pub fn folder(path: &Path) -> Root {
        Root(Arc::new(Place::Folder(path.to_path_buf())))
    }

    /// The folder, checking the commit out first when this is its first use (once per commit:
    /// an earlier pass's or process's complete checkout is used as it is).
    pub fn path(&self) -> Result<PathBuf, String> {
        match &*self.0 {
            Place::Folder(p) => Ok(p.clone()),
            Place::Commit {
                mirror,
                commit,
                checkouts,
                subdir,
                done,
            } => done
                .get_or_init(|| {
                    let dir = check_out(mirror, commit, checkouts).map_err(|e| {
                        format!(
                            "cannot check out commit {} of the source: {e}",
                            &commit[..12.min(commit.len())]
                        )
                    })?;
                    Ok(if subdir.is_empty() {
                        dir
                    } else {
                        dir.join(subdir)
                    })
                })
                .clone(),
        }
    }
}

/// Checks `commit` out of the bare `mirror` into `checkouts/COMMIT` unless it is there: into a
/// folder of this call's own, renamed into place only when complete (a crash never leaves half a
/// checkout, and two processes or passes checking one commit out at once never share a folder:
/// the second rename finds the first's complete checkout and keeps it).
fn check_out(mirror: &Path, commit: &str, checkouts: &Path) -> Result<PathBuf, GitError> {
    let io = |e: std::io::Error| GitError::Other(git2::Error::from_str(&e.to_string()));
    let dir = checkouts.join(commit);
    if dir.is_dir() {
        return Ok(dir);
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = checkouts.join(format!(
        "{commit}.{}.{}.partial",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io)?;
    let written = (|| {
        let repo = Repository::open_bare(mirror)?;
        let commit = repo.find_commit(git2::Oid::from_str(commit)?)?;
        repo.checkout_tree(
            commit.as_object(),
            Some(CheckoutBuilder::new().force().target_dir(&tmp)),
        )?;
        Ok::<_, GitError>(())
    })();
    let placed = written.and_then(|()| std::fs::rename(&tmp, &dir).map_err(io));
    if placed.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    match placed {
        Ok(()) => Ok(dir),
        // Another pass or process placed the same commit first: theirs is complete.
        Err(_) if dir.is_dir() => Ok(dir),
        Err(e) => Err(e),
    }
}

impl Remote {
    /// A source that follows `reference` (a branch) of `url` (`file://…` or a local path).
    pub fn new(url: &str, reference: &str, subdir: &str, state: &Path) -> Self {
        // libgit2 resolves relative checkout targets against the repository, not the process.
        let state = std::path::absolute(state).unwrap_or_else(|_| state.to_path_buf());
        Remote {
            url: url.to_string(),
            header: None,
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
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.reference);
        git_fetch(
            &self.mirror,
            (&self.url, self.header.as_deref()),
            &refspec,
            FETCH_TIMEOUT,
        )?;
        let git = GitRepo::from_repository(repo, &redact(&self.url));
        let revision = git.resolve(&format!("refs/remotes/origin/{}", self.reference))?;
        let files = git.read(&revision, &self.subdir)?;
        let root = Root(Arc::new(Place::Commit {
            mirror: self.mirror.clone(),
            commit: revision.commit.clone(),
            checkouts: self.checkouts.clone(),
            subdir: self.subdir.clone(),
            done: OnceLock::new(),
        }));
        Ok(Snapshot {
            revision,
            files,
            root,
        })
    }
}

impl Remote {
    /// Commits `content` as `file` (relative to the repository, as the catalog names files) on
    /// top of commit `base`
    /// and pushes it to `branch` of the remote (replacing what an earlier attempt pushed there);
    /// the new commit's id. The mirror's own refs do not change.
    pub fn push_change(
        &self,
        base: &str,
        file: &str,
        content: &str,
        branch: &str,
        message: &str,
    ) -> Result<String, String> {
        let commit = (|| -> Result<git2::Oid, git2::Error> {
            let repo = Repository::open_bare(&self.mirror)?;
            let base = repo.revparse_single(base)?.peel_to_commit()?;
            let tree = base.tree()?;
            let path = file.to_string();
            let mode = match tree.get_path(Path::new(&path))?.filemode() {
                0o100755 => git2::FileMode::BlobExecutable,
                0o100644 => git2::FileMode::Blob,
                _ => {
                    return Err(git2::Error::from_str(&format!(
                        "{path} is not a regular file in the repository (a symbolic link?); edit it by hand"
                    )));
                }
            };
            let blob = repo.blob(content.as_bytes())?;
            let mut update = git2::build::TreeUpdateBuilder::new();
            update.upsert(&path, blob, mode);
            let new_tree = repo.find_tree(update.create_updated(&repo, &tree)?)?;
            let who = git2::Signature::now("Slipway", "slipway@localhost")?;
            repo.commit(None, &who, &who, message, &new_tree, &[&base])
        })()
        .map_err(|e| format!("cannot make the commit: {}", e.message()))?;
        let refspec = format!("+{commit}:refs/heads/{branch}");
        git_with_remote(
            &self.mirror,
            &["push", "--quiet"],
            (&self.url, self.header.as_deref()),
            &refspec,
            FETCH_TIMEOUT,
        )
        .map_err(|m| format!("cannot push branch {branch} to {}: {m}", redact(&self.url)))?;
        Ok(commit.to_string())
    }

    /// The text of a file (relative to the repository, as the catalog names files) at a fetched
    /// commit (a prefix of its id will do).
    pub fn file(&self, commit: &str, file: &str) -> Option<String> {
        let repo = Repository::open_bare(&self.mirror).ok()?;
        let tree = repo
            .revparse_single(commit)
            .ok()?
            .peel_to_commit()
            .ok()?
            .tree()
            .ok()?;
        let entry = tree.get_path(Path::new(file)).ok()?;
        let blob = repo.find_blob(entry.id()).ok()?;
        String::from_utf8(blob.content().to_vec()).ok()
    }

    /// This remote, reached with a GitHub token (HTTP basic authentication as
    /// `x-access-token`, as GitHub Actions' checkout does).
    pub fn with_token(mut self, token: &str) -> Self {
        use base64::Engine as _;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        self.header = Some(format!("Authorization: Basic {basic}"));
        self
    }

    /// The branch the source follows.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The remote's address (it may carry a token: never print it; see [`redact`]).
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Runs `git fetch URL REFSPEC` into the bare repository `mirror`, killed after `timeout`.
fn git_fetch(
    mirror: &Path,
    (url, header): (&str, Option<&str>),
    refspec: &str,
    timeout: Duration,
) -> Result<(), GitError> {
    let args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"];
    git_with_remote(mirror, &args, (url, header), refspec, timeout).map_err(|message| {
        GitError::Fetch {
            url: redact(url),
            message,
        }
    })
}

/// Runs `git ARGS -- URL REFSPEC` in the bare repository `mirror` as a fetch does (no prompt,
/// ssh in batch mode), killed after `timeout`; what git said when it fails, credentials taken out.
fn git_with_remote(
    mirror: &Path,
    args: &[&str],
    (url, header): (&str, Option<&str>),
    refspec: &str,
    timeout: Duration,
) -> Result<(), String> {
    let fail = |message: String| message;
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir")
        .arg(mirror)
        .args(args)
        .arg("--")
        .arg(url)
        .arg(refspec)
        .env("GIT_TERMINAL_PROMPT", "0")
        .envs(
            header
                .map(|h| {
                    // A token goes to this URL only: no redirect is followed with it.
                    [
                        ("GIT_CONFIG_COUNT", "2"),
                        ("GIT_CONFIG_KEY_0", "http.extraHeader"),
                        ("GIT_CONFIG_VALUE_0", h),
                        ("GIT_CONFIG_KEY_1", "http.followRedirects"),
                        ("GIT_CONFIG_VALUE_1", "false"),
                    ]
                })
                .into_iter()
                .flatten(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    let mut child = cmd.spawn().map_err(|e| {
        fail(format!(
            "cannot run `git` ({e}); install git and make sure it is on PATH"
        ))
    })?;
    // Read stderr on the side so a chatty git never blocks on a full pipe.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = std::io::Read::read_to_string(&mut s, &mut text);
        }
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let said = reader.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(()),
        Some(_) => {
            let said: Vec<&str> = said
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
                .collect();
            Err(fail(redact(&said.join("; "))))
        }
        None => Err(fail(format!(
            "git {} did not finish within {}s; check that the server is reachable",
            args.first().unwrap_or(&""),
            timeout.as_secs()
        ))),
    }
}

/// `url` with any password or token in its user-info replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{scheme}://{shown}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// Whether a `slipway run` source argument names a git repository rather than a folder: a URL
/// (`https://`, `ssh://`, `file://`, …), scp-like `git@host:org/repo`, or a path ending in `.git`.
pub fn is_git_url(source: &str) -> bool {
    if source.contains("://") || source.ends_with(".git") {
        return true;
    }
    // scp-like syntax: `user@host:path`, with no slash before the colon.
    match source.split_once(':') {
        Some((before, _)) => before.contains('@') && !before.contains('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_goes_as_basic_authentication_in_gits_environment() {
        let r = Remote::new(
            "https://github.com/acme/r.git",
            "main",
            "",
            Path::new("/tmp/x"),
        )
        .with_token("t");
        // base64("x-access-token:t")
        assert_eq!(
            r.header.as_deref(),
            Some("Authorization: Basic eC1hY2Nlc3MtdG9rZW46dA==")
        );
    }

    #[test]
    fn credentials_are_never_shown() {
        assert_eq!(
            redact("https://bot:ghp_secret@github.com/acme/registry.git"),
            "https://bot:***@github.com/acme/registry.git"
        );
        assert_eq!(
            redact("https://ghp_secret@github.com/acme/r.git"),
            "https://***@github.com/acme/r.git"
        );
        assert_eq!(
            redact("https://github.com/acme/r.git"),
            "https://github.com/acme/r.git"
        );
        assert_eq!(
            redact("git@github.com:acme/r.git"),
            "git@github.com:acme/r.git"
        );
    }

    #[test]
    fn git_sources_are_told_from_folders() {
        for git in [
            "https://github.com/acme/registry",
            "ssh://git@github.com/acme/registry",
            "git@github.com:acme/registry",
            "file:///srv/registry.git",
            "../registry.git",
        ] {
            assert!(is_git_url(git), "{git}");
        }
        for folder in [
            "registry",
            "./examples/quickstart",
            "/srv/registry",
            "C:/registry",
        ] {
            assert!(!is_git_url(folder), "{folder}");
        }
    }
}
