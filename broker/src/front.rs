//! The device front: our own TCP listener on each public device address, relaying bytes to
//! rumqttd's TLS listeners on loopback ports.
//!
//! It exists because of two defects of rumqttd 0.20 that a device can reach:
//!
//! - A stale last-will entry: `server/broker.rs` records a will sender per client id before
//!   `RemoteLink::new` registers the link and writes the CONNACK. When that fails (the router is
//!   full, or the CONNACK write fails because the client already reset) the entry stays, and the
//!   next connection with the same client id panics while holding the map's lock, poisoning it:
//!   from then on every connection panics and the broker admits no one (rumqtt issue 1062). The
//!   front never resets or closes its upstream socket while rumqttd may still write: when the
//!   device goes away it half-closes toward rumqttd and reads (discarding) until rumqttd closes,
//!   so the CONNACK write always succeeds; and it admits at most `max_connections` device
//!   connections, below the router's capacity, so the router never refuses a link.
//! - Handshakes done one at a time in each listener's accept loop, with no deadline: one idle
//!   socket stalled every later device. The front connects upstream only once the device has sent
//!   a complete first TLS record within the connection deadline; lets at most
//!   `HANDSHAKES_PER_UPSTREAM` handshakes into rumqttd at once (the others wait here); and ends a
//!   connection whose side of the handshake stalls past the deadline. (It can spread devices over
//!   several upstream listeners, but uses one: see [`upstream_count`].)
//!
//! rumqttd still terminates TLS, so the tenant taken from the client certificate is exactly as
//! before; rumqttd now sees 127.0.0.1 as every peer, so the front logs the device's address.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout, Instant};
use tracing::{debug, info, warn};

use crate::metrics::{self, FrontRefusal};

/// Accept backlog of a public device listener: a reconnect storm of thousands of devices must
/// queue, not be refused by the kernel (std's default is 128).
const BACKLOG: u32 = 4096;
/// Bytes read at once: one full TLS record (16 KiB of plaintext plus its overhead). Allocated
/// per read, so an idle connection holds no buffer.
const READ_CHUNK: usize = 17 * 1024;
/// The largest TLS record a client may send (RFC 8446 5.2: 2^14 + 256; TLS 1.2 allowed 2048).
const MAX_RECORD: usize = (1 << 14) + 2048;
/// How long the front keeps reading from rumqttd after the device went away, so rumqttd's last
/// writes (a CONNACK) succeed; rumqttd closes within its own connection timeout, this is a cap.
const DRAIN_CAP: Duration = Duration::from_secs(60);
/// A pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Handshakes each upstream listener is given at once. rumqttd's accept loop does them one after
/// the other; a short queue keeps it busy, a long one only makes every device in it wait (and
/// its kernel backlog overflow, so that connects time out). Devices beyond it wait in the front,
/// their ClientHello read and held.
const HANDSHAKES_PER_UPSTREAM: usize = 16;
/// The longest a device waits in the front for a handshake slot, and for rumqttd's first flight
/// once it has one; devices (the edge agent) give up after 60 s anyway.
const QUEUE_CAP: Duration = Duration::from_secs(60);

/// How many upstream listeners each public device address gets: one.
///
/// Several (each an accept loop on a thread of its own) would do handshakes in parallel, but
/// rumqttd's router channel is bounded and its senders block, so across threads a device's new
/// CONNECT can reach the router before the Disconnect of its previous link. The router then
/// replaces the old link, gives its slot to the new one, and the late Disconnect removes the new
/// link before its CONNACK: the link fails after its will entry was made, which is the stale
/// entry behind rumqttd's panic (seen in a 10,000-device soak with 4 listeners: two accept
/// loops poisoned). On one thread the old link's end of input, which the front sends as soon as
/// the device leaves, is handled before the new connection's handshake is through.
pub(crate) fn upstream_count() -> usize {
    1
}

