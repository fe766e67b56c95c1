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
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(tx) = &tx {
                if line.starts_with("rampart listening on ") {
                    let _ = tx.send(line.clone());
                }
            }
            let mut o = out.lock().unwrap();
            o.push_str(&line);
            o.push('\n');
        }
    });
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
        pump(child.stdout.take().unwrap(), output.clone(), Some(tx));
        pump(child.stderr.take().unwrap(), output.clone(), None);
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", output.lock().unwrap());
            }
        };
        let addr =
            line.trim_start_matches("rampart listening on ").split(' ').next().unwrap().to_owned();
        Server { child, base: addr, dir: dir.to_path_buf(), output, _tmp: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
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
