//! Test harness: a real redis-server with the freshly built module loaded.
//!
//! Each [`Server`] runs on a free loopback port (never 6379) in its own
//! temporary directory, and prints the server log when it fails to start,
//! so a module that refuses to load says why.
//!
//! **No crash passes unseen.** Dropping a [`Server`] stops it as an
//! operator would (SIGTERM) and fails the test when it did not exit with
//! status 0, or when its log or its stderr shows an assertion, a crash, a
//! bug report or a panic (even one the module caught). A test that already
//! failed only kills its servers.
//!
//! `REDIS_SERVER` picks another server binary (e.g. valkey-server);
//! `LISTINGSTATS_MODULE` another module build.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use redis::{Connection, Value};

/// The module built by this `cargo test` run. Cargo compiles the library's
/// cdylib into `target/<profile>/deps/`, beside the test binary, on every
/// `cargo test`; the copy in `target/<profile>/` is refreshed only by
/// `cargo build`, so it may be stale and is not used.
pub fn module_path() -> PathBuf {
    if let Ok(path) = std::env::var("LISTINGSTATS_MODULE") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let module = exe
        .parent()
        .map(|deps| deps.join("liblistingstats.so"))
        .expect("deps dir");
    assert!(module.exists(), "module not built at {}", module.display());
    module
}

fn server_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .unwrap()
            .port();
        if port != 6379 {
            return port;
        }
    }
}

/// How to start a server.
#[derive(Clone, Default)]
pub struct Options {
    /// `name value` pairs after the module path on the loadmodule line.
    pub module_args: Vec<String>,
    /// Extra server options, e.g. `["appendonly", "yes"]`.
    pub server_args: Vec<String>,
}

