//! `slipway plan`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{PlanArgs, PlanFormat, print_out};
use crate::decide::catalog::results::Results;
use crate::decide::catalog::{Catalog, ObjectKey, Resource, SourceFile};
use crate::decide::diagnostics::Diagnostic;
use crate::decide::files;
use crate::decide::plan::{self, PlanInputs, Rev, render};
use crate::decide::policy::approvals::{Review, SignOffs};
use crate::decide::promotion::Served;
use crate::decide::promotion::stages::Histories;
use crate::edges::source::dir;
use crate::edges::source::git::{GitRepo, Revision};
use slipway_crd::model_alias::{AliasDecision, AliasMove};

fn read_reviews(path: &Path) -> anyhow::Result<Vec<Review>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read --reviews {}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: --reviews is not JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    // `gh pr view N --json reviews` prints {"reviews": [{"author": {"login"}, "state",
    // "submittedAt", "commit": {"oid"}}]}: the same reviews in GraphQL's words.
    let value = match value {
        serde_json::Value::Object(o) if o.get("reviews").is_some_and(|r| r.is_array()) => {
            let rows = o["reviews"].as_array().cloned().unwrap_or_default();
            serde_json::Value::Array(
                rows.iter()
                    .map(|r| {
                        let oid = r["commit"]["oid"].as_str().filter(|s| !s.is_empty());
                        serde_json::json!({
                            "user": {"login": r["author"]["login"]},
                            "state": r["state"],
                            "commit_id": oid,
                            "submitted_at": r["submittedAt"],
                        })
                    })
                    .collect(),
            )
        }
        other => other,
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        anyhow::anyhow!(
            "{}: --reviews at `{}`: {}; expected GitHub's list-reviews JSON (`gh api repos/OWNER/REPO/pulls/N/reviews`) or `gh pr view N --json reviews`",
            path.display(),
            e.path(),
            e.inner()
        )
    })
}

/// The evaluations a running `slipway run --listen` has results for.
fn fetch_results(base: &str) -> anyhow::Result<Vec<slipway_crd::Evaluation>> {
    let url = format!("{}/api/v1/evaluations", base.trim_end_matches('/'));
    // With the instance's API token the read API shows `webhook` runners whole, which their
    // results need to count (without it their destinations are redacted).
    let mut request = ureq::get(&url);
    if let Ok(token) = std::env::var("SLIPWAY_API_TOKEN") {
        request = request.header("Authorization", format!("Bearer {}", token.trim()));
    }
    let mut response = request.call().map_err(|e| {
        anyhow::anyhow!("--results {url}: {e}; is `slipway run --listen` running there?")
    })?;
    let text = response.body_mut().read_to_string()?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("--results {url} did not answer with a JSON list: {e}"))?;
    let mut out = Vec::new();
    for row in rows {
        // Rows without a spec belong to revisions no longer in force.
        if row["spec"].is_null() || row["status"].is_null() {
            continue;
        }
        let doc = serde_json::json!({
            "apiVersion": "slipway.dev/v1alpha1",
            "kind": "Evaluation",
            "metadata": {"name": row["name"], "namespace": row["namespace"]},
            "spec": row["spec"],
            "status": row["status"],
        });
        out.push(serde_json::from_value(doc).map_err(|e| {
            anyhow::anyhow!(
                "--results {url}: evaluation {} is not readable: {e}",
                row["name"]
            )
        })?);
    }
    Ok(out)
}

/// The results `--results` gives (a running instance's, or a folder's) for the head's suites,
/// with the folder's diagnostics.
fn read_results(from: Option<&str>, head: &Catalog) -> anyhow::Result<(Results, Vec<Diagnostic>)> {
    let mut results = Results::default();
    let mut result_diags: Vec<Diagnostic> = Vec::new();
    match from {
        None => {}
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            results.add_judging(head, fetch_results(url)?.iter());
        }
        Some(dir_path) if Path::new(dir_path).join("state.db").is_file() => {
            anyhow::bail!(
                "--results {dir_path} is the state folder of `slipway run`, not a folder of results: give the address of the running instance (`--results http://127.0.0.1:8080`, its --listen), or a folder of Evaluation documents with their status"
            );
        }
        Some(dir_path) => {
            let files = dir::read(Path::new(dir_path))
                .map_err(|e| anyhow::anyhow!("cannot read --results {dir_path}: {e}"))?;
            // Results are read on their own: they refer to the registry, which is checked separately.
            let (objects, diags) = crate::decide::catalog::load_files(&files);
            result_diags = diags;
            results.add_judging(
                head,
                objects.iter().filter_map(|o| match &o.resource {
                    Resource::Evaluation(e) => Some(&**e),
                    _ => None,
                }),
            );
        }
    }
    // Results come from `--results` only (Slipway's record, or CI's): a status written into a
    // registry file is the pull request author's word, and never counts. Of those, only
    // evaluations that run a suite as the head's model declares it count.
    Ok((results, result_diags))
}

