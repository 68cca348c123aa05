//! Large results handed to the S3 tier: a result at least `redirect_above`
//! long whose bucket copy is confirmed is answered with a presigned URL of
//! its object instead of its bytes, so that this node does not carry them.
//! Everything else — small results, results whose upload to the bucket is
//! still queued, a remote tier behind an open breaker, no S3 tier at all —
//! is served by this node as usual.

use std::time::Duration;

use super::{Core, ResultView};
use crate::metrics;

/// A redirect for a result: where to, and for how long the URL is good.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub url: String,
    pub ttl: Duration,
}

impl Core {
    /// Whether `result` is large enough to be handed to the S3 tier (no
    /// I/O: the first question of a result request).
    pub fn may_redirect(&self, result: &ResultView) -> bool {
        self.config
            .s3
            .as_ref()
            .and_then(|s3| s3.redirect_above)
            .is_some_and(|above| result.length >= above.as_u64())
    }

    /// Where to send a client for `result`'s bytes, if it should be sent
    /// elsewhere (see the module doc). A failure to presign is logged and
    /// the result served locally.
    pub async fn redirect(&self, result: &ResultView) -> Option<Redirect> {
        let s3 = self.config.s3.as_ref()?;
        if !self.may_redirect(result) {
            return None;
        }
        let ttl = Duration::from_secs(s3.redirect_ttl);
        match self
            .inputs
            .blobs()
            .presigned(result.blob, result.length, ttl)
            .await
        {
            Ok(Some(url)) => {
                // A use like any read: `result_ttl` counts from the last.
                self.cap.touch(result.blob);
                metrics::RESULT_REDIRECTS.inc();
                Some(Redirect { url, ttl })
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(key = %result.key, error = %e, "no redirect; serving the result locally");
                None
            }
        }
    }
}
