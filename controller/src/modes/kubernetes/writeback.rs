//! Rollbacks written back to the repository a cluster's objects come from (Argo CD, Flux): the
//! `ModelAlias` (or a pinned `ModelDeployment`) names its repository, file and branch in
//! annotations; once its deployment rolled back, the same change as in git mode
//! ([`rollout::writeback`]) is pushed as a branch of that repository and its pull request
//! opened, so the GitOps tool does not apply the rejected version again. Only repositories the
//! operator lists are ever written to, and the token goes only to the operator's GitHub.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use kube::{Api, ResourceExt};
use slipway_crd::ModelDeployment;
use slipway_crd::model_deployment::{DeploymentPhase, ModelDeploymentStatus};

use super::context::{Context, Error, apply_status};
use crate::decide::rollout::{self, writeback};
use crate::edges::github::GitHub;
use crate::edges::source::remote::{Remote, redact};

/// The annotation naming the git repository an object is applied from.
pub const SOURCE_REPOSITORY: &str = "slipway.dev/source-repository";
/// The annotation naming the file (relative to the repository's root) the object is written in.
pub const SOURCE_PATH: &str = "slipway.dev/source-path";
/// The annotation naming the branch the GitOps tool applies (default `main`).
pub const SOURCE_BRANCH: &str = "slipway.dev/source-branch";

/// The field manager of `status.proposal`.
const FIELD_MANAGER: &str = "slipway-write-back";

/// The operator's write-back settings (`--write-back-repositories`, `--github-token-file`).
pub struct Settings {
    /// Repositories that may be written to: (git URL, the GitHub `OWNER/NAME` its pull requests
    /// go to, if any).
    pub repositories: Vec<(String, Option<String>)>,
    /// GitHub's API and the token (pull requests are opened only with both).
    pub github: Option<(String, String)>,
    /// Where the repositories are fetched to.
    pub cache: PathBuf,
    /// One write-back at a time (they share the fetched repositories).
    pub busy: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Settings {
    /// Without the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("repositories", &self.repositories)
            .field("github", &self.github.as_ref().map(|(api, _)| (api, "***")))
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The settings of `slipway controller`'s flags (None without repositories): the
    /// repositories, and GitHub's API and token.
    pub fn of_flags(
        repositories: &[String],
        github: Option<(String, String)>,
    ) -> anyhow::Result<Option<Arc<Settings>>> {
        if repositories.is_empty() {
            return Ok(None);
        }
        let cache = std::env::temp_dir().join("slipway-write-back");
        Settings::new(repositories, github, cache)
            .map(|s| Some(Arc::new(s)))
            .map_err(anyhow::Error::msg)
    }

    /// Parses `URL` or `URL=OWNER/NAME` entries; the GitHub repository of a github.com URL is
    /// read from it.
    pub fn new(
        entries: &[String],
        github: Option<(String, String)>,
        cache: PathBuf,
    ) -> Result<Settings, String> {
        let mut repositories = Vec::new();
        for e in entries.iter().filter(|e| !e.trim().is_empty()) {
            let (url, slug) = match e.rsplit_once('=') {
                Some((url, slug)) if slug.split('/').count() == 2 && !slug.contains(':') => {
                    (url.trim().to_string(), Some(slug.trim().to_string()))
                }
                _ => (
                    e.trim().to_string(),
                    crate::edges::github::repository_of(e.trim()),
                ),
            };
            if !crate::edges::source::remote::is_git_url(&url) {
                return Err(format!(
                    "--write-back-repositories: {} is not a git URL",
                    redact(&url)
                ));
            }
            repositories.push((url, slug));
        }
        Ok(Settings {
            repositories,
            github,
            cache,
            busy: tokio::sync::Mutex::new(()),
        })
    }
}

/// The host of an `https://` URL (no user, no port).
fn github_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit('@').next()?;
    Some(host.split(':').next().unwrap_or(host))
}

/// Whether `b` is a branch name this writes to: letters, digits, `/`, `.`, `_`, `-`, no `..`,
/// not starting with `-` or `/` (no pattern, option or ref expression).
fn plain_branch(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 200
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/._-".contains(&c))
        && !b.contains("..")
        && !b.starts_with(['-', '/', '.'])
        && !b.ends_with(['/', '.'])
        && !b.ends_with(".lock")
}

