//! Polls holding and input registers of a Modbus TCP device (a PLC, a gateway, a meter).
//!
//! Registers are grouped into one read per contiguous run per table, so a device with many
//! values costs a few requests per poll. The connection is opened lazily and dropped on any
//! transport failure or timeout (a late answer would otherwise be mistaken for the next one), so
//! the next poll reconnects. A Modbus exception (the device answered, but refused) only loses the
//! affected registers: the other values of the poll are still returned.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use offsite_wire::{MetricKey, Sample};
use serde::{Deserialize, Serialize};
use tokio_modbus::client::{tcp, Context, Reader};
use tokio_modbus::{ExceptionCode, Slave};

use super::SourceError;

/// The most registers one read may ask for (Modbus application protocol, function 0x03/0x04).
const MAX_READ: u16 = 125;

/// `kind = "modbus"` in `[[devices.sources]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    /// `host:port` of the device or gateway.
    pub address: String,
    /// Unit (slave) id; matters behind a gateway, usually ignored by direct TCP devices.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// Limit for connecting and for each request.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    pub registers: Vec<RegisterConfig>,
}

fn default_unit() -> u8 {
    1
}

fn default_timeout_ms() -> u64 {
    1000
}

/// One `[[devices.sources.registers]]` entry: a value and where to find it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterConfig {
    pub metric: MetricKey,
    #[serde(default)]
    pub table: RegisterTable,
    /// Register address (0-based, as on the wire).
    pub address: u16,
    #[serde(default, rename = "type")]
    pub data_type: RegisterType,
    #[serde(default)]
    pub word_order: WordOrder,
    /// value = raw * scale + offset.
    #[serde(default = "default_scale")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
}

fn default_scale() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterTable {
    /// Function 0x03.
    #[default]
    Holding,
    /// Function 0x04.
    Input,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterType {
    #[default]
    U16,
    I16,
    U32,
    I32,
    F32,
}

impl RegisterType {
    /// Registers (16-bit words) the type spans.
    pub fn width(self) -> u16 {
        match self {
            RegisterType::U16 | RegisterType::I16 => 1,
            RegisterType::U32 | RegisterType::I32 | RegisterType::F32 => 2,
        }
    }
}

/// Which register of a 32-bit value holds the high word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// The first register is the high word (the Modbus convention).
    #[default]
    Big,
    /// The first register is the low word (common on some PLCs).
    Little,
}

impl RegisterConfig {
    /// Converts the entry's words (exactly `data_type.width()` of them) to the scaled value.
    pub fn decode(&self, words: &[u16]) -> Option<f64> {
        let raw = match self.data_type {
            RegisterType::U16 => f64::from(*words.first()?),
            // Reinterpret the bits: a register holding 0xFFFE is -2.
            RegisterType::I16 => f64::from(*words.first()? as i16),
            RegisterType::U32 | RegisterType::I32 | RegisterType::F32 => {
                let (first, second) = (u32::from(*words.first()?), u32::from(*words.get(1)?));
                let bits = match self.word_order {
                    WordOrder::Big => first << 16 | second,
                    WordOrder::Little => second << 16 | first,
                };
                match self.data_type {
                    RegisterType::U32 => f64::from(bits),
                    RegisterType::I32 => f64::from(bits as i32),
                    _ => f64::from(f32::from_bits(bits)),
                }
            }
        };
        Some(raw * self.scale + self.offset)
    }
}

impl ModbusConfig {
    pub fn validate(&self) -> Result<(), SourceError> {
        let cfg = |m: String| Err(SourceError::Config(m));
        match self.address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return cfg(format!("modbus: address {:?} is not host:port", self.address)),
        }
        if self.timeout_ms == 0 {
            return cfg("modbus: timeout_ms must be at least 1".into());
        }
        if self.registers.is_empty() {
            return cfg("modbus: no registers to read".into());
        }
        let mut metrics: Vec<&str> = Vec::with_capacity(self.registers.len());
        for r in &self.registers {
            if u32::from(r.address) + u32::from(r.data_type.width()) > 0x1_0000 {
                return cfg(format!(
                    "modbus register {}: a {:?} at {} runs past address 65535",
                    r.metric, r.data_type, r.address
                ));
            }
            if !(r.scale.is_finite() && r.offset.is_finite()) {
                return cfg(format!("modbus register {}: scale and offset must be finite", r.metric));
            }
            metrics.push(r.metric.as_str());
        }
        metrics.sort_unstable();
        if let Some(w) = metrics.windows(2).find(|w| w[0] == w[1]) {
            return cfg(format!("modbus: metric {} is read twice", w[0]));
        }
        Ok(())
    }
}

