//! The device front in processes of its own (`[broker] front_processes = N`).
//!
//! A relay holds two sockets per device (the device's and its own to rumqttd) on top of
//! rumqttd's one, so in the broker's process each device costs three file descriptors: 10,000
//! devices do not fit under an open-files limit of 20,000. Here the front runs in N children of
//! the broker (`offsite broker-front`, the same executable), which all listen on the public
//! device addresses with SO_REUSEPORT (the kernel spreads new connections over them), each
//! admitting `max_connections / N` devices. Each child reports its counters as a JSON line a
//! second on its stdout, which the broker adds to its own metrics; a child that dies is started
//! again, and a child whose broker is gone exits.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tracing::{error, info, warn};

use crate::front::{self, Limits, Upstreams};
use crate::metrics::{self, FrontSnapshot};

/// The hidden subcommand of the `offsite` binary that runs one front process.
pub const FRONT_SUBCOMMAND: &str = "broker-front";
const REPORT_EVERY: Duration = Duration::from_secs(1);
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// What one front process serves; passed as JSON on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FrontSpec {
    /// Public device address and rumqttd's loopback listeners behind it.
    pub listeners: Vec<(SocketAddr, Vec<SocketAddr>)>,
    /// Device connections this process admits.
    pub max_connections: usize,
    pub deadline_ms: u64,
}

/// Runs one front process until its broker goes away (`offsite broker-front --spec JSON`).
pub fn run_front_process(spec: &str) -> Result<()> {
    let spec: FrontSpec =
        serde_json::from_str(spec).context("reading the front process's --spec")?;
    metrics::register();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("offsite-front")
        .enable_all()
        .build()
        .context("starting the front process's runtime")?;
    runtime.block_on(async move {
        let limits = Limits {
            connections: Arc::new(tokio::sync::Semaphore::new(spec.max_connections)),
            deadline: Duration::from_millis(spec.deadline_ms.max(1)),
        };
        for (public, upstreams) in &spec.listeners {
            let listener = front::bind_shared(*public)?;
            front::start(
                listener,
                Arc::new(Upstreams::new(upstreams.clone())),
                limits.clone(),
                &tokio::runtime::Handle::current(),
            );
        }
        let parent = std::os::unix::process::parent_id();
        let mut out = tokio::io::stdout();
        out.write_all(b"ready\n").await?;
        out.flush().await?;
        loop {
            tokio::time::sleep(REPORT_EVERY).await;
            // Re-parented: the broker is gone, and with it every upstream connection.
            if std::os::unix::process::parent_id() != parent {
                return Ok(());
            }
            let mut line = serde_json::to_vec(&metrics::front_snapshot())?;
            line.push(b'\n');
            if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
                return Ok(());
            }
        }
    })
}

/// Starts `count` front processes for `spec` (its `max_connections` already divided) and returns
/// once each one listens; each is supervised by a thread of its own from then on.
pub(crate) fn spawn(count: usize, spec: &FrontSpec, wait: Duration) -> Result<()> {
    let exe = std::env::current_exe()
        .context("finding the offsite executable for the front processes")?;
    let spec = serde_json::to_string(spec)?;
    for index in 0..count {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (exe, spec) = (exe.clone(), spec.clone());
        std::thread::Builder::new()
            .name(format!("offsite-front-{index}"))
            .spawn(move || supervise(index, &exe, &spec, ready_tx))
            .context("starting a front supervisor thread")?;
        match ready_rx.recv_timeout(wait) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("device front process {index} did not start within {wait:?}"),
        }
    }
    info!(count, "device front processes listening");
    Ok(())
}

fn supervise(index: usize, exe: &PathBuf, spec: &str, ready: mpsc::Sender<Result<()>>) {
    let mut ready = Some(ready);
    loop {
        let child = Command::new(exe)
            .arg(FRONT_SUBCOMMAND)
            .arg("--spec")
            .arg(spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(
                        anyhow::Error::new(e).context("starting a device front process")
                    ));
                    return;
                }
                error!(front = index, error = %e, "cannot restart a device front process");
                std::thread::sleep(RESTART_AFTER);
                continue;
            }
        };
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        match lines.next() {
            Some(Ok(l)) if l == "ready" => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
            }
            _ => {
                let _ = child.kill();
                let status = child.wait();
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(anyhow::anyhow!(
                        "device front process {index} failed to start ({status:?}); see its log"
                    )));
                    return;
                }
                error!(
                    front = index,
                    ?status,
                    "device front process failed to start again"
                );
                std::thread::sleep(RESTART_AFTER);
                continue;
            }
        }
        let mut last = FrontSnapshot::default();
        for line in lines {
            let Ok(line) = line else { break };
            match serde_json::from_str::<FrontSnapshot>(&line) {
                Ok(now) => {
                    metrics::front_add(&last, &now);
                    last = now;
                }
                Err(e) => {
                    warn!(front = index, error = %e, "unreadable report from a device front process")
                }
            }
        }
        metrics::front_process_ended(&last);
        let status = child.wait();
        error!(
            front = index,
            ?status,
            "device front process ended; starting it again"
        );
        std::thread::sleep(RESTART_AFTER);
    }
}
