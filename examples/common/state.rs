//! `--state-file PATH`: an in-memory store's keys and plans (with the changes made through the
//! admin API) and its usage counts, kept across restarts.
//!
//! - **One process per file.** At start the process takes an exclusive lock on `PATH.lock`
//!   (`flock`, never through a link) and holds it until it exits. A second process waits up to
//!   `--state-lock-wait` (default: `--drain-timeout` + 5 s, 15 s) for it, then refuses to start
//!   (exit status 1, naming the holder's pid). A rolling restart starts the new process, then
//!   stops the old one: the old one writes the file, drains (at most `--drain-timeout`) and
//!   exits, and the new one takes the lock and reads what it wrote.
//! - **Written safely.** Every `--state-interval` (default 5 s), once when the server stops
//!   (before it waits on clients) and once more after the last connection closed. Each write is a
//!   new uniquely named file (0600, created exclusively, never through a link), synced and
//!   renamed over `PATH`; writes never overlap. Leftovers of a killed process are removed at
//!   start.
//! - **Which keys and plans.** The file records the SHA-256 of the configuration it was written
//!   with (`--config`, or the demo configuration) and whether keys or plans were changed since
//!   (through the admin API). At start:
//!   - the configuration is unchanged: the state file's keys and plans (admin changes kept);
//!   - the configuration was edited, and the state holds no admin changes: the configuration's;
//!   - both changed: the program refuses to start (exit status 2) unless `--keys-from config`
//!     (apply the edit, drop the admin changes) or `--keys-from state` (keep them, ignore the
//!     edit) says which wins.
//!
//!   Usage counts are restored in every case. The program prints which source is in force.

use super::Args;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_usage_plans::usage::{Usage, UsageSnapshot};
use tower_usage_plans::{Config, InMemoryKeyStore, UsagePlanLayer};

/// `--keys-from`: which source of keys and plans wins when both changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeysFrom {
    /// `--keys-from config`.
    Config,
    /// `--keys-from state`.
    State,
}

/// An open state file: locked, read, not yet written.
pub struct StateFile {
    path: PathBuf,
    saved: Option<Saved>,
    /// Held (locked) for as long as the process runs.
    lock: std::fs::File,
}

/// The state file being kept: what it writes, and the lock that its writes hold.
#[derive(Clone)]
pub struct LiveState {
    path: PathBuf,
    store: InMemoryKeyStore,
    usage: Usage,
    /// SHA-256 of the configuration file (or the demo configuration), and its keys and plans in
    /// the configuration format: the store differs from them once changed through the admin API.
    config_sha256: String,
    config_json: String,
    writing: Arc<tokio::sync::Mutex<()>>,
    /// The lock on `PATH.lock`, held while any clone lives (the periodic writer's, to the end).
    _lock: Arc<std::fs::File>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    version: u32,
    /// SHA-256 (hex) of the configuration the state was written with; absent in files written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config_sha256: Option<String>,
    /// Whether keys or plans differ from that configuration (changed through the admin API).
    #[serde(default)]
    changed: bool,
    config: serde_json::Value,
    usage: UsageSnapshot,
}

fn fail(path: &Path, code: i32, e: impl std::fmt::Display) -> ! {
    eprintln!("error: --state-file {}: {e}", path.display());
    std::process::exit(code);
}

impl StateFile {
    /// Locks and reads `--state-file` if given. Exits with status 1 when another process holds
    /// it past `--state-lock-wait`, or when it exists but cannot be read.
    pub fn open(args: &Args) -> Option<StateFile> {
        let path = args.state_file.clone()?;
        let lock = lock(&path, args.state_lock_wait);
        match tower_usage_plans::usage::remove_leftovers(&path) {
            Ok(0) => {}
            Ok(n) => println!("state file: removed {n} unfinished write(s) of an earlier process"),
            Err(e) => fail(&path, 1, e),
        }
        let saved = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<Saved>(&bytes).unwrap_or_else(|e| fail(&path, 1, e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => fail(&path, 1, e),
        };
        if saved.as_ref().is_some_and(|s| s.version != 1) {
            fail(&path, 1, "written by a newer version (this one reads version 1)");
        }
        Some(StateFile { path, saved, lock })
    }

    /// The store to serve: the state file's or the configuration's, by the rule of the module
    /// documentation. Prints which; exits with status 2 on a conflict `--keys-from` does not
    /// settle.
    pub fn store(&self, args: &Args, config: &Config, config_sha256: &str) -> InMemoryKeyStore {
        let source =
            args.config.as_deref().map_or_else(|| String::from("the demo configuration"), |p| format!("--config {p}"));
        let path = self.path.display();
        let from_state = |why: &str| {
            let saved = self.saved.as_ref().expect("only called with a saved state");
            let store =
                InMemoryKeyStore::from_json_str(&saved.config.to_string()).unwrap_or_else(|e| fail(&self.path, 1, e));
            println!("keys and plans: from the state file {path} ({why})");
            store
        };
        let from_config = |why: &str| {
            println!("keys and plans: from {source} ({why})");
            InMemoryKeyStore::from_config(config.clone())
        };
        let Some(saved) = &self.saved else { return from_config("no state file yet") };
        let edited = saved.config_sha256.as_deref().is_some_and(|sha| sha != config_sha256);
        match (args.keys_from, edited, saved.changed) {
            (Some(KeysFrom::Config), ..) => {
                from_config("--keys-from config: the state file's keys and plans are replaced; usage counts are kept")
            }
            (Some(KeysFrom::State), ..) => from_state("--keys-from state"),
            (None, false, _) if saved.config_sha256.is_none() => from_state(
                "written before configurations were tracked; --keys-from config loads the configuration instead",
            ),
            (None, false, true) => from_state(&format!("{source} unchanged; changes made through the admin API kept")),
            (None, false, false) => from_state(&format!("{source} unchanged")),
            (None, true, false) => from_config(&format!(
                "edited since {path} was written, which holds no admin API changes; usage counts are kept"
            )),
            (None, true, true) => {
                eprintln!(
                    "error: {source} was edited since the state file {path} was written, and that file holds \
                     changes made through the admin API. Start with --keys-from config to apply the edit (the \
                     admin changes are dropped) or --keys-from state to keep the admin changes (the edit is \
                     ignored). Usage counts are kept either way."
                );
                std::process::exit(2);
            }
        }
    }

    /// Restores the usage counts into `layer` and starts writing `store` and the counts every
    /// `--state-interval`.
    pub async fn start(
        self,
        args: &Args,
        store: &InMemoryKeyStore,
        config: &Config,
        config_sha256: &str,
        layer: &UsagePlanLayer,
    ) -> LiveState {
        let usage = layer.usage();
        match self.saved {
            Some(saved) => {
                usage.restore(saved.usage).await.unwrap_or_else(|e| fail(&self.path, 1, e));
                println!("usage counts restored from {}", self.path.display());
            }
            None => println!("usage counts: none yet (the state file {} is written from now on)", self.path.display()),
        }
        let live = LiveState {
            path: self.path,
            store: store.clone(),
            usage,
            config_sha256: config_sha256.to_owned(),
            config_json: config.to_json_string(),
            writing: Arc::default(),
            _lock: Arc::new(self.lock),
        };
        let periodic = live.clone();
        let every = args.state_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                periodic.save().await;
            }
        });
        live
    }
}

