//! A private PostgreSQL cluster run from the system binaries inside the data directory.
//!
//! Invariants: the cluster listens on a Unix socket in `<data-dir>/postgres` and on no TCP port
//! unless asked; every `offsite` process using the same data directory shares it (an exclusive file
//! lock serialises start-up); the process that started it is the one that stops it. Each user holds
//! a shared lock on `<data-dir>/.postgres.users` while it lives, so a cluster found running with no
//! user (its starter was killed) is taken over, and stopped, by the next process.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use sqlx::postgres::PgConnectOptions;
use tracing::{info, warn};

/// The database inside the cluster that holds offsite's tables.
pub const DATABASE: &str = "offsite";
const SUPERUSER: &str = "postgres";

#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Directory with `initdb`, `pg_ctl`, `postgres`; found automatically when `None`.
    pub bin_dir: Option<PathBuf>,
    /// Socket port number (it names the socket file; no TCP unless `tcp_listen` is set).
    pub port: u16,
    /// e.g. `127.0.0.1` to also listen on TCP.
    pub tcp_listen: Option<String>,
    /// Extra `postgresql.conf` lines appended at initdb time.
    pub extra_conf: Vec<String>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self { bin_dir: None, port: 5432, tcp_listen: None, extra_conf: Vec::new() }
    }
}

/// A running embedded cluster. Drop does nothing: call [`EmbeddedPostgres::stop`] to stop it,
/// which only stops a cluster this process started.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    cluster: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    started_here: bool,
    as_postgres: bool,
    /// Holds a shared lock while this value lives: the kernel drops it when the process dies,
    /// however it dies, which is how a later process knows a running cluster has no user.
    _user: File,
}