/// Picks `n` distinct free loopback ports for rumqttd's listeners.
///
/// They are held together while chosen (so they differ) and released for rumqttd to bind; another
/// process could take one in between, which `BrokerBuilder::spawn` notices as a listener that
/// does not come up.
pub(crate) fn reserve_loopback(n: usize) -> Result<Vec<SocketAddr>> {
    let held: Vec<StdListener> = (0..n)
        .map(|_| {
            StdListener::bind((Ipv4Addr::LOCALHOST, 0))
                .context("choosing a loopback port for rumqttd")
        })
        .collect::<Result<_>>()?;
    held.iter()
        .map(|l| l.local_addr().context("reading a loopback port"))
        .collect()
}

/// Binds a public device address with a deep backlog. Must run inside the tokio runtime.
pub(crate) fn bind(addr: SocketAddr) -> Result<TcpListener> {
    listen(addr, false)
}

/// As [`bind`], with SO_REUSEPORT: every front process listens on the same address.
pub(crate) fn bind_shared(addr: SocketAddr) -> Result<TcpListener> {
    listen(addr, true)
}

fn listen(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .with_context(|| format!("creating the socket for {addr}"))?;
    socket.set_reuseaddr(true).context("SO_REUSEADDR")?;
    if reuse_port {
        socket.set_reuseport(true).context("SO_REUSEPORT")?;
    }
    socket
        .bind(addr)
        .with_context(|| format!("MQTT listener {addr} is not available"))?;
    socket
        .listen(BACKLOG)
        .with_context(|| format!("listening on {addr}"))
}

/// rumqttd's listeners behind one public address, and how many handshakes each has in progress.
pub(crate) struct Upstreams {
    addrs: Vec<SocketAddr>,
    handshaking: Vec<AtomicUsize>,
    next: AtomicUsize,
    /// Handshakes in progress over all these listeners, `HANDSHAKES_PER_UPSTREAM` each.
    slots: Arc<Semaphore>,
}

impl Upstreams {
    pub(crate) fn new(addrs: Vec<SocketAddr>) -> Self {
        let handshaking = addrs.iter().map(|_| AtomicUsize::new(0)).collect();
        let slots = Arc::new(Semaphore::new(addrs.len() * HANDSHAKES_PER_UPSTREAM));
        Self {
            addrs,
            handshaking,
            next: AtomicUsize::new(0),
            slots,
        }
    }

