//! The quickstart as a program on the network (issue 14): its state file (private, atomic, one
//! process at a time, never silently overriding an edited configuration), its shutdown (bounded,
//! state written first) and its secrets (from the environment or a file, never printed).
//!
//! Each test runs the example binary cargo built beside it; without it they say SKIPPED, unless
//! `USAGE_PLANS_REQUIRE_SERVICES=1`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A plan of 3 requests a day, a key on it, and a key that can be disabled.
const CONFIG: &str = r#"
[stage]
api = "petstore"
name = "prod"

[[plans]]
id = "three"
quota = { limit = 3, period = "DAY" }
stages = [{ api = "petstore", stage = "prod" }]

[[keys]]
id = "k-three"
value = "three-0123456789abcdefghij"
plans = ["three"]

[[keys]]
id = "k-edit"
value = "edit-0123456789abcdefghij"
plans = ["three"]
"#;
const THREE: &str = "three-0123456789abcdefghij";
const EDIT: &str = "edit-0123456789abcdefghij";
const TOKEN: &str = "quickstart-test-admin-token-0123456789";

/// A running quickstart: its output (stdout and stderr, line by line) and its address.
struct Quickstart {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    base: Option<String>,
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<PathBuf> {
    let bin = common::example_binary("quickstart");
    if bin.exists() {
        return Some(bin);
    }
    assert!(std::env::var("USAGE_PLANS_REQUIRE_SERVICES").as_deref() != Ok("1"), "{} was not built", bin.display());
    eprintln!("SKIPPED: {} was not built (cargo build --examples --all-features)", bin.display());
    None
}

impl Quickstart {
    /// Starts the quickstart with `args` and `env`; does not wait for it to listen.
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Option<Self> {
        let mut command = Command::new(binary()?);
        command.args(["--addr", "127.0.0.1:0"]).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.env_remove("USAGE_PLANS_ADMIN_TOKEN").env_remove("USAGE_PLANS_ADMIN_SECRET_KEY");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    output.lock().unwrap().push(line);
                }
            });
        }
        Some(Self { child, output, base: None })
    }

    /// Starts the quickstart and waits until it listens.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Option<Self> {
        let mut q = Self::spawn(args, env)?;
        q.listening(Duration::from_secs(30));
        Some(q)
    }

    /// Waits (at most `within`) for the `listening on` line.
    fn listening(&mut self, within: Duration) {
        let line = self.wait_for("listening on ", within);
        self.base = Some(line.trim().trim_start_matches("listening on http://").to_owned());
    }

    /// Waits (at most `within`) for a line starting with `prefix`; panics with the output if
    /// none came, or if the process exited first.
    fn wait_for(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.output.lock().unwrap().iter().find(|l| l.starts_with(prefix)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!("quickstart exited ({status}) before printing {prefix:?}: {:#?}", self.output());
            }
            assert!(Instant::now() < deadline, "no {prefix:?} within {within:?}: {:#?}", self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    fn addr(&self) -> &str {
        self.base.as_deref().expect("listening")
    }

    /// GET `path` with `headers`; the status.
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> u16 {
        request(self.addr(), "GET", path, headers, "").0
    }

    /// SIGTERM.
    fn terminate(&self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    }

    /// Waits (at most `within`) for the process to exit; its exit code.
    fn exited(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status.code();
            }
            assert!(Instant::now() < deadline, "still running {within:?} later: {:#?}", self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One HTTP/1.1 request on a new connection: the status and the body.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status =
        answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn key(value: &str) -> [(&'static str, &str); 1] {
    [("x-api-key", value)]
}

/// A fresh directory for one test, holding `config.toml`.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tup-quickstart-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), CONFIG).unwrap();
    dir
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::symlink_metadata(path).unwrap().permissions()) & 0o777
}

/// Item 2: a leftover `PATH.tmp` with a wider mode, or a link planted there, is never used.
#[cfg(unix)]
#[test]
fn the_state_file_is_private_and_never_written_through_a_link() {
    use std::os::unix::fs::PermissionsExt;
    if binary().is_none() {
        return;
    }
    let dir = scratch("private");
    let config = dir.join("config.toml");
    // Where earlier versions wrote first: `linked.json.tmp` is a link to a file of the
    // attacker's choosing, `leftover.json.tmp` a readable file left by a crash.
    let target = dir.join("target");
    std::fs::write(&target, "").unwrap();
    std::os::unix::fs::symlink(&target, dir.join("linked.json.tmp")).unwrap();
    std::fs::write(dir.join("leftover.json.tmp"), "").unwrap();
    std::fs::set_permissions(dir.join("leftover.json.tmp"), std::fs::Permissions::from_mode(0o644)).unwrap();

    for name in ["linked.json", "leftover.json"] {
        let state = dir.join(name);
        let mut q = Quickstart::start(&["--config", s(&config), "--state-file", s(&state)], &[]).unwrap();
        assert_eq!(q.get("/pets", &key(THREE)), 200);
        q.terminate();
        assert_eq!(q.exited(Duration::from_secs(20)), Some(0));
        let text = std::fs::read_to_string(&state).unwrap();
        assert!(text.contains(THREE), "the state file holds the key values");
        assert_eq!(mode(&state), 0o600, "{name} is readable by its owner only");
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "", "nothing is written through the link");
    // Nor is the lock file opened through a link (it would be truncated).
    std::fs::write(&target, "keep").unwrap();
    std::os::unix::fs::symlink(&target, dir.join("locked.json.lock")).unwrap();
    let mut q = Quickstart::spawn(&["--config", s(&config), "--state-file", s(&dir.join("locked.json"))], &[]).unwrap();
    assert_eq!(q.exited(Duration::from_secs(20)), Some(1));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 3: a second process on the same state file waits, then refuses, naming the holder; in a
/// rolling restart it takes over once the first exits, with every count.
#[cfg(unix)]
#[test]
fn a_second_process_on_one_state_file_waits_then_refuses_and_a_rolling_restart_keeps_the_counts() {
    if binary().is_none() {
        return;
    }
    let dir = scratch("lock");
    let (config, state) = (dir.join("config.toml"), dir.join("state.json"));
    let args = ["--config", s(&config), "--state-file", s(&state)];
    let first = Quickstart::start(&args, &[]).unwrap();
    let pid = first.child.id();

    let mut second = Quickstart::spawn(&[&args[..], &["--state-lock-wait", "1s"]].concat(), &[]).unwrap();
    assert_eq!(second.exited(Duration::from_secs(20)), Some(1));
    let said = second.output().join("\n");
    assert!(said.contains(&format!("in use by process {pid}")), "{said}");
    assert!(!said.contains("listening on"), "{said}");

    // A rolling restart: the new process starts first and waits for the old one to exit.
    let mut next = Quickstart::spawn(&[&args[..], &["--state-lock-wait", "60s"]].concat(), &[]).unwrap();
    next.wait_for("state file: in use by", Duration::from_secs(20));
    assert_eq!([0, 1, 2].map(|_| first.get("/pets", &key(THREE))), [200, 200, 200]);
    first.terminate();
    next.listening(Duration::from_secs(30));
    assert_eq!(next.get("/pets", &key(THREE)), 429, "the 3 requests counted by the old process are kept");
    drop(first);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 4: SIGTERM writes the state at once, and the process ends by the drain deadline even
/// while a client sits on half a request head; a head not finished in time closes its connection.
#[cfg(unix)]
#[test]
fn sigterm_writes_the_state_first_and_ends_by_the_drain_deadline() {
    if binary().is_none() {
        return;
    }
    let dir = scratch("drain");
    let (config, state) = (dir.join("config.toml"), dir.join("state.json"));
    let args = ["--config", s(&config), "--state-file", s(&state), "--state-interval", "1h", "--drain-timeout", "3s"];
    let mut q = Quickstart::start(&[&args[..], &["--header-read-timeout", "60s"]].concat(), &[]).unwrap();
    assert_eq!(q.get("/pets", &key(THREE)), 200);
    assert!(!state.exists(), "not written before the first interval");
    let mut stalled = TcpStream::connect(q.addr()).unwrap();
    stalled.write_all(b"GET /pets HTTP/1.1\r\nHost: x\r\nx-api-key: ").unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let stop = Instant::now();
    q.terminate();
    q.wait_for("keys, plans and usage counts written", Duration::from_secs(5));
    let written = std::fs::read_to_string(&state).expect("written before the drain");
    assert!(written.contains("k-three"), "{written}");
    assert!(q.child.try_wait().unwrap().is_none(), "still draining the stalled connection");
    assert_eq!(q.exited(Duration::from_secs(15)), Some(0));
    let took = stop.elapsed();
    assert!(took >= Duration::from_secs(2), "waited for the stalled client ({took:?})");
    let said = q.output().join("\n");
    assert!(said.contains("--drain-timeout"), "{said}");

    // The header read timeout: half a head, then nothing, closes the connection.
    let q = Quickstart::start(&["--config", s(&config), "--header-read-timeout", "1s"], &[]).unwrap();
    let mut stalled = TcpStream::connect(q.addr()).unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stalled.write_all(b"GET /pets HTTP/1.1\r\nHost: x\r\n").unwrap();
    let since = Instant::now();
    let mut rest = Vec::new();
    let closed = stalled.read_to_end(&mut rest);
    assert!(closed.is_ok(), "closed by the server, not by our read timeout: {closed:?}");
    assert!(since.elapsed() < Duration::from_secs(15), "{:?}", since.elapsed());
    // So does a connection that sends nothing at all, or only the start of HTTP/2's preface.
    for sent in [&b""[..], b"PRI * HTTP/2.0"] {
        let mut silent = TcpStream::connect(q.addr()).unwrap();
        silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        silent.write_all(sent).unwrap();
        let since = Instant::now();
        // Closed (a reset, when unread bytes were left), not our own read timeout.
        let closed = silent.read_to_end(&mut Vec::new()).map_err(|e| e.kind());
        let by_server = matches!(closed, Ok(_) | Err(std::io::ErrorKind::ConnectionReset));
        assert!(by_server && since.elapsed() < Duration::from_secs(15), "{closed:?} after {:?}", since.elapsed());
    }
    // A head over the limit is refused with 431.
    let big = "x".repeat(70 * 1024);
    assert_eq!(request(q.addr(), "GET", "/pets", &[("x-filler", &big)], "").0, 431);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 5: an edited configuration is applied when the state holds no admin change, refused when
/// both changed, and `--keys-from` settles it; the program says which source is in force.
#[test]
fn an_edited_configuration_is_applied_or_refused_never_silently_ignored() {
    if binary().is_none() {
        return;
    }
    let dir = scratch("edit");
    let (config, state) = (dir.join("config.toml"), dir.join("state.json"));
    let env = [("USAGE_PLANS_ADMIN_TOKEN", TOKEN)];
    let args = ["--config", s(&config), "--state-file", s(&state)];
    let bearer = format!("Bearer {TOKEN}");
    let stop = |mut q: Quickstart| {
        q.terminate();
        assert_eq!(q.exited(Duration::from_secs(20)), Some(0));
    };

    let q = Quickstart::start(&args, &env).unwrap();
    assert!(q.output().iter().any(|l| l.starts_with("keys and plans: from --config")), "{:#?}", q.output());
    assert_eq!(q.get("/pets", &key(EDIT)), 200);
    stop(q);

    // Edited, and no admin change since: the edit applies.
    std::fs::write(&config, CONFIG.replace("id = \"k-edit\"", "id = \"k-edit\"\nenabled = false")).unwrap();
    let q = Quickstart::start(&args, &env).unwrap();
    let said = q.output().join("\n");
    assert!(said.contains("keys and plans: from --config") && said.contains("edited since"), "{said}");
    assert_eq!(q.get("/pets", &key(EDIT)), 403, "the key disabled in the configuration is refused");
    assert_eq!(q.get("/pets", &key(THREE)), 200);
    // Unchanged configuration: the state file's keys and plans; written back unchanged, so a
    // later edit still applies.
    stop(q);
    let q = Quickstart::start(&args, &env).unwrap();
    assert!(q.output().join("\n").contains("keys and plans: from the state file"), "{:#?}", q.output());
    assert_eq!(q.get("/pets", &key(EDIT)), 403);
    stop(q);
    let disabled = CONFIG.replace("id = \"k-edit\"", "id = \"k-edit\"\nenabled = false\ntags = { edited = \"twice\" }");
    std::fs::write(&config, &disabled).unwrap();
    let q = Quickstart::start(&args, &env).unwrap();
    assert!(q.output().join("\n").contains("edited since"), "{:#?}", q.output());
    assert_eq!(q.get("/pets", &key(EDIT)), 403);
    // An admin change.
    let made = r#"{"name": "made", "enabled": true, "value": "made-0123456789abcdefghij"}"#;
    let (status, body) = request(q.addr(), "POST", "/admin/apikeys", &[("authorization", &bearer)], made);
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
    let link = format!(r#"{{"keyId": "{id}", "keyType": "API_KEY"}}"#);
    assert_eq!(request(q.addr(), "POST", "/admin/usageplans/three/keys", &[("authorization", &bearer)], &link).0, 201);
    assert_eq!(q.get("/pets", &key("made-0123456789abcdefghij")), 200);
    stop(q);

    // Both changed: refused, naming the way out.
    std::fs::write(&config, CONFIG).unwrap();
    let mut q = Quickstart::spawn(&args, &env).unwrap();
    assert_eq!(q.exited(Duration::from_secs(20)), Some(2));
    let said = q.output().join("\n");
    assert!(said.contains("--keys-from config") && said.contains("--keys-from state"), "{said}");

    let q = Quickstart::start(&[&args[..], &["--keys-from", "state"]].concat(), &env).unwrap();
    assert_eq!(q.get("/pets", &key("made-0123456789abcdefghij")), 200, "the admin change is kept");
    assert_eq!(q.get("/pets", &key(EDIT)), 403, "the edit is ignored");
    stop(q);
    let q = Quickstart::start(&[&args[..], &["--keys-from", "config"]].concat(), &env).unwrap();
    assert_eq!(q.get("/pets", &key(EDIT)), 200, "the edit applies");
    assert_eq!(q.get("/pets", &key("made-0123456789abcdefghij")), 403, "the admin change is dropped");
    // The counts are kept through all of it: k-three used 1 of its 3 before.
    assert_eq!([0, 1, 2].map(|_| q.get("/pets", &key(THREE))), [200, 200, 429]);
    drop(q);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Item 8: the admin token and the SigV4 secret come from the environment or a file, are never
/// printed, and a short token is refused.
#[test]
fn admin_secrets_come_from_the_environment_or_a_file_and_are_never_printed() {
    if binary().is_none() {
        return;
    }
    let dir = scratch("secrets");
    let secret = "quickstart-sigv4-secret-key-0123456789";
    let token_file = dir.join("token.txt");
    let secret_file = dir.join("secret.txt");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let bearer = format!("Bearer {TOKEN}");
    let from_env = [("USAGE_PLANS_ADMIN_TOKEN", TOKEN), ("USAGE_PLANS_ADMIN_SECRET_KEY", secret)];
    let by_file = [
        "--admin-token-file",
        s(&token_file),
        "--admin-access-key",
        "AKIDQUICK",
        "--admin-secret-key-file",
        s(&secret_file),
    ];
    let by_flag = ["--admin-token", TOKEN, "--admin-access-key", "AKIDQUICK", "--admin-secret-key", secret];
    for (args, env) in
        [(&["--admin-access-key", "AKIDQUICK"][..], &from_env[..]), (&by_file[..], &[][..]), (&by_flag[..], &[][..])]
    {
        let q = Quickstart::start(args, env).unwrap();
        assert_eq!(request(q.addr(), "GET", "/admin/usageplans", &[("authorization", &bearer)], "").0, 200);
        assert_eq!(
            request(q.addr(), "GET", "/admin/usageplans", &[("authorization", "Bearer wrong-token-0123456789")], "").0,
            403
        );
        drop(q);
        // Only the banner and the warnings: read all of it once the process is gone.
        let said = Quickstart::start(args, env).map(|mut q| {
            q.wait_for("Admin API", Duration::from_secs(5));
            q.output().join("\n")
        });
        let said = said.unwrap();
        assert!(said.contains("Authorization: Bearer $ADMIN_TOKEN"), "{said}");
        assert!(!said.contains(TOKEN) && !said.contains(secret), "a secret was printed: {said}");
        if args == by_flag {
            assert!(said.contains("visible to every user of this machine"), "{said}");
        }
    }
    // A secret given in a form the parser does not take is not repeated in the error.
    let mut glued = Quickstart::spawn(&[&format!("--admin-token={TOKEN}")], &[]).unwrap();
    assert_eq!(glued.exited(Duration::from_secs(20)), Some(2));
    let said = glued.output().join("\n");
    assert!(said.contains("unknown argument \"--admin-token\"") && !said.contains(TOKEN), "{said}");
    let mut short = Quickstart::spawn(&[], &[("USAGE_PLANS_ADMIN_TOKEN", "s3cret")]).unwrap();
    assert_eq!(short.exited(Duration::from_secs(20)), Some(2));
    assert!(short.output().join("\n").contains("at least 16 characters"), "{:#?}", short.output());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Durations are bounded (no deadline computed from one overflows) and refused naming the flag.
#[test]
fn a_duration_out_of_range_is_refused_naming_the_flag() {
    if binary().is_none() {
        return;
    }
    for (flag, value, says) in [
        ("--state-lock-wait", "18000000000000000000", "at most 100 years"),
        ("--drain-timeout", "-3s", "expected a duration"),
        ("--header-read-timeout", "5x", "expected a duration"),
    ] {
        let mut q = Quickstart::spawn(&[flag, value], &[]).unwrap();
        assert_eq!(q.exited(Duration::from_secs(20)), Some(2));
        let said = q.output().join("\n");
        assert!(said.contains(&format!("{flag} \"{value}\"")) && said.contains(says), "{said}");
    }
}
