//! Statuses as one pass reads them: the first read of a kind loads every status of that kind
//! with one query, and the pass's own writes go through, so a pass over 10,000 evaluated
//! versions makes a handful of queries instead of tens of thousands. A pass lives for
//! milliseconds to seconds; the next one starts empty and reads the store again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::Value;
use slipway_crd::evaluation::EvaluationStatus;

use crate::edges::store::{Store, StoreError, Write};

type ByName<T = Value> = HashMap<(String, String), Rc<T>>;

/// The statuses of the kinds read so far in this pass.
#[derive(Default)]
pub struct PassStatuses {
    kinds: RefCell<HashMap<String, ByName>>,
    /// The pass's evaluations as documents, until an evaluation or alias status changes (an
    /// alias decides which baseline an evaluation runs against).
    pub evaluations: RefCell<Option<Rc<Vec<std::sync::Arc<slipway_crd::Evaluation>>>>>,
    /// The evaluations the catalog calls for, against the aliases as resolved now (dropped
    /// with `evaluations` when an alias or evaluation status changes).
    pub tasks: RefCell<Option<Rc<Vec<crate::decide::tasks::Task>>>>,
    /// Every evaluation status, decoded straight from the store on the first read (each is read
    /// by the evaluation step and again for the results); the pass's writes go through.
    decoded: RefCell<Option<ByName<EvaluationStatus>>>,
}

impl PassStatuses {
    /// The status of `kind` `ns`/`name`, loading the kind on its first read.
    pub fn get(
        &self,
        store: &Store,
        kind: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<Rc<Value>>, StoreError> {
        if !self.kinds.borrow().contains_key(kind) {
            let all: ByName = store
                .statuses(kind)?
                .into_iter()
                .map(|(ns, name, status)| ((ns, name), Rc::new(status)))
                .collect();
            self.kinds.borrow_mut().insert(kind.to_string(), all);
        }
        Ok(self
            .kinds
            .borrow()
            .get(kind)
            .and_then(|k| k.get(&(ns.to_string(), name.to_string())))
            .cloned())
    }

    /// The status of evaluation `ns`/`name`, decoded once per pass.
    pub fn evaluation(
        &self,
        store: &Store,
        ns: &str,
        name: &str,
    ) -> Result<Option<Rc<EvaluationStatus>>, StoreError> {
        if self.decoded.borrow().is_none() {
            let all = store
                .statuses_as::<EvaluationStatus>("Evaluation")?
                .into_iter()
                .map(|(ns, name, status)| ((ns, name), Rc::new(status)))
                .collect();
            *self.decoded.borrow_mut() = Some(all);
        }
        Ok(self
            .decoded
            .borrow()
            .as_ref()
            .and_then(|d| d.get(&(ns.to_string(), name.to_string())))
            .cloned())
    }

    /// Takes in writes the store has applied.
    pub fn wrote(&self, writes: &[Write]) {
        if writes.iter().any(|w| {
            matches!(w, Write::Status { kind, .. } if kind == "Evaluation" || kind == "ModelAlias")
        }) {
            self.evaluations.borrow_mut().take();
            self.tasks.borrow_mut().take();
        }
        let mut kinds = self.kinds.borrow_mut();
        for w in writes {
            match w {
                Write::Status {
                    kind,
                    namespace,
                    name,
                    status,
                } => {
                    if kind == "Evaluation"
                        && let Some(decoded) = self.decoded.borrow_mut().as_mut()
                    {
                        let key = (namespace.clone(), name.clone());
                        match EvaluationStatus::deserialize(status) {
                            Ok(s) => decoded.insert(key, Rc::new(s)),
                            Err(_) => decoded.remove(&key),
                        };
                    }
                    if let Some(k) = kinds.get_mut(kind) {
                        k.insert((namespace.clone(), name.clone()), Rc::new(status.clone()));
                    }
                }
                Write::ForgetDeployment { namespace, name } => {
                    if let Some(k) = kinds.get_mut("ModelDeployment") {
                        k.remove(&(namespace.clone(), name.clone()));
                    }
                }
                Write::ForgetStatus {
                    kind,
                    namespace,
                    name,
                } => {
                    if let Some(k) = kinds.get_mut(kind) {
                        k.remove(&(namespace.clone(), name.clone()));
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_read_once_and_the_pass_sees_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let write = |name: &str, v: &str| Write::Status {
            kind: "ModelAlias".into(),
            namespace: "default".into(),
            name: name.into(),
            status: serde_json::json!({"resolvedVersion": v}),
        };
        store.apply(&[write("a", "7")]).unwrap();
        let pass = PassStatuses::default();
        let get = |name: &str| pass.get(&store, "ModelAlias", "default", name).unwrap();
        assert_eq!(get("a").unwrap()["resolvedVersion"], "7");
        // A write this pass makes (store, then cache) is seen; a read of a missing one is None.
        let w = [write("a", "8"), write("b", "1")];
        store.apply(&w).unwrap();
        pass.wrote(&w);
        assert_eq!(get("a").unwrap()["resolvedVersion"], "8");
        assert_eq!(get("b").unwrap()["resolvedVersion"], "1");
        assert!(get("c").is_none());
        // The next pass reads the store again.
        store.apply(&[write("c", "2")]).unwrap();
        let next = PassStatuses::default();
        assert!(
            next.get(&store, "ModelAlias", "default", "c")
                .unwrap()
                .is_some()
        );
    }
}
