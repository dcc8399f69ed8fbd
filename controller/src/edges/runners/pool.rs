//! Long work off the reconcile pass: a bounded pool of worker threads that runs jobs by key and
//! keeps each one's outcome until the pass that asked for it takes it. A pass submits a job and
//! moves on (to promotions and rollout steps of every other model), and picks the outcome up on a
//! later pass; nothing waits on it. What a job is doing is recorded in the store by the caller
//! before it is submitted, so a restarted process knows which attempts it lost.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

type Job<T> = Box<dyn FnOnce() -> T + Send>;

struct State<T> {
    queue: VecDeque<(String, Job<T>)>,
    running: HashSet<String>,
    done: HashMap<String, T>,
    /// Bumped whenever a job finishes, so a waiting loop wakes.
    finished: u64,
    stopping: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    work: Condvar,
    finished: Condvar,
}

/// A pool of `workers` threads running keyed jobs.
pub struct Pool<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    workers: usize,
}

impl<T: Send + 'static> Pool<T> {
    /// Starts `workers` threads (at least one).
    pub fn new(workers: usize) -> Pool<T> {
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                running: HashSet::new(),
                done: HashMap::new(),
                finished: 0,
                stopping: false,
            }),
            work: Condvar::new(),
            finished: Condvar::new(),
        });
        for _ in 0..workers {
            let shared = shared.clone();
            std::thread::spawn(move || work(&shared));
        }
        Pool { shared, workers }
    }

    /// How many jobs run at once at most.
    pub fn workers(&self) -> usize {
        self.workers
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` under `key` unless a job of that key is queued, running or done and not yet
    /// taken; returns whether it was queued.
    pub fn submit(&self, key: &str, job: impl FnOnce() -> T + Send + 'static) -> bool {
        let mut s = self.lock();
        if s.running.contains(key)
            || s.done.contains_key(key)
            || s.queue.iter().any(|(k, _)| k == key)
        {
            return false;
        }
        s.queue.push_back((key.to_string(), Box::new(job)));
        self.shared.work.notify_one();
        true
    }

    /// Whether a job of `key` is queued or running.
    pub fn busy_with(&self, key: &str) -> bool {
        let s = self.lock();
        s.running.contains(key) || s.queue.iter().any(|(k, _)| k == key)
    }

    /// The outcome of the finished job of `key`, once (it is forgotten by this call).
    pub fn take(&self, key: &str) -> Option<T> {
        self.lock().done.remove(key)
    }

    /// Whether any job is queued or running.
    pub fn busy(&self) -> bool {
        let s = self.lock();
        !s.queue.is_empty() || !s.running.is_empty()
    }

    /// Whether any job is queued, running, or finished and not yet taken.
    pub fn pending(&self) -> bool {
        let s = self.lock();
        !s.queue.is_empty() || !s.running.is_empty() || !s.done.is_empty()
    }

    /// A counter that grows whenever a job finishes.
    pub fn finished(&self) -> u64 {
        self.lock().finished
    }

    /// Waits until a job finishes after `seen` (a value of [`Pool::finished`]) or `timeout`
    /// passes; returns whether one did.
    pub fn wait_finished(&self, seen: u64, timeout: std::time::Duration) -> bool {
        let s = self.lock();
        let (s, _) = self
            .shared
            .finished
            .wait_timeout_while(s, timeout, |s| s.finished == seen)
            .unwrap_or_else(|p| p.into_inner());
        s.finished != seen
    }
}

impl<T: Send + 'static> Drop for Pool<T> {
    fn drop(&mut self) {
        self.lock().stopping = true;
        self.shared.work.notify_all();
    }
}

fn work<T: Send + 'static>(shared: &Shared<T>) {
    loop {
        let (key, job) = {
            let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if s.stopping {
                    return;
                }
                if let Some(next) = s.queue.pop_front() {
                    s.running.insert(next.0.clone());
                    break next;
                }
                s = shared.work.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        };
        // A job that panics is a bug; the pool keeps its other workers and forgets the key, so
        // the caller sees the attempt as lost and runs it again.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        s.running.remove(&key);
        if let Ok(value) = outcome {
            s.done.insert(key, value);
        }
        s.finished += 1;
        shared.finished.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn jobs_run_in_the_background_at_most_workers_at_a_time() {
        let pool: Pool<u32> = Pool::new(2);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(rx));
        for k in ["a", "b", "c"] {
            let gate = gate.clone();
            assert!(pool.submit(k, move || {
                let _ = gate.lock().unwrap().recv();
                7
            }));
        }
        // Not queued twice while in flight.
        assert!(!pool.submit("a", || 0));
        assert!(pool.busy_with("c"));
        let seen = pool.finished();
        tx.send(()).unwrap();
        assert!(pool.wait_finished(seen, Duration::from_secs(10)));
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        let mut got = 0;
        for _ in 0..100 {
            got += ["a", "b", "c"]
                .iter()
                .filter_map(|k| pool.take(k))
                .sum::<u32>();
            if got == 21 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(got, 21);
        assert!(!pool.pending());
        assert!(pool.take("a").is_none(), "an outcome is taken once");
    }

    #[test]
    fn a_panicking_job_is_forgotten_and_the_pool_goes_on() {
        let pool: Pool<u32> = Pool::new(1);
        let seen = pool.finished();
        pool.submit("boom", || panic!("a bug"));
        assert!(pool.wait_finished(seen, Duration::from_secs(10)));
        assert!(pool.take("boom").is_none());
        let seen = pool.finished();
        pool.submit("fine", || 1);
        assert!(pool.wait_finished(seen, Duration::from_secs(10)));
        assert_eq!(pool.take("fine"), Some(1));
    }
}
