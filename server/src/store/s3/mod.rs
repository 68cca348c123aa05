//! The S3 blob store: blobs as objects in an S3 (or S3-compatible) bucket,
//! shared by every node that names the same bucket and prefix.
//!
//! ```text
//! <prefix>inputs/<blake3>   verified inputs
//! <prefix>results/<key>     results of operations (identity: an empty link to the input)
//! ```
//!
//! `<prefix>` is the `[s3] prefix` setting (empty, or ending in `/`); the
//! names below it are [`BlobName::path`]. Every object describes itself, so a
//! node that has never seen it can serve it: `Content-Type` and
//! `Content-Length` are the blob's, and user metadata holds the rest of its
//! [`BlobMeta`] (`spec/s3-objects.md` is the normative list):
//!
//! | header | value |
//! |---|---|
//! | `x-amz-meta-upcache-format` | `1` |
//! | `x-amz-meta-upcache-length` | length in bytes, decimal |
//! | `x-amz-meta-upcache-blake3` | BLAKE3 of the bytes, hex |
//! | `x-amz-meta-upcache-block-size` | inputs: the block size of the upload, decimal |
//! | `x-amz-meta-upcache-digest` | inputs: the upload's block digest record, hex |
//! | `x-amz-meta-upcache-key` | results: the entry's key, hex |
//! | `x-amz-meta-upcache-input` | results: the input's BLAKE3, hex |
//! | `x-amz-meta-upcache-input-length` | results: the input's length, decimal |
//! | `x-amz-meta-upcache-operation` | results: the canonical operation JSON, percent-encoded |
//!
//! Objects are written whole (one `PutObject`, or a multipart upload that is
//! only visible once completed), so a reader sees the old object or the new
//! one. Objects above [`S3Tuning::part_size`] go up in parts of that size,
//! [`S3Tuning::parts_in_flight`] at a time. An input (its name is its
//! content) that is already there is not sent again.
//!
//! Errors keep their kind apart (see [`super::blob`]): 404 is `None` or
//! `NotFound`, 403 is `PermissionDenied`, throttling and 5xx answers are
//! `ResourceBusy`, a server that cannot be reached is `ConnectionRefused`
//! (or the socket's own kind) and one that does not answer in time is
//! `TimedOut` — within [`S3Tuning`]'s connect and read timeouts and retries.
//!
//! [`headers`] turns metadata into object headers and back, [`parts`] cuts
//! multipart uploads and checks streams, [`errors`] sorts SDK errors.

mod errors;
mod headers;
mod parts;

use std::io;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider,
};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use bytes::BytesMut;
use futures_util::stream::StreamExt;
use tracing::Instrument;

use super::blob::{
    BlobHead, BlobMeta, BlobName, BlobStore, ByteStream, PartUploads, Presign, StagedFile,
};
use crate::config::S3Config;
use crate::metrics;
use errors::{is_missing, s3_error, status};
use headers::{metadata, parse_metadata};
use parts::{file_part, joined, Body, Check, Parts};

/// The smallest part but the last S3 accepts.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// The largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Sizes, concurrency and patience of an [`S3Store`].
#[derive(Debug, Clone)]
pub struct S3Tuning {
    /// Objects larger than this go up in parts of this size.
    pub part_size: u64,
    /// Parts of one object sent at once.
    pub parts_in_flight: usize,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait from sending a request to the first byte of its answer.
    pub read_timeout: Duration,
    /// Tries of a request that failed for a reason worth retrying.
    pub attempts: u32,
    /// Wait before the first retry (doubling, with jitter, up to a second).
    pub backoff: Duration,
    /// Names asked for per page of a listing (S3 gives at most 1000).
    pub list_page: u16,
}

impl Default for S3Tuning {
    fn default() -> Self {
        Self {
            part_size: 16 * 1024 * 1024,
            parts_in_flight: 4,
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(30),
            attempts: 3,
            backoff: Duration::from_millis(100),
            list_page: 1000,
        }
    }
}

/// Blobs as objects in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    tuning: S3Tuning,
}

impl S3Store {
    /// A store on the bucket `config` names, with default tuning.
    pub async fn from_config(config: &S3Config) -> io::Result<Self> {
        Self::with_tuning(config, S3Tuning::default()).await
    }

