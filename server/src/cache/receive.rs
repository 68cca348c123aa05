//! Entries as owners of uploads: a `/v1` entry's upload has the entry's key
//! as its [`UploadId`]. The entry says whether bytes are taken and with
//! which layout; the upload service takes them; when every byte is in, the
//! entry verifies and publishes them ([`Core::finalize`]).

use std::sync::Arc;

use upcache_protocol::headers::BlockHash;
use upcache_protocol::{Key, Layout, ProblemType, State};

use super::{failure, Core};
use crate::error::{Error, Result};
use crate::store::meta::EntryRecord;
use crate::upload::{not_uploading, BodyCheck, BodyStream, Progress, Start, UploadId, Uploads};

/// What an entry's upload request left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes received contiguously from 0.
    pub offset: u64,
    /// Every byte is in and verified: the entry is processing or complete.
    pub complete: bool,
}

/// Whether every byte of `entry`'s input is in and `offset` is their end:
/// a retried last request whose answer was lost.
fn finished(entry: &EntryRecord, offset: u64) -> bool {
    matches!(entry.state, State::Processing | State::Complete) && offset == entry.length
}

fn accepting(entry: &EntryRecord) -> Result<()> {
    match entry.state {
        State::Uploading => Ok(()),
        other => Err(not_uploading(&format!("entry is {}", other.as_str()))),
    }
}

impl Core {
    /// Waits, briefly, until no sequential request is appending to the
    /// entry's upload (see [`crate::upload::Uploads::settle`]).
    pub async fn settle(&self, key: &Key) {
        self.uploads.settle(UploadId(*key)).await
    }

    /// Appends a body to the entry's upload (`PATCH`, one-shot `PUT`).
    pub async fn append(
        self: &Arc<Self>,
        key: Key,
        start: Start,
        check: Option<BodyCheck>,
        body: BodyStream,
    ) -> Result<Received> {
        let end = move |entry: &EntryRecord| match start {
            Start::Offset(o) => o,
            Start::Whole => entry.length,
        };
        self.receive(key, end, move |uploads, id, layout| async move {
            uploads.append(id, layout, start, check, body).await
        })
        .await
    }

    /// Stores block `n` of the entry's upload. A block already received is
    /// acknowledged without reading the body — also after the upload is
    /// complete, so that a client retrying a block whose answer it lost
    /// gets a success.
    pub async fn put_block(
        self: &Arc<Self>,
        key: Key,
        n: u64,
        verify: Option<BlockHash>,
        length: Option<u64>,
        body: BodyStream,
    ) -> Result<Received> {
        let end = |entry: &EntryRecord| entry.length;
        self.receive(key, end, move |uploads, id, layout| async move {
            uploads.put_block(id, layout, n, verify, length, body).await
        })
        .await
    }

    /// Runs `upload` on the entry's upload if it takes bytes — or if its
    /// bytes are all in and `end` (where the request ends) is their end:
    /// a retried last request whose answer was lost — then
    /// [`Core::after`]. In a task of its own: the upload is finished even
    /// if the client goes away after its last byte.
    async fn receive<E, U, F>(self: &Arc<Self>, key: Key, end: E, upload: U) -> Result<Received>
    where
        E: FnOnce(&EntryRecord) -> u64 + Send + 'static,
        U: FnOnce(Arc<Uploads>, UploadId, Layout) -> F + Send + 'static,
        F: std::future::Future<Output = Result<Progress>> + Send,
    {
        let core = self.clone();
        tokio::spawn(async move {
            let entry = core.entry(&key)?;
            let layout = core.layout(&entry);
            let end = end(&entry);
            if !finished(&entry, end) {
                accepting(&entry)?;
            }
            let ran = upload(core.uploads.clone(), UploadId(key), layout).await;
            core.after(key, layout, ran, end).await
        })
        .await?
    }

    /// What the upload service's answer means for the entry: a complete
    /// upload is verified and published first.
    async fn after(
        self: &Arc<Self>,
        key: Key,
        layout: Layout,
        ran: Result<Progress>,
        end: u64,
    ) -> Result<Received> {
        match ran {
            Ok(p) if p.all_in => {
                self.finalize(key).await?;
                self.received(key, &layout)
            }
            Ok(p) if p.upload.is_some() => Ok(Received {
                offset: p.offset,
                complete: false,
            }),
            Ok(_) => self.received(key, &layout),
            Err(e) if e.is(ProblemType::NotUploading) => {
                let entry = self.entry(&key)?;
                if finished(&entry, end) {
                    return self.received(key, &layout);
                }
                accepting(&entry)?;
                Err(e)
            }
            Err(e) => {
                // What the request did deliver may have completed the upload.
                if self
                    .uploads
                    .progress(UploadId(key), &layout)
                    .is_ok_and(|p| p.all_in)
                {
                    self.finalize(key).await?;
                }
                Err(e)
            }
        }
    }

    /// Where the entry's upload stands, once any verification is done.
    fn received(&self, key: Key, layout: &Layout) -> Result<Received> {
        let p = self.uploads.progress(UploadId(key), layout)?;
        if p.upload.is_some() {
            return Ok(Received {
                offset: p.offset,
                complete: false,
            });
        }
        let entry = self.entry(&key)?;
        if entry.state == State::Failed {
            return Err(Error::from(failure(&entry)));
        }
        let done = matches!(entry.state, State::Processing | State::Complete);
        Ok(Received {
            offset: if done { entry.length } else { 0 },
            complete: done,
        })
    }
}
