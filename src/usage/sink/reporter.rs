//! [`UsageReporter`]: a tokio task delivering usage to a [`UsageSink`] on an interval, and once
//! more on shutdown.

use super::batch::{UsageBatch, UsageSink};
use crate::usage::Usage;
use std::fmt;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Builds a [`UsageReporter`].
#[must_use]
pub struct UsageReporterBuilder<S> {
    usage: Usage,
    sink: S,
    interval: Duration,
    max_batch: usize,
}

impl<S> fmt::Debug for UsageReporterBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageReporterBuilder")
            .field("interval", &self.interval)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

/// Delivers a layer's usage to a sink every interval (default 10 s), in batches of at most
/// `max_batch` records (default 1,000), from a tokio task. A failed batch is retried at the next
/// interval. [`UsageReporter::shutdown`] delivers what is left before it returns: call it on
/// graceful shutdown, after the server stopped taking requests.
///
/// ```
/// use tower_usage_plans::usage::{UsageRecord, UsageReporter, UsageSink};
/// # use tower_usage_plans::{InMemoryKeyStore, UsagePlanLayer};
/// struct Log;
/// impl UsageSink for Log {
///     type Error = std::convert::Infallible;
///     async fn deliver(&self, batch: &[UsageRecord]) -> Result<(), Self::Error> {
///         for r in batch {
///             println!("{} {} {}: +{}", r.key_id, r.plan_id, r.date, r.requests);
///         }
///         Ok(())
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let layer = UsagePlanLayer::new(InMemoryKeyStore::from_toml_str("stage = { api = \"a\", name = \"b\" }").unwrap()).unwrap();
/// let reporter = UsageReporter::builder(layer.usage(), Log).spawn();
/// // ... serve ...
/// reporter.shutdown().await.unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct UsageReporter {
    tx: mpsc::Sender<Command>,
}

enum Command {
    Flush(oneshot::Sender<Result<usize, String>>),
    Stop(oneshot::Sender<Result<usize, String>>),
}

/// A delivery failed; what was not delivered stays pending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("usage sink failed: {message}")]
pub struct ReportError {
    kind: ReportErrorKind,
    message: String,
}

/// Why a flush or shutdown of a [`UsageReporter`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReportErrorKind {
    /// The sink refused the batch ([`UsageSink::deliver`] returned an error).
    Sink,
    /// The reporter's task has stopped (its runtime shut down).
    Stopped,
}

impl ReportError {
    /// Why it failed.
    #[must_use]
    pub fn kind(&self) -> ReportErrorKind {
        self.kind
    }

    /// The sink's error, as text (or why the reporter could not ask it).
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl UsageReporter {
    /// A reporter of `usage` into `sink`.
    pub fn builder<S: UsageSink>(usage: Usage, sink: S) -> UsageReporterBuilder<S> {
        UsageReporterBuilder { usage, sink, interval: Duration::from_secs(10), max_batch: 1000 }
    }

    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<usize, String>>) -> Command,
    ) -> Result<usize, ReportError> {
        let (tx, rx) = oneshot::channel();
        let gone =
            || ReportError { kind: ReportErrorKind::Stopped, message: String::from("the reporter task has stopped") };
        self.tx.send(make(tx)).await.map_err(|_| gone())?;
        match rx.await.map_err(|_| gone())? {
            Ok(n) => Ok(n),
            Err(message) => Err(ReportError { kind: ReportErrorKind::Sink, message }),
        }
    }

    /// Delivers what is pending now; returns the number of records delivered.
    pub async fn flush(&self) -> Result<usize, ReportError> {
        self.ask(Command::Flush).await
    }

    /// Delivers what is pending and stops the task. On error the counts stay pending in the
    /// ledger (and in a snapshot taken after this).
    pub async fn shutdown(self) -> Result<usize, ReportError> {
        self.ask(Command::Stop).await
    }
}

impl<S: UsageSink> UsageReporterBuilder<S> {
    /// How often pending usage is delivered.
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every.max(Duration::from_millis(1));
        self
    }

    /// Most records in one call of [`UsageSink::deliver`].
    pub fn max_batch(mut self, records: usize) -> Self {
        self.max_batch = records.max(1);
        self
    }

    /// Starts the task on the current tokio runtime.
    pub fn spawn(self) -> UsageReporter {
        let (tx, mut rx) = mpsc::channel::<Command>(8);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(message) = deliver(&self.usage, &self.sink, self.max_batch).await {
                            tracing::warn!(%message, "usage sink failed; will retry");
                        }
                    }
                    cmd = rx.recv() => match cmd {
                        Some(Command::Flush(reply)) => {
                            let _ = reply.send(deliver(&self.usage, &self.sink, self.max_batch).await);
                        }
                        Some(Command::Stop(reply)) => {
                            let _ = reply.send(deliver(&self.usage, &self.sink, self.max_batch).await);
                            return;
                        }
                        None => {
                            // Every handle dropped: a last delivery, then stop.
                            let _ = deliver(&self.usage, &self.sink, self.max_batch).await;
                            return;
                        }
                    },
                }
            }
        });
        UsageReporter { tx }
    }
}

/// Delivers every pending record, batch by batch; stops at the first failure.
async fn deliver<S: UsageSink>(usage: &Usage, sink: &S, max_batch: usize) -> Result<usize, String> {
    let batch: UsageBatch = usage.pending().await.map_err(|e| e.to_string())?;
    let mut delivered = 0;
    for chunk in batch.chunks(max_batch) {
        sink.deliver(chunk.records()).await.map_err(|e| e.to_string())?;
        usage.acknowledge(&chunk).await.map_err(|e| e.to_string())?;
        delivered += chunk.records().len();
    }
    Ok(delivered)
}
