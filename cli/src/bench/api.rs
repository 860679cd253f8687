//! `offsite bench api`: the portal's busiest endpoints under many concurrent users, on a database
//! the size of a city's year (1M tasks, 100k warnings, 20 departments by default).
//!
//! It starts the all-in-one platform in a scratch directory (embedded PostgreSQL, portal on
//! 127.0.0.1:0), seeds the workload in bulk (`offsite_store::bench_data`), creates a monitor, a
//! re-supervision reader and one handler per department, logs them in over HTTP, then drives each
//! endpoint in turn with `--clients` keep-alive HTTP clients for `--seconds` (after a short
//! warm-up): the task inbox, the warning list, signing for distinct dispatched tasks, and the
//! department figures. Only 2xx answers count as successes; every endpoint is tried once before
//! the timed runs and a refusal (a 404 from a missing route, say) stops the bench with the answer,
//! so it never reports figures of an error page. The last stdout line is one JSON object.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use offsite_store::auth::{NewUser, Role};
use offsite_store::bench_data::WorkloadSize;
use offsite_store::Store;
use serde_json::{json, Value};

use super::support::{percentile, round, scratch_dir};
use crate::configuration::Config;
use crate::startup::AllInOne;

#[derive(clap::Args)]
pub struct Args {
    /// Tasks to seed.
    #[arg(long, default_value_t = 1_000_000)]
    tasks: i64,
    /// Warnings to seed.
    #[arg(long, default_value_t = 100_000)]
    warnings: i64,
    /// Departments the tasks and warnings are spread over (one handler each).
    #[arg(long, default_value_t = 20)]
    departments: i64,
    /// Concurrent keep-alive HTTP clients per endpoint.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Measured seconds per endpoint (after a warm-up).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Warm-up seconds per endpoint, not measured.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Endpoints to drive, comma-separated (task_inbox, warning_list, task_sign, dept_metrics).
    #[arg(long, value_delimiter = ',', default_values_t = Endpoint::ALL.map(|e| e.name().to_owned()))]
    endpoints: Vec<String>,
    /// Accepted for symmetry; the JSON line is always printed last.
    #[arg(long)]
    json: bool,
}

/// The endpoints the bench drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Endpoint {
    /// `GET /api/v1/tasks?state=dispatched&limit=20` as a department's handler.
    TaskInbox,
    /// `GET /api/v1/warnings?limit=50` as the monitoring center.
    WarningList,
    /// `POST /api/v1/tasks/{id}/sign` by the handler, each on a task never signed before.
    TaskSign,
    /// `GET /api/v1/metrics/departments` (the last 30 days) as re-supervision.
    DeptMetrics,
}

impl Endpoint {
    const ALL: [Endpoint; 4] = [Endpoint::TaskInbox, Endpoint::WarningList, Endpoint::TaskSign, Endpoint::DeptMetrics];
    /// The endpoints the latency goal (`worst_p99_ms` < 50) is about.
    const GOAL: [Endpoint; 3] = [Endpoint::TaskInbox, Endpoint::WarningList, Endpoint::TaskSign];

    fn name(self) -> &'static str {
        match self {
            Endpoint::TaskInbox => "task_inbox",
            Endpoint::WarningList => "warning_list",
            Endpoint::TaskSign => "task_sign",
            Endpoint::DeptMetrics => "dept_metrics",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|e| e.name() == s.trim()).with_context(|| {
            format!("unknown endpoint {s:?}; expected one of task_inbox, warning_list, task_sign, dept_metrics")
        })
    }
}

/// Who calls, and what the sign-for clients may still sign.
struct Actors {
    base: String,
    monitor: String,
    resupervision: String,
    /// One handler's token per department, in department order.
    handlers: Vec<String>,
    /// Per department, dispatched tasks nobody has signed for yet (each taken once).
    unsigned: Vec<Mutex<Vec<i64>>>,
}

/// One request's result: latency and whether it succeeded (2xx).
type Sample = (f64, bool);