/// How far back `plan` reads an alias file's history for the versions it served.
const ALIAS_HISTORY_COMMITS: usize = 10_000;

/// The objects of one file as `plan` reads them.
fn objects_of(path: &str, content: Vec<u8>) -> Vec<crate::decide::catalog::Object> {
    let source = SourceFile {
        path: path.to_string(),
        content,
        id: None,
        from_api_server: false,
    };
    crate::decide::catalog::load_files(std::slice::from_ref(&source)).0
}

/// What each alias the change moves served before, as `plan` can know it: the version it moves
/// to, when the alias's file named it on the base branch (first parent: what was merged) while
/// the version's own file registered the same artifact as now. The file's history is read back
/// until the alias is not there, or is of another model or alias name (an object deleted and
/// made again is another alias).
fn served_before(
    repo: &GitRepo,
    base_rev: &Revision,
    base: &Catalog,
    head: &Catalog,
) -> BTreeMap<ObjectKey, Served> {
    let alias = |r: &Resource| match r {
        Resource::ModelAlias(a) => Some(a.spec.clone()),
        _ => None,
    };
    let mut served = BTreeMap::new();
    for new in head.objects() {
        let (Some(old), Some(now)) = (base.get(&new.key), alias(&new.resource)) else {
            continue;
        };
        let ns = new.key.namespace.as_str();
        // The version as the head registers it, and its file on the base branch: a version new
        // in the head never served.
        let (Some(before), Some(candidate)) = (
            alias(&old.resource),
            head.version(ns, &now.model, &now.version),
        ) else {
            continue;
        };
        let digest = &candidate.spec.artifact.digest;
        let version_file = base
            .get(&ObjectKey {
                kind: slipway_crd::Kind::ModelVersion,
                namespace: ns.to_string(),
                name: candidate.metadata.name.clone().unwrap_or_default(),
            })
            .map(|o| o.origin.file.to_string());
        let (Some(version_file), false) = (version_file, before.version == now.version) else {
            continue;
        };
        let file = old.origin.file.to_string();
        let Ok(history) = repo.file_history(base_rev, &file, ALIAS_HISTORY_COMMITS) else {
            continue;
        };
        let registered_then = |commit: &str| {
            repo.file_at(commit, &version_file).is_some_and(|content| {
                objects_of(&version_file, content)
                    .iter()
                    .any(|o| match &o.resource {
                        Resource::ModelVersion(v) => {
                            v.spec.model == now.model
                                && v.spec.version == now.version
                                && v.spec.artifact.digest == *digest
                        }
                        _ => false,
                    })
            })
        };
        let mut found = Served::new();
        for (commit, content) in history {
            let then = objects_of(&file, content)
                .into_iter()
                .find(|o| o.key == new.key)
                .and_then(|o| alias(&o.resource));
            let Some(then) = then.filter(|t| t.model == now.model && t.alias == now.alias) else {
                break;
            };
            if then.version == now.version && registered_then(&commit) {
                found.insert((now.version.clone(), digest.clone()));
                break;
            }
        }
        served.insert(new.key.clone(), found);
    }
    served
}

