//! A catalog's promotion policies with their CEL rules compiled once, when the catalog is read
//! (a rule that does not compile is the catalog's error). What they decide is the policy
//! engine's ([`crate::policy`]).

use slipway_crd::promotion_policy::PromotionPolicySpec;

use super::expr::{self, CompiledExpr};

/// A policy with its expressions compiled.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// Policy name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The spec.
    pub spec: PromotionPolicySpec,
    /// One compiled expression per rule, in order.
    pub(crate) rules: Vec<CompiledExpr>,
    /// Its windows, each compiled or why it does not read (validation reports that; a policy
    /// with a window that does not read holds every change it matches).
    pub(crate) windows: Vec<Result<super::windows::Compiled, String>>,
}

impl CompiledPolicy {
    /// Compiles every rule; errors are (rule index, message).
    pub fn compile(
        name: &str,
        namespace: &str,
        spec: &PromotionPolicySpec,
    ) -> Result<Self, Vec<(usize, String)>> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (i, rule) in spec.rules.iter().enumerate() {
            match expr::compile(&rule.expression) {
                Ok(c) => rules.push(c),
                Err(e) => errors.push((i, e)),
            }
        }
        let windows = spec
            .windows
            .iter()
            .map(|w| {
                super::windows::compile(w).map_err(|e| {
                    let why: Vec<String> = e
                        .into_iter()
                        .map(|(f, why)| format!("{f}: {why}"))
                        .collect();
                    format!("window `{}` does not read: {}", w.name, why.join("; "))
                })
            })
            .collect();
        if errors.is_empty() {
            Ok(CompiledPolicy {
                name: name.to_string(),
                namespace: namespace.to_string(),
                spec: spec.clone(),
                rules,
                windows,
            })
        } else {
            Err(errors)
        }
    }
}

/// The policies of a catalog, compiled once.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    /// Policies in name order.
    pub policies: std::sync::Arc<Vec<CompiledPolicy>>,
    /// The namespace whose policies govern a namespace that has none of its own (None:
    /// [`crate::policy::DEFAULT_POLICY_NAMESPACE`]).
    pub fallback: Option<String>,
}