/// One read request: a contiguous run of one table, covering some register entries.
#[derive(Debug, Clone, PartialEq)]
struct Block {
    table: RegisterTable,
    start: u16,
    count: u16,
    /// Indices into the config's registers.
    entries: Vec<usize>,
}

/// Groups the entries into as few reads as possible: overlapping or adjacent registers of a table
/// share a read, up to the protocol's limit. Gaps are never bridged: unmapped addresses in between
/// would make the device refuse the whole read.
fn plan(registers: &[RegisterConfig]) -> Vec<Block> {
    let mut order: Vec<usize> = (0..registers.len()).collect();
    order.sort_by_key(|&i| (registers[i].table, registers[i].address));
    let mut blocks: Vec<Block> = Vec::new();
    for i in order {
        let r = &registers[i];
        let (start, end) = (u32::from(r.address), u32::from(r.address) + u32::from(r.data_type.width()));
        if let Some(b) = blocks.last_mut() {
            let b_end = u32::from(b.start) + u32::from(b.count);
            let new_end = b_end.max(end);
            if b.table == r.table && start <= b_end && new_end - u32::from(b.start) <= u32::from(MAX_READ) {
                // Fits: new_end - start <= 125.
                b.count = (new_end - u32::from(b.start)) as u16;
                b.entries.push(i);
                continue;
            }
        }
        // validate() guarantees end <= 0x10000, so start and the width fit u16.
        blocks.push(Block { table: r.table, start: r.address, count: r.data_type.width(), entries: vec![i] });
    }
    blocks
}

/// Polls one Modbus TCP device.
pub struct ModbusSource {
    cfg: ModbusConfig,
    blocks: Vec<Block>,
    /// Open connection; None until the first poll and after a failure.
    ctx: Option<Context>,
    exceptions: u64,
}

impl ModbusSource {
    /// Checks the config; the device is first contacted by `poll`.
    pub fn new(cfg: &ModbusConfig) -> Result<Self, SourceError> {
        cfg.validate()?;
        Ok(Self { cfg: cfg.clone(), blocks: plan(&cfg.registers), ctx: None, exceptions: 0 })
    }

    /// Reads every register once; samples are stamped `now`. Errors when the device cannot be
    /// reached or times out (the next poll reconnects), or when no register could be read.
    pub async fn poll(&mut self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        let mut ctx = match self.ctx.take() {
            Some(ctx) => ctx,
            None => connect(&self.cfg).await?,
        };
        let mut out = Vec::with_capacity(self.cfg.registers.len());
        let mut refused: Vec<String> = Vec::new();
        let mut i = 0;
        while i < self.blocks.len() {
            let block = &self.blocks[i];
            // On a transport error `ctx` is dropped here (not put back), which closes it.
            let words = match read(&mut ctx, block, &self.cfg).await? {
                Ok(words) => words,
                Err(ExceptionCode::IllegalDataAddress) if block.entries.len() > 1 => {
                    // Some register of the run does not exist: read its entries one by one from
                    // now on, so the others keep working.
                    tracing::warn!(address = %self.cfg.address, start = block.start, count = block.count,
                        "modbus device refused a grouped read; reading its registers separately");
                    let singles: Vec<Block> = block
                        .entries
                        .iter()
                        .map(|&e| {
                            let r = &self.cfg.registers[e];
                            Block { table: r.table, start: r.address, count: r.data_type.width(), entries: vec![e] }
                        })
                        .collect();
                    self.blocks.splice(i..=i, singles);
                    continue;
                }
                Err(code) => {
                    self.exceptions += 1;
                    let metrics: Vec<&str> =
                        block.entries.iter().map(|&e| self.cfg.registers[e].metric.as_str()).collect();
                    refused.push(format!(
                        "{:?} {}..+{} ({}): {code}",
                        block.table,
                        block.start,
                        block.count,
                        metrics.join(", ")
                    ));
                    i += 1;
                    continue;
                }
            };
            for &e in &block.entries {
                let r = &self.cfg.registers[e];
                let at = usize::from(r.address.saturating_sub(block.start));
                let value = words.get(at..at + usize::from(r.data_type.width())).and_then(|w| r.decode(w));
                match value.filter(|v| v.is_finite()) {
                    Some(value) => out.push(Sample { ts: now, metric: r.metric.clone(), value }),
                    // A NaN/inf float register: nothing to report for this poll.
                    None => tracing::debug!(metric = %r.metric, "modbus register value is not a finite number"),
                }
            }
            i += 1;
        }
        self.ctx = Some(ctx);
        if refused.is_empty() {
            return Ok(out);
        }
        let message = format!("device refused {}", refused.join("; "));
        if out.is_empty() {
            return Err(error(&self.cfg, message));
        }
        tracing::warn!(address = %self.cfg.address, "{message}");
        Ok(out)
    }

