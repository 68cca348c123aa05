//! Processing, single flight: one task per key estimates what the operation
//! needs, waits for the pool to admit it, runs it (image operations in a
//! child process that is killed at `op_timeout`), records the outcome
//! durably, then wakes every waiter of the key.
//!
//! Outcomes that say something about the input or the operation (a refused
//! image, a timeout, a crash) are recorded as failures, remembered for
//! `failure_ttl`. Outcomes that only say the server was short of something
//! (no process could be started, the result could not be written) are not:
//! the entry stays `processing` and is tried again shortly.

use std::sync::Arc;
use std::time::Duration;

use upcache_protocol::lifecycle::Event;
use upcache_protocol::operation::Kind;
use upcache_protocol::{Key, Operation, Problem, ProblemType, State};

use super::{enter, Core};
use crate::error::{Error, Result};
use crate::metrics;
use crate::ops::pool::Priority;
use crate::ops::worker::{self, Job, Outcome, Written};
use crate::ops::{self, budget};
use crate::store::blob::{BlobMeta, BlobName, BlobStore, ResultOf, StagedFile};
use crate::store::deadlines::Class;
use crate::store::meta::{BlobRef, EntryRecord, ResultRecord, UploadChange};
use crate::store::records::Failure;

/// Address space a worker process needs beyond its image buffers: the
/// executable, its libraries, stacks and allocator arenas.
const WORKER_BASE_MEMORY: u64 = 256 << 20;
/// First and longest pause before trying again an operation the server
/// could not run (or whose result found no room).
const SHORTAGE_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// An operation that did not run for want of server resources.
struct Shortage(String);

/// What running an operation came to: an outcome to record, or a shortage.
type Ran = std::result::Result<std::result::Result<ResultRecord, Problem>, Shortage>;

fn refused(problem: Problem) -> Result<Ran> {
    Ok(Ok(Err(problem)))
}

impl Core {
    /// Runs the operation of `key` unless it is already running (single flight).
    pub fn schedule(self: &Arc<Self>, key: Key, priority: Priority) {
        let core = self.clone();
        tokio::spawn(async move {
            let mut pause = SHORTAGE_RETRY.0;
            loop {
                let Some(guard) = enter(&core.running, &key) else {
                    return;
                };
                let why = match core.process(key, priority).await {
                    Ok(None) => return,
                    Ok(Some(Shortage(why))) => why,
                    // A full disk is not the input's fault: no failure is
                    // recorded, the entry stays processing.
                    Err(e) if e.is_no_space() => e.to_string(),
                    Err(e) => {
                        tracing::error!(key = %key, error = %e, "processing failed");
                        return;
                    }
                };
                tracing::warn!(key = %key, why, retry_in = ?pause, "operation postponed");
                drop(guard);
                core.config.clock.sleep(pause).await;
                pause = (pause * 2).min(SHORTAGE_RETRY.1);
            }
        });
    }

    async fn process(self: &Arc<Self>, key: Key, priority: Priority) -> Result<Option<Shortage>> {
        let entry = match self.meta.entry(&key)? {
            Some(e) if e.state == State::Processing => e,
            _ => return Ok(None),
        };
        let op = Operation::from_json(&entry.operation)
            .map_err(|e| Error::Internal(format!("stored operation: {e}")))?;
        // An input only the remote tier holds is brought back first.
        if self.inputs.blobs().has_remote() {
            self.inputs.fetch(&entry.input).await?;
        }
        // The input stays on disk while the operation needs it.
        let lease = self.cap.lease(BlobName::Input(entry.input));
        let core = self.clone();
        let input = entry.input;
        let stored = tokio::task::spawn_blocking(move || core.inputs.stored(&input)).await??;
        if lease.is_none() || stored.is_none() {
            // Evicted or expired before the operation ran: the entry starts
            // over, and the next create asks for the input again.
            tracing::info!(key = %key, "the input went before the operation ran");
            self.meta.remove(&key)?;
            self.notifier.notify(&key);
            return Ok(None);
        }
        self.input_used(&entry.input)?;
        metrics::OPERATIONS_STARTED.inc();
        tracing::info!(key = %key, op = op.name(), "operation started");
        let outcome = match op.kind() {
            Kind::Identity => Ok(ResultRecord {
                blake3: entry.input,
                length: entry.length,
                content_type: ops::OCTET_STREAM.into(),
                blob: BlobRef::Input,
            }),
            Kind::Image { steps, .. } => {
                match self.run_image(&key, &entry, &op, steps, priority).await? {
                    Ok(outcome) => outcome,
                    Err(shortage) => return Ok(Some(shortage)),
                }
            }
        };
        if let Ok(r) = &outcome {
            if r.blob == BlobRef::Input && self.inputs.blobs().has_remote() {
                // The result is the input: the bucket gets a link under the
                // key, so that a node knowing only the key finds it. Queued
                // before the entry completes: a crash in between leaves a
                // link to a stored input, which is a valid result anyway.
                self.inputs
                    .blobs()
                    .link(BlobName::Result(key), BlobMeta::link(made_of(&entry)))
                    .await?;
            }
        }
        let core = self.clone();
        let ok = outcome.is_ok();
        drop(lease);
        let orphan =
            tokio::task::spawn_blocking(move || core.record_outcome(&key, outcome)).await??;
        if orphan {
            // Deleted while it ran: do not leave the result behind.
            self.inputs.blobs().delete(BlobName::Result(key)).await?;
        } else if ok {
            // Its first readers are usually waiting now: serve them from memory.
            if let Err(e) = self.fill_produced(&key).await {
                tracing::warn!(key = %key, error = %e, "the result could not be put in memory");
            }
        }
        if ok {
            &metrics::OPERATIONS_COMPLETED
        } else {
            &metrics::OPERATIONS_FAILED
        }
        .inc();
        self.notifier.notify(&key);
        Ok(None)
    }