impl Options {
    pub fn module(mut self, args: &[&str]) -> Self {
        self.module_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn server(mut self, args: &[&str]) -> Self {
        self.server_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// `MODULE LOAD`/`UNLOAD` allowed at run time (from loopback), which
    /// Redis 7.0+ and Valkey refuse by default.
    pub fn module_command(self) -> Self {
        self.server(&["enable-module-command", "local"])
    }

    /// AOF on, every write synced before the reply: a restart finds them.
    pub fn durable_aof(self) -> Self {
        self.server(&["appendonly", "yes", "appendfsync", "always"])
    }

    /// [`Options::durable_aof`] without the RDB preamble: the AOF reads as
    /// the commands that reached it.
    pub fn plain_aof(self) -> Self {
        self.durable_aof().server(&["aof-use-rdb-preamble", "no"])
    }
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: Arc<tempfile::TempDir>,
    options: Options,
    /// The process has exited (and was checked) or was replaced.
    stopped: bool,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Server {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Server::start_in(dir, options)
            .unwrap_or_else(|log| panic!("redis-server did not start:\n{log}"))
    }

    /// Starts a server in `dir`, or returns its log when it exits early
    /// (the module refused to load, the port was taken, ...).
    pub fn start_in(dir: Arc<tempfile::TempDir>, options: Options) -> Result<Server, String> {
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let log_path = dir.path().join("server.log");
            let _ = std::fs::remove_file(&log_path);
            let mut cmd = Command::new(server_binary());
            cmd.arg("--port")
                .arg(port.to_string())
                .arg("--bind")
                .arg("127.0.0.1")
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log_path)
                .arg("--save")
                .arg("")
                .arg("--enable-debug-command")
                .arg("yes")
                .arg("--loadmodule")
                .arg(module_path())
                .args(&options.module_args)
                .args(options.server_args.iter().enumerate().map(|(i, a)| {
                    // Option names need the `--` form on the command line.
                    if i % 2 == 0 {
                        format!("--{a}")
                    } else {
                        a.clone()
                    }
                }))
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(dir.path().join("stderr.log"))
                        .map_err(|e| format!("cannot create stderr.log: {e}"))?,
                );
            let child = cmd
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", server_binary()))?;
            let mut server = Server {
                child,
                port,
                dir: Arc::clone(&dir),
                options: options.clone(),
                stopped: false,
            };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(log) => {
                    let _ = server.child.kill();
                    let _ = server.child.wait();
                    server.stopped = true;
                    last_log = log;
                    if !last_log.contains("Address already in use") {
                        return Err(last_log);
                    }
                }
            }
        }
        Err(last_log)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_status)) = self.child.try_wait() {
                return Err(self.log());
            }
            if let Ok(mut conn) = self.try_connection() {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query(&mut conn);
                if pong.is_ok() {
                    let loading: String = redis::cmd("INFO")
                        .arg("persistence")
                        .query(&mut conn)
                        .unwrap_or_default();
                    if !loading.contains("loading:1") {
                        return Ok(());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("timed out waiting for the server\n{}", self.log()))
    }

    fn try_connection(&self) -> redis::RedisResult<Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        client.get_connection_with_timeout(Duration::from_secs(10))
    }

    pub fn conn(&self) -> Connection {
        self.try_connection().expect("connect to test server")
    }

    /// A connection speaking RESP3.
    pub fn conn_resp3(&self) -> Connection {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", self.port))
                .unwrap();
        client
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("connect")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server log and what the process wrote to stderr (a Rust panic
    /// message goes there).
    pub fn log_and_stderr(&self) -> String {
        let stderr =
            std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        format!("{}\n{stderr}", self.log())
    }

    /// Stops the server cleanly (flushing the AOF) and starts it again in
    /// the same directory with the same options.
    pub fn restart(mut self) -> Server {
        let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut self.conn());
        self.expect_clean_exit(Duration::from_secs(30));
        self.restart_in_place()
    }

    /// Starts a server again in this one's directory, with its options
    /// (after it exited).
    fn restart_in_place(mut self) -> Server {
        self.stopped = true;
        let dir = Arc::clone(&self.dir);
        let options = self.options.clone();
        drop(self);
        Server::start_in(dir, options).unwrap_or_else(|log| panic!("restart failed:\n{log}"))
    }

    /// Waits up to `within` for the process to exit, then fails unless it
    /// exited with status 0 and its log shows no crash.
    pub fn expect_clean_exit(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.stopped = true;
                    panic!(
                        "server on port {} did not exit within {within:?}:\n{}",
                        self.port,
                        tail(&self.log_and_stderr())
                    );
                }
            }
        };
        self.stopped = true;
        assert!(
            status.success(),
            "server on port {} exited with {status}:\n{}",
            self.port,
            tail(&self.log_and_stderr())
        );
        self.assert_no_crash();
    }

    /// Fails when the log or stderr shows an assertion, a crash, a bug
    /// report or a panic.
    pub fn assert_no_crash(&self) {
        let text = self.log_and_stderr();
        if let Some(marker) = crash_marker(&text) {
            panic!(
                "server on port {} logged '{marker}':\n{}",
                self.port,
                tail(&text)
            );
        }
    }

    /// Sends SIGTERM (as an operator or a supervisor would).
    pub fn sigterm(&self) {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }
}

/// What a server log shows when something went wrong, if it does.
pub fn crash_marker(text: &str) -> Option<&'static str> {
    [
        "ASSERTION",
        "crashed by signal",
        "panicked",
        "BUG REPORT",
        "listingstats: internal error",
    ]
    .into_iter()
    .find(|m| text.contains(m))
}

