//! A mock API server for the reconcilers' unit tests (the pattern of kube-rs's controller-rs):
//! the client's requests arrive at the test, which asserts each one — method, path, query and
//! body — and answers it. Beside these, the suites in `tests/` run the reconcilers against a real
//! kube-apiserver.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::context::Context;

/// The test's end of the client: each request, in the order the reconciler sends it.
pub(super) struct ApiServer(Handle<Request<Body>, Response<Body>>);

/// One request the reconciler sent.
#[derive(Debug)]
pub(super) struct Seen {
    /// `GET`, `PATCH`, …
    pub method: String,
    /// The path and query, e.g. `/apis/slipway.dev/v1alpha1/namespaces/default/approvals/a/status?…`.
    pub uri: String,
    /// The body as JSON (`Null` when empty).
    pub body: Value,
}

impl ApiServer {
    /// The next request, answered with `status` and `reply`; panics when none comes in 5 s.
    pub(super) async fn answer(&mut self, status: u16, reply: Value) -> Seen {
        let next = tokio::time::timeout(Duration::from_secs(5), self.0.next_request()).await;
        let (request, respond) = next
            .expect("no request within 5 s")
            .expect("the client is gone");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("a readable body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap();
        respond.send_response(response);
        Seen {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            body,
        }
    }

    /// Asserts that the reconciler sends nothing more (within a moment).
    pub(super) async fn quiet(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(300), self.0.next_request()).await;
        if let Ok(Some((request, _))) = next {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    }
}

/// A watched object as the watch would hand it to a reconciler, read from its JSON.
pub(super) fn guarded<K: serde::de::DeserializeOwned>(
    object: Value,
) -> Arc<super::cache::Guarded<K>> {
    Arc::new(super::cache::Guarded::typed(
        serde_json::from_value(object).expect("a valid object"),
    ))
}

/// A client whose requests reach the returned [`ApiServer`].
pub(super) fn client() -> (kube::Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), ApiServer(handle))
}

/// A watch cache on an API server of its own that lists nothing and whose watches stay open
/// and empty (the reconcilers under test read no cached object).
fn idle_cache() -> Arc<super::cache::Cache> {
    let (client, mut handle) = {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (kube::Client::new(service, "default"), handle)
    };
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Some((request, respond)) = handle.next_request().await {
            if request
                .uri()
                .query()
                .is_some_and(|q| q.contains("watch=true"))
            {
                open.push(respond);
                continue;
            }
            let empty = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": []});
            respond.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(serde_json::to_vec(&empty).unwrap()))
                    .unwrap(),
            );
        }
    });
    super::cache::Cache::start(
        &client,
        None,
        crate::decide::policy::DEFAULT_POLICY_NAMESPACE,
    )
}

/// A reconcilers' context whose client is the returned mock API server.
pub(super) fn context() -> (Arc<Context>, ApiServer) {
    let (client, server) = client();
    let ctx = Context {
        recorder: Arc::new(super::recorder::Recorder::new(
            client.clone(),
            super::context::MANAGER,
            "test",
        )),
        client,
        cache: idle_cache(),
        results_url: "http://127.0.0.1:1".into(),
        bounds: Default::default(),
        metrics: Default::default(),
        moves_seen: Default::default(),
        announced: Default::default(),
        write_back: None,
        sagemaker: None,
        failures: Default::default(),
        waiting: Default::default(),
    };
    (Arc::new(ctx), server)
}
