//! Parallel block uploads: blocks in any order, concurrently, idempotent, each
//! checked against `Upload-Block-Hash`; `HEAD` reports the missing blocks and a
//! commutative digest the client can recompute on its own.

use futures_util::future::join_all;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use reqwest::StatusCode;
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::{Digest, State};

const BS: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_in_any_order_give_the_input_and_the_expected_digest() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(1024 * 1024 + 5000, 1));
    let layout = job.layout(BS);
    assert_eq!(layout.blocks(), 17);
    server.create(&job, Some(BS)).await;

    let head = server.head_info(&job.key).await;
    assert_eq!(
        (head.state, head.offset, head.length, head.block_size),
        (State::Uploading, 0, job.len(), BS)
    );
    assert_eq!(head.missing, "0-16");
    assert_eq!(
        head.digest,
        Digest::new().to_hex(),
        "no block yet: the digest of the empty set"
    );

    // One at a time from the end: `Upload-Missing` shrinks from the top, the
    // digest follows, and the offset stays 0 while block 0 is missing.
    let mut received = Vec::new();
    for n in (12..17).rev() {
        let answer = server.put_block(&job, &layout, n).await;
        received.push(n);
        let head = server.head_info(&job.key).await;
        assert_eq!(
            head.missing,
            job.missing_after(&layout, &received),
            "after block {n}"
        );
        assert_eq!(
            head.digest,
            job.digest_of(&layout, received.iter().copied()),
            "after block {n}"
        );
        assert_eq!(head.offset, 0, "block 0 is missing");
        assert_eq!(
            header(&answer, h::UPLOAD_MISSING),
            head.missing,
            "the block answer agrees with HEAD"
        );
        assert_eq!(header(&answer, h::UPLOAD_DIGEST), head.digest);
        assert_eq!(header(&answer, h::UPLOAD_STATE), State::Uploading.as_str());
    }

    // Re-sending a received block is a no-op success.
    let before = server.head_info(&job.key).await;
    let answer = server.put_block(&job, &layout, 14).await;
    assert_eq!(header(&answer, h::UPLOAD_DIGEST), before.digest);
    assert_eq!(
        server.head_info(&job.key).await,
        before,
        "re-sending block 14 changed the entry"
    );

    // Blocks 1-11 concurrently, shuffled.
    let mut order: Vec<u64> = (1..12).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    join_all(order.iter().map(|&n| server.put_block(&job, &layout, n))).await;
    received.extend(1..12);
    let head = server.head_info(&job.key).await;
    assert_eq!(head.missing, "0");
    assert_eq!(head.offset, 0, "the offset counts contiguous bytes from 0");
    assert_eq!(
        head.digest,
        job.digest_of(&layout, received.iter().copied())
    );

    // The last block completes the upload.
    let answer = server.put_block(&job, &layout, 0).await;
    let state = header(&answer, h::UPLOAD_STATE);
    assert!(
        state == State::Processing.as_str() || state == State::Complete.as_str(),
        "state after the last block: {state}"
    );
    assert_eq!(header(&answer, h::UPLOAD_MISSING), "");
    assert_eq!(header_u64(&answer, h::UPLOAD_OFFSET), job.len());
    assert_eq!(
        header(&answer, h::UPLOAD_DIGEST),
        job.digest_of(&layout, 0..17),
        "digest over (n, chaining value) of every block"
    );
    assert!(
        server.wait_result(&job.key).await == job.input,
        "the result is byte-for-byte the input"
    );

    let status = server.status(&job.key).await;
    assert_eq!((status.blocks_total, status.blocks_received), (17, 17));
    assert_eq!(status.digest, job.digest_of(&layout, 0..17));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_blocks_at_once_in_random_order() {
    let server = Server::start().await;
    let bs = 16 * 1024;
    let job = Job::identity(pseudo_random(64 * 16 * 1024 - 100, 2));
    let layout = job.layout(bs);
    assert_eq!(layout.blocks(), 64);
    server.create(&job, Some(bs)).await;

    let mut order: Vec<u64> = (0..64).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(11));
    join_all(order.iter().map(|&n| server.put_block(&job, &layout, n))).await;

    let head = server.head_info(&job.key).await;
    assert_eq!(head.missing, "");
    assert_eq!(head.offset, job.len());
    assert_eq!(head.digest, job.digest_of(&layout, 0..64));
    assert!(server.wait_result(&job.key).await == job.input);
}

