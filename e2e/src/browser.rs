//! Headless Chromium driven through chromedriver.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tempfile::TempDir;

/// How long chromedriver may take to accept connections.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(30);

/// The flags headless Chromium needs here (running as root in a container).
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// Accepts the self-signed certificate of a test server.
pub const TRUST_ANY_CERTIFICATE: &str = "--ignore-certificate-errors";

/// A chromedriver process and one browser session with a fresh profile.
///
/// Call [`Browser::close`] at the end of a test; if it is dropped instead
/// (a failed test), the chromedriver process group, which includes the
/// browser it started, is killed.
#[derive(Debug)]
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session.
    ///
    /// # Errors
    /// When chromedriver or Chromium is missing, chromedriver does not
    /// answer in time, or the session cannot be created.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// Like [`Browser::start`], with more Chromium flags, e.g.
    /// [`TRUST_ANY_CERTIFICATE`] for a server with a test certificate.
    ///
    /// # Errors
    /// As [`Browser::start`].
    pub async fn start_with(flags: &[&str]) -> Result<Self> {
        let chromedriver =
            std::env::var("E2E_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("E2E_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port()?;
        let profile = tempfile::Builder::new()
            .prefix("e2e-chromium-")
            .tempdir()
            .context("creating a Chromium profile directory")?;
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so the browser it starts can be killed with it.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {chromedriver} (apt install chromium-driver)"))?;
        let mut browser = Self {
            client: None,
            driver,
            _profile: profile,
        };
        wait_for_port(port, DRIVER_TIMEOUT)
            .await
            .with_context(|| format!("{chromedriver} did not listen on port {port}"))?;

        let mut args: Vec<String> = CHROMIUM_FLAGS
            .iter()
            .chain(flags)
            .map(|&s| s.to_owned())
            .collect();
        args.push(format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        ));
        let downloads = browser._profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).context("creating the downloads directory")?;
        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .context("opening a Chromium session through chromedriver")?;
        browser.client = Some(client);
        Ok(browser)
    }

    /// The WebDriver client.
    ///
    /// # Panics
    /// Never after [`Browser::start`] succeeded.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("a session is open")
    }

    /// Where the browser saves downloads.
    pub fn downloads(&self) -> std::path::PathBuf {
        self._profile.path().join("downloads")
    }

    /// Ends the session (Chromium quits) and stops chromedriver.
    ///
    /// # Errors
    /// When the session cannot be ended cleanly.
    pub async fn close(mut self) -> Result<()> {
        if let Some(client) = self.client.take() {
            client.close().await.context("ending the browser session")?;
        }
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium it started.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

async fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listened within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
