//! A rollback written back to the source: when a rollout rolled back while the source still
//! asks for the rejected version, the change that moves the alias (or the pinned version) back
//! to the last healthy one — which file, its new text, the branch, the commit message and the
//! pull request. Pure; the home reads the file, pushes the branch and opens the pull request.

use slipway_crd::ModelDeployment;
use slipway_crd::model_deployment::{DeploymentPhase, ModelDeploymentStatus};

use crate::catalog::locate::Positions;
use crate::catalog::{Catalog, Object, Resource, SourceFile};
use crate::diagnostics::{FieldPath, Seg};
use slipway_crd::Kind;

/// A rollback the source does not know of yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Wanted {
    /// The rejected version the source still asks for.
    pub version: String,
    /// The last healthy version, serving again.
    pub back_to: String,
    /// Why the rollout rolled back (the rollback's own words).
    pub why: String,
}

/// How long after a proposal that failed (nothing pushed) it is tried again the first time;
/// each further failure doubles it, up to a day.
pub const RETRY_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// How long after the `attempts`th failure the next attempt is due.
pub fn retry_after(attempts: u32) -> chrono::TimeDelta {
    let doubled = RETRY_AFTER * 2i32.pow(attempts.saturating_sub(1).min(9));
    doubled.min(chrono::TimeDelta::days(1))
}

/// The version the source asks deployment `d` to serve: its alias's `spec.version` as written
/// (not as policy resolved it), or its pinned version.
pub fn asked(catalog: &Catalog, ns: &str, d: &ModelDeployment) -> Option<String> {
    match &holder(catalog, ns, d)?.resource {
        Resource::ModelAlias(a) => Some(a.spec.version.clone()),
        Resource::ModelDeployment(d) => d.spec.version.clone(),
        _ => None,
    }
}

/// Whether a deployment's rollback should be written back: it rolled back, the version the
/// source asks for (`asked`) is the one it rejected, a healthy version serves, and no proposal
/// for that version was made yet (one that failed is tried again after [`retry_after`]).
pub fn wanted(
    status: &ModelDeploymentStatus,
    asked: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Wanted> {
    let version = asked?;
    let proposed = status.proposal.as_ref().is_some_and(|p| {
        p.version == version
            && (p.error.is_none() || p.at.is_none_or(|at| now - at < retry_after(p.attempts)))
    });
    if status.phase != Some(DeploymentPhase::RolledBack)
        || !status.rejected_versions.iter().any(|v| v == version)
        || proposed
    {
        return None;
    }
    let back_to = status.serving_version.clone()?;
    if back_to == version {
        return None;
    }
    let why = status
        .history
        .iter()
        .rev()
        .find(|e| {
            e.event == slipway_crd::model_deployment::RolloutEventKind::RolledBack
                && e.traffic.get(&back_to) == Some(&100)
        })
        .and_then(|e| e.message.as_deref())
        // History messages begin with the version they are about.
        .map(|m| {
            m.strip_prefix(&format!("{version}: "))
                .unwrap_or(m)
                .to_string()
        })
        .unwrap_or_else(|| format!("version {version} was rolled back"));
    Some(Wanted {
        version: version.to_string(),
        back_to,
        why,
    })
}

/// The change to propose.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    /// The file, as the catalog names it (relative to the repository or folder).
    pub file: String,
    /// Its new content.
    pub content: String,
    /// The object whose field changes, e.g. `ModelAlias default/pitch-frames-production`.
    pub object: String,
    /// The branch to push, `slipway/rollback/NAMESPACE/DEPLOYMENT/VERSION` (ref-safe).
    pub branch: String,
    /// The commit message (its first line is the pull request's title).
    pub message: String,
}

impl Proposal {
    /// The pull request's title: the message's first line.
    pub fn title(&self) -> &str {
        self.message.lines().next().unwrap_or_default()
    }

