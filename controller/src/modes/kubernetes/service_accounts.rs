//! Whether the service accounts a setup counts on exist: the ones the operator's bounds name
//! (checked at start, said as a warning and in `/readyz`) and the one an evaluation's Job is to
//! run as (checked before its Job is created: a Job whose service account is missing never gets
//! a pod, and would only time out).

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};

/// Why the evaluation `evaluation` in `ns` cannot run as service account `name`, if it does not
/// exist there. One that cannot be checked (the controller may not read service accounts)
/// counts as there: the Job says the rest.
pub async fn missing_for_job(
    client: &kube::Client,
    ns: &str,
    name: &str,
    evaluation: &str,
) -> Result<Option<String>, kube::Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(_)) => Ok(None),
        Ok(None) => Ok(Some(format!(
            "its runner's service account {name} does not exist in namespace {ns}, so its Job \
             could not start a pod: create it (`kubectl -n {ns} create serviceaccount {name}`), \
             or name an existing one in the suite's runner, then retry the evaluation \
             (`kubectl -n {ns} annotate meval {evaluation} slipway.dev/retry=`)"
        ))),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(None),
        Err(e) => Err(e),
    }
}

/// The warnings for the service accounts `named` (the bounds' exact names) that exist in no
/// namespace the controller watches (`namespace`, else all).
pub async fn missing_at_start(
    client: &kube::Client,
    namespace: Option<&str>,
    named: &[&str],
) -> Vec<String> {
    let api: Api<ServiceAccount> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut out = Vec::new();
    for name in named {
        let lp = ListParams::default()
            .fields(&format!("metadata.name={name}"))
            .limit(1);
        let where_ = match namespace {
            Some(ns) => format!("namespace {ns}"),
            None => "any namespace".to_string(),
        };
        match api.list_metadata(&lp).await {
            Ok(l) if l.items.is_empty() => out.push(format!(
                "--allowed-service-accounts names {name}, which does not exist in {where_}: evaluation Jobs that run as it cannot start a pod; create it (`kubectl create serviceaccount {name}`) where your evaluations run"
            )),
            Ok(_) => {}
            Err(e) => out.push(format!(
                "cannot check that service account {name} (--allowed-service-accounts) exists in {where_}: {e}"
            )),
        }
    }
    out
}
