//! The Rust SDK over a faulty network. Whatever the network does to some
//! connections — drop, reset, stall, half-close either way — `put_file`
//! returns the right result, and each fault costs at most one block of
//! re-sent input; a hit costs no input at all.
//!
//! Input bytes are counted twice: by the proxy (the bodies of `PUT` and
//! `PATCH` requests it forwarded to the server, request heads and JSON
//! excluded), which must stay under the file size plus one block per fault;
//! and by the SDK (`Done::bytes_sent`, what it handed to its connections,
//! including bytes a fault then lost), under the file size plus one block per
//! failed request.

use serde_json::json;
use upcache_client::{Client, Done, Options};
use upcache_e2e::sdk::{fast_options, input_file, Events, BLOCK};
use upcache_e2e::*;
use upcache_protocol::{InputHash, Key, Operation};

/// 32 whole blocks and a partial one.
const SIZE: u64 = 32 * BLOCK + 12_345;
/// Connections each test has the network break.
const FAULTS: usize = 3;
/// Where a fault strikes on a connection: within its second block, after the
/// request head and some body bytes.
const CUT: u64 = BLOCK + BLOCK / 2;

fn identity() -> serde_json::Value {
    json!({"op": "identity"})
}

/// What a user checks after an upload through faults: the call succeeded
/// with the right bytes, every planned fault struck, and the input sent in
/// total stays under the file size plus one block per fault.
struct Outcome {
    input: Vec<u8>,
    done: Done,
    traffic: Traffic,
    struck: usize,
    retried: Vec<String>,
    /// `done` fetches through it.
    _proxy: FaultProxy,
}

/// Uploads a fresh input through a proxy whose next connections get `plan`.
async fn upload_through(server: &Server, plan: Vec<Fault>, options: Options, seed: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let input = pseudo_random(SIZE as usize, seed);
    let path = input_file(dir.path(), "input.bin", &input);
    let proxy = FaultProxy::start(server.addr()).await;
    proxy.plan(plan);
    let client = Client::with_options(&proxy.base_url(), options).unwrap();
    let events = Events::default();

    let op = identity();
    let put = client.put_file_with(&path, &op, Some(events.sink()));
    let done = tokio::time::timeout(STEP_TIMEOUT, put)
        .await
        .expect("put_file hung")
        .unwrap_or_else(|e| panic!("put_file through faults: {e}"));
    let traffic = proxy.traffic();
    let struck = proxy.struck();
    let key = Key::derive(
        &InputHash::of(&input),
        &Operation::parse(&identity()).unwrap(),
    );
    assert_eq!(done.key, key);
    assert!(!done.hit, "a first upload is no hit");
    let result = done.bytes().await.expect("fetch the result");
    assert!(result == input, "the result is byte-for-byte the input");
    Outcome {
        input,
        done,
        traffic,
        struck,
        retried: events.retried_errors(),
        _proxy: proxy,
    }
}

impl Outcome {
    fn assert_bounded(&self, faults: usize) {
        assert_eq!(self.struck, faults, "every planned fault struck");
        let bound = SIZE + faults as u64 * BLOCK;
        assert!(
            self.traffic.uploads >= SIZE,
            "every input byte reached the server: {:?}",
            self.traffic
        );
        assert!(
            self.traffic.uploads <= bound,
            "{} input bytes reached the server for a {SIZE}-byte file and {faults} faults \
             (bound {bound}): {:?}; retried after: {:#?}",
            self.traffic.uploads,
            self.traffic,
            self.retried
        );
        // The SDK's own count includes bytes handed to connections that died
        // before forwarding them, so it is bounded per failed request: a fault
        // may fail two (e.g. after a half-close the server answers and closes
        // the connection without saying so, and the client's next request on
        // it is lost).
        let failed = self.retried.len() as u64;
        assert!(
            (SIZE..=SIZE + failed * BLOCK).contains(&self.done.bytes_sent),
            "the SDK put {} input bytes on the wire for {failed} failed requests; \
             retried after: {:#?}",
            self.done.bytes_sent,
            self.retried
        );
    }
}