/// Where an object says it comes from: (repository, file, branch).
fn source_of(
    annotations: &std::collections::BTreeMap<String, String>,
) -> Option<(String, String, String)> {
    let repository = annotations.get(SOURCE_REPOSITORY)?.clone();
    let path = annotations
        .get(SOURCE_PATH)?
        .trim_start_matches('/')
        .to_string();
    let branch = annotations
        .get(SOURCE_BRANCH)
        .cloned()
        .unwrap_or_else(|| "main".into());
    Some((repository, path, branch))
}

/// Writes back `md`'s rollback when its alias (or itself, pinned) names a repository and the
/// rollback is not written back yet; records the outcome in its status and announces it.
pub(super) async fn write_back(
    ctx: &Arc<Context>,
    md: &ModelDeployment,
    status: &ModelDeploymentStatus,
) -> Result<(), Error> {
    let Some(settings) = ctx.write_back.clone() else {
        return Ok(());
    };
    if status.phase != Some(DeploymentPhase::RolledBack) {
        return Ok(());
    }
    let ns = ns_of(md);
    let name = md.name_any();
    let (annotations, asked) = match &md.spec.alias {
        Some(a) => match ctx.cache.find_alias(&ns, &md.spec.model, a) {
            Some(alias) => (alias.annotations().clone(), alias.spec.version.clone()),
            None => return Ok(()),
        },
        None => (
            md.annotations().clone(),
            md.spec.version.clone().unwrap_or_default(),
        ),
    };
    let Some((url, path, branch)) = source_of(&annotations) else {
        return Ok(());
    };
    if writeback::wanted(status, Some(&asked), Utc::now()).is_none() {
        return Ok(());
    }
    // The watch's copy may not have the proposal an earlier reconcile wrote yet: decided on the
    // status as it is now.
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    let status = &api.get_status(&name).await?.status.unwrap_or_default();
    let Some(wanted) = writeback::wanted(status, Some(&asked), Utc::now()) else {
        return Ok(());
    };
    let allowed = settings
        .repositories
        .iter()
        .find(|(u, _)| *u == url)
        .cloned();
    let _one = settings.busy.lock().await;
    let (md2, wanted2, settings2, ns2) = (md.clone(), wanted.clone(), settings.clone(), ns.clone());
    let (proposal, done) = tokio::task::spawn_blocking(move || {
        propose_and_push(
            &md2,
            &ns2,
            &wanted2,
            &settings2,
            allowed,
            (&url, &path, &branch),
        )
    })
    .await
    .unwrap_or_else(|e| {
        let why = format!("the write-back stopped: {e}");
        (Err(why.clone()), writeback::Done::Failed(why))
    });
    let (next, news) = writeback::recorded(
        status,
        &wanted,
        proposal.as_ref().map_err(String::as_str),
        &done,
        Utc::now(),
    );
    // The proposal under a field manager of its own, so that a step's status applied from an
    // older copy (without it) never removes it; then the status with its history entry.
    api.patch_status(
        &name,
        &kube::api::PatchParams::apply(FIELD_MANAGER).force(),
        &kube::api::Patch::Apply(serde_json::json!({
            "apiVersion": "slipway.dev/v1alpha1",
            "kind": "ModelDeployment",
            "status": {"proposal": next.proposal},
        })),
    )
    .await?;
    apply_status(&api, &name, &next).await?;
    if let Some((kind, message)) = news {
        super::deployments::announce(
            ctx,
            md,
            vec![(&kind, wanted.version.as_str(), message.as_str())],
        )
        .await;
    }
    Ok(())
}

fn ns_of(md: &ModelDeployment) -> String {
    md.namespace().unwrap_or_else(|| "default".into())
}

