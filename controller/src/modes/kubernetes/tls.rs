//! The webhook's serving certificate: given as PEM files, or generated (self-signed) at start.

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// A certificate and key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct Pem {
    /// The certificate chain (for a self-signed one, also the CA bundle clients must trust).
    pub cert: String,
    /// The private key.
    pub key: String,
}

/// Reads `cert` and `key` files.
pub fn read(cert: &Path, key: &Path) -> anyhow::Result<Pem> {
    let read = |p: &Path, what: &str| {
        std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("cannot read the webhook {what} {}: {e}", p.display()))
    };
    Ok(Pem {
        cert: read(cert, "certificate (--tls-cert)")?,
        key: read(key, "key (--tls-key)")?,
    })
}

/// A self-signed certificate for `names` (DNS names and IP addresses).
pub fn self_signed(names: &[String]) -> anyhow::Result<Pem> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| anyhow::anyhow!("cannot generate the webhook certificate: {e}"))?;
    Ok(Pem {
        cert: certified.cert.pem(),
        key: certified.signing_key.serialize_pem(),
    })
}

/// The annotation of the shared Secret that names the hosts its certificate is for.
const HOSTS_ANNOTATION: &str = "slipway.dev/webhook-hosts";

/// One certificate for every replica: the one in Secret `name` of `ns` if it is there for these
/// `names`, else a new self-signed one this replica writes there. Creating the Secret is the
/// race: a replica that loses it reads the winner's, so all serve the same certificate and the
/// `caBundle` they publish agrees.
pub async fn shared(
    client: &kube::Client,
    ns: &str,
    name: &str,
    names: &[String],
) -> anyhow::Result<Pem> {
    use kube::api::{Api, PostParams};
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let wanted = names.join(",");
    for _ in 0..5 {
        let existing = api.get_opt(name).await.map_err(|e| {
            anyhow::anyhow!("cannot read the webhook certificate Secret {ns}/{name}: {e}")
        })?;
        if let Some(pem) = existing.as_ref().and_then(|s| held_for(s, &wanted)) {
            return Ok(pem);
        }
        let pem = self_signed(names)?;
        let mut secret = tls_secret(name, &wanted, &pem);
        let written = match &existing {
            // For other hosts: replaced (a conflict means another replica did it first).
            Some(old) => {
                secret.metadata.resource_version = old.metadata.resource_version.clone();
                api.replace(name, &PostParams::default(), &secret).await
            }
            None => api.create(&PostParams::default(), &secret).await,
        };
        match written {
            Ok(_) => return Ok(pem),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => anyhow::bail!(
                "cannot write the webhook certificate Secret {ns}/{name}: {e}; the controller \
                 needs get, create and update on it"
            ),
        }
    }
    anyhow::bail!("the webhook certificate Secret {ns}/{name} keeps changing; try again")
}

/// The certificate and key Secret `s` holds, when it holds both for hosts `wanted`.
fn held_for(s: &Secret, wanted: &str) -> Option<Pem> {
    let read = |key: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let hosts = s
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOSTS_ANNOTATION));
    if hosts.map(String::as_str) == Some(wanted)
        && let (Some(cert), Some(key)) = (read("tls.crt"), read("tls.key"))
    {
        return Some(Pem { cert, key });
    }
    None
}

/// The TLS Secret `name` holding `pem` for hosts `wanted`, marked as Slipway's.
fn tls_secret(name: &str, wanted: &str, pem: &Pem) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            annotations: Some([(HOSTS_ANNOTATION.to_string(), wanted.to_string())].into()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "slipway".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                (
                    "tls.crt".to_string(),
                    k8s_openapi::ByteString(pem.cert.clone().into_bytes()),
                ),
                (
                    "tls.key".to_string(),
                    k8s_openapi::ByteString(pem.key.clone().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

/// A rustls server configuration serving `pem`.
pub fn server_config(pem: &Pem) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("the webhook certificate is not PEM: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!("the webhook certificate file holds no certificate");
    }
    let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes())
        .map_err(|e| anyhow::anyhow!("the webhook key is not a PEM private key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("the webhook certificate and key do not match: {e}"))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_serves() {
        let pem = self_signed(&["127.0.0.1".into(), "slipway.slipway.svc".into()]).unwrap();
        assert!(pem.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        server_config(&pem).unwrap();
    }

    #[test]
    fn a_mismatched_key_is_refused_with_a_reason() {
        let a = self_signed(&["a.example".into()]).unwrap();
        let b = self_signed(&["b.example".into()]).unwrap();
        let err = server_config(&Pem {
            cert: a.cert,
            key: b.key,
        })
        .unwrap_err();
        assert!(err.to_string().contains("do not match"), "{err}");
    }
}
