//! The Jobs of `Evaluation`s with the `kubernetes` runner: one per run of an attempt (see
//! [`crate::decide::evaluation::job`]), created and never taken over; what they came to, read
//! only from a Job this evaluation created and its one pod running what the Job's template
//! says.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::json;
use slipway_crd::{Evaluation, EvaluationStatus};

use super::context::{Context, Error, compact, owner};
use crate::decide::evaluation::results::RunResults;
use crate::decide::evaluation::{job, lifecycle, step};

/// The failure of a Job, if it failed.
fn job_failure(job: &Job) -> Option<String> {
    let s = job.status.as_ref()?;
    let cond = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True");
    match cond {
        Some(c) => Some(format!(
            "{} ({})",
            c.reason.clone().unwrap_or_else(|| "Failed".into()),
            c.message.clone().unwrap_or_default()
        )),
        None if s.failed.unwrap_or(0) > 0 => Some("its pod failed".into()),
        None => None,
    }
}

/// A Job's failure with what its pod says of it (`pod …: terminated, Error (…), exit code 2`,
/// `OOMKilled`, an image that cannot be pulled), when the pod is still there.
async fn with_pod_cause(ctx: &Context, ns: &str, job: &Job, why: String) -> String {
    let Ok(claimed) = claimed_pods(ctx, ns, job).await else {
        return why;
    };
    match claimed.iter().find_map(super::workloads::trouble_of) {
        Some(c) => format!("{why}; {c}"),
        None => why,
    }
}

/// The pods that name Job `job` their controller (by its uid). Owner references are not checked
/// by the API server: a pod anyone made may be among them.
async fn claimed_pods(ctx: &Context, ns: &str, job: &Job) -> Result<Vec<Pod>, kube::Error> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let listed = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await?;
    Ok(listed
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == uid && o.kind == "Job")
        })
        .collect())
}

/// Whether a Job completed.
fn job_complete(job: &Job) -> bool {
    job.status.as_ref().is_some_and(|s| {
        s.succeeded.unwrap_or(0) > 0
            || s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Complete" && c.status == "True")
    })
}

/// The results a completed Job's pod left in its termination message (`$SLIPWAY_RESULTS`).
/// Only a pod the Job controls counts, and only its `evaluate` container's exit 0.
async fn job_results(ctx: &Context, ns: &str, job: &Job) -> Result<job::RunSeen, Error> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let claimed = claimed_pods(ctx, ns, job).await?;
    // A pod anyone made may claim the Job. The Job's one pod (no retries) counts, and only if
    // it runs what the Job's template says.
    let pod = match claimed.as_slice() {
        [pod] => pod,
        [] => {
            return Ok(job::RunSeen::Failed(format!(
                "Job {name} completed, but its pod is gone: its results could not be read"
            )));
        }
        more => {
            return Ok(job::RunSeen::Failed(format!(
                "{} pods claim Job {name}, which runs one: its results are not trusted (someone \
                 made a pod that names the Job its controller)",
                more.len()
            )));
        }
    };
    if !runs_the_template(pod, job) {
        return Ok(job::RunSeen::Failed(format!(
            "the pod of Job {name} does not run what the Job's template says (image, command, \
             environment, volumes or service account differ): its results are not trusted"
        )));
    }
    let terminated = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter(|c| c.name == CONTAINER)
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .find(|t| t.exit_code == 0);
    Ok(match terminated {
        Some(t) => {
            let message = t.message.as_deref().unwrap_or("");
            match job::from_termination_message(message) {
                Ok(r) => job::RunSeen::Done(r),
                // No results at all: retried, as git mode retries a run that wrote none.
                Err(why) if message.trim().is_empty() => {
                    job::RunSeen::Failed(format!("Job {name}: {why}"))
                }
                Err(why) => job::RunSeen::Invalid(format!("Job {name}: {why}")),
            }
        }
        None => job::RunSeen::Failed(format!(
            "Job {name} completed, but its pod is gone: its results could not be read"
        )),
    })
}

