//! Every number that shapes the lifecycle, in one place, for both homes (`slipway run` and
//! `slipway controller`): attempts, timeouts, deadlines and how often to look again.

use std::time::Duration;

/// Attempts of one evaluation (crash, refused dispatch, timeout) before it fails for good.
pub const EVALUATION_ATTEMPTS: u32 = 3;

/// How long one evaluation attempt may take when its suite sets no `timeout`.
pub const EVALUATION_TIMEOUT: Duration = Duration::from_secs(3600);

/// While an evaluation runs elsewhere (a Job, an external system), how often to look at it at most.
pub const EVALUATION_POLL: Duration = Duration::from_secs(30);

/// How long a new version may take to become healthy on a local process or a Kubernetes
/// Deployment before its rollout counts as failed.
pub const PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

/// Requests a candidate must answer in a rollout step before the step can pass, when its
/// analysis judges an error ratio or a latency and sets no `minRequests` of its own.
pub const MIN_REQUESTS: u64 = 20;

/// The same on a SageMaker endpoint: endpoint updates take minutes on AWS.
pub const SAGEMAKER_PROGRESS_DEADLINE: Duration = Duration::from_secs(1800);

/// How often a rollout looks again while it waits for a local process (cheap to ask).
pub const LOCAL_POLL: Duration = Duration::from_millis(500);

/// After a restart of `slipway run`: how long it waits at most for the servers it brings back to
/// pass their health checks before routing to them.
pub const RESUME_WAIT: Duration = Duration::from_secs(10);

/// How often a rollout looks again while it waits for the cluster or AWS.
pub const REMOTE_POLL: Duration = Duration::from_secs(2);

/// How long a settled object waits before it is looked at again without a change.
pub const RESYNC: Duration = Duration::from_secs(300);

/// When a controller's cache may trail the watch that woke it (a version newer than the
/// namespace's catalog, a status just written): how soon to look again.
pub const CACHE_CATCH_UP: Duration = Duration::from_secs(1);

/// How often a status that depends on others not final yet (a version's evaluations, a model's
/// summary right after a write) is looked at again.
pub const DEPENDENT_POLL: Duration = Duration::from_secs(2);

/// How often a settled model's summary is looked at again (the watch that woke it may have been
/// ahead of the cache); a look with nothing to write is a few map lookups.
pub const MODEL_RESYNC: Duration = Duration::from_secs(10);

/// An alias whose model or version does not exist (yet): when to look again.
pub const ALIAS_UNRESOLVABLE_POLL: Duration = Duration::from_secs(5);

/// An alias waiting for its candidate's evaluations: when to look again (a finished evaluation
/// also wakes it).
pub const ALIAS_WAITING_POLL: Duration = Duration::from_secs(10);

/// An alias move held by policy: when to look again (an approval or a result also wakes it).
pub const ALIAS_HELD_POLL: Duration = Duration::from_secs(60);

/// How often a SageMaker endpoint is looked at when its step names no time (drift is found).
pub const SAGEMAKER_RESYNC: Duration = Duration::from_secs(60);

/// After SageMaker was unavailable (throttled, 5xx, unreachable): when to try again.
pub const SAGEMAKER_RETRY: Duration = Duration::from_secs(30);

/// The first wait after a transient error (API server or network); it doubles per failure in a
/// row of the same object.
pub const ERROR_BACKOFF_FIRST: Duration = Duration::from_secs(1);

/// The longest wait after transient errors.
pub const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How many rollout events a `ModelDeployment`'s status keeps (newest last): room for a
/// rollout's metric measurements beside its steps.
pub const ROLLOUT_HISTORY: usize = 200;

/// Reconciles one Kubernetes-mode controller runs at once. Unbounded, a burst (2,000 new
/// versions) holds every request and response in memory together and queues them at the API
/// server anyway; the API server's own clients work best at about this many in flight.
pub const RECONCILES_IN_FLIGHT: u16 = 16;

/// How long a `RegisteredModel`'s status waits for more changes of its versions and aliases
/// before it is written (its summary changes with every one of them).
pub const MODEL_DEBOUNCE: Duration = Duration::from_millis(500);

/// Servers (the admission webhook, the HTTP server of both homes): how long a client may take
/// to finish the TLS handshake.
pub const TLS_HANDSHAKE: Duration = Duration::from_secs(5);

/// How long a client may take to send a request's headers.
pub const REQUEST_HEADERS: Duration = Duration::from_secs(5);

/// How long one request may take, body and answer included (an admission review is small; the
/// API server gives up after its own `timeoutSeconds`, at most 30 s).
pub const REQUEST: Duration = Duration::from_secs(30);

/// The longest a request through a local router may take, from its body to the version's
/// answer (SageMaker's own limit for an invocation); past it the client gets 504 and the
/// version an error.
pub const ROUTED_REQUEST: Duration = Duration::from_secs(60);

/// The largest request body a local router forwards (413 beyond).
pub const ROUTED_BODY: usize = 32 << 20;

/// Connections a server holds at once; past it a new one is closed at once.
pub const CONNECTIONS: usize = 1024;

/// Connections one client address may hold at once: a slow or hostile client cannot take the
/// connections the API server needs.
pub const CONNECTIONS_PER_PEER: usize = 64;

/// How soon an evaluation whose attempt failed without results starts its next attempt.
pub const EVALUATION_RETRY: Duration = Duration::from_secs(1);

/// How long to wait after the `failures`-th transient error in a row (1-based): doubling from
/// [`ERROR_BACKOFF_FIRST`] up to [`ERROR_BACKOFF_MAX`]. Both homes back off by it (a
/// controller's object in a cluster, a pass in git mode).
pub fn backoff(failures: u32) -> Duration {
    ERROR_BACKOFF_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(ERROR_BACKOFF_MAX)
}

/// After a write conflict (someone else changed the object): look again almost at once.
pub const CONFLICT_RETRY: Duration = Duration::from_millis(500);

/// `text` cut to at most `max` bytes at a character boundary, marked with `…` when cut: what a
/// status, a history entry or a report keeps of words that are not Slipway's.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_a_second_to_five_minutes() {
        let waits: Vec<u64> = [1, 2, 3, 9, 10, 40].map(|n| backoff(n).as_secs()).to_vec();
        assert_eq!(waits, [1, 2, 4, 256, 300, 300]);
        assert_eq!(backoff(0), ERROR_BACKOFF_FIRST);
    }
}