    /// Reads the device refused (Modbus exceptions) since the source was built, including those
    /// of polls that still returned the other registers.
    pub fn exceptions(&self) -> u64 {
        self.exceptions
    }

    /// Whether a connection is currently open.
    pub fn connected(&self) -> bool {
        self.ctx.is_some()
    }
}

// Free functions rather than methods: `Context` is not `Sync`, so a `&ModbusSource` held across an
// await would make `poll`'s future non-`Send` (the runner spawns it).

async fn connect(cfg: &ModbusConfig) -> Result<Context, SourceError> {
    let slave = Slave(cfg.unit);
    let attempt = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&cfg.address).await?.collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "address resolved to nothing");
        for addr in addrs {
            match tcp::connect_slave(addr, slave).await {
                Ok(ctx) => return Ok(ctx),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    match tokio::time::timeout(Duration::from_millis(cfg.timeout_ms), attempt).await {
        Ok(Ok(ctx)) => {
            tracing::debug!(address = %cfg.address, "modbus connected");
            Ok(ctx)
        }
        Ok(Err(e)) => Err(error(cfg, format!("cannot connect: {e}"))),
        Err(_) => Err(error(cfg, format!("connecting timed out after {} ms", cfg.timeout_ms))),
    }
}

/// One read. Outer error: the connection is unusable; inner: the device's exception.
async fn read(
    ctx: &mut Context,
    block: &Block,
    cfg: &ModbusConfig,
) -> Result<Result<Vec<u16>, ExceptionCode>, SourceError> {
    let request = match block.table {
        RegisterTable::Holding => ctx.read_holding_registers(block.start, block.count),
        RegisterTable::Input => ctx.read_input_registers(block.start, block.count),
    };
    let what = format!("{:?} registers {}..+{}", block.table, block.start, block.count);
    match tokio::time::timeout(Duration::from_millis(cfg.timeout_ms), request).await {
        Err(_) => Err(error(cfg, format!("reading {what} timed out after {} ms", cfg.timeout_ms))),
        Ok(Err(e)) => Err(error(cfg, format!("reading {what}: {e}"))),
        Ok(Ok(Err(code))) => Ok(Err(code)),
        Ok(Ok(Ok(words))) if words.len() == usize::from(block.count) => Ok(Ok(words)),
        Ok(Ok(Ok(words))) => Err(error(cfg, format!("reading {what}: got {} registers", words.len()))),
    }
}

fn error(cfg: &ModbusConfig, message: String) -> SourceError {
    SourceError::Modbus { address: cfg.address.clone(), message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::Shutdown;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::net::{TcpSocket, TcpStream};
    use tokio::task::JoinHandle;
    use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
    use tokio_modbus::server::Service;
    use tokio_modbus::{Request, Response, SlaveRequest};

    const UNIT: u8 = 7;

    /// A device with a fixed register map.
    #[derive(Default)]
    struct Device {
        holding: HashMap<u16, u16>,
        input: HashMap<u16, u16>,
        requests: AtomicUsize,
        /// Stops answering (without closing), to exercise timeouts.
        mute: AtomicBool,
    }

    impl Device {
        fn answer(&self, req: SlaveRequest<'static>) -> Result<Option<Response>, ExceptionCode> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            if self.mute.load(Ordering::SeqCst) {
                return Ok(None);
            }
            if req.slave != UNIT {
                return Err(ExceptionCode::GatewayTargetDevice);
            }
            let read = |map: &HashMap<u16, u16>, start: u16, count: u16| {
                (0..count)
                    .map(|i| start.checked_add(i).and_then(|a| map.get(&a).copied()))
                    .collect::<Option<Vec<u16>>>()
                    .ok_or(ExceptionCode::IllegalDataAddress)
            };
            match req.request {
                Request::ReadHoldingRegisters(a, n) => {
                    read(&self.holding, a, n).map(|w| Some(Response::ReadHoldingRegisters(w)))
                }
                Request::ReadInputRegisters(a, n) => {
                    read(&self.input, a, n).map(|w| Some(Response::ReadInputRegisters(w)))
                }
                _ => Err(ExceptionCode::IllegalFunction),
            }
        }
    }

    struct DeviceService(Arc<Device>);

    impl Service for DeviceService {
        type Request = SlaveRequest<'static>;
        type Response = Option<Response>;
        type Exception = ExceptionCode;
        type Future = std::future::Ready<Result<Self::Response, Self::Exception>>;

        fn call(&self, req: Self::Request) -> Self::Future {
            std::future::ready(self.0.answer(req))
        }
    }

    /// A tokio-modbus TCP server on 127.0.0.1 that can be stopped for real: aborting `serve` only
    /// closes the listener, so accepted connections are remembered and shut down too.
    struct TestServer {
        addr: SocketAddr,
        task: JoinHandle<()>,
        conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
    }

    impl TestServer {
        async fn start(addr: SocketAddr, device: Arc<Device>) -> TestServer {
            let socket = TcpSocket::new_v4().expect("socket");
            // The restarted server binds the port the stopped one used.
            socket.set_reuseaddr(true).expect("reuseaddr");
            socket.bind(addr).expect("bind");
            let listener = socket.listen(16).expect("listen");
            let addr = listener.local_addr().expect("bound");
            let conns = Arc::new(Mutex::new(Vec::new()));
            let on_connected = {
                let conns = conns.clone();
                move |stream: TcpStream, peer: SocketAddr| {
                    let (conns, device) = (conns.clone(), device.clone());
                    async move {
                        let std_stream = stream.into_std()?;
                        conns.lock().expect("not poisoned").push(std_stream.try_clone()?);
                        let stream = TcpStream::from_std(std_stream)?;
                        accept_tcp_connection(stream, peer, |_| Ok(Some(DeviceService(device.clone()))))
                    }
                }
            };
            let task = tokio::spawn(async move {
                let _ = Server::new(listener).serve(&on_connected, |_err| {}).await;
            });
            TestServer { addr, task, conns }
        }

        async fn stop(self) {
            self.task.abort();
            let _ = self.task.await; // the listener is closed once the task is gone
            for c in self.conns.lock().expect("not poisoned").drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    fn f32_words(v: f32) -> (u16, u16) {
        let bits = v.to_bits();
        ((bits >> 16) as u16, bits as u16)
    }

    fn device() -> Arc<Device> {
        let mut d = Device::default();
        let (f_hi, f_lo) = f32_words(12.5);
        let i = (-100_000i32) as u32;
        let (i_hi, i_lo) = ((i >> 16) as u16, i as u16);
        let holding = [
            (0, 1234),
            (1, 0xFFFE), // -2 as i16
            (2, 0x0001), // u32 65538, big
            (3, 0x0002),
            (4, 0x0002), // u32 65538, little
            (5, 0x0001),
            (6, f_hi), // f32 12.5, big
            (7, f_lo),
            (8, f_lo), // f32 12.5, little
            (9, f_hi),
            (10, i_hi), // i32 -100000, big
            (11, i_lo),
            (12, i_lo), // i32 -100000, little
            (13, i_hi),
        ];
        d.holding.extend(holding);
        d.input.extend([(0, 4321), (1, 500)]);
        Arc::new(d)
    }

    fn reg(
        metric: &str,
        table: RegisterTable,
        address: u16,
        data_type: RegisterType,
        word_order: WordOrder,
    ) -> RegisterConfig {
        RegisterConfig {
            metric: MetricKey::parse(metric).expect("valid key"),
            table,
            address,
            data_type,
            word_order,
            scale: 1.0,
            offset: 0.0,
        }
    }

    fn config(addr: SocketAddr, registers: Vec<RegisterConfig>) -> ModbusConfig {
        ModbusConfig { address: addr.to_string(), unit: UNIT, timeout_ms: 500, registers }
    }

    fn values(samples: &[Sample]) -> HashMap<String, f64> {
        samples.iter().map(|s| (s.metric.as_str().to_owned(), s.value)).collect()
    }

    fn any_port() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[tokio::test]
    async fn decodes_every_type_and_table() {
        use RegisterTable::{Holding as H, Input as I};
        use RegisterType::*;
        use WordOrder::{Big, Little};
        let dev = device();
        let server = TestServer::start(any_port(), dev.clone()).await;
        let scaled = RegisterConfig { scale: 0.5, offset: -10.0, ..reg("scaled", H, 0, U16, Big) };
        let registers = vec![
            reg("u16", H, 0, U16, Big),
            scaled,
            reg("i16", H, 1, I16, Big),
            reg("u32_big", H, 2, U32, Big),
            reg("u32_little", H, 4, U32, Little),
            reg("u32_misread", H, 4, U32, Big),
            reg("f32_big", H, 6, F32, Big),
            reg("f32_little", H, 8, F32, Little),
            reg("i32_big", H, 10, I32, Big),
            reg("i32_little", H, 12, I32, Little),
            reg("input_u16", I, 0, U16, Big),
            RegisterConfig { scale: 0.5, offset: -10.0, ..reg("input_scaled", I, 1, U16, Big) },
        ];
        let mut src = ModbusSource::new(&config(server.addr, registers)).expect("valid");
        let now = Utc::now();
        let samples = src.poll(now).await.expect("poll");
        assert!(samples.iter().all(|s| s.ts == now));
        let v = values(&samples);
        let want = [
            ("u16", 1234.0),
            ("scaled", 607.0),
            ("i16", -2.0),
            ("u32_big", 65538.0),
            ("u32_little", 65538.0),
            ("u32_misread", 131073.0),
            ("f32_big", 12.5),
            ("f32_little", 12.5),
            ("i32_big", -100000.0),
            ("i32_little", -100000.0),
            ("input_u16", 4321.0),
            ("input_scaled", 240.0),
        ];
        for (metric, value) in want {
            assert_eq!(v.get(metric), Some(&value), "{metric}");
        }
        assert_eq!(v.len(), want.len());
        // One read per table: holding 0..14 and input 0..2.
        assert_eq!(dev.requests.load(Ordering::SeqCst), 2);
        server.stop().await;
    }

    #[tokio::test]
    async fn illegal_address_is_an_error_not_a_panic() {
        let server = TestServer::start(any_port(), device()).await;
        let missing = reg("missing", RegisterTable::Holding, 20, RegisterType::U16, WordOrder::Big);
        let mut src = ModbusSource::new(&config(server.addr, vec![missing.clone()])).expect("valid");
        let err = src.poll(Utc::now()).await.expect_err("no such register");
        assert!(matches!(err, SourceError::Modbus { .. }));
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(src.connected(), "an exception does not cost the connection");

        // In a run with valid registers only the missing one is lost.
        let registers = vec![
            reg("i32", RegisterTable::Holding, 12, RegisterType::I32, WordOrder::Little),
            RegisterConfig { address: 14, ..missing },
        ];
        let mut src = ModbusSource::new(&config(server.addr, registers)).expect("valid");
        for _ in 0..2 {
            let v = values(&src.poll(Utc::now()).await.expect("partial poll"));
            assert_eq!(v.into_iter().collect::<Vec<_>>(), [("i32".to_owned(), -100000.0)]);
        }
        assert_eq!(src.exceptions(), 2);

        // A wrong unit id is refused by the (gateway) device.
        let cfg = ModbusConfig {
            unit: 9,
            ..config(server.addr, vec![reg("u16", RegisterTable::Holding, 0, RegisterType::U16, WordOrder::Big)])
        };
        let mut src = ModbusSource::new(&cfg).expect("valid");
        assert!(src.poll(Utc::now()).await.is_err());
        server.stop().await;
    }

    #[tokio::test]
    async fn reconnects_after_the_server_comes_back() {
        let dev = device();
        let server = TestServer::start(any_port(), dev.clone()).await;
        let addr = server.addr;
        let registers = vec![reg("u16", RegisterTable::Holding, 0, RegisterType::U16, WordOrder::Big)];
        let mut src = ModbusSource::new(&config(addr, registers)).expect("valid");
        assert_eq!(values(&src.poll(Utc::now()).await.expect("up"))["u16"], 1234.0);

        server.stop().await;
        let err = src.poll(Utc::now()).await.expect_err("server is down");
        assert!(matches!(err, SourceError::Modbus { .. }), "{err}");
        assert!(!src.connected());
        assert!(src.poll(Utc::now()).await.is_err(), "still down: connection refused");

        let server = TestServer::start(addr, dev).await;
        assert_eq!(values(&src.poll(Utc::now()).await.expect("back up"))["u16"], 1234.0);
        assert!(src.connected());
        server.stop().await;
    }

    #[tokio::test]
    async fn a_silent_device_times_out() {
        let dev = device();
        let server = TestServer::start(any_port(), dev.clone()).await;
        let registers = vec![reg("u16", RegisterTable::Holding, 0, RegisterType::U16, WordOrder::Big)];
        let mut src =
            ModbusSource::new(&ModbusConfig { timeout_ms: 200, ..config(server.addr, registers) }).expect("valid");
        dev.mute.store(true, Ordering::SeqCst);
        let err = src.poll(Utc::now()).await.expect_err("no answer");
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(!src.connected(), "a late answer must not be taken for the next one");
        dev.mute.store(false, Ordering::SeqCst);
        assert_eq!(values(&src.poll(Utc::now()).await.expect("answers again"))["u16"], 1234.0);
        server.stop().await;
    }

    #[test]
    fn plan_groups_contiguous_runs_per_table() {
        use RegisterTable::{Holding as H, Input as I};
        use RegisterType::{F32, U16};
        let r = |table, address, t| reg(&format!("m{address}{table:?}"), table, address, t, WordOrder::Big);
        let registers =
            vec![r(H, 3, U16), r(H, 0, F32), r(H, 2, U16), r(I, 0, U16), r(H, 10, U16), r(H, 200, U16), r(H, 300, U16)];
        let blocks: Vec<(RegisterTable, u16, u16)> =
            plan(&registers).iter().map(|b| (b.table, b.start, b.count)).collect();
        assert_eq!(blocks, [(H, 0, 4), (H, 10, 1), (H, 200, 1), (H, 300, 1), (I, 0, 1)]);
        // No read exceeds the protocol's limit.
        let long: Vec<_> = (0..300).map(|a| r(H, a, U16)).collect();
        assert!(plan(&long).iter().all(|b| b.count <= MAX_READ));
        assert_eq!(plan(&long).len(), 3);
    }

    #[test]
    fn config_checks() {
        let ok = config(any_port(), vec![reg("a", RegisterTable::Holding, 0, RegisterType::U16, WordOrder::Big)]);
        assert!(ok.validate().is_ok());
        assert!(ModbusConfig { address: "nohost".into(), ..ok.clone() }.validate().is_err());
        assert!(ModbusConfig { registers: vec![], ..ok.clone() }.validate().is_err());
        let edge = reg("b", RegisterTable::Holding, 65535, RegisterType::U32, WordOrder::Big);
        assert!(ModbusConfig { registers: vec![edge], ..ok.clone() }.validate().is_err());
        let twice = vec![ok.registers[0].clone(), ok.registers[0].clone()];
        assert!(ModbusConfig { registers: twice, ..ok }.validate().is_err());
    }
}
