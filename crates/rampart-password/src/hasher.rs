//! [`AsyncHasher`]: password hashing off the async runtime, with bounded concurrency and queue.
//!
//! # Security
//! - Argon2 is deliberately slow and memory-hungry. Run on the async runtime it would stall every
//!   other request; here it runs on the hasher's own worker threads, at most `max_concurrent` at
//!   a time, so memory use is bounded by `max_concurrent × m_kib`.
//! - The workers run at the lowest CPU priority (on Linux the idle scheduling class, which any
//!   other thread preempts the moment it wakes; elsewhere niceness 19): they use every idle
//!   cycle, but request handling comes first. Where the priority cannot be lowered they run at
//!   the default one.
//! - Priority does not cover the caches: each Argon2 hash streams its whole memory cost through
//!   them, and with every core hashing, other requests run with cold caches (measured: their p99
//!   roughly tripled during a login flood on two cores with two hashes at once, and did not move
//!   with one).
//!
//! # Deployment
//! Size `max_concurrent` to the cores set aside for hashing (the `rampart` server uses half the
//! cores, at least one) and
//! `max_queue` to what you are willing to make callers wait for; export
//! [`AsyncHasher::queue_depth`] as a gauge and [`AsyncHasher::verifications`] as a counter.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rampart_core::SecretString;
use tokio::sync::{oneshot, Semaphore, TryAcquireError};

use crate::error::{PasswordError, Result};
use crate::hash::{self, Argon2Params, Verification};

/// Runs password hashing on low-priority worker threads behind a semaphore. Cheap to clone.
#[derive(Clone)]
pub struct AsyncHasher {
    inner: Arc<Inner>,
}

type Job = Box<dyn FnOnce() + Send>;

struct Inner {
    /// Feeds the worker threads; they end when the last clone of the hasher is dropped.
    jobs: Mutex<mpsc::Sender<Job>>,
    params: Argon2Params,
    dummy_hash: String,
    semaphore: Arc<Semaphore>,
    max_concurrent: usize,
    max_queue: usize,
    waiting: AtomicUsize,
    running: AtomicUsize,
    /// Verifications run to the end, dummy ones included.
    verifications: AtomicU64,
}

impl AsyncHasher {
    /// A hasher with `params` for new hashes, at most `max_concurrent` hashes at a time
    /// (at least 1) and at most `max_queue` callers waiting for a slot.
    pub fn new(params: Argon2Params, max_concurrent: usize, max_queue: usize) -> Self {
        let max_concurrent = max_concurrent.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                jobs: Mutex::new(spawn_workers(max_concurrent)),
                params,
                dummy_hash: hash::dummy_hash(&params),
                semaphore: Arc::new(Semaphore::new(max_concurrent)),
                max_concurrent,
                max_queue,
                waiting: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                verifications: AtomicU64::new(0),
            }),
        }
    }

    /// The parameters used for new hashes and as the `current` parameters when verifying.
    pub fn params(&self) -> Argon2Params {
        self.inner.params
    }

    /// Callers waiting for a slot plus hashes running, for metrics.
    pub fn queue_depth(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed) + self.inner.running.load(Ordering::Relaxed)
    }

    /// Verifications run to the end so far, [`dummy_verify`](Self::dummy_verify) included (so
    /// the count shows that unknown accounts cost a verification too), for metrics.
    pub fn verifications(&self) -> u64 {
        self.inner.verifications.load(Ordering::Relaxed)
    }

    /// Hashes a new password with Argon2id; see [`hash::hash_password`].
    pub async fn hash(&self, password: SecretString) -> Result<String> {
        let params = self.inner.params;
        self.run(move || hash::hash_password(&password, &params)).await
    }

    /// Checks a password against a stored hash; see [`hash::verify_password`].
    pub async fn verify(&self, password: SecretString, stored: String) -> Result<Verification> {
        let inner = Arc::clone(&self.inner);
        self.run(move || {
            let outcome = hash::verify_password(&password, &stored, &inner.params);
            inner.verifications.fetch_add(1, Ordering::Relaxed);
            outcome
        })
        .await
    }

    /// Spends the time of one verify for a user who does not exist; see [`hash::dummy_verify`].
    ///
    /// Returns `Err` only for [`PasswordError::Busy`] or a failed task, exactly when
    /// [`AsyncHasher::verify`] would, so both paths can be handled alike.
    pub async fn dummy_verify(&self, password: SecretString) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        self.run(move || {
            // The outcome is irrelevant; only the time spent matters.
            let _ = hash::verify_password(&password, &inner.dummy_hash, &inner.params);
            inner.verifications.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .await
    }

    /// Waits for a slot (or fails fast when the queue is full), then runs `work` on a worker
    /// thread while holding it.
    async fn run<T, F>(&self, work: F) -> Result<T>
    where
        F: FnOnce() -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let semaphore = Arc::clone(&self.inner.semaphore);
        let permit = match Arc::clone(&semaphore).try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(PasswordError::Busy),
            Err(TryAcquireError::NoPermits) => {
                let _queued = QueueSlot::enter(&self.inner.waiting, self.inner.max_queue)
                    .ok_or(PasswordError::Busy)?;
                // Never closed; treat a closed semaphore like a full one.
                semaphore.acquire_owned().await.map_err(|_| PasswordError::Busy)?
            }
        };
        let running = Running::enter(Arc::clone(&self.inner));
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
            // The slot is free before the caller hears back; if the caller went away meanwhile,
            // it is freed all the same.
            drop(running);
            drop(permit);
            let _ = done.send(outcome);
        });
        let sent = match self.inner.jobs.lock() {
            Ok(jobs) => jobs.send(job).is_ok(),
            Err(_) => false,
        };
        if !sent {
            return Err(PasswordError::Task);
        }
        match result.await {
            Ok(Ok(outcome)) => outcome,
            // The work panicked, or its worker is gone.
            Ok(Err(_)) | Err(_) => Err(PasswordError::Task),
        }
    }
}

