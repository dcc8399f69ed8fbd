//! What a controller's setup keeps from working, said at start (a warning in the log) and in
//! `/readyz`.

/// What this controller's flags keep from working, said at start and in `/readyz`.
pub fn warnings(
    webhook: bool,
    bounds: &crate::decide::bounds::Bounds,
    results_url: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if !webhook {
        out.push(
            "no --webhook-listen: nothing is checked at admission — policy, approvals and the bounds are applied only when the controller acts (an alias move admitted without its approvals is held)"
                .to_string(),
        );
    }
    out.extend(bounds.setup_warnings());
    let host = crate::decide::bounds::origin(results_url)
        .map(|(_, host, _)| host)
        .unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if loopback {
        out.push(format!(
            "the results API is at {results_url}, which no pod or outside system can reach: external (webhook) runners post their results there and reports are linked from it; set --results-url to this controller's Service address (the Helm chart does)"
        ));
    }
    out
}
