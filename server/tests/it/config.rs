//! `--config FILE` and `server check-config`, against the real binary: the
//! order flag, environment, file, default; a bad file refused naming the
//! file, the line and the key; the secrets' `-file` variants; every error a
//! start would hit refused by `check-config` too; secrets redacted in its
//! report.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use bytes::Bytes;
use common::cluster::ServerProcess;
use common::fetch;
use http_body_util::Full;
use hyper::Request;

/// `server check-config ARGS` with only the environment `env` (none of the
/// test runner's `SSE_*` variables).
fn check_config(args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("check-config")
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run server check-config")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The report's line for `key`: its value and its source.
fn row(report: &str, key: &str) -> (String, String) {
    let line = report
        .lines()
        .find(|line| line.split_once(" = ").is_some_and(|(k, _)| k.trim() == key))
        .unwrap_or_else(|| panic!("no line for {key} in\n{report}"));
    let (_, rest) = line.split_once(" = ").expect("key = value");
    let (value, source) = rest.rsplit_once("  # ").expect("value  # source");
    (value.trim().to_owned(), source.trim().to_owned())
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write a test file");
    path
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "from-the-file\n");
    let file = write(
        dir.path(),
        "sse.toml",
        &format!(
            "history = 5000\n\
             [stream]\n\
             keep-alive = \"5s\"\n\
             retry = \"3s\"\n\
             [limits]\n\
             max-body = 1000\n\
             publish-token-file = \"{}\"\n\
             metrics-token-file = \"{}\"\n",
            token.display(),
            token.display()
        ),
    );
    let output = check_config(
        &["--config", path_str(&file), "--retry", "1s"],
        &[
            ("SSE_KEEP_ALIVE", "7s"),
            ("SSE_RETRY", "4s"),
            ("SSE_MAX_BODY", "2000"),
            // The inline secret in the environment replaces the file's
            // `-file` variant: they are one option.
            ("SSE_PUBLISH_TOKEN", "from-the-env"),
        ],
    );
    let report = text(&output.stdout);
    assert!(output.status.success(), "{report}{}", text(&output.stderr));
    assert_eq!(
        report.lines().next(),
        Some(format!("# config file: {}", file.display()).as_str())
    );
    assert_eq!(row(&report, "retry"), ("1s".into(), "flag".into()));
    assert_eq!(
        row(&report, "keep-alive"),
        ("7s".into(), "env SSE_KEEP_ALIVE".into())
    );
    assert_eq!(
        row(&report, "max-body"),
        ("2000".into(), "env SSE_MAX_BODY".into())
    );
    assert_eq!(
        row(&report, "history"),
        ("5000".into(), "file, line 1".into())
    );
    assert_eq!(
        row(&report, "metrics-token-file"),
        (path_str(&token).into(), "file, line 8".into())
    );
    assert_eq!(
        row(&report, "publish-token"),
        ("<redacted>".into(), "env SSE_PUBLISH_TOKEN".into())
    );
    assert_eq!(
        row(&report, "publish-token-file"),
        (String::new(), "unset".into())
    );
    assert_eq!(row(&report, "max-lag"), ("1000".into(), "default".into()));
    assert_eq!(row(&report, "redis"), (String::new(), "unset".into()));
    assert!(
        report.ends_with("# the configuration is usable\n"),
        "{report}"
    );
}

#[tokio::test]
async fn a_server_started_with_a_file_runs_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "s3cr3t-from-a-file\r\n");
    let file = write(
        dir.path(),
        "sse.toml",
        &format!(
            "[auth]\npublish-token-file = \"{}\"\n[limits]\nmax-body = 100\n",
            token.display()
        ),
    );
    let server = ServerProcess::start_alone(&["--config", path_str(&file)], &[]).await;
    let publish = |bearer: Option<&str>, message: &str| {
        let mut request = Request::post("/publish").header("content-type", "application/json");
        if let Some(bearer) = bearer {
            request = request.header("authorization", format!("Bearer {bearer}"));
        }
        let body = serde_json::json!({ "message": message }).to_string();
        request.body(Full::new(Bytes::from(body))).unwrap()
    };
    let addr = server.addr;
    assert_eq!(fetch(addr, publish(None, "hi")).await.status, 401);
    assert_eq!(fetch(addr, publish(Some("s3cr3t"), "hi")).await.status, 401);
    let answer = fetch(addr, publish(Some("s3cr3t-from-a-file"), "hi")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let long = "x".repeat(200);
    let answer = fetch(addr, publish(Some("s3cr3t-from-a-file"), &long)).await;
    assert_eq!(
        answer.status, 413,
        "--max-body from the file: {}",
        answer.body
    );
    server.terminate().await;
}

