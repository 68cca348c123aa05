//! The clients, the scenarios they loop over, and the scenarios on live
//! inputs (uploads of new ones are in [`super::upload`] and
//! [`super::tus`]). Each client draws a scenario by weight; a scenario that
//! cannot run now (no live input yet, the new-input budget spent, the input
//! locked by a delete) is skipped and another is drawn.
//!
//! | scenario | weight | what it does |
//! |---|---|---|
//! | hit | 26 | one-shot `PUT` (`Expect: 100-continue`) of a live input: answered before the body, with the result — computed then if this operation has no entry yet, once for every client asking at the same time (single flight) |
//! | get | 14 | `GET` of a complete result: whole, a `Range`, `If-None-Match` (`304`), or the status document |
//! | wait | 10 | `GET …/result` with `Prefer: wait` on an upload another client is making |
//! | miss | 8 | one-shot `PUT` of a new input: `100 Continue`, the body, the result |
//! | blocks | 12 | `POST`, then the blocks over 3 connections in shuffled order, each with `Upload-Block-Hash` (plain or `cv=`), then the result |
//! | patch | 10 | `POST`, then `PATCH` in 2–4 pieces, each resumed from `HEAD`'s `Upload-Offset`, then the result |
//! | tus | 12 | a tus upload at `/files/` (see [`super::tus`]) |
//! | recreate | 8 | `DELETE` of an entry (`404` after), then again by `POST` or one-shot `PUT`: no upload, the same result |
//!
//! A new input enters the window of live inputs once uploaded; the client
//! whose input pushes the oldest out of the window retires it: it deletes
//! every entry of it (`204`, then `404`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, IF_NONE_MATCH, RANGE};
use reqwest::StatusCode;
use upcache_protocol::status::{entry_path, result_path};
use upcache_protocol::{State, Status};

use super::http::{fail, Ctx, Step};
use super::state::{InputSpec, Live, Variant};
use super::stats::Kind;
use crate::input::Xorshift;

/// Pause after a failed scenario, so one fault does not become a flood.
const AFTER_FAILURE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Hit,
    Get,
    Wait,
    Miss,
    Blocks,
    Patch,
    Tus,
    Recreate,
}

impl Scenario {
    const ALL: [Scenario; 8] = [
        Scenario::Hit,
        Scenario::Get,
        Scenario::Wait,
        Scenario::Miss,
        Scenario::Blocks,
        Scenario::Patch,
        Scenario::Tus,
        Scenario::Recreate,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Hit => "hit",
            Scenario::Get => "get",
            Scenario::Wait => "wait",
            Scenario::Miss => "miss",
            Scenario::Blocks => "blocks",
            Scenario::Patch => "patch",
            Scenario::Tus => "tus",
            Scenario::Recreate => "recreate",
        }
    }

    /// The weight in the default mix (the table above).
    fn weight(self) -> u64 {
        match self {
            Scenario::Hit => 26,
            Scenario::Get => 14,
            Scenario::Wait => 10,
            Scenario::Miss => 8,
            Scenario::Blocks => 12,
            Scenario::Patch => 10,
            Scenario::Tus => 12,
            Scenario::Recreate => 8,
        }
    }
}

/// The scenarios and their weights: `hit=26,get=14,…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(Vec<(Scenario, u64)>);

impl Default for Mix {
    fn default() -> Self {
        Self(Scenario::ALL.iter().map(|s| (*s, s.weight())).collect())
    }
}

