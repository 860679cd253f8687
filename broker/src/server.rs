//! Starting rumqttd with the platform's listeners, authentication and limits.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use offsite_store::Store;
use offsite_wire::Channel;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::meters::MetersLink;
use rumqttd::{
    Broker, Config, ConnectionSettings, Meter, MetricSettings, MetricType, RouterConfig, SegmentConfig,
    ServerSettings, TlsConfig,
};
use tokio::runtime::{Handle, Runtime};
use tracing::{error, info, warn};

use crate::auth::{self, DeviceAuthenticator};
use crate::config::BrokerConfig;
use crate::front::{self, Limits, Upstreams};
use crate::front_process::{self, FrontSpec};
use crate::pki::Pki;
use crate::{install_crypto_provider, metrics};

/// Commit log of each subscribed filter, for filters other than the platform's wildcards.
///
/// rumqttd keeps every filter's messages in memory until the filter's ring of segments is full
/// (`size * count`), whether or not they were delivered, and never drops a filter. Each device
/// subscribes to its own `ack` and `cmd` topics, so this is multiplied by twice the number of
/// devices, and rumqttd's memory per message is several times the topic and payload it counts
/// (RELIABILITY.md "Soak": with 16 KiB segments the broker held about 600 MiB more after 10
/// minutes at 10,000 devices, and was still growing).
/// Devices use clean sessions, so a message is of use only until it is forwarded: 4 KiB holds
/// about 45 acks per device; one that lags further loses the oldest and resends those batches
/// (ingest acknowledges a duplicate again), and commands are sent again when it comes online.
const DEVICE_SEGMENT_BYTES: usize = 4 * 1024;
const DEVICE_SEGMENT_COUNT: usize = 2;
/// Commit log of the platform's wildcard subscriptions (`/tenants/+/v1/data` and the other
/// device-to-platform channels, `$share/...` included): `[broker] ingest_buffer_mib` per filter,
/// in this many segments (rumqttd drops the oldest whole segment when the ring is full).
const PLATFORM_SEGMENT_COUNT: usize = 10;
/// Messages forwarded per scheduling round to QoS 0 subscribers (in-process links are QoS 0).
const MAX_OUTGOING_PACKETS: u64 = 200;
/// Router slots kept on top of `max_connections` for in-process links and the platform's own
/// connections on the internal listener. Generous: a client that gives up before its CONNACK can
/// leave a link rumqttd never removes (its CONNACK write fails), and a full router refuses the
/// next link after its last-will entry is made, which is the stale entry behind rumqttd's panic.
const LOCAL_LINK_SLOTS: usize = 256;

/// Topic an internal link publishes to every half second so that rumqttd emits its meters (it
/// only does so in intervals that saw a publish). rumqttd never matches a `$` topic against any
/// filter (not even `#`), so the ticks are neither stored nor delivered.
const TICK_TOPIC: &str = "$offsite/broker/tick";
const TICK_CLIENT_ID: &str = "offsite-broker-meter";
const METER_PUSH_SECS: u64 = 1;
const ALERT_PUSH_SECS: u64 = 60;

const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// A broker configured but not started yet; in-process links are created here.
///
/// Devices do not reach rumqttd directly: the device addresses (`tls_listen`, `v5_listen`) are
/// the device front's (`front.rs`), which relays each connection to one of several rumqttd TLS
/// listeners on loopback ports. rumqttd 0.20 performs TLS handshakes one at a time in each
/// listener's accept loop with no deadline, and leaves a stale last-will entry that makes it
/// panic on every later connection when a link fails before its CONNACK (a full router, or a
/// client that reset); the front's first-record and handshake deadlines, its spread over several
/// listeners, its connection limit and its orderly closes keep devices from reaching either. The
/// internal plain listener is rumqttd's own (only the platform's services use it).
pub struct BrokerBuilder {
    broker: Broker,
    tls_addr: Option<SocketAddr>,
    plain_addr: Option<SocketAddr>,
    v5_addr: Option<SocketAddr>,
    /// rumqttd's loopback listeners behind each public device address; `None` without a front.
    front: Option<FrontPlan>,
    runtime: Handle,
    meters: MetersLink,
    tick: (LinkTx, LinkRx),
    /// In-process links the router counts as connections (the tick link included).
    local_links: usize,
    heap_trim_interval: Option<Duration>,
}

