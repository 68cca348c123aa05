//! File uploads: uploads created without a key, as tus clients make them.
//!
//! A tus client does not know the BLAKE3 of its file, so a file upload has a
//! random id and takes bytes through the same upload service as `/v1`
//! ([`Core::append`]): the same staging file, writer, per-block chaining
//! values and group commit. When its last byte is in, the chaining values
//! are merged into the input's BLAKE3 (only blocks never committed whole —
//! a tail, or a one-block input — are read again), the bytes are published
//! as that input, and the upload is bound to the entry of (input,
//! operation), which then runs like any other: single flight, waiters,
//! results.
//!
//! ```text
//!   receiving ──last byte──▶ hashed (input set) ──published, entry found or made──▶ done { key }
//!       └─ untouched for upload_ttl ─▶ expired (a tombstone: requests get 410)
//! ```
//!
//! Partial uploads (tus concatenation) stop at `done` without a key; their
//! bytes stay in staging until a final upload is assembled from them.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use upcache_protocol::{CreateRequest, InputRef, Key, Layout, Operation, Problem, ProblemType};

use crate::cache::Core;
use crate::error::{Error, Result};
use crate::inputs::Published;
use crate::store::deadlines::Class;
use crate::store::meta::{Concat, FileRecord, FileState, UploadChange, UploadRecord};
use crate::upload::{self, not_uploading, BodyCheck, BodyStream, Completion, Start, UploadId};

/// How a new upload takes part in concatenation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewConcat {
    None,
    Partial,
    /// Assembled from these partial uploads, in order.
    Final(Vec<Key>),
}

/// A file upload to create.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// `None`: the length comes later.
    pub length: Option<u64>,
    pub metadata: Option<String>,
    pub operation: Operation,
    pub concat: NewConcat,
}

/// A file upload as a client sees it.
#[derive(Debug, Clone)]
pub struct FileView {
    pub id: Key,
    record: FileRecord,
    /// Bytes received; `None` for a final upload not assembled yet.
    pub offset: Option<u64>,
    /// When it expires (seconds since the epoch), while unfinished.
    pub expires: Option<u64>,
}

impl FileView {
    /// Its length, once declared.
    pub fn length(&self) -> Option<u64> {
        self.record.length
    }

    /// Its `Upload-Metadata`, as the client sent it.
    pub fn metadata(&self) -> Option<&str> {
        self.record.metadata.as_deref()
    }

    /// The canonical JSON of its operation.
    pub fn operation(&self) -> &str {
        &self.record.operation
    }

    /// How it takes part in concatenation.
    pub fn concat(&self) -> NewConcat {
        match &self.record.concat {
            Concat::None => NewConcat::None,
            Concat::Partial => NewConcat::Partial,
            Concat::Final(parts) => NewConcat::Final(parts.clone()),
        }
    }

    /// The key of the entry it is bound to, once it is.
    pub fn key(&self) -> Option<Key> {
        match self.record.state {
            FileState::Done { key } => key,
            _ => None,
        }
    }

    /// Whether every byte is in.
    pub fn complete(&self) -> bool {
        matches!(self.record.state, FileState::Done { .. })
    }
}

/// Least time an expired upload answers `410` before it is forgotten (`404`).
pub const TOMBSTONE_TTL: u64 = 24 * 3600;

fn not_found() -> Error {
    Error::problem(ProblemType::NotFound, "no upload under this id")
}

fn expired() -> Error {
    Error::problem(
        ProblemType::UploadExpired,
        "the upload expired; create a new one",
    )
}

/// When an unfinished upload last changed: its record, or its bytes.
pub(crate) fn touched(file: &FileRecord, upload: Option<&UploadRecord>) -> u64 {
    upload.map_or(0, |u| u.touched).max(file.touched)
}

fn new_id() -> Key {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    Key(bytes)
}

impl Core {
    /// The block layout bytes of `file` are written with. Until its length
    /// is known, it is laid out up to the largest input.
    pub fn file_layout(&self, file: &FileRecord) -> Layout {
        Layout {
            length: file.length.unwrap_or(self.config.max_input_size.as_u64()),
            block_size: file.block_size,
        }
    }