    /// The listener with the fewest handshakes in progress, starting the scan at a rotating
    /// index so equally idle listeners share the load.
    fn pick(&self) -> usize {
        let n = self.addrs.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| self.handshaking[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

/// What every public listener shares: the connection cap and the deadline.
#[derive(Clone)]
pub(crate) struct Limits {
    /// One permit per device connection, `[broker] max_connections` in all.
    pub(crate) connections: Arc<Semaphore>,
    /// `[broker] connection_timeout_ms`: for the first TLS record, and for each side's turn in the
    /// handshake (see `Handshake::expired`).
    pub(crate) deadline: Duration,
}

/// Starts the accept loop of one public address on `runtime`.
pub(crate) fn start(
    listener: TcpListener,
    upstreams: Arc<Upstreams>,
    limits: Limits,
    runtime: &Handle,
) {
    let public = listener.local_addr().ok();
    info!(?public, upstreams = ?upstreams.addrs, "device front listening");
    runtime.spawn(async move {
        loop {
            let (device, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, ?public, "device front: accept failed");
                    metrics::front_accept_failed();
                    sleep(ACCEPT_RETRY).await;
                    continue;
                }
            };
            let Ok(permit) = limits.connections.clone().try_acquire_owned() else {
                // Closed at once: the router never sees more links than it has room for.
                debug!(%peer, "device front: connection limit reached, refused");
                metrics::front_refused(FrontRefusal::Full);
                continue;
            };
            metrics::front_accepted();
            let upstreams = upstreams.clone();
            let deadline = limits.deadline;
            tokio::spawn(async move {
                let _open = metrics::FrontOpen::new();
                serve(device, peer, &upstreams, deadline, permit).await;
            });
        }
    });
}

/// Why the first bytes of a connection were not a TLS record.
enum HelloError {
    NotTls,
    Closed,
}

/// Reads the device's first TLS record (its ClientHello) whole: rumqttd's handshake then never
/// waits on a device that has not even started one.
async fn read_first_record(device: &mut TcpStream) -> Result<Vec<u8>, HelloError> {
    let mut header = [0u8; 5];
    device
        .read_exact(&mut header)
        .await
        .map_err(|_| HelloError::Closed)?;
    // content type 22 = handshake; protocol version major 3 (SSL 3.0 .. TLS 1.3 all say 3.x).
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if header[0] != 22 || header[1] != 3 || len == 0 || len > MAX_RECORD {
        return Err(HelloError::NotTls);
    }
    let mut record = Vec::with_capacity(5 + len);
    record.extend_from_slice(&header);
    record.resize(5 + len, 0);
    device
        .read_exact(&mut record[5..])
        .await
        .map_err(|_| HelloError::Closed)?;
    Ok(record)
}

async fn serve(
    mut device: TcpStream,
    peer: SocketAddr,
    upstreams: &Arc<Upstreams>,
    deadline: Duration,
    _permit: OwnedSemaphorePermit,
) {
    debug!(%peer, "device front: connection accepted");
    let hello = match timeout(deadline, read_first_record(&mut device)).await {
        Ok(Ok(r)) => r,
        Ok(Err(HelloError::NotTls)) => return refuse(peer, FrontRefusal::NotTls),
        Ok(Err(HelloError::Closed)) => return refuse(peer, FrontRefusal::ClosedEarly),
        Err(_) => return refuse(peer, FrontRefusal::HelloTimeout),
    };
    let slot = match upstreams.slots.clone().try_acquire_owned() {
        Ok(slot) => slot,
        Err(_) => match wait_for_slot(&device, upstreams).await {
            Ok(slot) => slot,
            Err(reason) => return refuse(peer, reason),
        },
    };
    let index = upstreams.pick();
    let handshake = Handshake::begin(upstreams.clone(), index, slot);
    let upstream = match timeout(deadline, TcpStream::connect(upstreams.addrs[index])).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return upstream_failed(peer, &e.to_string()),
        Err(_) => return upstream_failed(peer, "timed out"),
    };
    // MQTT acknowledgements are small and latency-bound: no Nagle delay on either side.
    let _ = device.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (device_rx, mut device_tx) = device.into_split();
    let (upstream_rx, mut upstream_tx) = upstream.into_split();
    if let Err(e) = upstream_tx.write_all(&hello).await {
        return upstream_failed(peer, &e.to_string());
    }
    metrics::front_bytes_from_device(hello.len());
    drop(hello);

    let end = tokio::select! {
        e = pump(&device_rx, &mut upstream_tx, Direction::FromDevice, &handshake) => e,
        e = pump(&upstream_rx, &mut device_tx, Direction::ToDevice, &handshake) => e,
        () = handshake.expired(deadline) => End::HandshakeTimeout,
    };
    match end {
        End::UpstreamGone => debug!(%peer, "device front: rumqttd closed the connection"),
        End::DeviceGone | End::HandshakeTimeout => {
            if matches!(end, End::HandshakeTimeout) {
                refuse(peer, FrontRefusal::HandshakeTimeout);
            } else {
                debug!(%peer, "device front: device closed the connection");
            }
            drop(device_tx);
            drop(device_rx);
            // rumqttd sees an orderly end of input, never a reset, and its writes still land.
            let _ = upstream_tx.shutdown().await;
            drain(upstream_rx).await;
        }
    }
}

/// Waits for a handshake slot, giving up if the device leaves meanwhile or after `QUEUE_CAP`.
async fn wait_for_slot(
    device: &TcpStream,
    upstreams: &Upstreams,
) -> Result<OwnedSemaphorePermit, FrontRefusal> {
    let acquire = upstreams.slots.clone().acquire_owned();
    tokio::pin!(acquire);
    let until = Instant::now() + QUEUE_CAP;
    let mut watch_device = true;
    loop {
        tokio::select! {
            slot = &mut acquire => return slot.map_err(|_| FrontRefusal::Busy),
            () = tokio::time::sleep_until(until) => return Err(FrontRefusal::Busy),
            gone = device_gone(device), if watch_device => {
                if gone {
                    return Err(FrontRefusal::ClosedEarly);
                }
                // It sent more (a TLS client waits for the server here): it is read later.
                watch_device = false;
            }
        }
    }
}