impl BrokerBuilder {
    /// Builds the rumqttd configuration and its router (the router thread starts here; the
    /// listeners start in [`BrokerBuilder::spawn`]).
    ///
    /// Registry lookups for device authentication run on the tokio runtime this is called from
    /// (where the Store's pool normally lives), or on a small runtime of the broker's own when
    /// called outside one.
    pub fn new(cfg: &BrokerConfig, pki: &Pki, store: Store, internal_password: String) -> Result<Self> {
        Self::build(cfg, pki, store, internal_password, true)
    }

    /// As [`BrokerBuilder::new`], but devices connect to rumqttd's listeners directly, as before
    /// the device front existed. Only for tests that show what the front prevents.
    #[doc(hidden)]
    pub fn without_device_front(cfg: &BrokerConfig, pki: &Pki, store: Store, internal_password: String) -> Result<Self> {
        Self::build(cfg, pki, store, internal_password, false)
    }

    fn build(cfg: &BrokerConfig, pki: &Pki, store: Store, internal_password: String, with_front: bool) -> Result<Self> {
        install_crypto_provider();
        metrics::register();
        crate::listener_watch::install();
        if !crate::allocator::pin_mmap_threshold() {
            tracing::debug!("mmap threshold not pinned (not glibc): the broker's RSS may creep under load");
        }
        if internal_password.is_empty() {
            bail!("the internal MQTT password is empty");
        }
        if cfg.tls_listen.is_none() && cfg.plain_listen.is_none() && cfg.v5_listen.is_none() {
            bail!("no MQTT listener configured");
        }
        let runtime = match Handle::try_current() {
            Ok(h) => h,
            Err(_) => fallback_runtime()?.handle().clone(),
        };
        let timeout = Duration::from_millis(cfg.connection_timeout_ms.max(1));
        let devices = Arc::new(DeviceAuthenticator::new(store, runtime.clone(), timeout));
        let front = if with_front {
            let upstreams = |public: Option<SocketAddr>| -> Result<Option<(SocketAddr, Vec<SocketAddr>)>> {
                public.map(|p| Ok((p, front::reserve_loopback(front::upstream_count())?))).transpose()
            };
            Some(FrontPlan {
                tls: upstreams(cfg.tls_listen)?,
                v5: upstreams(cfg.v5_listen)?,
                limits: Limits {
                    connections: Arc::new(tokio::sync::Semaphore::new(cfg.max_connections)),
                    deadline: timeout,
                },
                processes: cfg.front_processes,
                max_connections: cfg.max_connections,
            })
        } else {
            None
        };
        let (tls_listens, v5_listens) = match &front {
            Some(f) => (
                f.tls.as_ref().map(|(_, u)| u.clone()).unwrap_or_default(),
                f.v5.as_ref().map(|(_, u)| u.clone()).unwrap_or_default(),
            ),
            None => (cfg.tls_listen.into_iter().collect(), cfg.v5_listen.into_iter().collect()),
        };
        let config = rumqttd_config(cfg, pki, &devices, Arc::from(internal_password), &tls_listens, &v5_listens)?;

        let broker = Broker::new(config);
        let meters = broker.meters().context("attaching to the broker's meters")?;
        let tick = broker.link(TICK_CLIENT_ID).context("creating the meter link")?;
        Ok(Self {
            broker,
            tls_addr: cfg.tls_listen,
            plain_addr: cfg.plain_listen,
            v5_addr: cfg.v5_listen,
            front,
            runtime,
            meters,
            tick,
            local_links: 1,
            heap_trim_interval: (cfg.heap_trim_interval_ms > 0).then(|| Duration::from_millis(cfg.heap_trim_interval_ms)),
        })
    }

    /// An in-process client of the broker, with no network and no authentication; it is not
    /// confined to a tenant, so it can publish into any device's topics. Read it with
    /// [`crate::next_publish`] (which handles rumqttd's flow control). Names must be unique
    /// (rumqttd drops an earlier connection with the same client id) and may not contain
    /// `+ $ # /`; `offsite-broker-meter` is taken.
    pub fn link(&mut self, name: &str) -> Result<(LinkTx, LinkRx)> {
        let link = self.broker.link(name).with_context(|| format!("creating in-process link {name:?}"))?;
        self.local_links += 1;
        Ok(link)
    }