/// The recorded moves of the aliases of each model whose alias the change moves, by (namespace,
/// model) — what a soak reads: `slipway run`'s record when `--results` is its address (its
/// `/api/v1/aliases`), else each alias file's history on the base branch (first parent), a move
/// dated by the commit that brought it (when it landed; a label registered again with another
/// artifact cannot be told apart there).
fn histories(
    repo: &GitRepo,
    base_rev: &Revision,
    base: &Catalog,
    head: &Catalog,
    results: Option<&str>,
) -> anyhow::Result<BTreeMap<(String, String), Histories>> {
    let mut wanted: Vec<(String, String)> = head
        .objects()
        .iter()
        .filter_map(|o| match &o.resource {
            Resource::ModelAlias(a) => {
                let before = base.get(&o.key).and_then(|b| match &b.resource {
                    Resource::ModelAlias(old) => Some(old.spec.version.clone()),
                    _ => None,
                });
                (before.as_deref() != Some(a.spec.version.as_str()))
                    .then(|| (o.key.namespace.clone(), a.spec.model.clone()))
            }
            _ => None,
        })
        .collect();
    wanted.sort();
    wanted.dedup();
    let recorded = match results {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Some(fetch_alias_statuses(url)?)
        }
        _ => None,
    };
    let mut out = BTreeMap::new();
    for (ns, model) in wanted {
        let mut histories = Histories::new();
        for alias in base.alias_names(&ns, &model) {
            let Some(o) = base.alias_object(&ns, &model, alias) else {
                continue;
            };
            let moves = match &recorded {
                Some(r) => r
                    .get(&(ns.clone(), o.key.name.clone()))
                    .cloned()
                    .unwrap_or_default(),
                None => moves_in_git(
                    repo,
                    (base_rev, base),
                    &o.origin.file,
                    &o.key,
                    &model,
                    alias,
                ),
            };
            histories.insert(alias.to_string(), moves);
        }
        out.insert((ns, model), histories);
    }
    Ok(out)
}

/// The recorded moves of every alias a running `slipway run --listen` keeps, by (namespace,
/// object name).
fn fetch_alias_statuses(base: &str) -> anyhow::Result<BTreeMap<(String, String), Vec<AliasMove>>> {
    let url = format!("{}/api/v1/aliases", base.trim_end_matches('/'));
    let mut response = ureq::get(&url).call().map_err(|e| {
        anyhow::anyhow!("--results {url}: {e}; is `slipway run --listen` running there?")
    })?;
    let text = response.body_mut().read_to_string()?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("--results {url} did not answer with a JSON list: {e}"))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let key = (
                row["namespace"].as_str()?.to_string(),
                row["name"].as_str()?.to_string(),
            );
            let history = serde_json::from_value(row["status"]["history"].clone()).ok()?;
            Some((key, history))
        })
        .collect())
}

/// An alias's moves as its file's history on the base branch tells them, oldest first: each
/// version it named, from the commit that brought it (read back until the alias is not there,
/// or is of another model or alias name).
fn moves_in_git(
    repo: &GitRepo,
    (base_rev, base): (&Revision, &Catalog),
    file: &str,
    key: &ObjectKey,
    model: &str,
    alias: &str,
) -> Vec<AliasMove> {
    let Ok(states) = repo.file_states(base_rev, file, ALIAS_HISTORY_COMMITS) else {
        return Vec::new();
    };
    let mut named: Vec<(chrono::DateTime<chrono::Utc>, String, Option<String>)> = Vec::new();
    for (commit, at, content) in states {
        let then = objects_of(file, content)
            .into_iter()
            .find(|o| o.key == *key)
            .and_then(|o| match o.resource {
                Resource::ModelAlias(a) => Some(a.spec.clone()),
                _ => None,
            });
        let Some(then) = then.filter(|t| t.model == model && t.alias == alias) else {
            break;
        };
        let digest = digest_at(repo, base, &commit, &key.namespace, model, &then.version);
        named.push((at, then.version, digest));
    }
    named.reverse();
    named.dedup_by(|later, earlier| (&later.1, &later.2) == (&earlier.1, &earlier.2));
    named
        .into_iter()
        .map(|(at, to, digest)| AliasMove {
            from: None,
            to,
            artifact_digest: digest,
            by: None,
            at: Some(at),
            revision: None,
            decision: AliasDecision::Allowed,
            message: None,
        })
        .collect()
}

/// The artifact digest version `version` of `model` had at `commit`, read from the file that
/// holds it on the base branch (None: not registered there then).
fn digest_at(
    repo: &GitRepo,
    base: &Catalog,
    commit: &str,
    ns: &str,
    model: &str,
    version: &str,
) -> Option<String> {
    let file = base.version(ns, model, version).and_then(|v| {
        base.get(&ObjectKey {
            kind: slipway_crd::Kind::ModelVersion,
            namespace: ns.to_string(),
            name: v.metadata.name.clone()?,
        })
    })?;
    let path = file.origin.file.to_string();
    objects_of(&path, repo.file_at(commit, &path)?)
        .into_iter()
        .find_map(|o| match &o.resource {
            Resource::ModelVersion(v) if v.spec.model == model && v.spec.version == version => {
                Some(v.spec.artifact.digest.clone())
            }
            _ => None,
        })
}

