//! Out of file descriptors: accepting fails, the server pauses longer after
//! each failure instead of retrying at once, and serves again once
//! descriptors are free. Alone in its test binary: it uses up every
//! descriptor of the process.

use crate::common;

use std::process::Stdio;

use common::raw::Raw;
use common::{start, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn accept_errors(held: &mut Raw) -> u64 {
    let answer = held.get("/metrics").await;
    answer
        .body
        .lines()
        .find_map(|line| line.strip_prefix("sse_accept_errors_total "))
        .expect("the metric")
        .parse()
        .expect("a number")
}

#[tokio::test]
async fn out_of_file_descriptors_the_server_pauses_accepting_and_recovers() {
    let server = start(&[]).await;
    let addr = server.addr;
    // A connection opened before: it asks for metrics without a descriptor.
    let mut held = Raw::connect(addr).await;
    assert_eq!(held.get("/healthz").await.status, 200);
    // A client in another process, which has descriptors of its own; it
    // connects when told to.
    let mut client = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "read go; exec 3<>/dev/tcp/{}/{}; \
             printf 'GET /healthz HTTP/1.1\\r\\nhost: test\\r\\nconnection: close\\r\\n\\r\\n' >&3; \
             cat <&3",
            addr.ip(),
            addr.port()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bash runs");
    let mut go = client.stdin.take().expect("stdin");
    let mut output = client.stdout.take().expect("stdout");

    // Every descriptor this process may still open, taken (a few thousand
    // at most, whatever the machine's limit).
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("the limit");
    rlimit::setrlimit(rlimit::Resource::NOFILE, 4096.min(hard), hard).expect("lower the limit");
    let mut taken = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        taken.push(file);
    }
    go.write_all(b"go\n").await.expect("tell the client");

    // The server cannot accept the client's connection, and counts it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while accept_errors(&mut held).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "accept never failed"
        );
        tokio::task::yield_now().await;
    }
    drop(taken);

    // Once descriptors are free, the waiting client is served.
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, output.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("the client's output");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer:?}");
    // Each failure was followed by a pause, doubling from 10 ms: retrying
    // at once would have counted thousands.
    let failures = accept_errors(&mut held).await;
    assert!((1..20).contains(&failures), "{failures} failed accepts");
    drop(go);
    let _ = client.wait().await;
    server.stop().await;
}
