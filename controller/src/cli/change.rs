//! `slipway change FILE`: what an approval of applying (or deleting) the objects in FILE signs —
//! for any kind but an alias, the `spec.change` digest an admission denial names, and field by
//! field what it stands for, computed by the same code as the webhook; for an alias, the move.

use std::path::PathBuf;

use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::decide::catalog::{Object, ObjectKey, Resource, SourceFile, load_files};
use crate::decide::policy::binding::{ChangeShown, shown};

/// Arguments of `slipway change`.
#[derive(clap::Args, Debug)]
pub struct ChangeArgs {
    /// A YAML manifest with the objects as they would be applied (objects that name no
    /// namespace are in `default`, as Slipway reads them).
    pub file: PathBuf,
    /// Compare with the objects in this file instead of the cluster's (no cluster needed).
    #[arg(long, value_name = "FILE")]
    pub before: Option<PathBuf>,
    /// Show the change that deletes the objects instead.
    #[arg(long)]
    pub delete: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Output formats of `slipway change`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON array, an entry per object.
    Json,
}

/// What approving one object's change signs.
struct Shown {
    key: ObjectKey,
    signs: Signs,
    /// For an object that does not exist before: says so, and where it was looked for.
    new_from: Option<String>,
    /// What the reader should know of the digest.
    note: Option<String>,
}

enum Signs {
    /// Any kind but an alias: `spec.change`.
    Change(ChangeShown),
    /// An alias: the move, named by `spec.version`.
    Move {
        model: String,
        alias: String,
        from: Option<String>,
        to: Option<String>,
    },
}

pub fn run(args: ChangeArgs) -> anyhow::Result<i32> {
    let after = read(&args.file)?;
    let has_uid = |o: &Object| o.resource.meta().uid.is_some();
    let before: Vec<(ObjectKey, Option<Object>)> = match &args.before {
        // A deletion signs the object as it is (its uid, generation and spec): a manifest
        // saved with `kubectl get -o yaml` has them, else the cluster's copy is read.
        None if args.delete && after.iter().all(has_uid) => after
            .iter()
            .map(|o| (o.key.clone(), Some(o.clone())))
            .collect(),
        Some(path) => {
            let old = read(path)?;
            after
                .iter()
                .map(|o| {
                    let found = old.iter().find(|b| b.key == o.key).cloned();
                    (o.key.clone(), found)
                })
                .collect()
        }
        None => from_cluster(&after)?,
    };
    let mut out = Vec::new();
    for (o, (_, old)) in after.iter().zip(&before) {
        if args.delete {
            match old {
                None => anyhow::bail!("{}: there is no such object to delete", o.key),
                Some(b) if !has_uid(b) => anyhow::bail!(
                    "{}: a deletion is signed for the object as it is (its metadata.uid and generation); give it as the cluster has it (`kubectl get {} {} -o yaml`), or run without --before against the cluster",
                    o.key,
                    o.key.kind.as_str().to_lowercase(),
                    o.key.name
                ),
                Some(_) => {}
            }
        }
        let new = (!args.delete).then_some(o);
        let mut shown = signs(&o.key, old.as_ref(), new);
        if let (Some(b), Signs::Change(_)) = (old, &shown.signs)
            && !has_uid(b)
        {
            shown.note = Some(
                "the --before manifest does not name the object's uid and generation (as `kubectl get -o yaml` saves it): the cluster's spec.change names the generation too, so sign the digest the denial (or this command against the cluster) shows".to_string(),
            );
        }
        if old.is_none() {
            shown.new_from = Some(match &args.before {
                Some(path) => format!("a new object: {} has none of that name", path.display()),
                None => "a new object: the cluster has none of that name".to_string(),
            });
        }
        out.push(shown);
    }
    let text = match args.format {
        Format::Text => out.iter().map(text).collect::<Vec<_>>().join("\n"),
        Format::Json => {
            serde_json::to_string_pretty(&Value::Array(out.iter().map(to_json).collect()))? + "\n"
        }
    };
    super::print_out(&text)?;
    Ok(0)
}

/// The objects of `path`, or every problem that keeps one from loading (file:line).
fn read(path: &std::path::Path) -> anyhow::Result<Vec<Object>> {
    let content =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let file = SourceFile {
        path: path.display().to_string(),
        content,
        id: None,
        from_api_server: false,
    };
    let (objects, diags) = load_files(std::slice::from_ref(&file));
    // Other kinds of a bundle (a ConfigMap beside a deployment) are not Slipway's to sign.
    let (skipped, diags): (Vec<_>, Vec<_>) = diags
        .into_iter()
        .partition(|d| d.category == crate::decide::diagnostics::Category::UnknownKind);
    for d in skipped {
        eprintln!("note: {d}; skipped");
    }
    if let Some((a, b)) = objects.iter().enumerate().find_map(|(i, a)| {
        objects[i + 1..]
            .iter()
            .find(|b| b.key == a.key)
            .map(|b| (a, b))
    }) {
        anyhow::bail!(
            "{} is in {} twice (lines {} and {}): one change per object; split the file",
            a.key,
            path.display(),
            a.origin.first_line,
            b.origin.first_line
        );
    }
    if !diags.is_empty() {
        let said: Vec<String> = diags.iter().map(ToString::to_string).collect();
        anyhow::bail!("{}", said.join("\n"));
    }
    if objects.is_empty() {
        anyhow::bail!("{} holds no Slipway object", path.display());
    }
    Ok(objects)
}