    /// A store on the bucket `config` names. Credentials are the
    /// configuration's, or the usual AWS sources'. Nothing is sent yet.
    pub async fn with_tuning(config: &S3Config, tuning: S3Tuning) -> io::Result<Self> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&tuning.part_size)
            || tuning.parts_in_flight == 0
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "parts of {MIN_PART_SIZE} to {MAX_PART_SIZE} bytes, at least one at a time"
                ),
            ));
        }
        // HTTPS through rustls with ring, sharing the SDK's hyper 1 client.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(tuning.connect_timeout)
            .read_timeout(tuning.read_timeout)
            .build();
        let retries = RetryConfig::standard()
            .with_max_attempts(tuning.attempts.max(1))
            .with_initial_backoff(tuning.backoff)
            .with_max_backoff(Duration::from_secs(1));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(timeouts)
            .retry_config(retries);
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(c) = &config.credentials {
            let creds = Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                c.session_token.clone(),
                None,
                "upcache-config",
            );
            loader = loader.credentials_provider(SharedCredentialsProvider::new(creds));
        }
        let shared = loader.load().await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style)
            // S3-compatible servers differ in the newer checksum headers;
            // the bytes are checked end to end by their BLAKE3 anyway.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .interceptor(CountRequests);
        if shared.region().is_none() {
            s3 = s3.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &config.endpoint {
            s3 = s3.endpoint_url(endpoint);
        }
        Ok(Self {
            client: Client::from_conf(s3.build()),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            tuning,
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object name of `name`.
    pub fn object(&self, name: BlobName) -> String {
        format!("{}{}", self.prefix, name.path())
    }

    /// Whether an input already stored can stand for `meta` (same length).
    async fn already_stored(&self, name: BlobName, meta: &BlobMeta) -> io::Result<bool> {
        Ok(matches!(name, BlobName::Input(_))
            && self
                .head(name)
                .await?
                .is_some_and(|h| h.length == meta.length))
    }

    /// One `PutObject` of `body`; an input that appeared meanwhile is kept.
    async fn put_whole(&self, name: BlobName, body: S3Body, meta: &BlobMeta) -> io::Result<()> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object(name))
            .content_type(&meta.content_type)
            .content_length(meta.length as i64)
            .set_metadata(Some(metadata(name, meta)?))
            .body(body);
        if matches!(name, BlobName::Input(_)) {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(412) => Ok(()),
            Err(e) => Err(s3_error("PutObject", &self.object(name), e)),
        }
    }

    /// Sends the parts `parts` yields as a new multipart upload of
    /// `name`, at most `parts_in_flight` at once (each in a task of its own,
    /// so that they progress while the next part is read), and completes
    /// it; aborts it on any failure, including one of `parts`.
    async fn put_parts(&self, name: BlobName, meta: &BlobMeta, mut parts: Parts) -> io::Result<()> {
        let id = PartUploads::begin(self, name, meta.clone()).await?;
        let mut tasks = tokio::task::JoinSet::new();
        let sent = async {
            let mut done = Vec::new();
            while let Some((n, length, body)) = parts.next().await? {
                while tasks.len() >= self.tuning.parts_in_flight {
                    done.push(joined(tasks.join_next().await)?);
                }
                let (this, id) = (self.clone(), id.clone());
                let span = tracing::info_span!("s3 part", object = %self.object(name), n);
                tasks.spawn(
                    async move {
                        let tag = this.send_part(name, &id, n, length, body).await?;
                        Ok((n, tag))
                    }
                    .instrument(span),
                );
            }
            while let Some(part) = tasks.join_next().await {
                done.push(joined(Some(part))?);
            }
            done.sort_unstable_by_key(|(n, _)| *n);
            PartUploads::complete(self, name, &id, &done).await
        }
        .await;
        if sent.is_err() {
            tasks.shutdown().await;
            if let Err(e) = PartUploads::abort(self, name, &id).await {
                tracing::warn!(object = %self.object(name), error = %e, "abort of a multipart upload failed");
            }
        }
        sent
    }

    async fn send_part(
        &self,
        name: BlobName,
        id: &str,
        n: u32,
        length: u64,
        body: S3Body,
    ) -> io::Result<String> {
        let object = self.object(name);
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&object)
            .upload_id(id)
            .part_number(n as i32)
            .content_length(length as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| s3_error("UploadPart", &object, e))?;
        out.e_tag()
            .map(str::to_owned)
            .ok_or_else(|| io::Error::other(format!("S3 UploadPart {object}: no ETag")))
    }

    /// A range of no bytes, which S3 cannot be asked for: only whether the
    /// blob is there and long enough.
    async fn get_nothing(&self, name: BlobName, at: u64) -> io::Result<Option<ByteStream>> {
        match self.head(name).await? {
            None => Ok(None),
            Some(h) if at > h.length => Err(past_end(at..at, h.length)),
            Some(_) => Ok(Some(Box::pin(futures_util::stream::empty()))),
        }
    }
}