    /// Starts the listeners on a thread of their own and returns once every configured listener
    /// accepts TCP connections (at most ~10 s; this blocks the calling thread meanwhile).
    ///
    /// rumqttd has no shutdown: the broker runs until the process exits.
    pub fn spawn(self) -> Result<BrokerHandle> {
        // The front binds the public device addresses itself, before rumqttd starts, so a port in
        // use is an error here; rumqttd binds what it listens on (loopback upstreams, or all
        // three addresses without a front).
        let (rumqttd_addrs, front_listeners) = match &self.front {
            Some(plan) => {
                let _rt = self.runtime.enter();
                let mut listeners = Vec::new();
                for (public, upstreams) in plan.tls.iter().chain(plan.v5.iter()) {
                    if plan.processes > 0 {
                        // The front processes bind it (SO_REUSEPORT); here only check it is free.
                        std::net::TcpListener::bind(public)
                            .with_context(|| format!("MQTT listener {public} is not available"))?;
                    } else {
                        listeners.push((front::bind(*public)?, Arc::new(Upstreams::new(upstreams.clone()))));
                    }
                }
                let mut addrs: Vec<SocketAddr> = plan.tls.iter().chain(plan.v5.iter()).flat_map(|(_, u)| u.clone()).collect();
                addrs.extend(self.plain_addr);
                (addrs, listeners)
            }
            None => ([self.tls_addr, self.plain_addr, self.v5_addr].into_iter().flatten().collect(), Vec::new()),
        };
        // rumqttd only logs a failed bind, and the readiness probe below would happily connect to
        // whatever else holds the port: check first that the ports are free.
        for addr in &rumqttd_addrs {
            std::net::TcpListener::bind(addr).with_context(|| format!("MQTT listener {addr} is not available"))?;
        }
        let connections = Arc::new(AtomicI64::new(0));
        spawn_meter_thread(self.meters, self.tick, self.local_links, connections.clone())?;
        if let Some(interval) = self.heap_trim_interval {
            crate::allocator::spawn_heap_trimmer(interval)?;
        }

        let mut broker = self.broker;
        let thread = std::thread::Builder::new()
            .name("offsite-broker".into())
            .spawn(move || match broker.start() {
                Ok(()) => error!("MQTT broker stopped: every listener has ended"),
                Err(e) => error!(error = %e, "MQTT broker failed"),
            })
            .context("starting the broker thread")?;

        let deadline = Instant::now() + LISTEN_WAIT;
        for addr in rumqttd_addrs {
            wait_listening(addr, deadline, &thread)?;
        }
        if let Some(plan) = &self.front {
            for (listener, upstreams) in front_listeners {
                front::start(listener, upstreams, plan.limits.clone(), &self.runtime);
            }
            if plan.processes > 0 {
                let spec = FrontSpec {
                    listeners: plan.tls.iter().chain(plan.v5.iter()).cloned().collect(),
                    max_connections: plan.max_connections / plan.processes,
                    deadline_ms: u64::try_from(plan.limits.deadline.as_millis()).unwrap_or(u64::MAX),
                };
                front_process::spawn(plan.processes, &spec, LISTEN_WAIT)?;
            }
        }
        info!(tls = ?self.tls_addr, plain = ?self.plain_addr, v5 = ?self.v5_addr, "MQTT broker listening");
        Ok(BrokerHandle {
            tls_addr: self.tls_addr,
            plain_addr: self.plain_addr,
            v5_addr: self.v5_addr,
            connections,
            thread,
        })
    }
}

/// A running broker.
pub struct BrokerHandle {
    tls_addr: Option<SocketAddr>,
    plain_addr: Option<SocketAddr>,
    v5_addr: Option<SocketAddr>,
    connections: Arc<AtomicI64>,
    thread: JoinHandle<()>,
}

impl BrokerHandle {
    /// The device (TLS, MQTT 3.1.1) listener as configured. Devices connect by host name
    /// (`localhost` for the generated server certificate), not by IP.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The internal plain listener as configured.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// The MQTT 5 device listener, if configured.
    pub fn v5_addr(&self) -> Option<SocketAddr> {
        self.v5_addr
    }