/// Each object's current version in the cluster (kubeconfig or in-cluster), None where it does
/// not exist yet.
fn from_cluster(objects: &[Object]) -> anyhow::Result<Vec<(ObjectKey, Option<Object>)>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach a cluster ({e}); set KUBECONFIG, or compare two files with --before"
            )
        })?;
        let mut out = Vec::new();
        for o in objects {
            let crd = o.key.kind.crd();
            let version = crd.spec.versions[0].name.clone();
            let resource = ApiResource {
                group: crd.spec.group.clone(),
                api_version: format!("{}/{version}", crd.spec.group),
                version,
                kind: o.key.kind.as_str().to_string(),
                plural: crd.spec.names.plural.clone(),
            };
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &o.key.namespace, &resource);
            let current = api
                .get_opt(&o.key.name)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read {} from the cluster: {e}", o.key))?;
            let parsed = match current {
                Some(c) => {
                    let value = serde_json::to_value(&c)?;
                    let object = crate::decide::admission::parse(&value).map_err(|d| {
                        let said: Vec<String> = d.iter().map(ToString::to_string).collect();
                        anyhow::anyhow!(
                            "{} in the cluster does not load: {}",
                            o.key,
                            said.join("; ")
                        )
                    })?;
                    Some(object)
                }
                None => None,
            };
            out.push((o.key.clone(), parsed));
        }
        Ok(out)
    })
}

/// What approving the change of `key` from `old` to `new` (None: deleted) signs.
fn signs(key: &ObjectKey, old: Option<&Object>, new: Option<&Object>) -> Shown {
    let alias = |o: Option<&Object>| match o.map(|o| &o.resource) {
        Some(Resource::ModelAlias(a)) => Some(a.clone()),
        _ => None,
    };
    // A move (a removal of an alias is signed like any deletion).
    if let Some(a) = alias(new) {
        let from = alias(old).and_then(|o| {
            o.status
                .as_ref()
                .and_then(|s| s.resolved_version.clone())
                .or(Some(o.spec.version.clone()))
        });
        return Shown {
            key: key.clone(),
            new_from: None,
            note: None,
            signs: Signs::Move {
                model: a.spec.model.clone(),
                alias: a.spec.alias.clone(),
                from: from.filter(|v| !v.is_empty()),
                to: alias(new).map(|n| n.spec.version.clone()),
            },
        };
    }
    let spec = |o: Option<&Object>| o.map(|o| o.resource.spec_json());
    // The object as it is: which one, at which generation (the cluster's copy has them; a
    // `--before` file has them when saved with `kubectl get -o yaml`).
    let live = old.and_then(|o| {
        let m = o.resource.meta();
        Some(crate::decide::policy::binding::Live {
            uid: m.uid.clone()?,
            generation: m.generation.unwrap_or(0),
        })
    });
    fn retry(o: Option<&Object>) -> Option<&str> {
        o.and_then(|o| crate::decide::policy::binding::retry_of(o.resource.meta()))
    }
    let version = old.and_then(|o| o.resource.meta().resource_version.as_deref());
    Shown {
        key: key.clone(),
        new_from: None,
        note: None,
        signs: Signs::Change(
            shown(spec(old).as_ref(), spec(new).as_ref(), live.as_ref()).with_retry(
                retry(old),
                retry(new),
                version,
            ),
        ),
    }
}

fn text(s: &Shown) -> String {
    let mut out = format!("{}\n", s.key);
    if let Some(new) = &s.new_from {
        out.push_str(&format!("  ({new})\n"));
    }
    if let Some(note) = &s.note {
        out.push_str(&format!("  ({note})\n"));
    }
    match &s.signs {
        Signs::Change(c) => {
            out.push_str(&format!("  spec.change: {}\n", c.digest));
            for line in c.lines(usize::MAX) {
                out.push_str(&format!("    {line}\n"));
            }
        }
        Signs::Move {
            model,
            alias,
            from,
            to,
        } => {
            let from = from.as_deref().unwrap_or("nothing");
            match to {
                Some(to) if to == from => out.push_str(&format!(
                    "  no move: {model}/{alias} stays on {to} (nothing to approve)\n"
                )),
                Some(to) => out.push_str(&format!(
                    "  an alias move, {model}/{alias}: {from} → {to}; an approval names spec.version {to:?} (Slipway stamps the version it moves from and the artifact's digest)\n"
                )),
                None => out.push_str(&format!(
                    "  removing {model}/{alias} (now {from})\n"
                )),
            }
        }
    }
    out
}

fn to_json(s: &Shown) -> Value {
    let mut v = json!({
        "kind": s.key.kind.as_str(), "namespace": s.key.namespace, "name": s.key.name,
        "new": s.new_from.is_some(),
    });
    if let Some(note) = &s.note {
        v["note"] = json!(note);
    }
    match &s.signs {
        Signs::Change(c) => {
            v["change"] = json!(c.digest);
            v["fields"] = c
                .fields
                .iter()
                .map(|f| json!({"path": f.path, "old": f.old, "new": f.new}))
                .collect();
        }
        Signs::Move {
            model,
            alias,
            from,
            to,
        } => {
            v["move"] = json!({"model": model, "alias": alias, "from": from, "to": to});
        }
    }
    v
}