/// Whether a request could not be made because the sign-for queue ran dry.
enum Call {
    Done(Sample),
    Exhausted,
}

pub async fn run(base: Config, a: Args) -> Result<()> {
    let endpoints: Vec<Endpoint> = a.endpoints.iter().map(|s| Endpoint::parse(s)).collect::<Result<_>>()?;
    if a.departments < 1 || a.clients < 1 || a.seconds < 1 || a.tasks < 0 || a.warnings < 0 {
        bail!("--departments, --clients and --seconds must be at least 1, --tasks and --warnings not negative");
    }
    let dir = scratch_dir("api")?;
    let mut cfg = base;
    cfg.data_dir = dir.path().to_path_buf();
    cfg.database.url = None;
    cfg.broker.tls_listen = Some(format!("127.0.0.1:{}", super::support::free_port()?).parse()?);
    cfg.broker.plain_listen = Some(format!("127.0.0.1:{}", super::support::free_port()?).parse()?);
    cfg.portal.listen = Some("127.0.0.1:0".parse()?);
    cfg.portal.https_listen = None;
    cfg.hj212.listen = "127.0.0.1:0".into();
    // No devices send data here; the detectors would only take CPU from the portal.
    cfg.analytics.enabled = false;
    // Never prompt for the first administrator's password.
    cfg.auth.initial_admin_password = Some(password());
    let p = AllInOne::start(&cfg).await?;
    let r = measure(&p, &a, &endpoints).await;
    p.stop().await?;
    let (out, errors) = r?;
    println!("{out}");
    if errors > 0 {
        bail!("{errors} requests failed (see `errors` per endpoint)");
    }
    Ok(())
}

/// A password the policy accepts, different every run.
fn password() -> String {
    format!("Bench#{:016x}", rand::random::<u64>())
}