#[tokio::test]
async fn a_bad_file_stops_the_start_naming_the_file_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "history = 10\n[limits]\nmax-conections = 5\n",
            ":3: unknown key `max-conections`: no option has this name",
        ),
        (
            "# a comment\nhistory = \"5000\"\n",
            ":2: `history`: expects an integer, not a string",
        ),
        (
            "keep-alive = 15\n",
            ":1: `keep-alive`: expects a string, not an integer",
        ),
        (
            "\n\nh2c = \"yes\"\n",
            ":3: `h2c`: expects true or false, not a string",
        ),
        (
            "history = [1, 2]\n",
            ":1: `history`: takes one value, not a list",
        ),
        (
            "cors-origin = [\"http://a.example\", 8080]\n",
            ":1: `cors-origin`: expects a string, not an integer",
        ),
        (
            "history = 0\n",
            ":1: `history`: invalid value \"0\": 0 is not in 1..=10000000",
        ),
        (
            "[stream]\nkeep-alive = \"soon\"\n",
            ":2: `keep-alive`: invalid value \"soon\":",
        ),
        (
            "log-format = \"xml\"\n",
            ":1: `log-format`: invalid value \"xml\": one of text, json",
        ),
        (
            "history = 10\n[s]\nhistory = 20\n",
            ":3: `history` is given twice (first on line 1)",
        ),
        (
            "[a]\n[a.b]\nhistory = 1\n",
            ":2: unknown key `b`: sections hold options, not other sections",
        ),
        (
            "config = \"other.toml\"\n",
            ":1: unknown key `config`: a config file cannot name another",
        ),
        ("history = 5\nretry = \n", ":2: not TOML:"),
    ];
    for (content, says) in cases {
        let file = write(dir.path(), "bad.toml", content);
        let exited = ServerProcess::try_start_alone(&["--config", path_str(&file)])
            .await
            .err()
            .unwrap_or_else(|| panic!("started with {content:?}"));
        assert_eq!(exited.code, Some(1), "{content:?}: {}", exited.stderr);
        let expected = format!("{}{says}", file.display());
        assert!(
            exited.stderr.contains(&expected),
            "{content:?}: expected {expected:?} in\n{}",
            exited.stderr
        );
        // check-config refuses it the same way.
        let output = check_config(&["--config", path_str(&file)], &[]);
        assert_eq!(output.status.code(), Some(1), "{content:?}");
        assert!(text(&output.stderr).contains(&expected), "{content:?}");
    }
    let missing = dir.path().join("missing.toml");
    let exited = ServerProcess::try_start_alone(&["--config", path_str(&missing)])
        .await
        .err()
        .expect("refused");
    assert!(
        exited.stderr.contains(&format!(
            "{}: cannot read the config file",
            missing.display()
        )),
        "{}",
        exited.stderr
    );
}

