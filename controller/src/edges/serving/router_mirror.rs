//! Mirroring to shadows: which shadows a request is copied to (a shadow step's candidate, the
//! standing shadows), within the mirroring slots, and what a shadow's answer comes to.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use super::totals::next_random;
use super::{Body, MAX_MIRRORING, MAX_STANDING, Table, lock};
use crate::decide::rollout::shadow;

/// What a mirrored request goes to: the shadow version, its port, how answers are compared,
/// and the generation of the window it counts in (None: a standing shadow, counted in its
/// totals only — its window would judge a step of a rollout it is not part of).
pub(super) type Shadow = (String, u16, shadow::Compare, Option<u64>);

/// A mirroring slot (to a standing shadow: true), given back when dropped (the mirror
/// finished, failed or was cancelled).
pub(super) struct Slot(pub(super) Arc<Mutex<Table>>, pub(super) bool);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = lock(&self.0);
        t.mirroring = t.mirroring.saturating_sub(1);
        if self.1 {
            t.mirroring_standing = t.mirroring_standing.saturating_sub(1);
        }
    }
}

/// The shadows this request, answered by `served_by`, is mirrored to: each one whose share it
/// falls in (smooth: at 25%, every fourth), a shadow step's candidate and the standing shadows
/// alike; each is counted as mirroring (the caller holds its slot in a [`Slot`] at once).
pub(super) fn mirrored_to(t: &mut Table, served_by: &str) -> Vec<Shadow> {
    let mut out = Vec::new();
    let candidate = t.routing.candidate.clone();
    // Standing shadows are compared with the serving version only, not with a candidate's
    // answers.
    let by_candidate = candidate.as_deref() == Some(served_by);
    let shadows: Vec<(String, u32, bool)> = t
        .routing
        .mirrored()
        .filter(|(v, _)| *v != served_by)
        .map(|(v, m)| {
            (
                v.to_string(),
                m,
                t.routing.shadows.iter().any(|(s, _)| s == v),
            )
        })
        .filter(|(_, _, standing)| !(*standing && by_candidate))
        .collect();
    for (v, share, standing) in shadows {
        let Some(port) = t.ports.get(&v).copied() else {
            continue;
        };
        let credit = t.mirror_credit.entry(v.clone()).or_default();
        *credit += share;
        if *credit < 100 {
            continue;
        }
        *credit -= 100;
        let full =
            t.mirroring >= MAX_MIRRORING || (standing && t.mirroring_standing >= MAX_STANDING);
        if full {
            t.totals.entry(v).or_default().skipped += 1;
            continue;
        }
        t.mirroring += 1;
        if standing {
            t.mirroring_standing += 1;
        }
        let generation = (!standing).then_some(t.generation);
        out.push((v, port, t.routing.compare.clone(), generation));
    }
    out
}

/// Sends a mirrored request to the shadow, compares its answer with what the serving version
/// answered (the core's [`shadow::agree`], outside the table's lock) and records it in the
/// shadow's window if the weights did not change meanwhile; the answer is discarded. Waits
/// 10 s at most and reads at most [`shadow::MAX_COMPARED`] bytes of it.
pub(super) async fn mirror(
    slot: Slot,
    client: Client<HttpConnector, Body>,
    request: Request<Body>,
    (shadow, generation): (String, Option<u64>),
    served: (u16, Bytes),
    how: shadow::Compare,
    asked: String,
) {
    let started = Instant::now();
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let resp = client
            .request(request)
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), shadow::MAX_COMPARED)
            .collect()
            .await
            .map_err(|e| format!("its answer could not be read: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    })
    .await
    .unwrap_or_else(|_| Err("no answer within 10 s".to_string()));
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let serving = shadow::Answer {
        status: served.0,
        body: &served.1,
    };
    let verdict = match &result {
        Ok((status, body)) => shadow::agree(
            serving,
            shadow::Answer {
                status: *status,
                body,
            },
            &how,
        ),
        Err(why) => Err(why.clone()),
    };
    let failed = result.as_ref().map_or(true, |(s, _)| *s >= 500);
    let sample = verdict.as_ref().err().map(|why| shadow::Disagreement {
        request: shadow::short(&asked),
        serving: shadow::shown(served.0, &served.1),
        candidate: match &result {
            Ok((status, body)) => shadow::shown(*status, body),
            Err(_) => "no answer".to_string(),
        },
        why: why.clone(),
    });
    let table = slot.0.clone();
    drop(slot);
    let mut t = lock(&table);
    let totals = t.totals.entry(shadow.clone()).or_default();
    totals.mirrored += 1;
    if sample.is_none() {
        totals.agreed += 1;
    }
    if generation != Some(t.generation) {
        return;
    }
    let random = next_random(&mut t.random);
    let w = t.windows.entry(shadow).or_default();
    w.requests += 1;
    w.latency(ms, random);
    if failed {
        w.errors += 1;
    }
    w.compared += 1;
    match sample {
        None => w.agreed += 1,
        Some(d) if w.disagreements.len() < shadow::SAMPLES => w.disagreements.push(d),
        Some(_) => {}
    }
}