/// Counts every request sent to the endpoint by kind, as S3 bills them
/// (each retry is a request of its own): the `upcache_remote_*_requests_total`
/// metrics.
#[derive(Debug)]
struct CountRequests;

impl aws_sdk_s3::config::Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "upcache-count-requests"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        let query = request.uri().split_once('?').map_or("", |(_, q)| q);
        let counter = match request.method() {
            "HEAD" => &metrics::REMOTE_HEAD_REQUESTS,
            "GET" if query.split('&').any(|p| p.starts_with("list-type=")) => {
                &metrics::REMOTE_LIST_REQUESTS
            }
            "GET" => &metrics::REMOTE_GET_REQUESTS,
            "DELETE" => &metrics::REMOTE_DELETE_REQUESTS,
            _ => &metrics::REMOTE_PUT_REQUESTS,
        };
        counter.inc();
        Ok(())
    }
}

/// What an answer to `HEAD` or a whole `GET` of `name` says of it: its
/// length, and its metadata if the object carries all of ours and they
/// agree with that length.
fn head_of(
    name: BlobName,
    length: Option<i64>,
    metadata: Option<&std::collections::HashMap<String, String>>,
    content_type: Option<&str>,
) -> BlobHead {
    let length = length.unwrap_or(0).max(0) as u64;
    let meta = metadata.and_then(|m| {
        let meta = parse_metadata(name, m, content_type?)?;
        (meta.length == length).then_some(meta)
    });
    BlobHead { length, meta }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put_file(&self, name: BlobName, file: StagedFile, meta: BlobMeta) -> io::Result<()> {
        let length = tokio::fs::metadata(file.path()).await?.len();
        if length != meta.length {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{name}: the file has {length} bytes, its metadata says {}",
                    meta.length
                ),
            ));
        }
        if self.already_stored(name, &meta).await? {
            return Ok(());
        }
        let path = file.path().to_owned();
        if length <= self.tuning.part_size {
            let body = file_part(&path, 0, length).await?;
            return self.put_whole(name, body, &meta).await;
        }
        let parts = Parts::File {
            path,
            length,
            size: self.tuning.part_size,
            next: 0,
        };
        self.put_parts(name, &meta, parts).await
        // `file` is dropped here: the bucket holds the bytes now.
    }

    async fn put_stream(
        &self,
        name: BlobName,
        mut body: ByteStream,
        meta: BlobMeta,
    ) -> io::Result<()> {
        let mut check = Check::new(name, &meta);
        if meta.length <= self.tuning.part_size {
            let mut all = BytesMut::with_capacity(meta.length as usize);
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                check.add(&chunk)?;
                all.extend_from_slice(&chunk);
            }
            check.finish()?;
            if self.already_stored(name, &meta).await? {
                return Ok(());
            }
            return self
                .put_whole(name, S3Body::from(all.freeze()), &meta)
                .await;
        }
        if self.already_stored(name, &meta).await? {
            // Its bytes are not needed, but a caller is owed the check.
            while let Some(chunk) = body.next().await {
                check.add(&chunk?)?;
            }
            return check.finish();
        }
        let parts = Parts::Stream {
            body,
            carry: BytesMut::new(),
            check: Box::new(check),
            size: self.tuning.part_size as usize,
            n: 1,
            ended: false,
        };
        self.put_parts(name, &meta, parts).await
    }

    async fn get(
        &self,
        name: BlobName,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<ByteStream>> {
        let object = self.object(name);
        let mut req = self.client.get_object().bucket(&self.bucket).key(&object);
        if let Some(r) = &range {
            if r.start > r.end {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("range {r:?} ends before it starts"),
                ));
            }
            if r.start == r.end {
                return self.get_nothing(name, r.start).await;
            }
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) if status(&e) == Some(416) => {
                let r = range.unwrap_or(0..0);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("range {r:?} of {object} starts past its end"),
                ));
            }
            Err(e) => return Err(s3_error("GetObject", &object, e)),
        };
        if let Some(r) = range {
            // S3 answers a range running past the end with what there is.
            let total = out
                .content_range()
                .and_then(|c| c.rsplit_once('/'))
                .and_then(|(_, total)| total.parse::<u64>().ok());
            match total {
                Some(total) if r.end > total => return Err(past_end(r, total)),
                Some(_) => {}
                None => {
                    return Err(io::Error::other(format!(
                        "S3 GetObject {object}: a ranged answer without Content-Range"
                    )))
                }
            }
        }
        Ok(Some(Box::pin(Body(out.body))))
    }

    async fn head(&self, name: BlobName) -> io::Result<Option<BlobHead>> {
        let object = self.object(name);
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&object)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(s3_error("HeadObject", &object, e)),
        };
        Ok(Some(head_of(
            name,
            out.content_length(),
            out.metadata(),
            out.content_type(),
        )))
    }

    async fn fetch(&self, name: BlobName) -> io::Result<Option<(BlobHead, ByteStream)>> {
        let object = self.object(name);
        let req = self.client.get_object().bucket(&self.bucket).key(&object);
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(s3_error("GetObject", &object, e)),
        };
        let head = head_of(
            name,
            out.content_length(),
            out.metadata(),
            out.content_type(),
        );
        Ok(Some((head, Box::pin(Body(out.body)))))
    }

    async fn delete(&self, name: BlobName) -> io::Result<bool> {
        // S3 answers a delete the same whether or not the object was there.
        let was = self.head(name).await?.is_some();
        let object = self.object(name);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&object)
            .send()
            .await
            .map_err(|e| s3_error("DeleteObject", &object, e))?;
        Ok(was)
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<BlobName>> {
        let full = format!("{}{prefix}", self.prefix);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .max_keys(i32::from(self.tuning.list_page.max(1)))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("ListObjectsV2", &full, e))?;
            for object in page.contents() {
                let Some(rest) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                if let Some(name) = BlobName::parse(rest) {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }

    fn keeps_meta(&self) -> bool {
        true
    }

    fn parts(&self) -> Option<&dyn PartUploads> {
        Some(self)
    }

    fn presign(&self) -> Option<&dyn Presign> {
        Some(self)
    }
}