async fn measure(p: &AllInOne, a: &Args, endpoints: &[Endpoint]) -> Result<(Value, u64)> {
    let store = &p.db.store;
    let size = WorkloadSize {
        tasks: a.tasks,
        warnings: a.warnings,
        departments: a.departments,
        objects: 1000,
        complaints: a.tasks / 50,
    };
    eprintln!("bench api: seeding {} tasks, {} warnings, {} departments", a.tasks, a.warnings, a.departments);
    let t = Instant::now();
    let seeded = store.seed_bench_workload(size, Utc::now(), |s| eprintln!("  {s}")).await?;
    let seed_s = t.elapsed().as_secs_f64();
    eprintln!("bench api: seeded in {seed_s:.1} s");

    let base = format!("http://{}", p.portal_addr.context("the bench needs the plain HTTP listener")?);
    let actors = Arc::new(actors(store, &base, &seeded.department_ids).await?);
    let free: usize = actors.unsigned.iter().map(|q| q.lock().unwrap().len()).sum();
    eprintln!("bench api: {} users logged in; {free} dispatched tasks to sign for", actors.handlers.len() + 2);

    let mut failures = Vec::new();
    for e in endpoints {
        if let Err(msg) = preflight(&actors, *e).await {
            failures.push(format!("{}: {msg}", e.name()));
        }
    }
    if !failures.is_empty() {
        bail!("endpoints refused before the timed run (nothing measured):\n  {}", failures.join("\n  "));
    }

    let mut out = serde_json::Map::new();
    let mut errors_total = 0;
    let mut p99s: HashMap<Endpoint, f64> = HashMap::new();
    for e in endpoints {
        let r = drive(&actors, *e, a).await?;
        eprintln!(
            "bench api: {:<13} {:>8.0} req/s  p50 {:>7.1} ms  p99 {:>7.1} ms  errors {}{}",
            e.name(),
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            if r.exhausted { "  (ran out of tasks to sign)" } else { "" }
        );
        if r.ok == 0 {
            bail!("{}: no request succeeded", e.name());
        }
        errors_total += r.errors;
        p99s.insert(*e, r.p99_ms);
        out.insert(
            e.name().to_owned(),
            json!({
                "rps": round(r.rps, 0),
                "p50_ms": round(r.p50_ms, 2),
                "p99_ms": round(r.p99_ms, 2),
                "errors": r.errors,
                "requests": r.ok + r.errors,
                "seconds": round(r.seconds, 1),
                "ran_out_of_tasks": r.exhausted,
            }),
        );
    }
    let worst = |set: &[Endpoint]| {
        set.iter().filter_map(|e| p99s.get(e)).copied().fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let goal: Vec<&str> = Endpoint::GOAL.iter().filter(|e| p99s.contains_key(e)).map(|e| e.name()).collect();
    out.insert("worst_p99_ms".into(), json!(worst(&Endpoint::GOAL).map(|v| round(v, 2))));
    out.insert("worst_p99_over".into(), json!(goal));
    out.insert("worst_p99_ms_all".into(), json!(worst(&Endpoint::ALL).map(|v| round(v, 2))));
    out.insert("seed_s".into(), json!(round(seed_s, 1)));
    out.insert(
        "seed_steps_s".into(),
        Value::Object(seeded.steps_s.iter().map(|(k, v)| (k.clone(), json!(round(*v, 1)))).collect()),
    );
    out.insert("tasks".into(), json!(seeded.tasks));
    out.insert("task_events".into(), json!(seeded.task_events));
    out.insert("warnings".into(), json!(seeded.warnings));
    out.insert("complaints".into(), json!(seeded.complaints));
    out.insert("departments".into(), json!(seeded.department_ids.len()));
    out.insert("clients".into(), json!(a.clients));
    out.insert("seconds_per_endpoint".into(), json!(a.seconds));
    Ok((Value::Object(out), errors_total))
}

/// Creates the accounts and logs each in through `POST /api/v1/auth/login`.
async fn actors(store: &Store, base: &str, departments: &[i64]) -> Result<Actors> {
    let pw = password();
    let mut accounts =
        vec![("bench-monitor".to_owned(), Role::Monitor, None), ("bench-resup".to_owned(), Role::Resupervision, None)];
    for (i, d) in departments.iter().enumerate() {
        accounts.push((format!("bench-handler-{:02}", i + 1), Role::Handler, Some(*d)));
    }
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for (name, role, department_id) in &accounts {
        store
            .insert_user(&NewUser {
                username: name.clone(),
                display_name: name.clone(),
                password: pw.clone(),
                roles: vec![*role],
                department_id: *department_id,
                region_codes: vec![],
                must_change_password: false,
            })
            .await?;
        let r = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": name, "password": pw}))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let Some(token) = body["token"].as_str().filter(|_| status.is_success()) else {
            bail!("logging in {name} answered {status}: {body}");
        };
        tokens.push(token.to_owned());
    }
    let mut unsigned = Vec::new();
    for d in departments {
        unsigned.push(Mutex::new(store.dispatched_task_ids(*d).await?));
    }
    let mut tokens = tokens.into_iter();
    Ok(Actors {
        base: base.to_owned(),
        monitor: tokens.next().expect("monitor"),
        resupervision: tokens.next().expect("re-supervision"),
        handlers: tokens.collect(),
        unsigned,
    })
}