/// Fetches the repository, builds the proposal from the file, pushes it and opens its pull
/// request (blocking: git and HTTP).
fn propose_and_push(
    md: &ModelDeployment,
    ns: &str,
    wanted: &writeback::Wanted,
    settings: &Settings,
    allowed: Option<(String, Option<String>)>,
    (url, path, branch): (&str, &str, &str),
) -> (Result<writeback::Proposal, String>, writeback::Done) {
    let fail = |why: String| (Err(why.clone()), writeback::Done::Failed(why));
    let Some((_, slug)) = allowed else {
        return fail(format!(
            "{} is not among the repositories the controller may write to (--write-back-repositories)",
            redact(url)
        ));
    };
    if !plain_branch(branch) {
        return fail(format!(
            "annotation {SOURCE_BRANCH} {branch:?} is not a branch name (letters, digits, /, ., _, -)"
        ));
    }
    // One fetched copy per repository and branch.
    let key = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(format!("{url}\n{branch}").as_bytes());
        d.iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut remote = Remote::new(url, branch, "", &settings.cache.join(key));
    // The token reaches only GitHub's own repositories over HTTPS (github.com, or the host of
    // the operator's GitHub Enterprise API); any other uses git's own credentials.
    if let Some((api, token)) = &settings.github
        && github_host(url).is_some_and(|h| h == "github.com" || Some(h) == github_host(api))
        && url.starts_with("https://")
    {
        remote = remote.with_token(token);
    }
    let snapshot = match remote.fetch() {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let commit = snapshot.revision.commit.clone();
    let Some(text) = remote.file(&commit, path) else {
        return fail(format!("{path} is not in {} at {branch}", redact(url)));
    };
    let file = writeback::file_catalog(path, &text);
    let name = md.name_any();
    let Some(source_ns) = writeback::namespace_in(&file, ns, md, &name) else {
        return fail(format!(
            "{path} in {} does not hold exactly one object for {}",
            redact(url),
            match &md.spec.alias {
                Some(a) => format!("alias {a} of model {}", md.spec.model),
                None => format!("ModelDeployment {name}"),
            }
        ));
    };
    let read = |p: &str| remote.file(&commit, p);
    let proposal = match writeback::propose(&file, (ns, &source_ns), md, wanted, &read, None) {
        Ok(p) => p,
        Err(why) => return fail(why),
    };
    let github = match (&settings.github, slug) {
        (Some((api, token)), Some(repository)) => Some(GitHub {
            api: api.clone(),
            repository,
            token: token.clone(),
        }),
        _ => None,
    };
    let done = crate::edges::github::push_and_propose(&remote, &commit, &proposal, github.as_ref());
    (Ok(proposal), done)
}

/// The deployment's status after a step: the one it wrote, or the one it had.
pub(super) fn status_after(
    outcome: &rollout::step::Outcome,
    md: &ModelDeployment,
) -> ModelDeploymentStatus {
    if outcome.write {
        outcome.status.clone()
    } else {
        md.status.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_listed_with_where_their_pull_requests_go() {
        let s = Settings::new(
            &[
                "https://github.com/acme/registry.git".into(),
                "http://git.internal/ml/registry.git=acme/ml-registry".into(),
            ],
            None,
            PathBuf::from("/tmp/x"),
        )
        .unwrap();
        assert_eq!(
            s.repositories,
            [
                (
                    "https://github.com/acme/registry.git".to_string(),
                    Some("acme/registry".to_string())
                ),
                (
                    "http://git.internal/ml/registry.git".to_string(),
                    Some("acme/ml-registry".to_string())
                ),
            ]
        );
        assert!(
            !format!(
                "{:?}",
                Settings::new(&[], Some(("a".into(), "sekrit".into())), PathBuf::new()).unwrap()
            )
            .contains("sekrit")
        );
        assert_eq!(
            github_host("https://x:t@github.com:443/acme/r.git"),
            Some("github.com")
        );
        assert_eq!(github_host("http://github.com/acme/r.git"), None);
        for ok in ["main", "release/2026-12", "env.prod"] {
            assert!(plain_branch(ok), "{ok}");
        }
        for bad in [
            "*",
            "-x",
            "a..b",
            "refs/heads/*",
            "main.lock",
            "a b",
            "+main",
            "/x",
            "",
        ] {
            assert!(!plain_branch(bad), "{bad}");
        }
        let e = Settings::new(&["not a url".into()], None, PathBuf::from("/tmp/x")).unwrap_err();
        assert!(e.contains("not a git URL"), "{e}");
        let annotations = [
            (
                SOURCE_REPOSITORY.to_string(),
                "https://github.com/acme/registry.git".to_string(),
            ),
            (
                SOURCE_PATH.to_string(),
                "/clusters/prod/aliases.yaml".to_string(),
            ),
        ]
        .into();
        assert_eq!(
            source_of(&annotations),
            Some((
                "https://github.com/acme/registry.git".into(),
                "clusters/prod/aliases.yaml".into(),
                "main".into()
            ))
        );
    }
}
