//! The tus scenario: an upload at `/files/` as a tus client makes it.
//!
//! Half the time the input is a live one (the server holds it already: the
//! upload still completes normally, and binds to the existing entry or
//! creates it), half the time a new one (from the new-input budget; it then
//! joins the window). Creation with `Upload-Length` and `Upload-Metadata`
//! (`filename`, and the `operation` as base64 JSON), then 1–3 `PATCH`es,
//! each resumed from `HEAD`'s `Upload-Offset`; then `HEAD` must carry the
//! entry's `Upload-Key`, `GET /files/{id}/result` (with `Prefer: wait`) the
//! checked result, and the upload is terminated (`DELETE`, `204`) — a tus
//! upload that is not terminated is kept for `upload_ttl` (7 days by
//! default), which would grow sled for the whole run.

use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use upcache_protocol::headers as h;
use upcache_protocol::tus::Metadata;

use super::http::{fail, Ctx, Step};
use super::mix::{adopt, new_input};
use super::state::{Live, Variant};
use super::stats::Kind;
use crate::input::Xorshift;
use crate::tus::resolve;

/// Path of the tus endpoint.
const FILES: &str = "/files/";

pub async fn upload(ctx: &Ctx, rng: &mut Xorshift) -> Step<bool> {
    let (live, lease, fresh) = if rng.below(2) == 0 {
        let Some(live) = ctx.pool.pick(rng) else {
            return Ok(false);
        };
        let Ok(lease) = live.lease.clone().try_read_owned() else {
            return Ok(false);
        };
        (live, Some(lease), false)
    } else {
        let Some(input) = new_input(ctx, rng, 1 << 10, 3) else {
            return Ok(false);
        };
        (Live::new(input), None, true)
    };
    let variants = live.input.variants();
    let v = variants[rng.below(variants.len() as u64) as usize];
    transfer(ctx, rng, &live, v).await?;
    drop(lease);
    if fresh {
        adopt(ctx, live, v).await?;
    }
    Ok(true)
}

async fn transfer(ctx: &Ctx, rng: &mut Xorshift, live: &Arc<Live>, v: Variant) -> Step {
    let tus = |req: reqwest::RequestBuilder| req.header(h::TUS_RESUMABLE, h::TUS_PROTOCOL_VERSION);
    let length = live.input.length;
    let metadata = Metadata::new([
        (
            "filename",
            format!("soak-{}.bin", live.input.id).into_bytes(),
        ),
        ("operation", v.json().to_string().into_bytes()),
    ])
    .expect("valid metadata keys")
    .encode();
    let req = tus(ctx.http.post(ctx.url(FILES)))
        .header(h::UPLOAD_LENGTH, length)
        .header(h::UPLOAD_METADATA, metadata);
    let a = ctx.send(Kind::TusCreate, req).await?;
    a.expect(Kind::TusCreate, StatusCode::CREATED)?;
    let Some(location) = a.header(LOCATION.as_str()) else {
        return fail(Kind::TusCreate, "201 without a Location");
    };
    let url = resolve(&ctx.base, location);

    let bytes = live.input.bytes();
    let mut pieces = 1 + rng.below(3);
    loop {
        let a = ctx.send(Kind::TusHead, tus(ctx.http.head(&url))).await?;
        a.expect(Kind::TusHead, StatusCode::OK)?;
        let offset = a.offset(Kind::TusHead)?;
        if offset == length {
            break;
        }
        let len = ((length - offset) / pieces).max(1);
        pieces = pieces.saturating_sub(1).max(1);
        let req = tus(ctx.http.patch(&url))
            .header(CONTENT_TYPE, h::OFFSET_OCTET_STREAM)
            .header(h::UPLOAD_OFFSET, offset)
            .body(bytes.slice(offset as usize..(offset + len) as usize));
        let a = ctx.send(Kind::TusPatch, req).await?;
        a.expect(Kind::TusPatch, StatusCode::NO_CONTENT)?;
        if a.offset(Kind::TusPatch)? != offset + len {
            return fail(
                Kind::TusPatch,
                format!(
                    "Upload-Offset {:?} after {offset}+{len}",
                    a.header(h::UPLOAD_OFFSET)
                ),
            );
        }
    }

    let a = ctx.send(Kind::TusHead, tus(ctx.http.head(&url))).await?;
    a.expect(Kind::TusHead, StatusCode::OK)?;
    let want = live.input.key(v).to_hex();
    if a.header(h::UPLOAD_KEY) != Some(want.as_str()) {
        return fail(
            Kind::TusHead,
            format!(
                "finished upload: Upload-Key {:?}, expected {want}",
                a.header(h::UPLOAD_KEY)
            ),
        );
    }
    live.set_created(v, true);
    ctx.wait_result_at(Kind::TusResult, &format!("{url}/result"), live, v)
        .await?;
    let a = ctx
        .send(Kind::TusDelete, tus(ctx.http.delete(&url)))
        .await?;
    a.expect(Kind::TusDelete, StatusCode::NO_CONTENT)
}