/// Puts the calling thread at the lowest CPU priority there is for ordinary work: on Linux the
/// idle scheduling class (`SCHED_IDLE`, allowed without privileges), whose threads the kernel
/// preempts as soon as any other thread wakes up; elsewhere, or if that is refused, the
/// lowest niceness. Best effort: without either the work runs at the default priority.
fn lower_priority() {
    use thread_priority::{ThreadPriority, ThreadSchedulePolicy};
    #[cfg(target_os = "linux")]
    {
        let idle = ThreadSchedulePolicy::Normal(thread_priority::NormalThreadSchedulePolicy::Idle);
        let id = thread_priority::thread_native_id();
        if thread_priority::set_thread_priority_and_policy(id, ThreadPriority::Min, idle).is_ok() {
            return;
        }
    }
    let _ = thread_priority::set_current_thread_priority(ThreadPriority::Min);
}

/// Starts `n` worker threads at the lowest CPU priority, fed by the returned sender.
fn spawn_workers(n: usize) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = Arc::clone(&rx);
        let spawned =
            std::thread::Builder::new().name(format!("rampart-hash-{i}")).spawn(move || {
                lower_priority();
                loop {
                    // Holding the lock only while waiting for the next job.
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
        if spawned.is_err() && i > 0 {
            // Fewer workers than slots only means queued work waits a little longer.
            break;
        }
    }
    tx
}

impl fmt::Debug for AsyncHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncHasher")
            .field("params", &self.inner.params)
            .field("max_concurrent", &self.inner.max_concurrent)
            .field("max_queue", &self.inner.max_queue)
            .field("queue_depth", &self.queue_depth())
            .finish()
    }
}

