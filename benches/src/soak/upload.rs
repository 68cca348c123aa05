//! The scenarios that upload a new input to `/v1` (from the new-input
//! budget), then wait for its result and add it to the window of live
//! inputs: a one-shot `PUT` (miss), parallel blocks, and `PATCH` pieces
//! resumed from `HEAD`. While a block or `PATCH` upload runs, other clients
//! may wait on its result (the `wait` scenario of [`super::mix`]).

use std::sync::Arc;
use std::time::Instant;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use tokio::task::JoinSet;
use upcache_protocol::headers::{self as h, BlockHash};
use upcache_protocol::status::{block_path, entry_path, OPS_PATH};
use upcache_protocol::tree::BlockHasher;
use upcache_protocol::{CreateRequest, InputHash, InputRef, Layout, State, Status};

use super::http::{fail, Answer, Ctx, Step};
use super::mix::{adopt, new_input, pick_variant};
use super::state::{Live, Pending, Variant};
use super::stats::Kind;
use crate::input::Xorshift;

/// Concurrent connections of one block upload.
const LANES: usize = 3;
/// Block sizes of block and `PATCH` uploads: small, so inputs have several.
const BLOCK_SIZES: [u64; 3] = [64 << 10, 128 << 10, 256 << 10];
/// Smallest new blob.
const MIN_INPUT: u64 = 1 << 10;

pub async fn miss(ctx: &Ctx, rng: &mut Xorshift) -> Step<bool> {
    let Some(input) = new_input(ctx, rng, MIN_INPUT, 4) else {
        return Ok(false);
    };
    let v = pick_variant(rng, input.variants()).expect("identity at least");
    let live = Live::new(input);
    let resp = ctx.one_shot(Kind::PutMiss, &live, v).await?;
    ctx.one_shot_result(Kind::PutMiss, &live, v, resp).await?;
    adopt(ctx, live, v).await?;
    Ok(true)
}

/// `POST /v1/ops` creating the entry of `(live, v)`: `201` and its status.
pub(super) async fn post_create(
    ctx: &Ctx,
    live: &Live,
    v: Variant,
    block_size: Option<u64>,
) -> Step<(Answer, Status)> {
    let k = Kind::Create;
    let request = CreateRequest {
        input: InputRef {
            blake3: live.input.hash,
            length: live.input.length,
        },
        operation: v.json(),
        block_size,
    };
    let req = ctx
        .http
        .post(ctx.url(OPS_PATH))
        .header(CONTENT_TYPE, h::JSON)
        .body(serde_json::to_vec(&request).expect("a CreateRequest serializes"));
    let a = ctx.send(k, req).await?;
    a.expect(k, StatusCode::CREATED)?;
    let status: Status = serde_json::from_slice(&a.body)
        .or_else(|e| fail(k, format!("bad status document: {e}")))?;
    Ok((a, status))
}

/// `POST /v1/ops` for a new input: `201`, uploading, with the block size asked for.
async fn create(ctx: &Ctx, live: &Live, v: Variant, block_size: u64) -> Step<Status> {
    let (a, status) = post_create(ctx, live, v, Some(block_size)).await?;
    if status.state != State::Uploading || status.block_size != block_size || status.offset != 0 {
        return fail(
            Kind::Create,
            format!("expected a new upload, got {}", a.brief()),
        );
    }
    Ok(status)
}