#[async_trait]
impl PartUploads for S3Store {
    fn min_part_size(&self) -> u64 {
        MIN_PART_SIZE
    }

    async fn begin(&self, name: BlobName, meta: BlobMeta) -> io::Result<String> {
        let object = self.object(name);
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&object)
            .content_type(&meta.content_type)
            .set_metadata(Some(metadata(name, &meta)?))
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", &object, e))?;
        out.upload_id().map(str::to_owned).ok_or_else(|| {
            io::Error::other(format!("S3 CreateMultipartUpload {object}: no upload id"))
        })
    }

    async fn put_part(
        &self,
        name: BlobName,
        id: &str,
        n: u32,
        length: u64,
        mut body: ByteStream,
    ) -> io::Result<String> {
        if length > MAX_PART_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("part {n} of {name}: {length} bytes, over S3's {MAX_PART_SIZE}"),
            ));
        }
        // Held in memory (a part is a block, a few MiB) so a retry can
        // send it again.
        let mut part = BytesMut::with_capacity(length as usize);
        while let Some(chunk) = body.next().await {
            part.extend_from_slice(&chunk?);
            if part.len() as u64 > length {
                break;
            }
        }
        if part.len() as u64 != length {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("part {n} of {name}: {length} bytes announced, other than sent"),
            ));
        }
        self.send_part(name, id, n, length, S3Body::from(part.freeze()))
            .await
    }

    async fn complete(&self, name: BlobName, id: &str, parts: &[(u32, String)]) -> io::Result<()> {
        let object = self.object(name);
        let parts = parts
            .iter()
            .map(|(n, tag)| {
                CompletedPart::builder()
                    .part_number(*n as i32)
                    .e_tag(tag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&object)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", &object, e))?;
        Ok(())
    }

    async fn abort(&self, name: BlobName, id: &str) -> io::Result<()> {
        let object = self.object(name);
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&object)
            .upload_id(id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(s3_error("AbortMultipartUpload", &object, e)),
        }
    }
}

#[async_trait]
impl Presign for S3Store {
    async fn get_url(&self, name: BlobName, ttl: Duration) -> io::Result<String> {
        let config = PresigningConfig::expires_in(ttl)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let object = self.object(name);
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object)
            .presigned(config)
            .await
            .map_err(|e| s3_error("presign GetObject", &object, e))?;
        Ok(req.uri().to_owned())
    }
}
fn past_end(r: Range<u64>, length: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("range {r:?} of a blob of {length} bytes"),
    )
}
