//! Configuration that users set: API keys, expiry, and the refusal to serve
//! an open address without authentication.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use upcache_e2e::*;
use upcache_protocol::ProblemType;

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[tokio::test]
async fn api_keys_are_required_when_configured() {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "first-key\n\nsecond-key\n").unwrap();
    let config = config_file(&format!(
        "api_keys_file = {:?}\n",
        keys.path().display().to_string()
    ));
    let server = Server::start_with(&["--config", config.path().to_str().unwrap()]).await;
    let job = Job::identity(pseudo_random(2048, 1));

    let anonymous = server
        .client()
        .post(server.url("/v1/ops"))
        .body(job.create_request(None).to_string())
        .send()
        .await
        .unwrap();
    let (headers, _) = assert_problem(anonymous, ProblemType::Unauthorized).await;
    assert_eq!(header(&headers, "www-authenticate"), "Bearer");
    let wrong = server
        .client()
        .post(server.url("/v1/ops"))
        .bearer_auth("first-kez")
        .body(job.create_request(None).to_string())
        .send()
        .await
        .unwrap();
    assert_problem(wrong, ProblemType::Unauthorized).await;

    for key in ["first-key", "second-key"] {
        let resp = server
            .client()
            .post(server.url("/v1/ops"))
            .bearer_auth(key)
            .body(job.create_request(None).to_string())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{key}: {}", resp.status());
    }
    // Load balancers probe health without a key.
    let health = server
        .client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_key_files_have_comments() {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "# staging keys\n\n   \nk-one\n  # k-old\n").unwrap();
    let config = config_file(&format!(
        "api_keys_file = {:?}\n",
        keys.path().display().to_string()
    ));
    let server = Server::start_with(&["--config", config.path().to_str().unwrap()]).await;
    let job = Job::identity(pseudo_random(2048, 2));
    let create = |authorization: &str| {
        server
            .client()
            .post(server.url("/v1/ops"))
            .header("authorization", authorization)
            .body(job.create_request(None).to_string())
            .send()
    };
    for accepted in [
        "Bearer k-one",
        "bearer k-one",
        "BEARER k-one",
        "bEaReR   k-one ",
    ] {
        let resp = create(accepted).await.unwrap();
        assert!(
            resp.status().is_success(),
            "{accepted:?}: {}",
            resp.status()
        );
    }
    // Comment and blank lines of the file are not keys.
    for refused in [
        "Bearer # staging keys",
        "Bearer # k-old",
        "Bearer k-old",
        "Bearer",
        "Bearer  ",
    ] {
        let resp = create(refused).await.unwrap();
        assert_problem(resp, ProblemType::Unauthorized).await;
    }
}

/// `serve` on loopback with `env` set: its exit code and stderr.
fn serve_with_env(env: &[(&str, &str)], config: Option<&std::path::Path>) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(upcache_e2e::binary::path());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(tempfile::tempdir().unwrap().path())
        .env_remove("UPCACHE_API_KEYS");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.stdout.is_empty(), "nothing listened");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_empty_api_key_is_a_configuration_error() {
    for keys in ["k1,,k2", " ", "k1, "] {
        let (code, stderr) = serve_with_env(&[("UPCACHE_API_KEYS", keys)], None);
        assert_eq!(code, Some(2), "UPCACHE_API_KEYS={keys:?}: {stderr}");
        assert!(
            stderr.contains("api_keys") && stderr.contains("empty"),
            "{stderr}"
        );
    }
    let config = config_file("api_keys = [\"k1\", \"   \"]\n");
    let (code, stderr) = serve_with_env(&[], Some(config.path()));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("api_keys"), "{stderr}");
}

#[test]
fn an_open_address_without_keys_is_refused_before_binding() {
    let out = std::process::Command::new(upcache_e2e::binary::path())
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(tempfile::tempdir().unwrap().path())
        .env_remove("UPCACHE_API_KEYS")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a configuration error exits with 2"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("api_keys"),
        "the message says what to do: {stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing listened");
}

#[test]
fn a_bad_setting_is_a_usage_error() {
    let out = std::process::Command::new(upcache_e2e::binary::path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--default-block-size",
            "3000",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("default_block_size"));
}

#[tokio::test]
async fn untouched_uploads_expire() {
    let config = config_file("upload_ttl = 1\n");
    let server = Server::start_with(&["--config", config.path().to_str().unwrap()]).await;
    let job = Job::identity(pseudo_random(4096, 2));
    let layout = job.layout(1024);
    server.create(&job, Some(1024)).await;
    server.put_block(&job, &layout, 0).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = server.head(&job.key).await.status();
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upload never expired (HEAD: {status})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The key is free again: a new upload starts from nothing.
    let (_, status) = server.create(&job, Some(1024)).await;
    assert_eq!(status.blocks_received, 0);
}

#[test]
fn bad_s3_tier_settings_are_refused_before_binding() {
    for (var, value, says) in [
        (
            "UPCACHE_S3_WRITE_BEHIND_CONCURRENCY",
            "0",
            "write_behind_concurrency 0",
        ),
        ("UPCACHE_S3_BREAKER_FAILURES", "0", "breaker_failures 0"),
        ("UPCACHE_S3_BREAKER_SLOW", "soon", "UPCACHE_S3_BREAKER_SLOW"),
        (
            "UPCACHE_S3_BREAKER_COOLDOWN",
            "0",
            "breaker_cooldown (seconds) 0",
        ),
        ("UPCACHE_S3_REDIRECT_TTL", "0", "redirect_ttl 0"),
        ("UPCACHE_S3_REDIRECT_ABOVE", "huge", "huge"),
    ] {
        let (code, stderr) = serve_with_env(
            &[
                ("UPCACHE_S3_BUCKET", "bkt"),
                ("UPCACHE_S3_ENDPOINT", "http://127.0.0.1:9"),
                (var, value),
            ],
            None,
        );
        assert_eq!(code, Some(2), "{var}={value}: {stderr}");
        assert!(stderr.contains(says), "{var}={value}: {stderr}");
    }
}