pub async fn blocks(ctx: &Ctx, rng: &mut Xorshift) -> Step<bool> {
    let bs = BLOCK_SIZES[rng.below(BLOCK_SIZES.len() as u64) as usize];
    let Some(input) = new_input(ctx, rng, 2 * bs + 1, 4) else {
        return Ok(false);
    };
    // A PNG is small: smaller blocks, so that it has several too.
    let bs = if input.is_image() { 16 << 10 } else { bs };
    let v = pick_variant(rng, input.variants()).expect("identity at least");
    let live = Live::new(input);
    create(ctx, &live, v, bs).await?;
    let _published = ctx.pool.publish(Arc::new(Pending {
        live: live.clone(),
        variant: v,
    }));

    let layout = Layout::new(live.input.length, bs, u64::MAX).expect("valid block size");
    let mut order: Vec<u64> = (0..layout.blocks()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let bytes = live.input.bytes();
    let key = live.input.key(v);
    let mut lanes = JoinSet::new();
    for lane in 0..LANES {
        let mine: Vec<u64> = order.iter().copied().skip(lane).step_by(LANES).collect();
        let bytes = bytes.clone();
        let (http, url) = (ctx.http.clone(), ctx.url(""));
        let stats = ctx.stats.clone();
        lanes.spawn(async move {
            for n in mine {
                let range = layout.range(n);
                let block = bytes.slice(range.start as usize..range.end as usize);
                let hash = if n % 2 == 0 {
                    BlockHash::Alone(InputHash::of(&block))
                } else {
                    let mut hasher = BlockHasher::new(&layout, n);
                    hasher.update(&block);
                    BlockHash::Chaining(hasher.finish())
                };
                let req = http
                    .put(format!("{url}{}", block_path(&key, n)))
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(h::UPLOAD_BLOCK_HASH, hash.to_header())
                    .body(block);
                let started = Instant::now();
                let a = send_plain(req).await.or_else(|e| fail(Kind::Block, e))?;
                stats.request(Kind::Block, started.elapsed());
                a.expect(Kind::Block, StatusCode::NO_CONTENT)?;
            }
            Ok(())
        });
    }
    while let Some(joined) = lanes.join_next().await {
        joined.or_else(|e| fail(Kind::Block, format!("lane panicked: {e}")))??;
    }
    ctx.wait_result(Kind::ResultWait, &live, v).await?;
    adopt(ctx, live, v).await?;
    Ok(true)
}

/// A request sent outside [`Ctx::send`] (from a spawned lane).
async fn send_plain(req: reqwest::RequestBuilder) -> Result<Answer, String> {
    let resp = req.send().await.map_err(|e| format!("no answer: {e}"))?;
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp.bytes().await.map_err(|e| format!("no answer: {e}"))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

pub async fn patch(ctx: &Ctx, rng: &mut Xorshift) -> Step<bool> {
    let bs = BLOCK_SIZES[rng.below(BLOCK_SIZES.len() as u64) as usize];
    let Some(input) = new_input(ctx, rng, MIN_INPUT, 4) else {
        return Ok(false);
    };
    let v = pick_variant(rng, input.variants()).expect("identity at least");
    let live = Live::new(input);
    create(ctx, &live, v, bs).await?;
    let _published = ctx.pool.publish(Arc::new(Pending {
        live: live.clone(),
        variant: v,
    }));
    let url = ctx.url(&entry_path(&live.input.key(v)));
    let bytes = live.input.bytes();
    let length = live.input.length;
    let mut pieces = 2 + rng.below(3);
    loop {
        // Resume as a client that lost its connection would: ask first.
        let a = ctx.send(Kind::Head, ctx.http.head(&url)).await?;
        a.expect(Kind::Head, StatusCode::OK)?;
        let offset = a.offset(Kind::Head)?;
        if offset == length {
            break;
        }
        let len = if pieces <= 1 {
            length - offset
        } else {
            ((length - offset) / pieces).max(1)
        };
        pieces = pieces.saturating_sub(1);
        let body = bytes.slice(offset as usize..(offset + len) as usize);
        let req = ctx
            .http
            .patch(&url)
            .header(CONTENT_TYPE, h::OFFSET_OCTET_STREAM)
            .header(h::UPLOAD_OFFSET, offset)
            .body(body);
        let a = ctx.send(Kind::Patch, req).await?;
        a.expect(Kind::Patch, StatusCode::NO_CONTENT)?;
        if a.offset(Kind::Patch)? != offset + len {
            return fail(
                Kind::Patch,
                format!(
                    "Upload-Offset {:?} after {offset}+{len}",
                    a.offset(Kind::Patch)
                ),
            );
        }
        if offset + len == length {
            break;
        }
    }
    ctx.wait_result(Kind::ResultWait, &live, v).await?;
    adopt(ctx, live, v).await?;
    Ok(true)
}
