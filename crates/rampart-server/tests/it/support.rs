//! Starts the real `rampart` binary on a free loopback port and talks to it over HTTP.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rampart")
}

/// A command with a clean `RAMPART_*` environment and a private data dir.
pub fn command(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("RAMPART_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .args(args)
        .env("RAMPART_DATA_DIR", dir.join("data"))
        .env("RAMPART_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A running server; killed on drop. Output is captured for scanning.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: PathBuf,
    pub output: Arc<Mutex<String>>,
    /// The threads copying standard output and error into `output`; they end at EOF.
    pumps: Vec<std::thread::JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pump(
    stream: impl std::io::Read + Send + 'static,
    out: Arc<Mutex<String>>,
    tx: Option<std::sync::mpsc::Sender<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            {
                let mut o = out.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
            // Only once the line is in the output, so a caller woken by it can also find it there.
            if let Some(tx) = &tx {
                if line.starts_with("rampart listening on ") {
                    let _ = tx.send(line);
                }
            }
        }
    })
}

impl Server {
    /// Starts `rampart serve` with `env` on 127.0.0.1:0 in a fresh temp dir.
    pub fn start(env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir, env, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// Starts in an existing dir (the caller keeps it).
    pub fn start_in(dir: &std::path::Path, env: &[(&str, &str)], extra_args: &[&str]) -> Server {
        let mut args = vec!["serve"];
        args.extend_from_slice(extra_args);
        let mut env: Vec<(&str, &str)> = env.to_vec();
        if !env.iter().any(|(k, _)| *k == "RAMPART_LISTEN") {
            env.push(("RAMPART_LISTEN", "127.0.0.1:0"));
        }
        let mut child = command(dir, &args, &env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pumps = vec![
            pump(child.stdout.take().unwrap(), output.clone(), Some(tx)),
            pump(child.stderr.take().unwrap(), output.clone(), None),
        ];
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", output.lock().unwrap());
            }
        };
        let addr =
            line.trim_start_matches("rampart listening on ").split(' ').next().unwrap().to_owned();
        Server { child, base: addr, dir: dir.to_path_buf(), output, pumps, _tmp: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for exit, and for the last of its output.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                for p in self.pumps.drain(..) {
                    let _ = p.join();
                }
                return st;
            }
            assert!(Instant::now() < deadline, "server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `rampart` to completion; returns (exit code, stdout, stderr).
pub fn run(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = command(dir, args, env).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// An HTTP client that keeps cookies and never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Parses a JSON error body and checks its shape; returns the code.
pub fn error_code(body: &serde_json::Value) -> String {
    let e = &body["error"];
    assert!(e["message"].is_string(), "error shape: {body}");
    assert!(e["request_id"].as_str().is_some_and(|s| !s.is_empty()), "request_id: {body}");
    e["code"].as_str().unwrap().to_owned()
}

#[allow(dead_code)]
pub fn env_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A free loopback port (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Waits until something accepts connections on `127.0.0.1:port`, up to 5 s.
async fn wait_listening(port: u16, what: &str) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not listen on {port}");
}

/// A private `redis-server`, killed on drop.
pub struct PrivateRedis {
    child: Child,
    pub port: u16,
    /// Extra arguments, kept so a restart on the same port uses the same settings.
    args: Vec<String>,
}

impl PrivateRedis {
    /// Starts a Redis that keeps nothing on disk.
    pub async fn start(port: u16) -> Self {
        Self::start_with(port, &["--save", "", "--appendonly", "no"]).await
    }

    /// Starts a Redis that appends every write to a file in `dir` before answering, so a
    /// SIGKILL loses no acknowledged write and a restart in the same `dir` has the same data.
    pub async fn start_persistent(port: u16, dir: &std::path::Path) -> Self {
        let dir = dir.to_str().unwrap();
        let args = ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir];
        Self::start_with(port, &args).await
    }

    async fn start_with(port: u16, args: &[&str]) -> Self {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        // Owned from here on, so the process is killed and reaped on every path, panics included.
        let redis = Self { child: Self::spawn(port, &args), port, args };
        wait_listening(port, "redis-server").await;
        redis
    }

    fn spawn(port: u16, args: &[String]) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same settings.
    pub async fn restart(&mut self) {
        self.child = Self::spawn(self.port, &self.args);
        wait_listening(self.port, "redis-server").await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private PostgreSQL cluster in a temp dir on its own port, with trust authentication;
/// stopped on drop. As root, the cluster runs as the `postgres` user (PostgreSQL refuses root).
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    owner: Option<(u32, u32)>,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// Creates and starts a cluster. `None` (skip) when the PostgreSQL server programs are not
    /// installed, except under `CI=true`, where that fails the test.
    pub async fn start() -> Option<Self> {
        let Some(bin) = postgres_bin_dir() else {
            let why = "initdb and pg_ctl not found in /usr/lib/postgresql/*/bin or on PATH";
            assert!(!rampart_testkit::in_ci(), "PostgreSQL is required under CI=true: {why}");
            eprintln!("SKIP: {why}; set CI=true to make this a failure");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let owner = cluster_owner();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let pg = Self { bin, data, port: free_port(), owner, dir };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        pg.restart().await;
        Some(pg)
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(self.dir.path()).stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl start`, waiting until the cluster accepts connections.
    pub async fn restart(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.path().join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {}\n{}", self.log(), stderr(&out.stderr));
        wait_listening(self.port, "PostgreSQL").await;
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once, without a checkpoint
    /// (the next start recovers from the write-ahead log).
    pub async fn stop_immediately(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop: {}", stderr(&out.stderr));
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        let _ = cmd
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn stderr(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The directory holding `initdb` and `pg_ctl`: the newest `/usr/lib/postgresql/<version>/bin`,
/// else the first on `PATH`.
fn postgres_bin_dir() -> Option<PathBuf> {
    let has_both = |d: &std::path::Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_both(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Some(d);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| has_both(d))
}

/// The (uid, gid) the cluster must run as: the `postgres` user when this process is root.
fn cluster_owner() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("running as root: a `postgres` user to run the private cluster");
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().unwrap(), fields[3].parse().unwrap()))
}