impl Mix {
    /// Parses `name=weight,…`; scenarios not named are not run.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut mix = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let scenario = Scenario::ALL
                .into_iter()
                .find(|s| s.name() == name.trim())
                .ok_or_else(|| {
                    let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                    format!("no scenario {name:?} (there are {})", names.join(", "))
                })?;
            let weight = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight is a whole number"))?;
            mix.push((scenario, weight));
        }
        match mix.iter().map(|(_, w)| w).sum::<u64>() {
            0 => Err("the mix needs a scenario with a weight above 0".into()),
            _ => Ok(Self(mix)),
        }
    }

    fn draw(&self, rng: &mut Xorshift) -> Scenario {
        let total: u64 = self.0.iter().map(|(_, w)| w).sum();
        let mut n = rng.below(total);
        for (s, w) in &self.0 {
            if n < *w {
                return *s;
            }
            n -= w;
        }
        unreachable!("n < total")
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(s, w)| format!("{}={w}", s.name()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// One client: scenarios until `stop`, then it ends (the scenario under
/// way is finished first; each of its requests is bounded).
pub async fn client(ctx: Arc<Ctx>, mix: Mix, n: u64, stop: Instant) {
    let mut rng = Xorshift::new(0xc1_1e47 ^ n);
    let mut skipped = 0u32;
    while Instant::now() < stop {
        let s = mix.draw(&mut rng);
        let outcome = match s {
            Scenario::Hit => hit(&ctx, &mut rng).await,
            Scenario::Get => get(&ctx, &mut rng).await,
            Scenario::Wait => wait(&ctx, &mut rng).await,
            Scenario::Miss => super::upload::miss(&ctx, &mut rng).await,
            Scenario::Blocks => super::upload::blocks(&ctx, &mut rng).await,
            Scenario::Patch => super::upload::patch(&ctx, &mut rng).await,
            Scenario::Tus => super::tus::upload(&ctx, &mut rng).await,
            Scenario::Recreate => recreate(&ctx, &mut rng).await,
        };
        match outcome {
            Ok(true) => {
                ctx.stats.scenario(s.name(), false);
                skipped = 0;
            }
            Ok(false) => {
                // Nothing to do for this one now; after many in a row (the
                // very start), let the others make progress.
                skipped += 1;
                if skipped > 8 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(f) => {
                ctx.stats.error(s.name(), f.kind, &f.what);
                ctx.stats.scenario(s.name(), true);
                tokio::time::sleep(AFTER_FAILURE).await;
            }
        }
    }
}

/// A new input of `min..=max` bytes (log-uniform), or a small PNG one time
/// in `image_in`; `None` when the new-input budget is spent.
pub fn new_input(ctx: &Ctx, rng: &mut Xorshift, min: u64, image_in: u64) -> Option<InputSpec> {
    let id = ctx.pool.new_id();
    let input = if rng.below(image_in) == 0 {
        let side = |rng: &mut Xorshift| 24 + rng.below(120) as u32;
        InputSpec::png(id, side(rng), side(rng))
    } else {
        let (lo, hi) = ((min as f64).ln(), (ctx.max_input.max(min) as f64).ln());
        let u = rng.below(1 << 20) as f64 / (1 << 20) as f64;
        InputSpec::blob(id, (lo + u * (hi - lo)).exp() as u64)
    };
    ctx.pool.spend(input.length).then_some(input)
}

pub(super) fn pick_variant(rng: &mut Xorshift, options: &[Variant]) -> Option<Variant> {
    (!options.is_empty()).then(|| options[rng.below(options.len() as u64) as usize])
}

/// A new input is stored and its `variant` complete: it joins the window,
/// and the input it pushes out is retired.
pub async fn adopt(ctx: &Ctx, live: Arc<Live>, variant: Variant) -> Step {
    live.set_created(variant, true);
    ctx.pool
        .stored_new
        .fetch_add(live.input.length, std::sync::atomic::Ordering::Relaxed);
    match ctx.pool.add(live) {
        Some(old) => retire(ctx, &old).await,
        None => Ok(()),
    }
}

/// Deletes every entry of `old` once no one uses it.
async fn retire(ctx: &Ctx, old: &Live) -> Step {
    let _lease = old.lease.clone().write_owned().await;
    for v in old.created() {
        delete(ctx, old, v).await?;
    }
    Ok(())
}

/// `DELETE` of an entry (`204`), then `HEAD` says it is gone (`404`).
async fn delete(ctx: &Ctx, live: &Live, v: Variant) -> Step {
    let url = ctx.url(&entry_path(&live.input.key(v)));
    let a = ctx.send(Kind::Delete, ctx.http.delete(&url)).await?;
    a.expect(Kind::Delete, StatusCode::NO_CONTENT)?;
    live.set_created(v, false);
    let a = ctx.send(Kind::Head, ctx.http.head(&url)).await?;
    a.expect(Kind::Head, StatusCode::NOT_FOUND)
}

async fn hit(ctx: &Ctx, rng: &mut Xorshift) -> Step<bool> {
    let Some(live) = ctx.pool.pick(rng) else {
        return Ok(false);
    };
    let Ok(_lease) = live.lease.clone().try_read_owned() else {
        return Ok(false);
    };
    let v = pick_variant(rng, live.input.variants()).expect("identity at least");
    let resp = ctx.one_shot(Kind::PutHit, &live, v).await?;
    ctx.one_shot_result(Kind::PutHit, &live, v, resp).await?;
    live.set_created(v, true);
    Ok(true)
}

async fn get(ctx: &Ctx, rng: &mut Xorshift) -> Step<bool> {
    let Some(live) = ctx.pool.pick(rng) else {
        return Ok(false);
    };
    let Ok(_lease) = live.lease.clone().try_read_owned() else {
        return Ok(false);
    };
    let Some(v) = pick_variant(rng, &live.created()) else {
        return Ok(false);
    };
    let Some(result) = live.known(v).result else {
        return Ok(false);
    };
    let key = live.input.key(v);
    let url = ctx.url(&result_path(&key));
    let k = Kind::Result;
    match rng.below(4) {
        0 => {
            let a = ctx.send(k, ctx.http.get(&url)).await?;
            a.expect(k, StatusCode::OK)?;
            let (etag, ct) = (a.header("etag"), a.header(CONTENT_TYPE.as_str()));
            super::http::check_result(k, &live, v, etag, ct, &a.body)?;
        }
        1 => {
            let req = ctx
                .http
                .get(&url)
                .header(IF_NONE_MATCH, format!("\"{result}\""));
            let a = ctx.send(k, req).await?;
            a.expect(k, StatusCode::NOT_MODIFIED)?;
        }
        2 if v == Variant::Identity => {
            let (from, to) = (live.input.length / 3, live.input.length / 2);
            let req = ctx
                .http
                .get(&url)
                .header(RANGE, format!("bytes={from}-{to}"));
            let a = ctx.send(k, req).await?;
            a.expect(k, StatusCode::PARTIAL_CONTENT)?;
            let want = live.input.bytes().slice(from as usize..=to as usize);
            if a.body != want {
                return fail(k, format!("bytes {from}-{to} differ from the input's"));
            }
        }
        _ => {
            let a = ctx
                .send(Kind::Status, ctx.http.get(ctx.url(&entry_path(&key))))
                .await?;
            a.expect(Kind::Status, StatusCode::OK)?;
            let status: Status = serde_json::from_slice(&a.body)
                .or_else(|e| fail(Kind::Status, format!("bad status document: {e}")))?;
            let stored = status.result.as_ref().map(|r| r.blake3);
            if status.state != State::Complete || stored != Some(result) {
                return fail(
                    Kind::Status,
                    format!("expected complete with result {result}, got {}", a.brief()),
                );
            }
        }
    }
    Ok(true)
}

async fn wait(ctx: &Ctx, rng: &mut Xorshift) -> Step<bool> {
    let Some(pending) = ctx.pool.pick_pending(rng) else {
        return Ok(false);
    };
    let Ok(_lease) = pending.live.lease.clone().try_read_owned() else {
        return Ok(false);
    };
    ctx.wait_result(Kind::ResultWait, &pending.live, pending.variant)
        .await?;
    Ok(true)
}

async fn recreate(ctx: &Ctx, rng: &mut Xorshift) -> Step<bool> {
    let Some(live) = ctx.pool.pick(rng) else {
        return Ok(false);
    };
    let Ok(_lease) = live.lease.clone().try_write_owned() else {
        return Ok(false);
    };
    let Some(v) = pick_variant(rng, &live.created()) else {
        return Ok(false);
    };
    delete(ctx, &live, v).await?;
    if rng.below(2) == 0 {
        let resp = ctx.one_shot(Kind::PutHit, &live, v).await?;
        ctx.one_shot_result(Kind::PutHit, &live, v, resp).await?;
    } else {
        let k = Kind::Create;
        let (a, status) = super::upload::post_create(ctx, &live, v, None).await?;
        if status.state == State::Uploading || status.state == State::Failed {
            return fail(
                k,
                format!("the input is stored, yet the new entry is {}", a.brief()),
            );
        }
        ctx.wait_result(Kind::ResultWait, &live, v).await?;
    }
    live.set_created(v, true);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_print() {
        let mix = Mix::parse("blocks=3, tus").unwrap();
        assert_eq!(mix.to_string(), "blocks=3,tus=1");
        assert_eq!(Mix::parse(&Mix::default().to_string()), Ok(Mix::default()));
        assert!(Mix::parse("hit=0").is_err());
        assert!(Mix::parse("nap=1").unwrap_err().contains("recreate"));
        assert!(Mix::parse("hit=x").is_err());
        let mut rng = Xorshift::new(1);
        assert!((0..100).all(|_| mix.draw(&mut rng) != Scenario::Hit));
    }
}
