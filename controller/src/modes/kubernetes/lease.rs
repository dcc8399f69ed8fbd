//! Leader election on a `coordination.k8s.io/v1` Lease: of several controller replicas, only the
//! holder of the lease acts. Holding is renewed every [`RENEW`]; a lease not renewed for
//! [`DURATION`] may be taken over. Every write goes through the API server with the lease's
//! `resourceVersion`, so two replicas can never both succeed in taking it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

/// How long a lease stays valid without renewal.
pub const DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews, and others retry.
pub const RENEW: Duration = Duration::from_secs(2);

/// One replica's view of the lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    /// This replica's identity (pod name, or host and pid).
    pub identity: String,
}

/// Whether a lease held by someone else has expired at `now`.
pub fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = spec
        .lease_duration_seconds
        .map(|s| SignedDuration::from_secs(s.into()))
        .unwrap_or(SignedDuration::from_secs(DURATION.as_secs() as i64));
    renewed
        .0
        .saturating_add(duration)
        .is_ok_and(|until| until < now)
}

impl Elector {
    /// An elector for lease `name` in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
        }
    }

    /// Takes or renews the lease; `Ok(true)` while this replica holds it.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = DURATION.as_secs() as i32;
        match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                if !mine && !expired(&spec, now) {
                    return Ok(false);
                }
                let mut next = spec.clone();
                if !mine {
                    next.holder_identity = Some(self.identity.clone());
                    next.acquire_time = Some(MicroTime(now));
                    next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                next.renew_time = Some(MicroTime(now));
                next.lease_duration_seconds = Some(seconds);
                lease.spec = Some(next);
                // `replace` carries the resourceVersion we read: a concurrent writer wins, we lose.
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Gives the lease up (on shutdown), so another replica takes over without waiting.
    pub async fn release(&self) {
        // A renewal that was under way may have moved the lease on: read it again and retry.
        for _ in 0..3 {
            let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
                return;
            };
            let Some(spec) = lease.spec.as_mut() else {
                return;
            };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return;
            }
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => {
                    // Not fatal: the lease then expires after its duration instead.
                    tracing::warn!(error = %e, "cannot release the leader lease");
                    return;
                }
            }
        }
        tracing::warn!("cannot release the leader lease: it kept changing; it expires instead");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration_without_renewal() {
        let t0: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let spec = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(t0)),
            ..Default::default()
        };
        assert!(!expired(&spec, t0 + SignedDuration::from_secs(15)));
        assert!(expired(&spec, t0 + SignedDuration::from_secs(16)));
        assert!(expired(&LeaseSpec::default(), t0));
    }
}