    /// The pull request's body: the message after its first line.
    pub fn body(&self) -> String {
        self.message
            .split_once("\n\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }
}

/// The object that says which version the deployment serves: its alias's `ModelAlias`, or the
/// deployment itself when it pins a version.
/// Looked up in the catalog's indexes: this runs for every deployment on every pass.
fn holder<'a>(catalog: &'a Catalog, ns: &str, d: &ModelDeployment) -> Option<&'a Object> {
    match &d.spec.alias {
        Some(alias) => catalog.alias_object(ns, &d.spec.model, alias),
        None => catalog.get(&crate::catalog::ObjectKey {
            kind: Kind::ModelDeployment,
            namespace: ns.to_string(),
            name: d.metadata.name.clone()?,
        }),
    }
}

/// Whether `o` is what deployment `d` (named `name`) is served by: its alias's object, or the
/// deployment itself when it pins a version.
fn holds(o: &Object, d: &ModelDeployment, name: &str) -> bool {
    match (&o.resource, &d.spec.alias) {
        (Resource::ModelAlias(a), Some(alias)) => {
            a.spec.model == d.spec.model && a.spec.alias == *alias
        }
        (Resource::ModelDeployment(_), None) => o.key.name == name,
        _ => false,
    }
}

/// The proposal that moves deployment `d` (namespace `ns`) back, its alias (or itself) read in
/// namespace `source_ns` of `catalog` (in git mode the same; a cluster's file may leave the
/// namespace to the tool that applies it, see [`namespace_in`]): `read` gives the text of a
/// registry file (the one the alias, or pinned deployment, is written in); `report` is where
/// people read the rollout.
/// Refuses (with why) a file it cannot edit so that only that field changes — the new text is
/// read back, and every object in it must be what it was but for the one version.
pub fn propose(
    catalog: &Catalog,
    (ns, source_ns): (&str, &str),
    d: &ModelDeployment,
    wanted: &Wanted,
    read: &dyn Fn(&str) -> Option<String>,
    report: Option<&str>,
) -> Result<Proposal, String> {
    let object = holder(catalog, source_ns, d).ok_or_else(|| match &d.spec.alias {
        Some(a) => format!(
            "no ModelAlias {} of model {} in the registry",
            a, d.spec.model
        ),
        None => "the deployment is not in the registry".to_string(),
    })?;
    let field = FieldPath(vec![Seg::Key("spec".into()), Seg::Key("version".into())]);
    let (line, column) = Positions::of(&object.origin.text)
        .value_of(&field)
        .ok_or_else(|| format!("{} has no spec.version to move", object.key))?;
    let line = object.origin.first_line + line - 1;
    let file = read(&object.origin.file)
        .ok_or_else(|| format!("cannot read {} from the source", object.origin.file))?;
    let file = file.as_str();
    let content =
        replace_scalar(file, line, column, &wanted.version, &wanted.back_to).ok_or_else(|| {
            format!(
                "{}:{line}: spec.version of {} is not written as a plain or quoted {}",
                object.origin.file, object.key, wanted.version
            )
        })?;
    same_but_version(&object.origin.file, file, &content, object, &wanted.back_to)?;
    let deployment = d.metadata.name.clone().unwrap_or_default();
    let what = match &d.spec.alias {
        Some(a) => format!("{} {a}", d.spec.model),
        None => format!("{deployment}'s pinned version"),
    };
    let mut message = format!(
        "Roll {what} back to {} ({deployment} rejected {})\n\n",
        wanted.back_to, wanted.version
    );
    message.push_str(&format!(
        "Slipway rolled ModelDeployment {ns}/{deployment} back: {}\n\n",
        wanted.why
    ));
    message.push_str(&format!(
        "This moves spec.version of {} ({}:{line}) from {} to {}, so the source says what serves. \
         Until it merges, version {} stays rejected and is not rolled out again.\n",
        object.key, object.origin.file, wanted.version, wanted.back_to, wanted.version
    ));
    if let Some(r) = report {
        message.push_str(&format!("\nReport: {r}\n"));
    }
    Ok(Proposal {
        file: object.origin.file.to_string(),
        content,
        object: object.key.to_string(),
        branch: format!(
            "slipway/rollback/{}/{}/{}",
            ref_safe(ns),
            ref_safe(&deployment),
            ref_safe(&wanted.version)
        ),
        message,
    })
}