    /// Remote connections according to the router's latest meter (refreshed every second);
    /// the same value as the `offsite_broker_connections` gauge of the process.
    pub fn connections(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Blocks until the broker stops, which only happens when all its listeners have failed.
    pub fn join(self) -> Result<()> {
        self.thread.join().map_err(|_| anyhow!("the broker thread panicked"))
    }
}

/// The device front's side of the configuration.
struct FrontPlan {
    /// Public TLS address and rumqttd's loopback listeners behind it.
    tls: Option<(SocketAddr, Vec<SocketAddr>)>,
    /// The same for MQTT 5.
    v5: Option<(SocketAddr, Vec<SocketAddr>)>,
    limits: Limits,
    /// `[broker] front_processes`: 0 runs the front in this process.
    processes: usize,
    max_connections: usize,
}

fn fallback_runtime() -> Result<&'static Runtime> {
    static RT: OnceLock<Runtime> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("offsite-broker-auth")
        .enable_all()
        .build()
        .context("starting the broker's authentication runtime")?;
    // A concurrent caller may have won; its runtime is used and ours is dropped here, outside
    // any async context.
    Ok(RT.get_or_init(|| rt))
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str().map(str::to_owned).with_context(|| format!("{} is not valid UTF-8", p.display()))
}

fn rumqttd_config(
    cfg: &BrokerConfig,
    pki: &Pki,
    devices: &Arc<DeviceAuthenticator>,
    internal_password: Arc<str>,
    tls_listens: &[SocketAddr],
    v5_listens: &[SocketAddr],
) -> Result<Config> {
    let connections = ConnectionSettings {
        connection_timeout_ms: u16::try_from(cfg.connection_timeout_ms).unwrap_or(u16::MAX),
        max_payload_size: cfg.max_payload_bytes,
        max_inflight_count: cfg.max_inflight,
        auth: None,
        external_auth: None,
        dynamic_filters: false,
    };
    let tls = TlsConfig::Rustls {
        capath: Some(path_str(&pki.ca_path())?),
        certpath: path_str(&pki.server_cert_path())?,
        keypath: path_str(&pki.server_key_path())?,
    };
    let device_server = |name: &str, listen: SocketAddr| {
        let mut s = ServerSettings {
            name: name.to_owned(),
            listen,
            tls: Some(tls.clone()),
            next_connection_delay_ms: 0,
            connections: connections.clone(),
        };
        let devices = devices.clone();
        s.set_auth_handler(move |client_id, username, password| devices.clone().check(client_id, username, password));
        s
    };

    // One rumqttd server (accept loop and thread) per listener: see `front::upstream_count`.
    let mut v4 = HashMap::new();
    for (i, listen) in tls_listens.iter().enumerate() {
        v4.insert(format!("devices-{i}"), device_server(&format!("offsite-mqtt-tls-{i}"), *listen));
    }
    if let Some(listen) = cfg.plain_listen {
        let mut s = ServerSettings {
            name: "offsite-mqtt-internal".to_owned(),
            listen,
            tls: None,
            next_connection_delay_ms: 0,
            connections: connections.clone(),
        };
        s.set_auth_handler(move |client_id: String, username: String, password: String| {
            let ok = auth::check_internal(&internal_password, &client_id, &username, &password);
            std::future::ready(ok)
        });
        v4.insert("internal".to_owned(), s);
    }
    let mut v5 = HashMap::new();
    for (i, listen) in v5_listens.iter().enumerate() {
        v5.insert(format!("devices-{i}"), device_server(&format!("offsite-mqtt-tls-v5-{i}"), *listen));
    }

    let platform_segment =
        SegmentConfig { max_segment_size: platform_segment_bytes(cfg), max_segment_count: PLATFORM_SEGMENT_COUNT };
    let custom_segment = [Channel::Data, Channel::Status, Channel::CmdAck]
        .into_iter()
        .map(|c| (c.all_devices_filter(), platform_segment.clone()))
        .collect();

    // `MetricSettings` has private fields: serde is the only way to build it. Alerts must be
    // configured too: rumqttd 0.20's metrics timer unwraps both intervals (its `select!`
    // evaluates a disabled branch's future) and its thread panics with meters alone. Nobody
    // subscribes to alerts, so pushing them just empties rumqttd's alert log every minute.
    let metrics: HashMap<MetricType, MetricSettings> = serde_json::from_value(serde_json::json!({
        "meters": { "push_interval": METER_PUSH_SECS },
        "alerts": { "push_interval": ALERT_PUSH_SECS },
    }))
    .context("building rumqttd meter settings")?;

    Ok(Config {
        id: 0,
        router: RouterConfig {
            max_connections: cfg.max_connections.saturating_add(LOCAL_LINK_SLOTS),
            max_outgoing_packet_count: MAX_OUTGOING_PACKETS,
            max_segment_size: DEVICE_SEGMENT_BYTES,
            max_segment_count: DEVICE_SEGMENT_COUNT,
            custom_segment: Some(custom_segment),
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: (!v4.is_empty()).then_some(v4),
        v5: (!v5.is_empty()).then_some(v5),
        metrics: Some(metrics),
        ..Default::default()
    })
}

/// One segment of a platform filter's ring; rumqttd refuses segments under 1 KiB.
fn platform_segment_bytes(cfg: &BrokerConfig) -> usize {
    (cfg.ingest_buffer_mib.saturating_mul(1 << 20) / PLATFORM_SEGMENT_COUNT).max(1024)
}

/// Exports the router's connection count.
///
/// rumqttd's router counts connections (`RouterMeter::total_connections`, in-process links
/// included) and pushes it to meter links every `push_interval`, but only for intervals in which
/// something was published. An internal link therefore publishes a tick to a topic nobody can
/// subscribe to usefully, so the count keeps flowing on an idle broker too.
fn spawn_meter_thread(
    meters: MetersLink,
    tick: (LinkTx, LinkRx),
    local_links: usize,
    connections: Arc<AtomicI64>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the broker meter runtime")?;
    let local = i64::try_from(local_links).unwrap_or(i64::MAX);
    std::thread::Builder::new()
        .name("offsite-broker-meters".into())
        .spawn(move || {
            runtime.block_on(async move {
                let (mut tx, _rx) = tick;
                let mut interval = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tokio::select! {
                        _ = interval.tick() => {
                            if let Err(e) = tx.publish(TICK_TOPIC, vec![b'.']) {
                                warn!(error = %e, "broker meter link closed");
                                return;
                            }
                        }
                        m = meters.next() => match m {
                            Ok(meters) => {
                                for m in meters {
                                    if let Meter::Router(_, r) = m {
                                        let n = i64::try_from(r.total_connections).unwrap_or(i64::MAX) - local;
                                        connections.store(n, Ordering::Relaxed);
                                        metrics::set_connections(n);
                                    }
                                }
                            }
                            Err(e) => {
                                warn!(error = %e, "broker meters closed");
                                return;
                            }
                        }
                    }
                }
            })
        })
        .context("starting the broker meter thread")?;
    Ok(())
}