impl EmbeddedPostgres {
    /// Starts the cluster under `data_dir` unless it is already running, creating it on first use.
    pub async fn ensure(data_dir: &Path, opts: &EmbeddedOptions) -> Result<Self> {
        let data_dir = data_dir.to_path_buf();
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || Self::ensure_blocking(&data_dir, &opts))
            .await
            .context("embedded postgres task")?
    }

    fn ensure_blocking(data_dir: &Path, opts: &EmbeddedOptions) -> Result<Self> {
        fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let data_dir = data_dir.canonicalize()?;
        let bin_dir = match &opts.bin_dir {
            Some(b) => b.clone(),
            None => find_bin_dir()?,
        };
        let as_postgres = is_root();
        let cluster = data_dir.join("postgres");
        let socket_path_len = cluster.as_os_str().len() + "/.s.PGSQL.65535".len();
        if socket_path_len > 107 {
            bail!("data directory path {} is too long for a Unix socket (limit ~90 characters)", data_dir.display());
        }

        // One process at a time decides whether to init/start.
        let lock = File::create(data_dir.join(".postgres.lock"))?;
        lock.lock().context("locking the embedded postgres")?;

        if as_postgres {
            let (uid, gid) = postgres_ids()?;
            if !runs_ok(Command::new("runuser").args(["-u", "postgres", "--", "test", "-x"]).arg(&data_dir)) {
                bail!(
                    "the data directory {} is not reachable by the `postgres` user (offsite runs PostgreSQL \
                     as `postgres` when started as root); choose a --data-dir outside private home directories",
                    data_dir.display()
                );
            }
            if !cluster.exists() {
                fs::create_dir(&cluster)?;
            }
            std::os::unix::fs::chown(&cluster, Some(uid), Some(gid))?;
        } else if !cluster.exists() {
            fs::create_dir(&cluster)?;
        }
        set_mode(&cluster, 0o700)?;

        let user = fs::OpenOptions::new().create(true).truncate(false).write(true).open(data_dir.join(".postgres.users"))?;
        let mut me = Self { cluster, bin_dir, port: opts.port, started_here: false, as_postgres, _user: user };
        if !me.cluster.join("PG_VERSION").exists() {
            me.initdb(opts)?;
        }
        // `pg_ctl status` trusts the pid file, and a postmaster killed a moment ago still has its
        // pid (dying, or a zombie nobody reaped): such a cluster is not running.
        if me.is_running() && me.postmaster_alive() {
            // Under the start-up lock nobody else is between try_lock and lock_shared.
            if me._user.try_lock().is_ok() {
                warn!(cluster = %me.cluster.display(), "embedded postgres left running by a process that ended; taking it over");
                me.started_here = true;
            } else {
                info!(cluster = %me.cluster.display(), "embedded postgres already running; sharing it");
            }
        } else {
            // A stale pid file after a crash: pg_ctl handles it when the process is really gone.
            me.start()?;
            me.started_here = true;
        }
        me._user.lock_shared().context("registering as a user of the embedded postgres")?;
        drop(lock);
        Ok(me)
    }

    fn initdb(&self, opts: &EmbeddedOptions) -> Result<()> {
        info!(cluster = %self.cluster.display(), "initialising embedded postgres");
        let out = self.run(
            self.cmd("initdb")
                .arg("-D")
                .arg(&self.cluster)
                .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
        )?;
        check(&out, "initdb")?;
        let listen = opts.tcp_listen.clone().unwrap_or_default();
        let mut conf = format!(
            "\n# offsite embedded settings\nlisten_addresses = '{listen}'\nunix_socket_directories = '{}'\n\
             port = {}\nmax_connections = 200\nshared_buffers = 256MB\nmax_wal_size = 4GB\n\
             timezone = 'UTC'\nlog_timezone = 'UTC'\n",
            self.cluster.display(),
            self.port
        );
        for l in &opts.extra_conf {
            conf.push_str(l);
            conf.push('\n');
        }
        let conf_path = self.cluster.join("postgresql.conf");
        let mut existing = fs::read_to_string(&conf_path)?;
        existing.push_str(&conf);
        fs::write(&conf_path, existing)?;
        Ok(())
    }

    fn start(&self) -> Result<()> {
        info!(cluster = %self.cluster.display(), "starting embedded postgres");
        let log = self.cluster.join("postgres.log");
        // After a crash the old postmaster's backends hold its shared memory (and the dying
        // postmaster its pid) for a moment; PostgreSQL refuses to start until they are gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let out = self.run(self.cmd("pg_ctl").arg("-D").arg(&self.cluster).arg("-l").arg(&log).args([
                "-w", "-t", "120", "start",
            ]))?;
            if out.status.success() {
                return Ok(());
            }
            let tail = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(15).collect();
            let leftovers = tail.iter().take(5).any(|l| {
                l.contains("pre-existing shared memory block") || l.contains("lock file") || l.contains("another server")
            });
            if leftovers && std::time::Instant::now() < deadline {
                warn!(cluster = %self.cluster.display(), "the previous postmaster's processes are still exiting; retrying the start");
                std::thread::sleep(std::time::Duration::from_millis(500));
                continue;
            }
            bail!(
                "pg_ctl start failed: {}\n{}\nlast lines of {}:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }

    /// Whether the pid in `postmaster.pid` is a live process (not gone, not a zombie).
    fn postmaster_alive(&self) -> bool {
        let Ok(text) = fs::read_to_string(self.cluster.join("postmaster.pid")) else { return false };
        let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<u32>().ok()) else { return false };
        // /proc/<pid>/stat: "pid (comm) S ...": the state follows the last ')'.
        let live = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| st.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')))
            .unwrap_or(false);
        // A postmaster on its way out has closed its socket already.
        live && std::os::unix::net::UnixStream::connect(self.cluster.join(format!(".s.PGSQL.{}", self.port))).is_ok()
    }

    pub fn is_running(&self) -> bool {
        self.run(self.cmd("pg_ctl").arg("-D").arg(&self.cluster).arg("status"))
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Whether this process started the cluster (and so should stop it).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Connection options for a database of this cluster (over the Unix socket).
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.cluster)
            .port(self.port)
            .username(SUPERUSER)
            .database(database)
    }

    /// A libpq-style URL for the same database (for tools and child processes).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@localhost:{}/{database}?host={}", self.port, self.cluster.display())
    }

    /// Creates the offsite database if missing.
    pub async fn ensure_database(&self, database: &str) -> Result<()> {
        use sqlx::{Connection, Executor};
        // A cluster just started, or one in crash recovery, refuses connections for a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut conn = loop {
            match sqlx::PgConnection::connect_with(&self.connect_options("postgres")).await {
                Ok(c) => break c,
                Err(e) if std::time::Instant::now() < deadline => {
                    warn!(error = %e, "embedded postgres not accepting connections yet; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut conn)
            .await?;
        if !exists {
            let r = conn.execute(format!("CREATE DATABASE \"{database}\"").as_str()).await;
            // Two processes may race here; the loser sees duplicate_database (42P04).
            if let Err(e) = r {
                if e.as_database_error().and_then(|d| d.code()).as_deref() != Some("42P04") {
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Stops the cluster if this process started it or took it over, or if every other user has
    /// gone (a starter that was killed never stops it). Fast shutdown: sessions end, data is safe.
    pub async fn stop(self) -> Result<()> {
        // Upgrading our shared lock succeeds only when no other process holds one.
        if !self.started_here && self._user.try_lock().is_err() {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || self.stop_now()).await?
    }

    /// Stops the cluster regardless of who started it.
    pub fn stop_now(&self) -> Result<()> {
        info!(cluster = %self.cluster.display(), "stopping embedded postgres");
        let out = self.run(self.cmd("pg_ctl").arg("-D").arg(&self.cluster).args(["-m", "fast", "-w", "stop"]))?;
        if !out.status.success() {
            warn!("pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    pub fn cluster_dir(&self) -> &Path {
        &self.cluster
    }

    fn cmd(&self, tool: &str) -> Command {
        let path = self.bin_dir.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, cmd: &mut Command) -> Result<Output> {
        // postgres must not inherit our working directory if it is unreadable to it.
        cmd.current_dir("/");
        cmd.output().with_context(|| format!("running {cmd:?}"))
    }
}

fn check(out: &Output, what: &str) -> Result<()> {
    if !out.status.success() {
        bail!("{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn runs_ok(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

/// The newest `/usr/lib/postgresql/<major>/bin`, else `pg_config --bindir`.
pub fn find_bin_dir() -> Result<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(rd) = fs::read_dir("/usr/lib/postgresql") {
        for e in rd.flatten() {
            if let Ok(v) = e.file_name().to_string_lossy().parse::<u32>() {
                let bin = e.path().join("bin");
                if bin.join("initdb").exists() && best.as_ref().is_none_or(|(b, _)| v > *b) {
                    best = Some((v, bin));
                }
            }
        }
    }
    if let Some((_, b)) = best {
        return Ok(b);
    }
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if p.join("initdb").exists() {
            return Ok(p);
        }
    }
    bail!("PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql-15 or set database.pg_bin_dir")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn postgres_ids() -> Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "postgres" {
            return Ok((f[2].parse()?, f[3].parse()?));
        }
    }
    bail!("running as root but there is no `postgres` user to run PostgreSQL as")
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))?;
    Ok(())
}
