//! Reading a namespace's Slipway objects from the API server, typed, for an admission decision
//! the watches cannot answer (a namespace outside the watched one, or a refusal to be checked
//! against the latest objects).

use std::sync::Arc;

use super::cache::Guarded;
use kube::Client;
use kube::api::{Api, ListParams};
use slipway_crd::{
    Approval, Evaluation, ModelAlias, ModelDeployment, ModelVersion, PromotionPolicy,
    RegisteredModel,
};

use crate::decide::catalog::{Object, Resource, View};

/// Lists objects for decisions.
#[derive(Clone)]
pub struct ClusterReader {
    client: Client,
    policy_namespace: String,
}

impl ClusterReader {
    /// A reader with this client; the policies of `policy_namespace` govern namespaces
    /// without their own.
    pub fn new(client: Client, policy_namespace: &str) -> Self {
        ClusterReader {
            client,
            policy_namespace: policy_namespace.to_string(),
        }
    }

    /// The objects of a kind in `ns` that parse as their type (one that does not is left out, as
    /// the watches leave it out, rather than failing the whole list).
    async fn list<K>(&self, ns: &str) -> Result<Vec<Arc<K>>, kube::Error>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<Guarded<K>> = Api::namespaced(self.client.clone(), ns);
        Ok(api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|o| o.0.ok())
            .collect())
    }

    /// The namespace's models, versions, aliases, evaluations, deployments and policies as a
    /// view, and its approvals.
    pub async fn read(&self, ns: &str) -> Result<(View, Vec<Approval>), kube::Error> {
        fn of<K>(items: Vec<Arc<K>>, to: fn(Arc<K>) -> Resource) -> impl Iterator<Item = Object> {
            items
                .into_iter()
                .filter_map(move |k| Object::from_cluster(to(k)))
        }
        let fallback = async {
            if ns == self.policy_namespace {
                Ok(Vec::new())
            } else {
                self.list::<PromotionPolicy>(&self.policy_namespace).await
            }
        };
        let (models, versions, aliases, evaluations, deployments, policies, approvals, fallback) =
            futures::try_join!(
                self.list::<RegisteredModel>(ns),
                self.list::<ModelVersion>(ns),
                self.list::<ModelAlias>(ns),
                self.list::<Evaluation>(ns),
                self.list::<ModelDeployment>(ns),
                self.list::<PromotionPolicy>(ns),
                self.list::<Approval>(ns),
                fallback,
            )?;
        let objects = of(models, Resource::RegisteredModel)
            .chain(of(versions, Resource::ModelVersion))
            .chain(of(aliases, Resource::ModelAlias))
            .chain(of(evaluations, Resource::Evaluation))
            .chain(of(deployments, Resource::ModelDeployment))
            .chain(of(policies, Resource::PromotionPolicy))
            .chain(of(fallback, Resource::PromotionPolicy))
            .collect();
        let approvals = approvals.into_iter().map(Arc::unwrap_or_clone).collect();
        Ok((View::governed(objects, &self.policy_namespace), approvals))
    }
}
