//! Building and driving `examples/postgres.rs` from a test.

/// Builds `examples/postgres.rs` (`cargo test --test sql` does not build examples; a no-op when
/// it is fresh) into the target directory this test runs from, and returns its path.
pub fn build_postgres_example() -> std::path::PathBuf {
    let mut profile_dir = std::env::current_exe().unwrap();
    profile_dir.pop();
    if profile_dir.ends_with("deps") {
        profile_dir.pop();
    }
    let target_dir = profile_dir.parent().unwrap().to_owned();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .args(["build", "--example", "postgres", "--all-features", "--profile", profile, "--target-dir"])
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --example postgres failed");
    profile_dir.join("examples").join(format!("postgres{}", std::env::consts::EXE_SUFFIX))
}

/// The status a printed `curl` line (or `for` loop of them) answers with: curl itself when it is
/// installed, otherwise the same requests sent by hyper.
pub async fn run_printed(line: &str) -> Vec<String> {
    let have_curl = std::process::Command::new("curl")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have_curl {
        let cmd = if line.starts_with("curl ") {
            format!("{line} -s -o /dev/null -w '%{{http_code}}\\n'")
        } else {
            line.to_owned()
        };
        let out = std::process::Command::new("sh").arg("-c").arg(cmd).output().unwrap();
        return String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    }
    let key = line.split("x-api-key: ").nth(1).and_then(|r| r.split('\'').next());
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches(';');
    let times = if line.starts_with("for i in 1 2 3 4 5") { 5 } else { 1 };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut out = Vec::new();
    for _ in 0..times {
        let mut req = http::Request::get(url);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let resp = client.request(req.body(http_body_util::Empty::new()).unwrap()).await.unwrap();
        out.push(resp.status().as_str().to_owned());
    }
    out
}