#[tokio::test]
async fn dropped_connections_cost_at_most_a_block_each() {
    let server = Server::start().await;
    let out = upload_through(
        &server,
        vec![Fault::DropAfter(CUT); FAULTS],
        fast_options(),
        1,
    )
    .await;
    out.assert_bounded(FAULTS);
}

#[tokio::test]
async fn reset_connections_cost_at_most_a_block_each() {
    let server = Server::start().await;
    // The 1st, 3rd and 5th connections are reset; the others are fine.
    let reset = Fault::ResetAfter(CUT);
    let plan = vec![reset, Fault::None, reset, Fault::None, reset];
    let out = upload_through(&server, plan, fast_options(), 2).await;
    out.assert_bounded(FAULTS);
}

#[tokio::test]
async fn stalled_connections_are_abandoned_and_cost_at_most_a_block_each() {
    // The server ends a silent request body after a second and lets go of
    // its block; the client gives up on a silent request within two seconds
    // (a small block leaves the SDK at once, so the answer timeout is what
    // notices this stall) and sends the block again on a new connection.
    let server = Server::start_with_config("body_idle_timeout = 1\n", &[]).await;
    let options = Options {
        response_timeout: std::time::Duration::from_secs(2),
        ..fast_options()
    };
    let started = std::time::Instant::now();
    let out = upload_through(&server, vec![Fault::StallAfter(CUT); FAULTS], options, 3).await;
    out.assert_bounded(FAULTS);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "riding out the stalls took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn vanished_connections_are_taken_over_without_waiting_for_the_server() {
    // The server never hears these connections close, and would wait a
    // minute (its default `body_idle_timeout`) before giving up on them: the
    // SDK's retry of each block takes the block over at once instead.
    let server = Server::start().await;
    let started = std::time::Instant::now();
    let out = upload_through(
        &server,
        vec![Fault::VanishAfter(CUT); FAULTS],
        fast_options(),
        5,
    )
    .await;
    out.assert_bounded(FAULTS);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "riding out the vanished connections took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn requests_cut_short_toward_the_server_cost_at_most_a_block_each() {
    let server = Server::start().await;
    let out = upload_through(
        &server,
        vec![Fault::CloseToServerAfter(CUT); FAULTS],
        fast_options(),
        4,
    )
    .await;
    out.assert_bounded(FAULTS);
}

#[tokio::test]
async fn answers_lost_toward_the_client_cost_at_most_a_block_each() {
    let server = Server::start().await;
    let out = upload_through(
        &server,
        vec![Fault::CloseToClientAfter(CUT); FAULTS],
        fast_options(),
        5,
    )
    .await;
    out.assert_bounded(FAULTS);
}

#[tokio::test]
async fn a_hit_sends_no_input() {
    let server = Server::start().await;
    let first = upload_through(&server, Vec::new(), fast_options(), 6).await;
    first.assert_bounded(0);
    let input = first.input;
    let dir = tempfile::tempdir().unwrap();
    let path = input_file(dir.path(), "again.bin", &input);

    // Another client, as after a restart of the application.
    let proxy = FaultProxy::start(server.addr()).await;
    let client = Client::with_options(&proxy.base_url(), fast_options()).unwrap();
    let again = client.put_file(&path, &identity()).await.unwrap();
    let traffic = proxy.traffic();
    assert!(again.hit, "the same file and operation again is a hit");
    assert_eq!(again.bytes_sent, 0, "a hit puts no input on the wire");
    assert_eq!(again.key, first.done.key);
    assert_eq!(
        traffic.uploads, 0,
        "no input byte reached the server: {traffic:?}"
    );
    assert!(
        traffic.up < 4096,
        "a hit costs a few requests' heads and JSON, far below one {BLOCK}-byte block: {traffic:?}"
    );
    assert!(again.bytes().await.unwrap() == input);
}