/// Polls `addr` until it accepts a TCP connection. The probe connection is closed at once, which
/// rumqttd logs as a failed handshake/connect: expected noise at start-up.
fn wait_listening(addr: SocketAddr, deadline: Instant, broker: &JoinHandle<()>) -> Result<()> {
    let probe = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    };
    loop {
        if TcpStream::connect_timeout(&probe, Duration::from_millis(250)).is_ok() {
            return Ok(());
        }
        if broker.is_finished() {
            bail!("the MQTT broker stopped while starting (is {addr} in use?)");
        }
        if Instant::now() >= deadline {
            bail!("MQTT listener {addr} did not come up within {LISTEN_WAIT:?} (is the port in use?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_buffer_is_split_into_segments() {
        let mut cfg = BrokerConfig::default();
        assert_eq!(platform_segment_bytes(&cfg) * PLATFORM_SEGMENT_COUNT, 200 << 20);
        cfg.ingest_buffer_mib = 1;
        assert_eq!(platform_segment_bytes(&cfg), (1 << 20) / PLATFORM_SEGMENT_COUNT);
        // rumqttd panics on segments under 1 KiB.
        cfg.ingest_buffer_mib = 0;
        assert_eq!(platform_segment_bytes(&cfg), 1024);
        cfg.ingest_buffer_mib = usize::MAX;
        assert!(platform_segment_bytes(&cfg) > 0);
    }
}