/// A place in the wait queue; leaving it (also by cancellation) frees it.
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn enter(waiting: &'a AtomicUsize, max_queue: usize) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| (w < max_queue).then_some(w + 1))
            .ok()
            .map(|_| Self(waiting))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a running hash until the blocking task finishes.
struct Running(Arc<Inner>);

impl Running {
    fn enter(inner: Arc<Inner>) -> Self {
        inner.running.fetch_add(1, Ordering::AcqRel);
        Self(inner)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Argon2Params = Argon2Params { m_kib: 64, t: 1, p: 1 };

    /// Occupies one slot with a blocking task that runs until the returned sender is dropped.
    async fn occupy(
        hasher: &AsyncHasher,
    ) -> (mpsc::Sender<()>, tokio::task::JoinHandle<Result<()>>) {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let h = hasher.clone();
        let handle = tokio::spawn(async move {
            h.run(move || {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
                Ok(())
            })
            .await
        });
        started_rx.await.unwrap();
        (release_tx, handle)
    }

    #[tokio::test]
    async fn hashes_and_verifies_on_worker_threads() {
        let hasher = AsyncHasher::new(FAST, 2, 4);
        let stored = hasher.hash(SecretString::new("async pw")).await.unwrap();
        let v = hasher.verify(SecretString::new("async pw"), stored.clone()).await.unwrap();
        assert!(v.matched && !v.needs_rehash);
        let wrong = hasher.verify(SecretString::new("async pw "), stored).await.unwrap();
        assert!(!wrong.matched);
        hasher.dummy_verify(SecretString::new("nobody")).await.unwrap();
        assert_eq!(hasher.queue_depth(), 0);
    }

    #[tokio::test]
    async fn second_caller_is_busy_when_one_runs_and_no_queue_is_allowed() {
        let hasher = AsyncHasher::new(FAST, 1, 0);
        let (release, first) = occupy(&hasher).await;
        assert_eq!(hasher.queue_depth(), 1);

        let err = hasher.hash(SecretString::new("second")).await.unwrap_err();
        assert!(matches!(err, PasswordError::Busy), "{err:?}");
        let err = hasher.dummy_verify(SecretString::new("x")).await.unwrap_err();
        assert!(matches!(err, PasswordError::Busy), "{err:?}");

        drop(release);
        first.await.unwrap().unwrap();
        assert_eq!(hasher.queue_depth(), 0);
        // With the slot free again, work goes through.
        assert!(hasher.hash(SecretString::new("third")).await.is_ok());
    }

    #[tokio::test]
    async fn waits_in_queue_up_to_max_queue_then_fails_fast() {
        let hasher = AsyncHasher::new(FAST, 1, 1);
        let (release, first) = occupy(&hasher).await;

        let h = hasher.clone();
        let queued = tokio::spawn(async move { h.hash(SecretString::new("queued")).await });
        for _ in 0..1_000 {
            if hasher.queue_depth() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(hasher.queue_depth(), 2);

        let err = hasher.hash(SecretString::new("third")).await.unwrap_err();
        assert!(matches!(err, PasswordError::Busy), "{err:?}");

        drop(release);
        first.await.unwrap().unwrap();
        let stored = queued.await.unwrap().unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert_eq!(hasher.queue_depth(), 0);
    }

    #[tokio::test]
    async fn cancelled_waiter_frees_its_queue_slot() {
        let hasher = AsyncHasher::new(FAST, 1, 1);
        let (release, first) = occupy(&hasher).await;

        let h = hasher.clone();
        let queued = tokio::spawn(async move { h.hash(SecretString::new("gives up")).await });
        for _ in 0..1_000 {
            if hasher.queue_depth() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        queued.abort();
        assert!(queued.await.unwrap_err().is_cancelled());
        assert_eq!(hasher.queue_depth(), 1);

        drop(release);
        first.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_panicking_job_is_a_task_error_and_frees_its_slot() {
        let hasher = AsyncHasher::new(FAST, 1, 0);
        let err = hasher.run::<(), _>(|| panic!("boom")).await.unwrap_err();
        assert!(matches!(err, PasswordError::Task), "{err:?}");
        assert_eq!(hasher.queue_depth(), 0);
        assert!(hasher.hash(SecretString::new("after a panic")).await.is_ok());
    }

    /// Linux: the workers run in the idle scheduling class, read back from `/proc`.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn workers_run_at_a_lower_cpu_priority() {
        use std::path::Path;

        let hasher = AsyncHasher::new(FAST, 1, 0);
        let tid = hasher
            .run(|| Ok(std::fs::read_link("/proc/thread-self").map(|l| Path::new("/proc").join(l))))
            .await
            .unwrap()
            .unwrap();
        let stat = std::fs::read_to_string(tid.join("stat")).unwrap();
        // Field 41 (scheduling policy; 5 is SCHED_IDLE), the 39th after the parenthesised name.
        let after: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        assert_eq!(after[38], "5", "{stat}");
        let comm = std::fs::read_to_string(tid.join("comm")).unwrap();
        assert!(comm.starts_with("rampart-hash-"), "{comm}");
    }

    #[test]
    fn zero_concurrency_is_raised_to_one() {
        let hasher = AsyncHasher::new(FAST, 0, 0);
        assert_eq!(hasher.inner.semaphore.available_permits(), 1);
    }

    #[test]
    fn debug_shows_settings_and_no_secrets() {
        let hasher = AsyncHasher::new(FAST, 3, 7);
        let shown = format!("{hasher:?}");
        assert!(shown.contains("max_concurrent: 3") && shown.contains("max_queue: 7"), "{shown}");
        assert!(!shown.contains("ZHVtbXkt"), "{shown}");
    }
}
