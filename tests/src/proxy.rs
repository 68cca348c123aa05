//! A fault-injecting TCP proxy between a client and the server.
//!
//! Every accepted connection is forwarded to the target and gets one
//! [`Fault`] for its whole life: the next one of the planned faults
//! ([`FaultProxy::plan`], [`FaultProxy::fault_next`]) while any are left,
//! else the standing one ([`FaultProxy::set_fault`]). A fault strikes once its
//! connection has forwarded the given number of bytes: the connection is
//! dropped (FIN to both sides), reset (RST to both sides), stalled (nothing more
//! is forwarded either way, but the sockets stay open), or half-closed toward
//! one side.
//!
//! The proxy counts the bytes it forwards each way, and reads the
//! client→server stream as HTTP/1.1 requests (`Content-Length` framing) to
//! tell request heads from bodies — so a test can say how many *input* bytes
//! a client put on the wire, apart from its headers and JSON.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// What happens to a connection. Counts are per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward everything.
    #[default]
    None,
    /// After N client→server bytes, close both sockets.
    DropAfter(u64),
    /// After N client→server bytes, reset both sockets (RST).
    ResetAfter(u64),
    /// After N client→server bytes, forward nothing more either way, but keep
    /// both sockets open until the proxy is dropped.
    StallAfter(u64),
    /// After N client→server bytes, shut down the write side toward the
    /// server (it sees the request end early) and forward nothing more from
    /// the client; whatever the server answers still reaches the client.
    CloseToServerAfter(u64),
    /// After N client→server bytes, shut down the write side toward the
    /// client (it sees the answer stream end) while what the client sends
    /// still reaches the server; the server's answers are discarded.
    CloseToClientAfter(u64),
    /// After N server→client bytes, close both sockets (a download cut short).
    DropDownAfter(u64),
    /// After N client→server bytes, close the client's socket but keep the
    /// server's open and silent until the proxy is dropped: a phone that
    /// moved from Wi-Fi to cellular mid-request, whose old connection the
    /// server never hears close.
    VanishAfter(u64),
}

impl Fault {
    /// The client→server byte count at which the fault strikes.
    fn up_limit(self) -> Option<u64> {
        match self {
            Fault::DropAfter(n)
            | Fault::ResetAfter(n)
            | Fault::StallAfter(n)
            | Fault::CloseToServerAfter(n)
            | Fault::CloseToClientAfter(n)
            | Fault::VanishAfter(n) => Some(n),
            Fault::None | Fault::DropDownAfter(_) => None,
        }
    }
}

/// Bytes the proxy forwarded, over all connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Client→server bytes, everything included.
    pub up: u64,
    /// Of `up`: request heads (request line and headers).
    pub heads: u64,
    /// Of `up`: request bodies of every method (JSON included).
    pub bodies: u64,
    /// Of `bodies`: the bodies of `PUT` and `PATCH` requests — input bytes.
    pub uploads: u64,
    /// Request heads seen in full.
    pub requests: u64,
    /// Server→client bytes.
    pub down: u64,
}

#[derive(Default)]
struct Shared {
    target: Mutex<Option<SocketAddr>>,
    fault: Mutex<Fault>,
    plan: Mutex<VecDeque<Fault>>,
    accepted: AtomicUsize,
    struck: AtomicUsize,
    up: AtomicU64,
    heads: AtomicU64,
    bodies: AtomicU64,
    uploads: AtomicU64,
    requests: AtomicU64,
    down: AtomicU64,
}

/// A running proxy; stops (closing every connection) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1:0 forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        *shared.target.lock().unwrap() = Some(target);
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Self { addr, shared, task }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://PROXY`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://PROXY{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The standing fault: for connections accepted from now on once the plan is used up.
    pub fn set_fault(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = fault;
    }

    /// The faults of the next connections, in order (replacing any plan
    /// left): e.g. `[DropAfter(n), None, DropAfter(n)]` fails the 1st and 3rd.
    pub fn plan(&self, faults: impl IntoIterator<Item = Fault>) {
        *self.shared.plan.lock().unwrap() = faults.into_iter().collect();
    }

    /// `fault` for each of the next `connections` connections.
    pub fn fault_next(&self, connections: usize, fault: Fault) {
        self.plan(std::iter::repeat_n(fault, connections));
    }

    /// Planned faults not yet handed to a connection.
    pub fn planned(&self) -> usize {
        self.shared.plan.lock().unwrap().len()
    }

    /// Where new connections go (e.g. after the server restarted on another port).
    pub fn set_target(&self, target: SocketAddr) {
        *self.shared.target.lock().unwrap() = Some(target);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Client→server bytes forwarded so far, over all connections.
    pub fn forwarded(&self) -> u64 {
        self.shared.up.load(Ordering::SeqCst)
    }

    /// How many connections a fault struck.
    pub fn struck(&self) -> usize {
        self.shared.struck.load(Ordering::SeqCst)
    }

    /// Everything forwarded so far.
    pub fn traffic(&self) -> Traffic {
        let s = &self.shared;
        Traffic {
            up: s.up.load(Ordering::SeqCst),
            heads: s.heads.load(Ordering::SeqCst),
            bodies: s.bodies.load(Ordering::SeqCst),
            uploads: s.uploads.load(Ordering::SeqCst),
            requests: s.requests.load(Ordering::SeqCst),
            down: s.down.load(Ordering::SeqCst),
        }
    }
}

