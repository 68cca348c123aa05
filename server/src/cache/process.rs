//! Processing, single flight: one task per key runs the operation on the
//! worker pool with a timeout, records the outcome durably, then wakes every
//! waiter of the key.

use std::sync::Arc;
use std::time::Duration;

use upcache_protocol::lifecycle::Event;
use upcache_protocol::{InputHash, Key, Operation, Problem, ProblemType, State};

use super::{enter, Core};
use crate::error::{Error, Result};
use crate::metrics;
use crate::ops::pool::Priority;
use crate::ops::{self, Produced};
use crate::store::meta::{BlobRef, EntryRecord, ResultRecord, UploadChange};

/// First and longest pause before running an operation again whose result
/// found no room on disk.
const NO_SPACE_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

impl Core {
    /// Runs the operation of `key` unless it is already running (single flight).
    pub fn schedule(self: &Arc<Self>, key: Key, priority: Priority) {
        let core = self.clone();
        tokio::spawn(async move {
            let Some(_guard) = enter(&core.running, &key) else {
                return;
            };
            let mut pause = NO_SPACE_RETRY.0;
            loop {
                match core.process(key, priority).await {
                    Ok(()) => break,
                    // A full disk is not the input's fault: no failure is
                    // recorded, the entry stays processing and runs again
                    // once there may be room.
                    Err(e) if e.is_no_space() => {
                        tracing::warn!(key = %key, retry_in = ?pause, "no room for the result");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(NO_SPACE_RETRY.1);
                    }
                    Err(e) => {
                        tracing::error!(key = %key, error = %e, "processing failed");
                        break;
                    }
                }
            }
        });
    }

    async fn process(self: &Arc<Self>, key: Key, priority: Priority) -> Result<()> {
        let entry = match self.meta.entry(&key)? {
            Some(e) if e.state == State::Processing => e,
            _ => return Ok(()),
        };
        let op = Operation::from_json(&entry.operation)
            .map_err(|e| Error::Internal(format!("stored operation: {e}")))?;
        metrics::OPERATIONS_STARTED.inc();
        tracing::info!(key = %key, op = op.name(), "operation started");
        let (input_path, blobs, limits, e) = (
            self.blobs.input_path(&entry.input),
            self.blobs.clone(),
            self.limits(),
            entry.clone(),
        );
        let job = self
            .pool
            .run(priority, move || -> Result<ResultRecord, Problem> {
                // A full disk stays recognizable: see `schedule`.
                let unwritten = |err: std::io::Error| {
                    let kind = match crate::error::is_no_space(&err) {
                        true => ProblemType::InsufficientStorage,
                        false => ProblemType::Internal,
                    };
                    Problem::new(kind, err.to_string())
                };
                Ok(match ops::run(&op, &input_path, &limits)? {
                    Produced::Input => ResultRecord {
                        blake3: e.input,
                        length: e.length,
                        content_type: ops::OCTET_STREAM.into(),
                        blob: BlobRef::Input,
                    },
                    Produced::Bytes {
                        bytes,
                        content_type,
                    } => {
                        blobs.write_result(&key, &bytes).map_err(unwritten)?;
                        ResultRecord {
                            blake3: InputHash::of(&bytes),
                            length: bytes.len() as u64,
                            content_type: content_type.into(),
                            blob: BlobRef::Result,
                        }
                    }
                })
            });
        let timeout = Duration::from_secs(self.config.op_timeout);
        let outcome = match tokio::time::timeout(timeout, job).await {
            Err(_) => Err(Problem::new(
                ProblemType::OperationTimeout,
                format!("the operation ran longer than {timeout:?}"),
            )),
            Ok(Err(_)) => Err(Problem::new(
                ProblemType::Internal,
                "the worker pool stopped",
            )),
            Ok(Ok(Err(panic))) => Err(Problem::new(
                ProblemType::OperationFailed,
                format!("the operation crashed: {}", panic.0),
            )),
            Ok(Ok(Ok(result))) => result,
        };
        if let Err(p) = outcome.as_ref() {
            if p.kind() == Some(ProblemType::InsufficientStorage) {
                return Err(p.clone().into()); // not a failure of the operation: see `schedule`
            }
        }
        let core = self.clone();
        let ok = outcome.is_ok();
        tokio::task::spawn_blocking(move || core.record_outcome(&key, outcome)).await??;
        if ok {
            &metrics::OPERATIONS_COMPLETED
        } else {
            &metrics::OPERATIONS_FAILED
        }
        .inc();
        self.notifier.notify(&key);
        Ok(())
    }

    fn record_outcome(&self, key: &Key, outcome: Result<ResultRecord, Problem>) -> Result<()> {
        let (event, result, error) = match outcome {
            Ok(r) => (Event::Succeeded, Some(r), None),
            Err(p) => (Event::Failed, None, Some(p)),
        };
        let own_blob = result.as_ref().is_some_and(|r| r.blob == BlobRef::Result);
        let updated = self.meta.update(key, UploadChange::Keep, |e| {
            e.state.on(event).map(|state| EntryRecord {
                state,
                result: result.clone(),
                error: error.clone(),
                ..e.clone()
            })
        })?;
        if own_blob && !matches!(updated, Some((_, true))) {
            // Deleted while it ran: do not leave the result behind.
            self.blobs.remove_result(key)?;
        }
        self.meta.flush()?;
        Ok(())
    }
}
