//! When evidence is captured: on a check's turn to failing, as a task beside the rounds, at most
//! once per check per `evidence.min_interval` and `evidence.max_concurrent` at once; or now, on
//! request. Finished captures go to the store the published verdict reads.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::config::EvidenceConfig;
use crate::evidence::{self, Capture, CaptureOutcome, Store, Subject};
use crate::metrics::Metrics;
use crate::netns::Executor;
use crate::results::CheckKey;

/// The evidence side of the agent state: settings, executors, the store and the capture slots.
pub struct Captures {
    /// Captures on failure are off until a config is applied: `check` takes its own.
    config: Mutex<EvidenceConfig>,
    executors: Mutex<Vec<Executor>>,
    store: Arc<Mutex<Store>>,
    /// One permit per capture that may run at once.
    slots: Mutex<Arc<Semaphore>>,
}

/// Every update under these locks is a single insert or assignment.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Captures {
    fn default() -> Self {
        let config = EvidenceConfig {
            enabled: false,
            ..EvidenceConfig::default()
        };
        let slots = Arc::new(Semaphore::new(config.max_concurrent));
        Captures {
            config: Mutex::new(config),
            executors: Mutex::default(),
            store: Arc::default(),
            slots: Mutex::new(slots),
        }
    }
}

impl Captures {
    /// Takes the settings of a newly applied config; running captures keep their old slots.
    pub fn configure(&self, config: &EvidenceConfig) {
        let mut current = lock(&self.config);
        if current.max_concurrent != config.max_concurrent {
            *lock(&self.slots) = Arc::new(Semaphore::new(config.max_concurrent));
        }
        *current = config.clone();
    }

    /// Whether the config lets the agent capture on its own (the `check` command asks anyway).
    pub fn enabled(&self) -> bool {
        lock(&self.config).enabled
    }

    pub fn set_executors(&self, executors: &[Executor]) {
        *lock(&self.executors) = executors.to_vec();
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Starts a capture for a check that just turned failing, unless it is rate limited; the
    /// capture runs as its own task, and `changed` is told when it is kept. Outside a runtime
    /// (a synchronous test) nothing is captured.
    pub fn on_failure(
        &self,
        key: &CheckKey,
        subject: Subject,
        metrics: &Metrics,
        changed: &Arc<Notify>,
    ) {
        let config = lock(&self.config).clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !config.enabled {
            return;
        }
        let slots = lock(&self.slots).clone();
        let admitted = slots
            .try_acquire_owned()
            .ok()
            .filter(|_| self.store().admit(key, Instant::now(), config.min_interval));
        let Some(permit) = admitted else {
            metrics.count_capture(key.labels(), CaptureOutcome::RateLimited);
            return;
        };
        let executors = lock(&self.executors).clone();
        let (store, metrics, changed, key) = (
            self.store.clone(),
            metrics.clone(),
            changed.clone(),
            key.clone(),
        );
        runtime.spawn(async move {
            let capture = evidence::capture(subject, &executors, &config).await;
            drop(permit);
            keep(&store, &key, capture, &metrics);
            changed.notify_one();
        });
    }

    /// Captures now, without the rate bound (the caller has its own), and keeps the capture:
    /// the `check` command's.
    pub async fn now(&self, key: &CheckKey, subject: Subject, metrics: &Metrics) -> Arc<Capture> {
        let capture = self.take(subject).await;
        keep(&self.store, key, capture, metrics)
    }

    /// Captures now for a round that was never recorded, a run on demand's: counted and
    /// returned, but not kept, so the check's own evidence moves only with its schedule.
    pub async fn unrecorded(&self, key: &CheckKey, subject: Subject, metrics: &Metrics) -> Capture {
        let capture = self.take(subject).await;
        metrics.count_capture(key.labels(), capture.outcome());
        capture
    }

    async fn take(&self, subject: Subject) -> Capture {
        let config = lock(&self.config).clone();
        let executors = lock(&self.executors).clone();
        evidence::capture(subject, &executors, &config).await
    }
}

/// Keeps a finished capture (unless its check was removed meanwhile) and counts it.
fn keep(store: &Mutex<Store>, key: &CheckKey, capture: Capture, metrics: &Metrics) -> Arc<Capture> {
    let outcome = capture.outcome();
    let capture = Arc::new(capture);
    if lock(store).keep(key, capture.clone()) {
        metrics.count_capture(key.labels(), outcome);
    }
    capture
}