    fn too_large(&self, length: u64) -> Option<Error> {
        let max = self.config.max_input_size.as_u64();
        (length > max).then(|| {
            Problem::new(
                ProblemType::InputTooLarge,
                format!("the upload has {length} bytes; the limit is {max}"),
            )
            .with("limit", max)
            .into()
        })
    }

    /// Creates a file upload. A final upload is assembled from its partials
    /// (which must all be complete) and hashed before this returns.
    pub async fn create_file(self: &Arc<Self>, new: NewFile) -> Result<FileView> {
        let block_size = self.config.default_block_size.as_u64();
        let (length, concat) = match new.concat {
            NewConcat::None => (new.length, Concat::None),
            NewConcat::Partial => (new.length, Concat::Partial),
            NewConcat::Final(parts) => (Some(self.final_length(&parts)?), Concat::Final(parts)),
        };
        if let Some(e) = length.and_then(|l| self.too_large(l)) {
            return Err(e);
        }
        if let Some(l) = length {
            Layout::new(l, block_size, self.config.max_blocks)
                .map_err(|e| Error::problem(ProblemType::InvalidBlockSize, e.to_string()))?;
        }
        let id = new_id();
        if let (Some(l @ 1..), Concat::None | Concat::Partial) = (length, &concat) {
            // Room for the upload, before anything is written.
            self.cap
                .reserve_upload(id, l)
                .await
                .map_err(super::cap_problem)?;
        }
        let record = FileRecord::new(
            length,
            block_size,
            new.operation.canonical().into(),
            new.metadata,
            concat.clone(),
        );
        let core = self.clone();
        let due = self.config.clock.now() + self.config.upload_ttl;
        let created = tokio::task::spawn_blocking(move || -> Result<()> {
            core.meta.create_file(&id, &record)?;
            core.deadlines.set(Class::File, id.as_bytes(), due)?;
            core.meta.flush()?;
            Ok(())
        })
        .await?;
        if let Err(e) = created {
            self.cap.release_upload(&id);
            return Err(e);
        }
        if matches!(concat, Concat::Final(_)) {
            if let Err(e) = self.assemble(id).await {
                // The client never learns this id, so nobody would resume
                // it: its bytes go now — on a full disk they hold the room
                // the client's retry needs.
                let _ = self.delete_file(id).await;
                return Err(e);
            }
        } else if length == Some(0) {
            self.finalize_file(id).await?;
        }
        self.file_view(&id)
    }

    /// The length of a final upload made of `parts`, each a complete partial upload.
    fn final_length(&self, parts: &[Key]) -> Result<u64> {
        if parts.is_empty() {
            return Err(Error::problem(
                ProblemType::InvalidHeader,
                "Upload-Concat: a final upload needs at least one partial upload",
            ));
        }
        let mut total = 0u64;
        for part in parts {
            let bad = |why: &str| {
                Error::problem(
                    ProblemType::InvalidHeader,
                    format!("Upload-Concat: the upload {part} {why}"),
                )
            };
            let rec = self.meta.file(part)?.ok_or_else(|| bad("does not exist"))?;
            if rec.concat != Concat::Partial {
                return Err(bad("is not a partial upload"));
            }
            if !matches!(rec.state, FileState::Done { .. }) {
                return Err(bad("is not complete"));
            }
            total = total.saturating_add(rec.length.unwrap_or(0));
        }
        Ok(total)
    }

    /// The upload `id` as a client sees it: `404` if unknown, `410` once expired.
    pub fn file_view(&self, id: &Key) -> Result<FileView> {
        let record = self.meta.file(id)?.ok_or_else(not_found)?;
        let upload = self.meta.upload(id)?;
        let (offset, expires) = match &record.state {
            FileState::Expired => return Err(expired()),
            FileState::Done { .. } => (record.length, None),
            FileState::Receiving => {
                let expires =
                    touched(&record, upload.as_ref()).saturating_add(self.config.upload_ttl);
                if expires <= self.config.clock.now() && !self.uploads.active(UploadId(*id)) {
                    return Err(expired());
                }
                let offset = match (&upload, &record.concat) {
                    _ if record.input.is_some() => record.length,
                    (_, Concat::Final(_)) => None,
                    (Some(u), _) => Some(upload::offset(&self.file_layout(&record), u)),
                    (None, _) => Some(0),
                };
                (offset, Some(expires))
            }
        };
        Ok(FileView {
            id: *id,
            record,
            offset,
            expires,
        })
    }