    /// Estimates, admits and runs an image operation in a worker process.
    async fn run_image(
        self: &Arc<Self>,
        key: &Key,
        entry: &EntryRecord,
        op: &Operation,
        steps: &[upcache_protocol::operation::Step],
        priority: Priority,
    ) -> Result<Ran> {
        let local = self.inputs.local(&entry.input).await?;
        let input = local.path().to_owned();
        let limits = self.limits();
        let header = {
            let input = input.clone();
            tokio::task::spawn_blocking(move || budget::header(&input)).await?
        };
        let need = match header {
            Ok(h) if u64::from(h.width) * u64::from(h.height) > limits.max_pixels => {
                return refused(
                    Problem::new(
                        ProblemType::ImageTooLarge,
                        format!(
                            "{}×{} pixels exceeds the limit of {}",
                            h.width, h.height, limits.max_pixels
                        ),
                    )
                    .with("width", h.width)
                    .with("height", h.height),
                );
            }
            Ok(h) => budget::estimate(h, steps, budget::codec_of(op)),
            Err(problem) => return refused(problem),
        };
        let allowance = self.config.op_memory_limit.as_u64();
        if need > allowance {
            return refused(budget::too_much(need, allowance));
        }
        let _permit = self.pool.admit(priority, need).await;
        // Room for the output, estimated as the input's length.
        let _room = match self.cap.reserve(entry.length).await {
            Ok(room) => room,
            Err(e) => return Ok(Err(Shortage(e.to_string()))),
        };
        let output = self.inputs.staging().output(key);
        let job = Job {
            operation: op.canonical().to_owned(),
            input,
            output: output.path().to_owned(),
            max_pixels: limits.max_pixels,
            max_image_input: limits.max_image_input,
        };
        let timeout = Duration::from_secs(self.config.op_timeout);
        let ran = worker::run(&self.worker, &job, timeout, allowance + WORKER_BASE_MEMORY).await;
        let outcome = match ran {
            Err(e) => return Ok(Err(Shortage(e.to_string()))),
            Ok(Outcome::TimedOut) => Err(Problem::new(
                ProblemType::OperationTimeout,
                format!("the operation ran longer than {timeout:?} and was stopped"),
            )),
            Ok(Outcome::Failed(problem))
                if problem.kind() == Some(ProblemType::InsufficientStorage) =>
            {
                return Ok(Err(Shortage(problem.to_string())));
            }
            Ok(Outcome::Failed(problem)) => Err(problem),
            Ok(Outcome::Killed) => {
                return Ok(Err(Shortage("the worker was killed from outside".into())));
            }
            Ok(Outcome::Done(written)) => Ok(written),
        };
        let written = match outcome {
            Ok(w) => w,
            Err(problem) => return refused(problem),
        };
        Ok(
            match self.publish_result(key, entry, output, written).await {
                Ok(record) => Ok(Ok(record)),
                Err(e) => Err(Shortage(format!("storing the result: {e}"))),
            },
        )
    }

    /// Publishes a worker's output (synced by the worker) as the result of
    /// `key`.
    async fn publish_result(
        self: &Arc<Self>,
        key: &Key,
        entry: &EntryRecord,
        output: StagedFile,
        written: Written,
    ) -> Result<ResultRecord> {
        let meta = BlobMeta::result(
            written.blake3,
            written.length,
            &written.content_type,
            made_of(entry),
        );
        self.inputs
            .blobs()
            .put_file(BlobName::Result(*key), output, meta)
            .await?;
        Ok(ResultRecord {
            blake3: written.blake3,
            length: written.length,
            content_type: written.content_type,
            blob: BlobRef::Result,
        })
    }

    /// Blocking: records the outcome; whether the entry was deleted while
    /// its result was made (which is then an orphan to delete).
    fn record_outcome(
        &self,
        key: &Key,
        outcome: std::result::Result<ResultRecord, Problem>,
    ) -> Result<bool> {
        let (event, result, error) = match outcome {
            Ok(r) => (Event::Succeeded, Some(r), None),
            Err(p) => (Event::Failed, None, Some(p)),
        };
        let own_blob = result.as_ref().is_some_and(|r| r.blob == BlobRef::Result);
        let updated = self.meta.update(key, UploadChange::Keep, |e| {
            e.state.on(event).map(|state| EntryRecord {
                state,
                result: result.clone(),
                error: error.as_ref().map(Failure::from_problem),
                ..e.clone()
            })
        })?;
        let recorded = matches!(updated, Some((_, true)));
        let now = self.config.clock.now();
        if recorded && error.is_some() {
            let due = now + self.config.failure_ttl;
            self.deadlines.set(Class::Failed, key.as_bytes(), due)?;
        } else if recorded && self.config.result_ttl > 0 {
            let due = now + self.config.result_ttl;
            self.deadlines.set(Class::Result, key.as_bytes(), due)?;
        }
        self.meta.flush()?;
        Ok(own_blob && !recorded)
    }
}

/// What `entry`'s result is made of, as its blob's metadata says it.
fn made_of(entry: &EntryRecord) -> ResultOf {
    ResultOf {
        input: entry.input,
        input_length: entry.length,
        operation: entry.operation.clone(),
        is_input: false,
    }
}
