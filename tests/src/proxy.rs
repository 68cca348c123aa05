//! A fault-injecting TCP proxy between a client and the server.
//!
//! Every accepted connection is forwarded to the target; client→server bytes
//! are counted per connection, and when a connection has forwarded the
//! [`Fault`]'s number of bytes the fault strikes: the connection is dropped
//! (FIN to both sides), reset (RST to both sides), or stalled (nothing more is
//! forwarded in either direction, but the sockets stay open). The fault in force
//! when a connection is accepted applies to it for its whole life.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// What happens to a connection.
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
}

impl Fault {
    fn limit(self) -> Option<u64> {
        match self {
            Fault::None => None,
            Fault::DropAfter(n) | Fault::ResetAfter(n) | Fault::StallAfter(n) => Some(n),
        }
    }
}

#[derive(Default)]
struct Shared {
    target: Mutex<Option<SocketAddr>>,
    fault: Mutex<Fault>,
    accepted: AtomicUsize,
    forwarded: AtomicU64,
    struck: AtomicUsize,
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

    /// `http://PROXY{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The fault for connections accepted from now on.
    pub fn set_fault(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = fault;
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
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// How many connections the fault struck.
    pub fn struck(&self) -> usize {
        self.shared.struck.load(Ordering::SeqCst)
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
        let fault = *shared.fault.lock().unwrap();
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
    let down = async move {
        let (mut from, mut to) = (upstream_read, client_write);
        let _ = tokio::io::copy(&mut from, &mut to).await;
        let _ = to.shutdown().await;
    };
    tokio::pin!(down);
    let mut down_done = false;

    let limit = fault.limit();
    let mut sent = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let want = limit.map_or(buf.len() as u64, |l| (l - sent).min(buf.len() as u64)) as usize;
        if want == 0 {
            break; // the fault strikes
        }
        let read = tokio::select! {
            read = client_read.read(&mut buf[..want]) => read,
            () = &mut down, if !down_done => {
                down_done = true;
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
        shared.forwarded.fetch_add(n as u64, Ordering::SeqCst);
    }

    shared.struck.fetch_add(1, Ordering::SeqCst);
    if let Fault::StallAfter(_) = fault {
        // Hold every socket open, forwarding nothing, until the proxy stops.
        let _hold = (client_read, upstream_write, down);
        std::future::pending::<()>().await;
    }
    // Otherwise returning drops all four halves: both sockets close (FIN, or
    // RST when lingering is off).
}