impl Traffic {
    /// What was forwarded since `earlier`.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            up: self.up - earlier.up,
            heads: self.heads - earlier.heads,
            bodies: self.bodies - earlier.bodies,
            uploads: self.uploads - earlier.uploads,
            requests: self.requests - earlier.requests,
            down: self.down - earlier.down,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it
        // aborts them, closing every socket.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let planned = shared.plan.lock().unwrap().pop_front();
        let fault = planned.unwrap_or_else(|| *shared.fault.lock().unwrap());
        let target = shared.target.lock().unwrap().expect("a target");
        conns.spawn(forward(client, target, fault, shared.clone()));
        while conns.try_join_next().is_some() {}
    }
}

async fn forward(client: TcpStream, target: SocketAddr, fault: Fault, shared: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if matches!(fault, Fault::ResetAfter(_)) {
        // With a zero linger time, closing a socket sends RST instead of FIN.
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
    let (mut client_read, client_write) = client.into_split();
    let (upstream_read, mut upstream_write) = upstream.into_split();
    // Server→client runs as a future of this task (not a spawned task), so
    // dropping it — or not polling it — closes or stalls that direction too.
    let (close_client, close_rx) = oneshot::channel();
    let mut close_client = Some(close_client);
    let down_limit = match fault {
        Fault::DropDownAfter(n) => Some(n),
        _ => None,
    };
    let down = pump_down(
        upstream_read,
        client_write,
        down_limit,
        close_rx,
        shared.clone(),
    );
    // Boxed, so that it can be dropped apart from the server's write half.
    let mut down = Box::pin(down);
    let mut down_done = false;

    let mut limit = fault.up_limit();
    let mut meter = Meter::default();
    let mut sent = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let want = limit.map_or(buf.len() as u64, |l| (l - sent).min(buf.len() as u64)) as usize;
        if want == 0 {
            // The fault strikes.
            shared.struck.fetch_add(1, Ordering::SeqCst);
            match fault {
                Fault::StallAfter(_) => {
                    // Hold every socket open (the halves live in this
                    // frame), forwarding nothing, until the proxy stops.
                    std::future::pending::<()>().await;
                }
                Fault::CloseToServerAfter(_) => {
                    let _ = upstream_write.shutdown().await;
                    if !down_done {
                        down.await;
                    }
                    return;
                }
                Fault::VanishAfter(_) => {
                    // `down` owns the client's write half (and the server's
                    // read half, which alone does not close a socket).
                    drop(down);
                    drop(client_read);
                    let _silent = upstream_write;
                    std::future::pending::<()>().await;
                    return;
                }
                Fault::CloseToClientAfter(_) => {
                    if let Some(close) = close_client.take() {
                        let _ = close.send(());
                    }
                    limit = None;
                    continue;
                }
                // Returning drops all four halves: both sockets close (FIN,
                // or RST when lingering is off).
                _ => return,
            }
        }
        let read = tokio::select! {
            read = client_read.read(&mut buf[..want]) => read,
            struck = &mut down, if !down_done => {
                down_done = true;
                if struck {
                    return; // a download cut short: close everything
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                // The client finished (or vanished): pass the half-close on
                // and let the server's answer flow back.
                let _ = upstream_write.shutdown().await;
                if !down_done {
                    down.await;
                }
                return;
            }
            Ok(n) => n,
        };
        if upstream_write.write_all(&buf[..n]).await.is_err() {
            return;
        }
        sent += n as u64;
        shared.up.fetch_add(n as u64, Ordering::SeqCst);
        meter.feed(&buf[..n], &shared);
    }
}

/// Forwards server→client until either side ends, `limit` bytes have gone
/// (then returns `true`: the fault struck), or `close` fires (then shuts down
/// the write side toward the client and discards what the server sends).
async fn pump_down(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    limit: Option<u64>,
    mut close: oneshot::Receiver<()>,
    shared: Arc<Shared>,
) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = 0u64;
    loop {
        let want = limit.map_or(buf.len() as u64, |l| (l - sent).min(buf.len() as u64)) as usize;
        if want == 0 {
            shared.struck.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        let n = tokio::select! {
            read = from.read(&mut buf[..want]) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            Ok(()) = &mut close => {
                let _ = to.shutdown().await;
                while matches!(from.read(&mut buf).await, Ok(n) if n > 0) {}
                return false;
            }
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        sent += n as u64;
        shared.down.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown().await;
    false
}

/// Longest request head the meter parses; past it, bytes count as body.
const MAX_HEAD: usize = 64 * 1024;

/// Splits a client→server byte stream into HTTP/1.1 request heads and
/// bodies. A body it cannot frame (chunked, or an unparsable head) makes it
/// count every later byte of the connection as body: it errs toward input.
#[derive(Default)]
struct Meter {
    head: Vec<u8>,
    body_left: u64,
    upload: bool,
    lost: bool,
}

#[derive(Default, Debug, PartialEq, Eq)]
struct Counts {
    heads: u64,
    bodies: u64,
    uploads: u64,
    requests: u64,
}

impl Meter {
    fn feed(&mut self, bytes: &[u8], shared: &Shared) {
        let c = self.count(bytes);
        shared.heads.fetch_add(c.heads, Ordering::SeqCst);
        shared.bodies.fetch_add(c.bodies, Ordering::SeqCst);
        shared.uploads.fetch_add(c.uploads, Ordering::SeqCst);
        shared.requests.fetch_add(c.requests, Ordering::SeqCst);
    }

    fn count(&mut self, mut bytes: &[u8]) -> Counts {
        let mut c = Counts::default();
        while !bytes.is_empty() {
            if self.lost {
                c.bodies += bytes.len() as u64;
                c.uploads += bytes.len() as u64;
                break;
            }
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len() as u64);
                self.body_left -= n;
                c.bodies += n;
                if self.upload {
                    c.uploads += n;
                }
                bytes = &bytes[n as usize..];
                continue;
            }
            let before = self.head.len();
            let from = before.saturating_sub(3);
            self.head.extend_from_slice(bytes);
            let Some(end) = find(&self.head[from..], b"\r\n\r\n").map(|i| from + i + 4) else {
                c.heads += bytes.len() as u64;
                if self.head.len() > MAX_HEAD {
                    self.lost = true;
                }
                break;
            };
            let used = end - before;
            c.heads += used as u64;
            c.requests += 1;
            bytes = &bytes[used..];
            let head = std::mem::take(&mut self.head);
            match frame(&head[..end]) {
                Some((upload, len)) => (self.upload, self.body_left) = (upload, len),
                None => self.lost = true,
            }
        }
        c
    }
}

/// The method's kind (upload or not) and body length of a request head;
/// `None` for a body the meter cannot frame.
fn frame(head: &[u8]) -> Option<(bool, u64)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let method = lines.next()?.split(' ').next()?;
    let mut len = 0;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("content-length") {
            len = value.trim().parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
    }
    Some((matches!(method, "PUT" | "PATCH"), len))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_in_pieces(stream: &[u8], piece: usize) -> Counts {
        let mut meter = Meter::default();
        let mut total = Counts::default();
        for chunk in stream.chunks(piece) {
            let c = meter.count(chunk);
            total.heads += c.heads;
            total.bodies += c.bodies;
            total.uploads += c.uploads;
            total.requests += c.requests;
        }
        total
    }

    #[test]
    fn heads_and_bodies_are_told_apart_however_the_stream_is_cut() {
        let post = "POST /v1/ops HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n";
        let put = "PUT /v1/ops/k/blocks/0 HTTP/1.1\r\nContent-Length: 1000\r\n\r\n";
        let get = "GET /v1/ops/k HTTP/1.1\r\nhost: x\r\n\r\n";
        let mut stream = Vec::new();
        stream.extend_from_slice(post.as_bytes());
        stream.extend_from_slice(b"{...}");
        stream.extend_from_slice(put.as_bytes());
        stream.extend_from_slice(&[7u8; 1000]);
        stream.extend_from_slice(get.as_bytes());
        let expected = Counts {
            heads: (post.len() + put.len() + get.len()) as u64,
            bodies: 1005,
            uploads: 1000,
            requests: 3,
        };
        for piece in [1, 2, 3, 4, 7, 100, stream.len()] {
            assert_eq!(
                count_in_pieces(&stream, piece),
                expected,
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn unframed_bodies_count_as_input() {
        let head = "PATCH /v1/ops/k HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n";
        let mut stream = head.as_bytes().to_vec();
        stream.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
        let c = count_in_pieces(&stream, 9);
        assert_eq!((c.heads, c.requests), (head.len() as u64, 1));
        assert_eq!(c.uploads, (stream.len() - head.len()) as u64);
    }
}
