//! Who is who when a plan decides at admission.

/// Who is who in Kubernetes mode (the admission webhook): the requesting user's groups from
/// `request.userInfo`, and each approver's groups as stamped on their `Approval`.
#[derive(Clone, Debug, Default)]
pub struct KubeIdentity {
    /// The requesting user's groups.
    pub groups: Vec<String>,
    /// Approver → groups.
    pub approvers: std::collections::BTreeMap<String, Vec<String>>,
}

impl KubeIdentity {
    /// The people known to be in group `g`: Kubernetes has no list of a group's members, so they
    /// are the approvers whose stamped groups include it, and the requester (if known).
    pub fn members(&self, g: &str, requester: Option<&str>) -> Vec<String> {
        let mut who: Vec<String> = self
            .approvers
            .iter()
            .filter(|(_, groups)| groups.iter().any(|x| x == g))
            .map(|(u, _)| u.clone())
            .collect();
        if let Some(user) = requester
            && self.groups.iter().any(|x| x == g)
        {
            who.push(user.to_string());
        }
        who
    }
}