    /// Appends a body at `offset` (tus `PATCH`). `length` declares the
    /// length of an upload created without one. With a `check`, the body is
    /// kept only if it matches.
    pub async fn append_file(
        self: &Arc<Self>,
        id: Key,
        offset: u64,
        length: Option<u64>,
        check: Option<BodyCheck>,
        body: BodyStream,
    ) -> Result<FileView> {
        let view = self.file_view(&id)?;
        if matches!(view.record.concat, Concat::Final(_)) {
            return Err(Error::problem(
                ProblemType::FinalUpload,
                "a final upload is made of its partial uploads and takes no bytes",
            ));
        }
        match (view.record.length, length) {
            (Some(known), Some(given)) if known != given => {
                return Err(Problem::new(
                    ProblemType::InvalidHeader,
                    format!("Upload-Length: the upload's length is {known}, not {given}; it cannot change"),
                )
                .with("length", known)
                .into());
            }
            (None, Some(given)) => self.declare_length(&id, &view, given).await?,
            _ => {}
        }
        let core = self.clone();
        // Spawned: finishing the upload must not depend on the client staying.
        tokio::spawn(async move {
            let record = core.meta.file(&id)?.ok_or_else(not_found)?;
            let layout = core.file_layout(&record);
            let finished = record.input.is_some() && record.length == Some(offset);
            let accepting = record.state == FileState::Receiving && record.input.is_none();
            if !(finished || accepting) {
                return Err(not_uploading("upload is complete"));
            }
            let ran = core
                .uploads
                .append(UploadId(id), layout, Start::Offset(offset), check, body)
                .await;
            match ran {
                Ok(p) if p.all_in => core.finalize_file(id).await,
                Ok(_) => Ok(()),
                Err(e) if e.is(ProblemType::NotUploading) => {
                    let record = core.meta.file(&id)?.ok_or_else(not_found)?;
                    if record.input.is_some() && record.length == Some(offset) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                }
                Err(e) => {
                    // What the request did deliver may have completed the upload.
                    if core
                        .uploads
                        .progress(UploadId(id), &layout)
                        .is_ok_and(|p| p.all_in)
                    {
                        core.finalize_file(id).await?;
                    }
                    Err(e)
                }
            }
        })
        .await??;
        self.file_view(&id)
    }

    async fn declare_length(
        self: &Arc<Self>,
        id: &Key,
        view: &FileView,
        length: u64,
    ) -> Result<()> {
        if let Some(e) = self.too_large(length) {
            return Err(e);
        }
        let offset = view.offset.unwrap_or(0);
        if length < offset {
            return Err(Error::problem(
                ProblemType::InvalidHeader,
                format!("Upload-Length: {length} is below the {offset} bytes already received"),
            ));
        }
        Layout::new(length, view.record.block_size, self.config.max_blocks)
            .map_err(|e| Error::problem(ProblemType::InvalidBlockSize, e.to_string()))?;
        // A deferred length reserves its room once it is known (bytes sent
        // before that are counted from here on).
        if length > 0 {
            self.cap
                .reserve_upload(*id, length)
                .await
                .map_err(super::cap_problem)?;
        }
        let core = self.clone();
        let id = *id;
        let declared = tokio::task::spawn_blocking(move || -> Result<()> {
            let updated = core.meta.update_file(&id, UploadChange::Keep, |f| {
                f.length.is_none().then(|| FileRecord {
                    length: Some(length),
                    ..f.clone()
                })
            })?;
            match updated {
                None => Err(not_found()),
                Some((f, _)) if f.length != Some(length) => Err(Error::problem(
                    ProblemType::InvalidHeader,
                    format!(
                        "the upload's length is {}, not {length}",
                        f.length.unwrap_or(0)
                    ),
                )),
                Some(_) => Ok(core.meta.flush()?),
            }
        })
        .await?;
        if declared.is_err() {
            self.cap.release_upload(&id);
        }
        declared
    }

    /// Terminates an upload: its bytes go (a result it produced stays).
    pub async fn delete_file(self: &Arc<Self>, id: Key) -> Result<()> {
        self.uploads.stop(UploadId(id));
        self.cap.release_upload(&id);
        let core = self.clone();
        let removed = tokio::task::spawn_blocking(move || -> Result<Option<FileRecord>> {
            let removed = core.meta.remove_file(&id)?;
            if removed.is_some() {
                core.inputs.staging().remove(&id)?;
                core.meta.flush()?;
            }
            Ok(removed)
        })
        .await??;
        self.notifier.notify(&id);
        removed.map(drop).ok_or_else(not_found)
    }