impl LiveState {
    /// Writes the store and the counts now (see the module documentation); a failure is
    /// printed as a warning and the previous file stays whole.
    pub async fn save(&self) {
        let _one_at_a_time = self.writing.lock().await;
        if let Err(e) = self.write().await {
            eprintln!("warning: --state-file {}: not written: {e}", self.path.display());
        }
    }

    async fn write(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let usage = self.usage.snapshot().await?;
        let config = self.store.config().to_json_string();
        let saved = Saved {
            version: 1,
            config_sha256: Some(self.config_sha256.clone()),
            changed: config != self.config_json,
            config: serde_json::from_str(&config)?,
            usage,
        };
        let bytes = serde_json::to_vec(&saved)?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || tower_usage_plans::usage::write_atomic(&path, &bytes)).await??;
        Ok(())
    }
}

/// The configuration (`--config`, or the demo configuration) and the SHA-256 of its bytes,
/// parsed from the very bytes hashed; exits with status 2 on a bad file.
pub fn config_and_digest(args: &Args) -> (Config, String) {
    let (name, text) = match &args.config {
        Some(path) => (
            path.as_str(),
            std::fs::read_to_string(path).unwrap_or_else(|e| {
                eprintln!("error: config: {path}: {e}");
                std::process::exit(2);
            }),
        ),
        None => ("the demo configuration", super::DEMO_CONFIG.to_owned()),
    };
    let digest = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let json = Path::new(name).extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let config = if json { Config::from_json_str(&text) } else { Config::from_toml_str(&text) };
    let config = config.unwrap_or_else(|e| {
        eprintln!("error: config: {name}: {e}");
        std::process::exit(2);
    });
    (config, digest)
}

/// Takes the exclusive lock on `PATH.lock`, waiting up to `wait` for another process to let it
/// go; exits with status 1 after that.
#[cfg(unix)]
fn lock(path: &Path, wait: Duration) -> std::fs::File {
    use rustix::fs::{flock, FlockOperation};
    use std::io::{Read, Seek, Write};
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    // Never through a link: a link planted at PATH.lock would have us truncate its target.
    #[allow(clippy::cast_possible_wrap)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    let mut file = options.open(&lock_path).unwrap_or_else(|e| fail(path, 1, format!("{}: {e}", lock_path.display())));
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        fail(path, 1, format!("{}: not a regular file", lock_path.display()));
    }
    let deadline = Instant::now() + wait;
    let mut said = false;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                let mut holder = String::new();
                let _ = file.seek(std::io::SeekFrom::Start(0)).and_then(|_| file.read_to_string(&mut holder));
                let holder = holder.trim();
                let holder =
                    if holder.is_empty() { String::from("another process") } else { format!("process {holder}") };
                if Instant::now() >= deadline {
                    fail(
                        path,
                        1,
                        format!(
                            "in use by {holder} (it holds {}). Two processes on one state file would \
                             overwrite each other's counts: stop it first, or give a longer --state-lock-wait",
                            lock_path.display()
                        ),
                    );
                }
                if !said {
                    println!("state file: in use by {holder}; waiting up to {wait:?} for it to exit");
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => fail(path, 1, format!("{}: cannot lock: {e}", lock_path.display())),
        }
    }
    let written = file.set_len(0).and_then(|()| {
        file.seek(std::io::SeekFrom::Start(0))?;
        write!(file, "{}", std::process::id())?;
        file.flush()
    });
    if let Err(e) = written {
        fail(path, 1, format!("{}: {e}", lock_path.display()));
    }
    file
}

#[cfg(not(unix))]
fn lock(path: &Path, _wait: Duration) -> std::fs::File {
    eprintln!("warning: --state-file {}: not locked on this platform: run one process per file", path.display());
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(PathBuf::from(name))
        .unwrap_or_else(|e| fail(path, 1, e))
}