/// The end of a long log, for a failure message.
fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(6000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

impl Server {
    /// Kills the server with SIGKILL (no shutdown, no last AOF flush) and
    /// starts it again in the same directory with the same options.
    pub fn kill9_and_restart(mut self) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.assert_no_crash();
        self.restart_in_place()
    }

    /// Makes this server a replica of `master` and waits for the link.
    pub fn replicate(&self, master: &Server) {
        let mut c = self.conn();
        let _: () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(master.port)
            .query(&mut c)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if info_field(&mut c, "replication", "master_link_status").as_deref() == Some("up") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("replica never connected:\n{}", self.log());
    }

    /// Everything in the server's AOF files, as text (after a moment for
    /// `appendfsync always` to land).
    pub fn aof_text(&self) -> String {
        std::thread::sleep(Duration::from_millis(200));
        let mut aof = String::new();
        for entry in std::fs::read_dir(self.dir.path().join("appendonlydir")).expect("AOF dir") {
            let path = entry.expect("AOF entry").path();
            if path.extension().is_some_and(|e| e == "aof") {
                aof.push_str(&String::from_utf8_lossy(
                    &std::fs::read(path).expect("AOF file"),
                ));
            }
        }
        aof
    }

    /// Creates user `name` (password `pw`) with every command, then these
    /// rules (key patterns, `-@write`, selectors: applied after `+@all`, so
    /// they narrow it), and returns a connection logged in as that user.
    pub fn user(&self, name: &str, rules: &[&str]) -> Connection {
        let mut admin = self.conn();
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(name)
            .arg("on")
            .arg(">pw")
            .arg("+@all")
            .arg(rules);
        let _: () = cmd.query(&mut admin).unwrap();
        self.conn_as(name, "pw")
    }

    /// A connection authenticated as `user`.
    pub fn conn_as(&self, user: &str, password: &str) -> Connection {
        let mut c = self.conn();
        let _: () = redis::cmd("AUTH")
            .arg(user)
            .arg(password)
            .query(&mut c)
            .unwrap();
        c
    }
}

/// The names of the modules `MODULE LIST` shows. Servers list modules of
/// their own too (`vectorset` on Redis 8, `lua` on Valkey 9): compare by
/// membership, never the whole reply.
pub fn module_names(conn: &mut Connection) -> Vec<String> {
    let modules: Vec<std::collections::HashMap<String, Value>> =
        redis::cmd("MODULE").arg("LIST").query(conn).unwrap();
    modules
        .iter()
        .filter_map(|m| match m.get("name") {
            Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(Value::SimpleString(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Polls `check` every 10 ms until it holds or `secs` pass; whether it held.
pub fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check()
}

/// A small deterministic generator (xorshift), so a failure replays exactly.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

impl Drop for Server {
    /// Stops the server with SIGTERM and checks that it exited cleanly
    /// (status 0, no crash in its log); a test that already failed only
    /// kills it.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if std::thread::panicking() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return;
        }
        // Redis refuses a SIGTERM while it writes its first AOF ("Writing
        // initial AOF, can't exit") and does not try again: an operator
        // sends it again.
        for _ in 0..6 {
            self.sigterm();
            if self.exited_within(Duration::from_secs(5)) {
                break;
            }
        }
        self.expect_clean_exit(Duration::from_secs(5));
    }
}

impl Server {
    /// Whether the process exited within `within` (not reaped).
    fn exited_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            // SAFETY: a plain kill(2) probe of our own child (signal 0).
            let alive = unsafe { libc::kill(self.child.id() as i32, 0) } == 0;
            let zombie = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
                .map(|s| s.split_whitespace().nth(2) == Some("Z"))
                .unwrap_or(true);
            if !alive || zombie {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// Runs a command and returns its reply, errors included as `Err(text)`.
pub fn call(conn: &mut Connection, args: &[&str]) -> Result<Value, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<Value>(conn).map_err(|e| error_text(&e))
}

/// The error as the server sent it: `CODE message`.
pub fn error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

pub fn int(conn: &mut Connection, args: &[&str]) -> i64 {
    match call(conn, args) {
        Ok(Value::Int(n)) => n,
        other => panic!("{args:?} gave {other:?}"),
    }
}

pub fn err(conn: &mut Connection, args: &[&str]) -> String {
    match call(conn, args) {
        Err(text) => text,
        Ok(v) => panic!("{args:?} should have failed, gave {v:?}"),
    }
}

/// `DEBUG DIGEST`: one hash of the whole dataset, expiries included.
pub fn digest(conn: &mut Connection) -> String {
    redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(conn)
        .expect("DEBUG DIGEST")
}

pub fn hgetall(conn: &mut Connection, key: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = redis::cmd("HGETALL").arg(key).query(conn).unwrap();
    pairs.sort();
    pairs
}

pub fn info_field(conn: &mut Connection, section: &str, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO").arg(section).query(conn).unwrap();
    info.lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_string())
    })
}