    /// Waits, at most `wait`, until the upload is bound to an entry; its key.
    pub async fn file_key(&self, id: &Key, wait: Duration) -> Result<Option<Key>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut sub = self.notifier.subscribe(*id);
        loop {
            let view = self.file_view(id)?;
            if view.key().is_some() || view.complete() {
                return Ok(view.key());
            }
            if tokio::time::timeout_at(deadline, sub.changed())
                .await
                .is_err()
            {
                return Ok(None);
            }
        }
    }

    /// Once every byte of a file upload is in: hashes, publishes and binds
    /// it. Idempotent, and safe to run again after a crash at any point.
    pub(crate) async fn finalize_file(self: &Arc<Self>, id: Key) -> Result<()> {
        let core = self.clone();
        self.in_turn(id, async move {
            let c = core.clone();
            let Some((file, completion)) =
                tokio::task::spawn_blocking(move || c.hash_file(&id)).await??
            else {
                return Ok(());
            };
            let input = file.input.expect("hashed");
            if let Some(completion) = completion {
                let layout = Layout {
                    length: file.length.unwrap_or(0),
                    block_size: file.block_size,
                };
                let published = core.inputs.publish(id, layout, completion, input).await;
                core.cap.release_upload(&id);
                match published? {
                    Published::Stored { hash, .. } => core.input_used(&hash)?,
                    Published::Rejected { root } => {
                        return Err(Error::Internal(format!(
                            "upload {id} was hashed to {input}, its chaining values now give {root}"
                        )));
                    }
                }
            }
            core.bind_file(id, file).await
        })
        .await?;
        self.uploads.stop(UploadId(id));
        self.notifier.notify(&id);
        Ok(())
    }

    /// Blocking: the input hash of a complete file upload, recorded before
    /// anything is published, and the completion its bytes are to be
    /// published with (none for a partial upload, which is not published).
    /// `None` if it is not complete, or already done.
    fn hash_file(&self, id: &Key) -> Result<Option<(FileRecord, Option<Completion>)>> {
        let Some(file) = self.meta.file(id)? else {
            return Ok(None);
        };
        if file.state != FileState::Receiving {
            return Ok(None);
        }
        let Some(length) = file.length else {
            return Ok(None);
        };
        let layout = Layout {
            length,
            block_size: file.block_size,
        };
        // A final upload is complete once assembled (its caller's doing).
        if file.input.is_none() && !matches!(file.concat, Concat::Final(_)) {
            let progress = self.uploads.progress(UploadId(*id), &layout)?;
            if progress.upload.is_none() || !progress.all_in {
                return Ok(None);
            }
        }
        // Hashed before a crash, the chaining values are read back (they are
        // stored before the hash is recorded).
        let completion = self.uploads.complete(UploadId(*id), &layout)?;
        let file = match file.input {
            Some(_) => file,
            None => {
                let input = completion.root;
                let updated = self.meta.update_file(id, UploadChange::Keep, |f| {
                    (f.input.is_none()).then(|| FileRecord {
                        input: Some(input),
                        ..f.clone()
                    })
                })?;
                self.meta.flush()?;
                match updated {
                    Some((f, _)) => f,
                    None => return Ok(None),
                }
            }
        };
        if file.concat == Concat::Partial {
            return Ok(Some((file, None)));
        }
        Ok(Some((file, Some(completion))))
    }

    /// Binds a hashed file upload to the entry of (input, operation) — found,
    /// or made in `processing` since the input is stored — and marks it done.
    async fn bind_file(self: &Arc<Self>, id: Key, file: FileRecord) -> Result<()> {
        let input = file.input.expect("hashed");
        let key = if file.concat == Concat::Partial {
            None
        } else {
            let json: serde_json::Value = serde_json::from_str(&file.operation)
                .map_err(|e| Error::Internal(format!("stored operation: {e}")))?;
            let op = Operation::parse(&json)
                .map_err(|e| Error::Internal(format!("stored operation: {e}")))?;
            let req = CreateRequest {
                input: InputRef {
                    blake3: input,
                    length: file.length.unwrap_or(0),
                },
                operation: op.normalized().clone(),
                block_size: Some(file.block_size),
            };
            let (key, _, _) = self.lookup_or_create(&req, &op).await?;
            Some(key)
        };
        let core = self.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            core.meta.update_file(&id, UploadChange::End, |f| {
                (f.state == FileState::Receiving).then(|| FileRecord {
                    state: FileState::Done { key },
                    ..f.clone()
                })
            })?;
            core.meta.clear_cvs(&id)?;
            core.meta.flush()?;
            Ok(())
        })
        .await?
    }

    /// Assembles a final upload from its partials' staged bytes, then
    /// finalizes it. The kernel copies (`copy_file_range`, which clones
    /// extents where the filesystem can); the bytes are then hashed once.
    async fn assemble(self: &Arc<Self>, id: Key) -> Result<()> {
        let core = self.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let file = core.meta.file(&id)?.ok_or_else(not_found)?;
            let (Concat::Final(parts), Some(length)) = (&file.concat, file.length) else {
                return Ok(());
            };
            if file.input.is_some() {
                return Ok(());
            }
            let mut out = core.inputs.staging().open_file(&id, length)?;
            let mut at = 0u64;
            for part in parts {
                let src = File::open(core.inputs.staging().path(part)).map_err(|e| {
                    Error::problem(
                        ProblemType::InvalidHeader,
                        format!("Upload-Concat: the bytes of {part} are gone: {e}"),
                    )
                })?;
                let len = src.metadata()?.len();
                out.seek(SeekFrom::Start(at))?;
                let copied = std::io::copy(&mut std::io::Read::take(&src, len), &mut out)?;
                if copied != len {
                    return Err(Error::Internal(format!(
                        "copied {copied} of {len} bytes of {part}"
                    )));
                }
                at += len;
            }
            if at != length {
                return Err(Error::Internal(format!("assembled {at} of {length} bytes")));
            }
            out.sync_data()?;
            Ok(())
        })
        .await??;
        self.finalize_file(id).await
    }

    /// Expires a file upload found untouched for `upload_ttl` (see
    /// [`Core::sweep`]): an unfinished one loses its bytes and leaves a
    /// tombstone (requests get `410`) for [`TOMBSTONE_TTL`] or `upload_ttl`,
    /// whichever is longer; a finished one, or a tombstone, is forgotten
    /// (a result stays under its key).
    pub(crate) async fn expire_file(self: &Arc<Self>, id: Key, state: FileState) -> Result<()> {
        self.uploads.stop(UploadId(id));
        self.cap.release_upload(&id);
        let core = self.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            if state == FileState::Receiving {
                tracing::info!(id = %id, "upload expired");
                crate::metrics::UPLOADS_EXPIRED.inc();
                core.meta.update_file(&id, UploadChange::End, |f| {
                    Some(FileRecord {
                        state: FileState::Expired,
                        ..f.clone()
                    })
                })?;
                core.meta.clear_cvs(&id)?;
            } else {
                core.meta.remove_file(&id)?;
            }
            core.inputs.staging().remove(&id)?;
            core.meta.flush()?;
            Ok(())
        })
        .await?
    }

    /// Resumes file uploads a crash interrupted between their last byte and
    /// their binding, and final uploads not yet assembled.
    pub async fn recover_files(self: &Arc<Self>) -> Result<()> {
        let mut pending = Vec::new();
        for item in self.meta.files() {
            let (id, file) = item?;
            if !self.deadlines.has(Class::File, id.as_bytes())? {
                let due = file.touched + self.config.upload_ttl;
                self.deadlines.set(Class::File, id.as_bytes(), due)?;
            }
            if file.state == FileState::Receiving {
                if let (Some(l), Concat::None | Concat::Partial) = (file.length, &file.concat) {
                    self.cap.restore_upload(id, l);
                }
                pending.push((id, matches!(file.concat, Concat::Final(_))));
            }
        }
        for (id, is_final) in pending {
            let done = if is_final {
                self.assemble(id).await
            } else {
                self.finalize_file(id).await
            };
            if let Err(e) = done {
                tracing::warn!(id = %id, error = %e, "could not finish an upload after a restart");
            }
        }
        Ok(())
    }
}