/// Whether a pod runs what its Job's template says: the same containers (image, command,
/// arguments, environment), no init containers or volumes beyond the template's, the same
/// service account.
fn runs_the_template(pod: &Pod, job: &Job) -> bool {
    let template = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    same_pod(pod.spec.as_ref(), template)
}

/// Whether two Jobs' templates run the same thing (see [`runs_the_template`]).
fn same_template(a: &Job, b: &Job) -> bool {
    fn template(j: &Job) -> Option<&k8s_openapi::api::core::v1::PodSpec> {
        j.spec.as_ref().and_then(|s| s.template.spec.as_ref())
    }
    same_pod(template(a), template(b))
}

fn same_pod(
    spec: Option<&k8s_openapi::api::core::v1::PodSpec>,
    template: Option<&k8s_openapi::api::core::v1::PodSpec>,
) -> bool {
    let (Some(spec), Some(template)) = (spec, template) else {
        return false;
    };
    let same = |a: &k8s_openapi::api::core::v1::Container,
                b: &k8s_openapi::api::core::v1::Container| {
        a.name == b.name
            && a.image == b.image
            && a.command == b.command
            && a.args == b.args
            && a.env == b.env
            && a.env_from == b.env_from
            && a.volume_mounts == b.volume_mounts
    };
    spec.containers.len() == template.containers.len()
        && spec
            .containers
            .iter()
            .zip(&template.containers)
            .all(|(a, b)| same(a, b))
        && spec.init_containers.as_ref().is_none_or(Vec::is_empty)
            == template.init_containers.as_ref().is_none_or(Vec::is_empty)
        && spec.volumes.as_ref().is_none_or(Vec::is_empty)
            == template.volumes.as_ref().is_none_or(Vec::is_empty)
        && spec.service_account_name == template.service_account_name
}

/// The runs attempt `n` is made of: the candidate's, and the baseline's when there is one.
pub(super) fn runs(ctx: &Context, e: &Evaluation, a: &lifecycle::Attempt) -> Vec<job::Run> {
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let artifact = |v: &str| {
        ctx.cache
            .artifact(&ns, &e.spec.model, v)
            .unwrap_or_default()
    };
    let run = |role, version: &str, key: &str| {
        let (uri, digest) = artifact(version);
        job::Run {
            role,
            version: version.to_string(),
            uri,
            digest,
            key: key.to_string(),
        }
    };
    let baseline = match (&a.baseline_version, &a.baseline_key) {
        (Some(v), Some(k)) => Some(run(job::Role::Baseline, v, k)),
        _ => None,
    };
    job::runs(run(job::Role::Candidate, &e.spec.version, &a.key), baseline)
}

/// A finished run with this content address elsewhere in the namespace, if any, and the
/// evaluation that ran it.
pub(super) fn stored_run(ctx: &Context, e: &Evaluation, key: &str) -> Option<(RunResults, String)> {
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let view = ctx.cache.view(&ns);
    let own = e.name_any();
    let finished = view
        .results
        .all()
        .filter(|x| x.metadata.name.as_deref() != Some(own.as_str()))
        .filter_map(|x| Some((x.metadata.name.as_deref()?, x.status.as_ref()?)));
    lifecycle::reusable(key, finished)
}