#[tokio::test]
async fn check_config_refuses_what_a_start_would() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = common::make_cert(dir.path(), "one");
    let (_, other_key) = common::make_cert(dir.path(), "two");
    let not_a_dir = write(dir.path(), "plain-file", "");
    let empty = write(dir.path(), "empty-token", "\n");
    let spaced = write(dir.path(), "spaced-token", "two words\n");
    let cases: Vec<(String, &str)> = vec![
        (
            "tls-cert = \"/nonexistent/cert.pem\"\ntls-key = \"/nonexistent/key.pem\"\n".into(),
            "/nonexistent/cert.pem",
        ),
        (
            format!(
                "tls-cert = \"{}\"\ntls-key = \"{}\"\n",
                cert.display(),
                other_key.display()
            ),
            "",
        ),
        (
            format!("data-dir = \"{}\"\n", not_a_dir.display()),
            "--data-dir",
        ),
        (
            "redis = \"http://cache:6379/\"\n".into(),
            "--redis \"http://cache:6379/\" is not a Redis URL",
        ),
        (
            "publish-token-file = \"/nonexistent/token\"\n".into(),
            "--publish-token-file /nonexistent/token:",
        ),
        (
            format!("metrics-token-file = \"{}\"\n", empty.display()),
            "the file is empty",
        ),
        (
            format!("publish-token-file = \"{}\"\n", spaced.display()),
            "must be printable ASCII without spaces",
        ),
        (
            "jwt-secret-file = \"/nonexistent/secret\"\n".into(),
            "--jwt-secret-file /nonexistent/secret:",
        ),
        (
            "history = 10\nmax-lag = 11\n".into(),
            "--max-lag (11) must not exceed --history (10)",
        ),
    ];
    for (content, says) in &cases {
        let file = write(dir.path(), "sse.toml", content);
        let output = check_config(&["--config", path_str(&file)], &[]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{content}: {stderr}");
        assert!(
            stderr.contains(says),
            "{content}: expected {says:?} in {stderr}"
        );
        assert!(
            !text(&output.stdout).contains("the configuration is usable"),
            "{content}"
        );
        // A start is refused with the same message.
        let exited = ServerProcess::try_start_alone(&["--config", path_str(&file)])
            .await
            .err()
            .unwrap_or_else(|| panic!("started with {content}"));
        assert!(exited.stderr.contains(says), "{content}: {}", exited.stderr);
    }
    // The mismatched pair's message names both files.
    let file = write(dir.path(), "sse.toml", &cases[1].0);
    let stderr = text(&check_config(&["--config", path_str(&file)], &[]).stderr);
    assert!(
        stderr.contains(path_str(&cert)) && stderr.contains(path_str(&other_key)),
        "{stderr}"
    );
    // Options that need each other are checked with the file's options too.
    let file = write(dir.path(), "sse.toml", "redis-key = \"k\"\n");
    let output = check_config(&["--config", path_str(&file)], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("--redis <URL>"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the options of {} are checked here as flags",
            file.display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_config_redacts_every_secret_wherever_it_comes_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "sse.toml",
        "jwt-secret = \"jwt-secret-in-the-file\"\n\
         redis = \"redis://sse:redis-password-in-the-file@127.0.0.1:6379/0\"\n",
    );
    // The file named in the environment this time.
    let output = check_config(
        &["--publish-token", "publish-token-on-the-flag"],
        &[
            ("SSE_METRICS_TOKEN", "metrics-token-in-the-env"),
            ("SSE_CONFIG", path_str(&file)),
        ],
    );
    let report = text(&output.stdout);
    assert!(output.status.success(), "{report}{}", text(&output.stderr));
    for secret in [
        "jwt-secret-in-the-file",
        "redis-password-in-the-file",
        "publish-token-on-the-flag",
        "metrics-token-in-the-env",
    ] {
        assert!(!report.contains(secret), "{secret} in\n{report}");
        assert!(!text(&output.stderr).contains(secret), "{secret} on stderr");
    }
    assert_eq!(
        report.lines().next(),
        Some(format!("# config file: {}", file.display()).as_str())
    );
    assert_eq!(
        row(&report, "jwt-secret"),
        ("<redacted>".into(), "file, line 1".into())
    );
    assert_eq!(
        row(&report, "publish-token"),
        ("<redacted>".into(), "flag".into())
    );
    assert_eq!(
        row(&report, "metrics-token"),
        ("<redacted>".into(), "env SSE_METRICS_TOKEN".into())
    );
    assert_eq!(
        row(&report, "redis"),
        (
            "redis://sse:<redacted>@127.0.0.1:6379/0".into(),
            "file, line 2".into()
        )
    );
}
