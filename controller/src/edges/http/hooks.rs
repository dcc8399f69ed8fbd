//! Push webhooks (`POST /hooks/git`): a forge tells `slipway run` that the repository it
//! follows changed, so that a pass starts at once instead of at the next `--interval`. GitHub's
//! and Gitea's (and Forgejo's) formats: an HMAC-SHA256 of the body under a shared secret —
//! `X-Hub-Signature-256: sha256=HEX`, or `X-Gitea-Signature: HEX` — compared in constant time.
//! A request without a valid signature starts nothing.

use axum::http::HeaderMap;
use hmac::{KeyInit, Mac};

/// What a verified delivery asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A push (the event named `push`): start a pass now — for the pushed `reference` (the
    /// body's `ref`, e.g. `refs/heads/main`), delivery `delivery` (its id, to drop a replay).
    Push {
        /// The ref pushed, when the body says.
        reference: Option<String>,
        /// The delivery's id (`X-GitHub-Delivery`, `X-Gitea-Delivery`), when the forge sends one.
        delivery: Option<String>,
    },
    /// GitHub's `ping` (sent when the webhook is created): nothing to do.
    Ping,
    /// Another event (a pull request, a tag, …): nothing to do.
    Other(String),
}

/// Why a delivery is refused: HTTP status and message.
pub type Refused = (u16, String);

/// Verifies a delivery's signature with `secret` and reads its event. Without a signature, or
/// with one that is not the body's under the secret, it is refused (401).
pub fn verify(headers: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<Hook, Refused> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (signature, event) = match (
        header("x-hub-signature-256"),
        header("x-gitea-signature").or_else(|| header("x-forgejo-signature")),
    ) {
        (Some(github), _) => (
            github.strip_prefix("sha256=").unwrap_or_default(),
            header("x-github-event"),
        ),
        (None, Some(gitea)) => (
            gitea,
            header("x-gitea-event").or_else(|| header("x-forgejo-event")),
        ),
        (None, None) => {
            return Err((
                401,
                "no signature: configure the webhook with the secret of --webhook-secret-file (GitHub: X-Hub-Signature-256; Gitea, Forgejo: X-Gitea-Signature)\n".into(),
            ));
        }
    };
    let Some(signature) = unhex(signature) else {
        return Err((401, "the signature is not hexadecimal\n".into()));
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .map_err(|_| (500, "the webhook secret cannot key an HMAC\n".to_string()))?;
    mac.update(body);
    if mac.verify_slice(&signature).is_err() {
        return Err((
            401,
            "the signature does not match the body under the webhook secret: check that the forge and --webhook-secret-file have the same secret\n".into(),
        ));
    }
    let delivery = header("x-github-delivery")
        .or_else(|| header("x-gitea-delivery"))
        .or_else(|| header("x-forgejo-delivery"))
        .map(str::to_string);
    // The event header is not signed: only one that says `push` is a push (a captured ping
    // or pull-request delivery sent again without it starts nothing).
    Ok(match event.unwrap_or("") {
        "push" => Hook::Push {
            reference: serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|b| b["ref"].as_str().map(str::to_string)),
            delivery,
        },
        "ping" => Hook::Ping,
        "" => Hook::Other("(none named)".to_string()),
        other => Hook::Other(other.to_string()),
    })
}

/// The bytes of a hexadecimal string (None: not one).
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.is_empty() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &[u8], body: &[u8]) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_delivery_signed_with_the_secret_is_read_and_any_other_is_refused() {
        let body = br#"{"ref": "refs/heads/main"}"#;
        let sig = signed(b"s3cret", body);
        let github = headers(&[
            ("x-hub-signature-256", format!("sha256={sig}")),
            ("x-github-event", "push".into()),
        ]);
        let push = Hook::Push {
            reference: Some("refs/heads/main".into()),
            delivery: None,
        };
        assert_eq!(verify(&github, body, b"s3cret"), Ok(push.clone()));
        // Without an event header, a signed delivery is not taken for a push.
        let unnamed = headers(&[("x-hub-signature-256", format!("sha256={sig}"))]);
        assert!(matches!(
            verify(&unnamed, body, b"s3cret"),
            Ok(Hook::Other(_))
        ));
        let gitea = headers(&[
            ("x-gitea-signature", sig.clone()),
            ("x-gitea-event", "push".into()),
            ("x-gitea-delivery", "d-1".into()),
        ]);
        let Ok(Hook::Push { delivery, .. }) = verify(&gitea, body, b"s3cret") else {
            panic!("a Gitea push")
        };
        assert_eq!(delivery.as_deref(), Some("d-1"));
        let ping = headers(&[
            ("x-hub-signature-256", format!("sha256={sig}")),
            ("x-github-event", "ping".into()),
        ]);
        assert_eq!(verify(&ping, body, b"s3cret"), Ok(Hook::Ping));
        // Another secret, another body, no signature, a signature that is not hex: refused.
        assert_eq!(verify(&github, body, b"other").unwrap_err().0, 401);
        assert_eq!(verify(&github, b"{}", b"s3cret").unwrap_err().0, 401);
        assert!(
            verify(&HeaderMap::new(), body, b"s3cret")
                .unwrap_err()
                .1
                .contains("no signature")
        );
        let bad = headers(&[("x-gitea-signature", "zz".into())]);
        assert_eq!(verify(&bad, body, b"s3cret").unwrap_err().0, 401);
        // A truncated signature is not a prefix match.
        let short = headers(&[("x-gitea-signature", sig[..16].to_string())]);
        assert_eq!(verify(&short, body, b"s3cret").unwrap_err().0, 401);
    }
}