/// The namespace a source file holds deployment `d`'s alias (or the pinned deployment `name`)
/// in, for a deployment of namespace `ns` — where a cluster's GitOps tool sets the namespace at
/// apply time, the file says none and it reads as `default`; a document that names another
/// namespace is another team's object, never this one — when exactly one object is it.
pub fn namespace_in(file: &Catalog, ns: &str, d: &ModelDeployment, name: &str) -> Option<String> {
    let found: Vec<&Object> = file
        .objects()
        .iter()
        .map(|o| &**o)
        .filter(|o| {
            o.resource
                .meta()
                .namespace
                .as_deref()
                .is_none_or(|n| n == ns)
        })
        .filter(|o| holds(o, d, name))
        .collect();
    match found[..] {
        [one] => Some(one.key.namespace.clone()),
        _ => None,
    }
}

/// A catalog of one source file (path relative to the repository), for a cluster's write-back.
pub fn file_catalog(path: &str, text: &str) -> Catalog {
    one_file(path, text).0
}

/// A catalog of one file's text, and how many problems reading it found.
fn one_file(path: &str, text: &str) -> (Catalog, usize) {
    let (catalog, diags) = Catalog::from_files(&[SourceFile {
        path: path.to_string(),
        content: text.as_bytes().to_vec(),
        id: None,
        from_api_server: false,
    }]);
    (catalog, diags.len())
}

/// What the home did with a proposal: the branch it pushed (its commit) and the pull request
/// it opened, or why it could not.
#[derive(Clone, Debug, PartialEq)]
pub enum Done {
    /// The branch is pushed; the pull request's address, or why it is not open (no token
    /// configured: None and None).
    Pushed {
        /// The commit pushed.
        commit: String,
        /// The pull request.
        pull_request: Option<String>,
        /// Why the pull request could not be opened.
        refused: Option<String>,
    },
    /// Nothing was pushed.
    Failed(String),
}

/// The deployment's status once a proposal was carried out (or failed) — `previous` with the
/// proposal recorded and, when it is news, a history event — and that event, for the home's
/// history and notification: `RollbackProposed`, or the warning `RollbackProposalFailed` (said
/// for the first failure only; tried again after [`retry_after`] the attempts, and a failure
/// after that only updates the proposal's error and attempts, so a push that keeps failing
/// never floods the history or the channels).
pub fn recorded(
    previous: &ModelDeploymentStatus,
    wanted: &Wanted,
    proposal: Result<&Proposal, &str>,
    done: &Done,
    now: chrono::DateTime<chrono::Utc>,
) -> (ModelDeploymentStatus, Option<(super::EventKind, String)>) {
    let attempts = previous
        .proposal
        .as_ref()
        .filter(|p| p.version == wanted.version && p.error.is_some())
        .map_or(0, |p| p.attempts)
        + 1;
    let mut record = slipway_crd::model_deployment::RollbackProposal {
        version: wanted.version.clone(),
        back_to: wanted.back_to.clone(),
        at: Some(now),
        attempts,
        ..Default::default()
    };
    // One type for either failure (the proposal's, or the push's).
    let proposal = proposal.map_err(str::to_string);
    let (kind, message) = match (&proposal, done) {
        (
            Ok(p),
            Done::Pushed {
                commit,
                pull_request,
                refused,
            },
        ) => {
            record.branch = Some(p.branch.clone());
            record.commit = Some(commit.clone());
            record.pull_request = pull_request.clone();
            let short = commit.get(..12).unwrap_or(commit);
            let mut m = format!(
                "the rollback is written back: branch {} ({short}) moves spec.version of {} from {} to {}",
                p.branch, p.object, wanted.version, wanted.back_to
            );
            match (pull_request, refused) {
                (Some(url), _) => m.push_str(&format!("; pull request {url}")),
                (None, Some(why)) => {
                    m.push_str(&format!("; the pull request could not be opened: {why}"))
                }
                (None, None) => {
                    m.push_str("; open a pull request from it to undo the version in the source")
                }
            }
            (super::EventKind::RollbackProposed, m)
        }
        (Err(why), _) | (Ok(_), Done::Failed(why)) => {
            record.error = Some(why.to_string());
            (
                super::EventKind::RollbackProposalFailed,
                format!(
                    "the rollback could not be written back to the source ({why}); the source still asks for {}, which stays rejected; tried again in {} minutes, then less and less often",
                    wanted.version,
                    retry_after(attempts).num_minutes()
                ),
            )
        }
    };
    let mut status = previous.clone();
    status.proposal = Some(record);
    if kind == super::EventKind::RollbackProposalFailed && attempts > 1 {
        return (status, None);
    }
    super::record(
        &mut status.history,
        &previous.traffic,
        [(&kind, wanted.version.as_str(), message.as_str())],
        now,
    );
    (status, Some((kind, message)))
}

