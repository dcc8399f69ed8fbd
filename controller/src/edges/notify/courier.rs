//! Notifications delivered off the reconcile pass: one thread that, woken by a pass with the
//! catalog it reconciled, delivers what the history holds past the notifier's cursor
//! ([`super::deliver_pending`]). A slow or unreachable receiver (ten seconds a try, with
//! retries) then delays no promotion, rollout step or rollback — only later notifications.

use std::sync::{Arc, Condvar, Mutex};

use crate::decide::catalog::Catalog;
use crate::edges::store::Store;

#[derive(Default)]
struct State {
    /// The catalog of the latest pass that asked for delivery.
    catalog: Option<Arc<Catalog>>,
    /// Passes that asked, and how many of those asks a delivery round has covered.
    asked: u64,
    covered: u64,
    /// Errors of the store since the last [`Courier::take`].
    errors: Vec<String>,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// The delivery thread.
pub struct Courier {
    shared: Arc<Shared>,
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Courier {
    /// Starts the thread; `progress` is told each delivery.
    pub fn start(
        store: Arc<Store>,
        notifier: super::Notifier,
        progress: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Courier {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            loop {
                let (catalog, asked) = {
                    let mut st = lock(&s);
                    while st.asked == st.covered && !st.stopping {
                        st = s.changed.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                    if st.stopping && st.asked == st.covered {
                        return;
                    }
                    (st.catalog.clone(), st.asked)
                };
                let outcome = match &catalog {
                    Some(c) => super::deliver_pending(&store, c, &notifier, &*progress),
                    None => Ok(Vec::new()),
                };
                let mut st = lock(&s);
                if let Err(e) = outcome {
                    st.errors.push(e.to_string());
                }
                st.covered = asked;
                s.changed.notify_all();
            }
        });
        Courier { shared }
    }

    /// Asks for a delivery round with this pass's catalog; returns at once.
    pub fn wake(&self, catalog: Arc<Catalog>) {
        let mut st = lock(&self.shared);
        st.catalog = Some(catalog);
        st.asked += 1;
        self.shared.changed.notify_all();
    }

    /// Waits until every round asked for so far has run (`--once`, and before stopping).
    pub fn flush(&self) {
        let mut st = lock(&self.shared);
        while st.covered < st.asked {
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The store errors delivery rounds met since the last call (deliveries themselves are in
    /// the history: `NotificationDelivered` / `NotificationFailed`).
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.shared).errors)
    }
}

impl Drop for Courier {
    /// Tells the thread to stop once idle, without waiting: a stopping process does not wait out
    /// a hanging receiver. What was not delivered is still after the cursor, so the next start
    /// sends it (at least once).
    fn drop(&mut self) {
        lock(&self.shared).stopping = true;
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edges::store::{HistoryEntry, Write};

    /// A round runs off the caller's thread: `wake` returns while the receiver is still being
    /// waited on, `flush` returns once the round is done, and what was delivered is handed over.
    #[test]
    fn delivery_runs_off_the_pass_and_flush_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        // A receiver that answers after 1.5 s.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let mut conn = conn.unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1500));
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut conn, &mut buf);
                let _ = std::io::Write::write_all(
                    &mut conn,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        let yaml = format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: RegisteredModel\nmetadata: {{name: m}}\nspec:\n  notifications:\n    - name: team\n      events: [AliasMoved]\n      webhook: {{url: \"http://127.0.0.1:{port}/hook\"}}\n"
        );
        let catalog = Arc::new(crate::testing::catalog(&yaml));
        store
            .apply(&[Write::History(HistoryEntry {
                id: 0,
                at: chrono::Utc::now(),
                event: "AliasMoved".into(),
                namespace: "default".into(),
                model: "m".into(),
                subject: "ModelAlias/m-production".into(),
                version: Some("8".into()),
                alias: Some("production".into()),
                actor: None,
                revision: None,
                decision: None,
                message: "moved".into(),
                data: serde_json::Value::Null,
            })])
            .unwrap();
        let said = Arc::new(Mutex::new(Vec::<String>::new()));
        let heard = said.clone();
        let courier = Courier::start(
            store.clone(),
            crate::edges::notify::Notifier::default(),
            Arc::new(move |line: &str| heard.lock().unwrap().push(line.to_string())),
        );
        let started = std::time::Instant::now();
        courier.wake(catalog);
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        courier.flush();
        let errors = courier.take();
        assert!(errors.is_empty(), "{errors:?}");
        let delivered = store
            .history(&crate::edges::store::HistoryFilter::default())
            .unwrap()
            .into_iter()
            .filter(|h| h.event == "NotificationDelivered")
            .count();
        assert_eq!(delivered, 1);
        let lines = said.lock().unwrap().clone();
        assert!(
            lines.iter().any(|l| l.contains("AliasMoved sent to team")),
            "{lines:?}"
        );
    }
}