/// What the attempt the status records as in flight looks like: its Jobs' outcomes (`kubernetes`
/// runner; a run without a Job was already finished elsewhere); an external system (`webhook`
/// runner) is busy until it posts its results.
pub(super) async fn seen(
    ctx: &Context,
    e: &Evaluation,
    status: &EvaluationStatus,
) -> Result<step::Seen, Error> {
    if e.spec.runner.kubernetes.is_none() {
        return Ok(step::Seen::Busy);
    }
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let a = lifecycle::Attempt::recorded(status);
    let mut seen = Vec::new();
    for (role, key) in job::roles(&a) {
        // A run finished elsewhere stands as it finished: no Job is looked for (one with the
        // name would be nobody's that Slipway started).
        if let Some((r, _)) = stored_run(ctx, e, key) {
            seen.push((role, job::RunSeen::Done(r)));
            continue;
        }
        let name = job::job_name(&e.name_any(), status.round, status.attempts, role);
        let state = match jobs.get_opt(&name).await? {
            Some(j) if !owned_by(&j, e) => job::RunSeen::Failed(format!(
                "Job {name} is not one this evaluation started; delete it"
            )),
            Some(j) => match job_failure(&j) {
                Some(why) => job::RunSeen::Failed(with_pod_cause(ctx, &ns, &j, why).await),
                None if job_complete(&j) => job_results(ctx, &ns, &j).await?,
                None => job::RunSeen::Busy,
            },
            None => job::RunSeen::Failed(format!("its Job {name} is gone")),
        };
        seen.push((role, state));
    }
    Ok(job::combine(&a, seen))
}

/// Whether a Job is controlled by this evaluation (the uid of this very object).
fn owned_by(j: &Job, e: &Evaluation) -> bool {
    controlled_by(&j.metadata, e)
}

/// Whether an object is controlled by this very evaluation (an owner reference, as controller,
/// to its uid): only such a Job or results-token Secret is the evaluation's own.
pub(super) fn controlled_by(meta: &kube::api::ObjectMeta, e: &Evaluation) -> bool {
    let Some(uid) = e.metadata.uid.as_deref() else {
        return false;
    };
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid && o.kind == "Evaluation")
}

/// The name of an evaluation Job's container (whose termination message holds the results).
const CONTAINER: &str = "evaluate";

/// Creates the Job of one run of attempt `number`: the runner's image and command, with the job
/// contract's environment and `$SLIPWAY_RESULTS` its termination-message file.
pub(super) async fn start_job(
    ctx: &Arc<Context>,
    e: &Evaluation,
    runner: &slipway_crd::common::KubernetesRunner,
    run: &job::Run,
    round: u32,
    number: u32,
    timeout: Duration,
) -> Result<Result<(), String>, Error> {
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let name = e.name_any();
    let job_name = job::job_name(&name, round, number, run.role);
    let mut env: Vec<_> = job::environment(&e.spec.model, &e.spec.suite, &e.spec.dataset, run)
        .into_iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    env.push(json!({"name": job::RESULTS, "value": job::TERMINATION_LOG}));
    let mut container = json!({
        "name": CONTAINER, "image": runner.image, "env": env,
        "terminationMessagePath": job::TERMINATION_LOG, "terminationMessagePolicy": "File",
    });
    if !runner.command.is_empty() {
        container["command"] = json!(runner.command);
    }
    if !runner.args.is_empty() {
        container["args"] = json!(runner.args);
    }
    // Limited to the operator's bounds where no limit is written.
    let resources = ctx.bounds.limited(runner.resources.as_ref());
    if resources != Default::default() {
        container["resources"] = serde_json::to_value(resources)?;
    }
    let labels = json!({"slipway.dev/evaluation": name, "slipway.dev/role": run.role.as_str()});
    let object = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name, "ownerReferences": owner(e), "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": timeout.as_secs().max(1),
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": runner.service_account_name,
                    "containers": [container],
                }
            }
        }
    });
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    // Created, never taken over: a Job of that name already there counts only if it is this
    // evaluation's and runs exactly this (a reconcile that ran again before the watch showed
    // its own Job); any other fails the attempt, saying so.
    let job: Job = serde_json::from_value(compact(object))?;
    match jobs.create(&kube::api::PostParams::default(), &job).await {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(s)) if s.code == 409 => match jobs.get_opt(&job_name).await? {
            Some(there) if owned_by(&there, e) && same_template(&there, &job) => Ok(Ok(())),
            _ => Ok(Err(format!(
                "a Job named {job_name} already exists, and Slipway does not run an evaluation \
                 in a Job it did not create; delete it"
            ))),
        },
        Err(e) => Err(e.into()),
    }
}