/// A branch name component: letters, digits, `.`, `_` and `-`, others as `-`, never starting
/// with `.` or `-` or holding `..` (git's rules for a ref).
fn ref_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("..") {
        out = out.replace("..", ".");
    }
    let mut out = out.trim_start_matches(['.', '-']).trim_end_matches('.');
    while let Some(rest) = out.strip_suffix(".lock") {
        out = rest.trim_end_matches('.');
    }
    if out.is_empty() {
        "x".into()
    } else {
        out.to_string()
    }
}

/// `text` with the scalar that starts at (1-based) `line`, `column` — `old`, plain or quoted —
/// written as the double-quoted `new`; None when it is not `old` there.
fn replace_scalar(text: &str, line: usize, column: usize, old: &str, new: &str) -> Option<String> {
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    let at = lines.get(line.checked_sub(1)?)?;
    let start = at.char_indices().nth(column.checked_sub(1)?)?.0;
    let rest = &at[start..];
    let written = [format!("\"{old}\""), format!("'{old}'"), old.to_string()]
        .into_iter()
        .find(|w| {
            rest.starts_with(w.as_str()) && {
                // A plain scalar ends where the value ends (a comment, a flow separator, the line).
                let after = &rest[w.len()..];
                w.starts_with(['"', '\''])
                    || after.is_empty()
                    || after.starts_with([',', '}', ']', '\n', '\r'])
                    || after.starts_with(" #")
                    || after.trim().is_empty()
                    || after.trim_start().starts_with(['#', ',', '}', ']'])
            }
        })?;
    let quoted = serde_json::to_string(new).ok()?;
    let edited = format!("{}{quoted}{}", &at[..start], &rest[written.len()..]);
    let idx = line - 1;
    let mut out = String::with_capacity(text.len() + quoted.len());
    for (i, l) in lines.drain(..).enumerate() {
        if i == idx {
            out.push_str(&edited);
        } else {
            out.push_str(l);
        }
    }
    Some(out)
}

/// Reads both texts of the file back: the same objects, identical but for the holder's
/// `spec.version`, which is now `back_to`.
fn same_but_version(
    path: &str,
    before: &str,
    after: &str,
    holder: &Object,
    back_to: &str,
) -> Result<(), String> {
    let read = |text: &str| {
        let (catalog, problems) = one_file(path, text);
        let objects: Vec<(String, Resource)> = catalog
            .objects()
            .iter()
            .map(|o| (o.key.to_string(), o.resource.clone()))
            .collect();
        (objects, problems)
    };
    let (mut old, old_problems) = read(before);
    let (new, new_problems) = read(after);
    for (key, r) in &mut old {
        if *key == holder.key.to_string() {
            match r {
                Resource::ModelAlias(a) => {
                    std::sync::Arc::make_mut(a).spec.version = back_to.to_string()
                }
                Resource::ModelDeployment(d) => {
                    std::sync::Arc::make_mut(d).spec.version = Some(back_to.to_string())
                }
                _ => {}
            }
        }
    }
    if old != new || new_problems > old_problems {
        return Err(format!(
            "{path}: moving spec.version of {} would change more than that field; edit it by hand",
            holder.key
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
