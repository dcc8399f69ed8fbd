//! Reading a namespace's Slipway objects from the API server for admission decisions.

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::Value;
use slipway_crd::{
    Approval, Evaluation, ModelAlias, ModelDeployment, ModelVersion, PromotionPolicy,
    RegisteredModel,
};

use crate::decide::admission::Cluster;

/// Lists objects for decisions.
#[derive(Clone)]
pub struct ClusterReader {
    client: Client,
}

fn resource<K: kube::Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

impl ClusterReader {
    /// A reader with this client.
    pub fn new(client: Client) -> Self {
        ClusterReader { client }
    }

    async fn list(&self, ns: &str, ar: &ApiResource) -> Result<Vec<Value>, kube::Error> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, ar);
        let list = api.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .map(|mut o| {
                o.types = Some(kube::api::TypeMeta {
                    api_version: ar.api_version.clone(),
                    kind: ar.kind.clone(),
                });
                serde_json::to_value(o).unwrap_or_default()
            })
            .collect())
    }

    /// The namespace's models, versions, aliases, evaluations, deployments, policies and approvals.
    pub async fn read(&self, ns: &str) -> Result<Cluster, kube::Error> {
        let kinds = [
            resource::<RegisteredModel>(),
            resource::<ModelVersion>(),
            resource::<ModelAlias>(),
            resource::<Evaluation>(),
            resource::<ModelDeployment>(),
            resource::<PromotionPolicy>(),
        ];
        let lists = futures::future::try_join_all(kinds.iter().map(|ar| self.list(ns, ar))).await?;
        let approvals = self.list(ns, &resource::<Approval>()).await?;
        Ok(Cluster {
            objects: lists.into_iter().flatten().collect(),
            approvals,
        })
    }
}