/// The declared digests (artifacts, datasets) of `catalog`, a registry at `registry` in the
/// repository, that the revision's files (`listing`) do not match. A file the revision does not
/// hold is not verified here (it may be produced later); `slipway run` verifies it before
/// anything uses it.
pub(super) fn verify_digests(
    repo: &GitRepo,
    catalog: &Catalog,
    listing: &crate::decide::files::Listing,
    registry: &str,
) -> anyhow::Result<Vec<Diagnostic>> {
    let mut out = Vec::new();
    for object in catalog.objects() {
        for usage in crate::decide::files::pinned(object, registry) {
            if let Some(content) = repo.content(listing, &usage.path)? {
                out.extend(crate::decide::files::mismatch(object, &usage, &content));
            }
        }
    }
    Ok(out)
}

pub fn run(args: PlanArgs) -> anyhow::Result<i32> {
    let repo = GitRepo::open(&args.repo)?;
    let base_rev = repo.resolve(&args.base)?;
    let head_rev = repo.resolve(&args.head)?;
    let base_files = repo.read(&base_rev, &args.path)?;
    let head_files = repo.read_since(&head_rev, &args.path, &base_files)?;
    let ((base, base_diags), (head, head_diags)) =
        Catalog::from_revisions(&base_files, &head_files);
    // A policy namespace named but without policies would leave every namespace without its
    // own unguarded: refused, not silently allowed.
    if args.policy_namespace != crate::decide::policy::DEFAULT_POLICY_NAMESPACE
        && !base
            .policies
            .policies
            .iter()
            .any(|p| p.namespace == args.policy_namespace)
    {
        anyhow::bail!(
            "--policy-namespace {}: the base revision has no PromotionPolicy in that namespace, so it would decide nothing; name the namespace that holds the default set",
            args.policy_namespace
        );
    }
    let base = base.with_policy_namespace(&args.policy_namespace);

    let (results, result_diags) = read_results(args.results.as_deref(), &head)?;
    let registry = args.path.trim_matches('/').to_string();
    let head_listing = repo.listing(&head_rev)?;
    let digest_errors = verify_digests(&repo, &head, &head_listing, &registry)?;
    // A symbolic link stands for what it points at: a change there is a change of the folder
    // that holds the link.
    let files = plan::Files {
        base: files::followed(&repo.listing(&base_rev)?, &repo.links(&base_rev)?),
        head: files::followed(&head_listing, &repo.links(&head_rev)?),
        registry,
    };
    let reviews = match &args.reviews {
        Some(p) => read_reviews(p)?,
        None => Vec::new(),
    };
    let inputs = PlanInputs {
        base: Rev {
            name: base_rev.name.clone(),
            commit: base_rev.commit.clone(),
        },
        head: Rev {
            name: head_rev.name.clone(),
            commit: head_rev.commit.clone(),
        },
        results,
        signoffs: SignOffs {
            reviews,
            head: Some(head_rev.commit.clone()),
            author: args.author.clone(),
        },
        now: args.now.unwrap_or_else(chrono::Utc::now),
        kubernetes: None,
        served: served_before(&repo, &base_rev, &base, &head),
        histories: histories(&repo, &base_rev, &base, &head, args.results.as_deref())?,
        files: Some(files),
    };
    let mut plan = plan::plan(&base, &head, &inputs);
    // Fail closed: an invalid base could silently drop a policy.
    let mut errors: Vec<Diagnostic> = base_diags
        .into_iter()
        .map(|mut d| {
            d.message = format!("(in base revision {}) {}", base_rev.name, d.message);
            d
        })
        .collect();
    errors.extend(head_diags);
    errors.extend(result_diags);
    errors.extend(digest_errors);
    errors.append(&mut plan.errors);
    plan.errors = errors;

    let rendered = match args.format {
        PlanFormat::Text => render::text(&plan),
        PlanFormat::Markdown => render::markdown(&plan),
        PlanFormat::Json => format!("{}\n", render::json(&plan)),
    };
    print_out(&rendered)?;
    if args.format != PlanFormat::Text {
        for e in &plan.errors {
            eprintln!("error: {e}");
        }
    }
    Ok(plan.exit_code())
}