/// One request of `e` by client number `client`.
async fn call(http: &reqwest::Client, actors: &Actors, e: Endpoint, client: usize) -> Result<(Call, String)> {
    let department = client % actors.handlers.len();
    let base = &actors.base;
    let req = match e {
        Endpoint::TaskInbox => {
            http.get(format!("{base}/api/v1/tasks?state=dispatched&limit=20")).bearer_auth(&actors.handlers[department])
        }
        Endpoint::WarningList => http.get(format!("{base}/api/v1/warnings?limit=50")).bearer_auth(&actors.monitor),
        Endpoint::TaskSign => {
            let Some(id) = actors.unsigned[department].lock().unwrap().pop() else {
                return Ok((Call::Exhausted, String::new()));
            };
            http.post(format!("{base}/api/v1/tasks/{id}/sign"))
                .bearer_auth(&actors.handlers[department])
                .json(&json!({}))
        }
        Endpoint::DeptMetrics => {
            http.get(format!("{base}/api/v1/metrics/departments")).bearer_auth(&actors.resupervision)
        }
    };
    let t = Instant::now();
    let r = req.send().await;
    let (ok, detail) = match r {
        Ok(resp) => {
            let status = resp.status();
            // Read the whole body: that is part of the answer's cost, and keeps the connection reusable.
            let body = resp.bytes().await.unwrap_or_default();
            let ok = status.is_success();
            (
                ok,
                if ok {
                    String::new()
                } else {
                    format!("{status} {}", String::from_utf8_lossy(&body[..body.len().min(300)]))
                },
            )
        }
        Err(err) => (false, format!("{err}")),
    };
    Ok((Call::Done((t.elapsed().as_secs_f64() * 1000.0, ok)), detail))
}

/// One request per endpoint before timing anything: a refusal names itself.
async fn preflight(actors: &Actors, e: Endpoint) -> std::result::Result<(), String> {
    let http = reqwest::Client::new();
    match call(&http, actors, e, 0).await {
        Ok((Call::Done((_, true)), _)) => Ok(()),
        Ok((Call::Done((_, false)), detail)) => Err(detail),
        Ok((Call::Exhausted, _)) => Err("no dispatched task to sign for".into()),
        Err(err) => Err(format!("{err:#}")),
    }
}

struct Outcome {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    ok: u64,
    errors: u64,
    seconds: f64,
    exhausted: bool,
}

/// `a.clients` clients, each on its own keep-alive connection, send requests back to back for
/// the warm-up and then for `a.seconds`; only the second part is kept.
async fn drive(actors: &Arc<Actors>, e: Endpoint, a: &Args) -> Result<Outcome> {
    let measuring = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(true));
    let exhausted = Arc::new(AtomicBool::new(false));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let mut tasks = Vec::new();
    for client in 0..a.clients {
        let (actors, measuring, running, exhausted, first_error) =
            (actors.clone(), measuring.clone(), running.clone(), exhausted.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().pool_max_idle_per_host(1).timeout(Duration::from_secs(60)).build()?;
            let mut samples: Vec<Sample> = Vec::new();
            while running.load(Ordering::Relaxed) {
                match call(&http, &actors, e, client).await? {
                    (Call::Exhausted, _) => {
                        exhausted.store(true, Ordering::Relaxed);
                        break;
                    }
                    (Call::Done(s), detail) => {
                        if !s.1 {
                            first_error.lock().unwrap().get_or_insert(detail);
                        }
                        if measuring.load(Ordering::Relaxed) {
                            samples.push(s);
                        }
                    }
                }
            }
            anyhow::Ok(samples)
        }));
    }
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.seconds);
    while Instant::now() < deadline && !exhausted.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    measuring.store(false, Ordering::Relaxed);
    running.store(false, Ordering::Relaxed);
    let mut ok_ms = Vec::new();
    let mut errors = 0u64;
    for t in tasks {
        for (ms, ok) in t.await?? {
            if ok {
                ok_ms.push(ms);
            } else {
                errors += 1;
            }
        }
    }
    if let Some(detail) = first_error.lock().unwrap().take() {
        eprintln!("bench api: {}: first error: {detail}", e.name());
    }
    let ok = ok_ms.len() as u64;
    Ok(Outcome {
        rps: ok as f64 / seconds,
        p50_ms: percentile(&mut ok_ms, 50.0),
        p99_ms: percentile(&mut ok_ms, 99.0),
        ok,
        errors,
        seconds,
        exhausted: exhausted.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn endpoint_names_round_trip_and_unknown_ones_are_refused() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::parse(e.name()).unwrap(), e);
        }
        assert!(Endpoint::parse("task_list").is_err());
        assert!(Endpoint::GOAL.iter().all(|e| Endpoint::ALL.contains(e)));
    }
}
