//! The operator's bounds from `slipway controller`'s flags (the chart's values).

use super::controller::ControllerArgs;

impl ControllerArgs {
    /// The operator's bounds from the flags.
    pub fn bounds(&self) -> anyhow::Result<crate::decide::bounds::Bounds> {
        let quantity = |flag: &str, q: &Option<String>| -> anyhow::Result<Option<f64>> {
            q.as_deref()
                .map(|q| {
                    crate::decide::bounds::quantity(q).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--{flag} {q:?} is not a quantity (e.g. `4`, `500m`, `16Gi`)"
                        )
                    })
                })
                .transpose()
        };
        let clean = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Ok(crate::decide::bounds::Bounds {
            destinations: clean(&self.allowed_destinations),
            images: clean(&self.allowed_images),
            service_accounts: clean(&self.allowed_service_accounts),
            max_cpu: quantity("max-cpu", &self.max_cpu)?,
            max_memory: quantity("max-memory", &self.max_memory)?,
            endpoint_urls: clean(&self.allowed_endpoint_urls),
            execution_roles: clean(&self.allowed_execution_roles),
            extended_resources: clean(&self.allowed_extended_resources),
            instance_types: clean(&self.allowed_instance_types),
            max_instance_count: self.max_instance_count,
            tolerations: clean(&self.allowed_tolerations),
            max_timeout: Some(
                crate::decide::duration::parse(&self.max_timeout).map_err(|e| {
                    anyhow::anyhow!("--max-timeout {:?}: {e} (e.g. `24h`)", self.max_timeout)
                })?,
            ),
        })
    }
}