#[tokio::test]
async fn block_hash_header_is_optional() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(3 * 4096 + 1, 3));
    let layout = job.layout(4096);
    server.create(&job, Some(4096)).await;
    for n in 0..layout.blocks() {
        let resp = server
            .client()
            .put(server.url(&upcache_protocol::status::block_path(&job.key, n)))
            .body(job.block(&layout, n).to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::NO_CONTENT,
            "block {n} without Upload-Block-Hash"
        );
    }
    assert!(server.wait_result(&job.key).await == job.input);
}

#[tokio::test]
async fn single_block_input_and_empty_input() {
    let server = Server::start().await;
    // One block: its "chaining value" is the input's root hash.
    let job = Job::identity(pseudo_random(3000, 4));
    let layout = job.layout(4096);
    server.create(&job, Some(4096)).await;
    let answer = server.put_block(&job, &layout, 0).await;
    assert_eq!(
        header(&answer, h::UPLOAD_DIGEST),
        job.digest_of(&layout, [0])
    );
    assert!(server.wait_result(&job.key).await == job.input);

    // Empty: verified at creation, nothing to upload.
    let empty = Job::identity(Vec::new());
    let (_, status) = server.create(&empty, None).await;
    assert_eq!(status.blocks_total, 0);
    assert!(
        matches!(status.state, State::Processing | State::Complete),
        "empty input: {:?}",
        status.state
    );
    assert_eq!(status.digest, Digest::new().to_hex());
    assert!(server.wait_result(&empty.key).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_block_sent_twice_at_once_is_stored_once() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(4 * BS as usize, 5));
    let layout = job.layout(BS);
    server.create(&job, Some(BS)).await;

    let answers = join_all((0..4).map(|_| server.block_request(&job, &layout, 2).send())).await;
    let mut stored = 0;
    for answer in answers {
        let answer = answer.expect("PUT block");
        if answer.status() == StatusCode::NO_CONTENT {
            stored += 1;
        } else {
            // Contract: the same block written by another request at once.
            assert_problem(answer, upcache_protocol::ProblemType::UploadBusy).await;
        }
    }
    assert!(
        stored >= 1,
        "at least one of the concurrent copies succeeds"
    );
    let head = server.head_info(&job.key).await;
    assert_eq!(head.missing, "0-1,3");
    assert_eq!(
        head.digest,
        job.digest_of(&layout, [2]),
        "block 2 counted once"
    );
}

#[tokio::test]
async fn a_block_cut_mid_body_stays_missing() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(4 * BS as usize, 6));
    let layout = job.layout(BS);
    server.create(&job, Some(BS)).await;
    server.put_block(&job, &layout, 0).await;
    let before = server.head_info(&job.key).await;

    let proxy = FaultProxy::start(server.addr()).await;
    proxy.set_fault(Fault::DropAfter(BS / 2));
    let resp = server
        .client()
        .put(proxy.url(&upcache_protocol::status::block_path(&job.key, 1)))
        .header(h::UPLOAD_BLOCK_HASH, job.block_hash(&layout, 1))
        .body(job.block(&layout, 1).to_vec())
        .send()
        .await;
    assert!(
        resp.is_err(),
        "the proxy cut the block, yet it got {:?}",
        resp.map(|r| r.status())
    );

    // Half a block is not a block: nothing changed, and the block can be re-sent.
    assert_eq!(server.head_info(&job.key).await, before);
    eventually(
        "the cut request to be wound up",
        std::time::Duration::from_secs(10),
        || async {
            let resp = server.block_request(&job, &layout, 1).send().await.unwrap();
            match resp.status() {
                StatusCode::NO_CONTENT => Some(()),
                _ => {
                    assert_problem(resp, upcache_protocol::ProblemType::UploadBusy).await;
                    None
                }
            }
        },
    )
    .await;
    assert_eq!(server.head_info(&job.key).await.missing, "2-3");
}