/// Whether the device closed (or reset) its connection; waits until it does something.
async fn device_gone(device: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    !matches!(device.peek(&mut byte).await, Ok(n) if n > 0)
}

fn refuse(peer: SocketAddr, reason: FrontRefusal) {
    debug!(%peer, reason = reason.as_str(), "device front: connection refused");
    metrics::front_refused(reason);
}

fn upstream_failed(peer: SocketAddr, error: &str) {
    warn!(%peer, error, "device front: cannot reach rumqttd's listener");
    metrics::front_upstream_failed();
}

/// Reads and discards what rumqttd still sends until it closes, at most `DRAIN_CAP`.
async fn drain(mut upstream: OwnedReadHalf) {
    let until = Instant::now() + DRAIN_CAP;
    let mut sink = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(until, upstream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => {
                warn!("device front: rumqttd kept a connection open after the device left; closing it");
                return;
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    FromDevice,
    ToDevice,
}

/// How a relay ended.
enum End {
    /// The device closed, reset, or could not be written to.
    DeviceGone,
    /// rumqttd closed its side or could not be written to.
    UpstreamGone,
    /// The TLS handshake was not over within the deadline.
    HandshakeTimeout,
}

/// Copies one direction until its source ends or its sink fails. A buffer is allocated only once
/// bytes are ready, so 10,000 idle devices cost no buffers.
async fn pump(
    from: &OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    dir: Direction,
    handshake: &Handshake,
) -> End {
    let (source_gone, sink_gone) = match dir {
        Direction::FromDevice => (End::DeviceGone, End::UpstreamGone),
        Direction::ToDevice => (End::UpstreamGone, End::DeviceGone),
    };
    loop {
        if from.readable().await.is_err() {
            return source_gone;
        }
        // One buffer per burst: kept while reads keep finding bytes, dropped once the socket is
        // drained, so an idle connection holds none.
        let mut buf = Vec::with_capacity(READ_CHUNK);
        loop {
            buf.clear();
            match from.try_read_buf(&mut buf) {
                Ok(0) => return source_gone,
                Ok(n) => {
                    handshake.saw(dir);
                    match dir {
                        Direction::FromDevice => metrics::front_bytes_from_device(n),
                        Direction::ToDevice => metrics::front_bytes_to_device(n),
                    }
                    if to.write_all(&buf).await.is_err() {
                        return sink_gone;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return source_gone,
            }
        }
    }
}

/// Where a connection's TLS handshake is, judged from who spoke last (the bytes are encrypted).
///
/// The device's ClientHello went up; rumqttd answers with its first flight; the device answers
/// with its certificate and Finished; rumqttd's next bytes (session tickets, or the CONNACK)
/// mean its accept loop has finished the handshake and moved on. The handshake slot is held
/// until then.
struct Handshake {
    upstreams: Arc<Upstreams>,
    index: usize,
    state: AtomicU8,
    /// When `state` last changed.
    since: Mutex<Instant>,
    slot: Mutex<Option<OwnedSemaphorePermit>>,
    /// Wakes `expired` when the state changes, so it applies the new state's deadline.
    changed: Notify,
}

const AWAIT_SERVER_FLIGHT: u8 = 0;
const AWAIT_CLIENT_FLIGHT: u8 = 1;
const AWAIT_SERVER_AGAIN: u8 = 2;
const DONE: u8 = 3;

impl Handshake {
    fn begin(upstreams: Arc<Upstreams>, index: usize, slot: OwnedSemaphorePermit) -> Self {
        upstreams.handshaking[index].fetch_add(1, Ordering::Relaxed);
        Self {
            upstreams,
            index,
            state: AtomicU8::new(AWAIT_SERVER_FLIGHT),
            since: Mutex::new(Instant::now()),
            slot: Mutex::new(Some(slot)),
            changed: Notify::new(),
        }
    }

    fn saw(&self, dir: Direction) {
        let state = self.state.load(Ordering::Relaxed);
        let next = match (state, dir) {
            (AWAIT_SERVER_FLIGHT, Direction::ToDevice) => AWAIT_CLIENT_FLIGHT,
            (AWAIT_CLIENT_FLIGHT, Direction::FromDevice) => AWAIT_SERVER_AGAIN,
            (AWAIT_SERVER_AGAIN, Direction::ToDevice) => DONE,
            _ => return,
        };
        // Each transition has one possible writer (the pump of that direction), and DONE is
        // reached once, so the listener's count and the slot are released exactly once.
        if self
            .state
            .compare_exchange(state, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            self.changed.notify_waiters();
            if next == DONE {
                self.upstreams.handshaking[self.index].fetch_sub(1, Ordering::Relaxed);
                drop(self.slot.lock().unwrap_or_else(|e| e.into_inner()).take());
            }
        }
    }

    /// Resolves when the side the handshake waits on has been silent too long; never once done.
    ///
    /// The device gets `deadline` to answer rumqttd's first flight. rumqttd gets `2 x deadline`
    /// to answer the device's flight (its session tickets come at once; a client that offers no
    /// resumption gets the CONNACK instead, after the CONNECT and the registry lookup, each
    /// bounded by the same deadline in rumqttd). Waiting for rumqttd's first flight is waiting
    /// in its accept queue behind other handshakes, which is not the device's fault: only
    /// `QUEUE_CAP` applies there.
    async fn expired(&self, deadline: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the state is read, so a change in between still wakes us.
            changed.as_mut().enable();
            let state = self.state.load(Ordering::Acquire);
            let since = *self.since.lock().unwrap_or_else(|e| e.into_inner());
            let allowed = match state {
                AWAIT_SERVER_FLIGHT => QUEUE_CAP,
                AWAIT_CLIENT_FLIGHT => deadline,
                AWAIT_SERVER_AGAIN => deadline * 2,
                _ => return std::future::pending().await,
            };
            tokio::select! {
                () = tokio::time::sleep_until(since + allowed) => {
                    if self.state.load(Ordering::Acquire) == state {
                        return;
                    }
                }
                () = changed => {}
            }
        }
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        if self.state.load(Ordering::Acquire) != DONE {
            self.upstreams.handshaking[self.index].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_prefers_the_least_busy_listener_and_rotates() {
        let addrs = reserve_loopback(3).unwrap();
        assert_eq!(addrs.len(), 3);
        assert!(addrs[0] != addrs[1] && addrs[1] != addrs[2] && addrs[0] != addrs[2]);
        let up = Arc::new(Upstreams::new(addrs));
        let first: Vec<usize> = (0..3).map(|_| up.pick()).collect();
        assert_eq!(first, vec![0, 1, 2], "idle listeners take turns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let slots = up.slots.available_permits();
        let slot = || up.slots.clone().try_acquire_owned().unwrap();
        let busy0 = Handshake::begin(up.clone(), 0, slot());
        let busy1 = Handshake::begin(up.clone(), 1, slot());
        for _ in 0..4 {
            assert_eq!(up.pick(), 2);
        }
        // A finished handshake frees its listener; an abandoned one too.
        busy0.saw(Direction::ToDevice);
        busy0.saw(Direction::FromDevice);
        busy0.saw(Direction::ToDevice);
        assert_eq!(up.handshaking[0].load(Ordering::Relaxed), 0);
        assert_eq!(
            up.slots.available_permits(),
            slots - 1,
            "a finished handshake gives its slot back"
        );
        drop(busy0);
        assert_eq!(
            up.handshaking[0].load(Ordering::Relaxed),
            0,
            "released once, not twice"
        );
        drop(busy1);
        assert_eq!(up.handshaking[1].load(Ordering::Relaxed), 0);
        assert_eq!(up.slots.available_permits(), slots);
    }
}
