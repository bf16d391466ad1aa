//! A real browser for the dashboard's tests: Debian's Chromium, headless, driven over WebDriver
//! by its chromedriver (both installed by hack/browser.sh; nothing is downloaded at test time),
//! with a fresh profile, and host resolution pinned to loopback so it can reach nothing else.
//!
//! Waits poll the page's DOM through small scripts until a condition holds (a page that
//! re-renders would leave element handles stale), and fail naming what they waited for, with a
//! screenshot of the moment.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a wait lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// Where screenshots go: `target/ui-screenshots/` (under `CARGO_TARGET_DIR` when set).
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("ui-screenshots")
}

/// A free loopback port, for chromedriver.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session through it.
    /// Fails loudly when Chromium or chromedriver is missing.
    pub async fn start() -> Self {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: the dashboard's browser test needs Debian's chromium and chromium-driver. \
                 Install them with hack/browser.sh (make test runs it)."
            );
        }
        let port = free_port();
        let profile = std::env::temp_dir().join(format!("kjl-ui-profile-{}", super::cluster::random_suffix()));
        std::fs::create_dir_all(&profile).expect("a profile directory");
        let log = std::fs::File::create(profile.with_extension("chromedriver.log")).expect("chromedriver log");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let webdriver = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ready = http.get(format!("{webdriver}/status")).send().await;
            if let Ok(answer) = ready
                && let Ok(status) = answer.json::<Value>().await
                && status["value"]["ready"] == json!(true)
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer on {webdriver} within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-default-apps".into(),
            "--disable-domain-reliability".into(),
            "--disable-client-side-phishing-detection".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            // Whatever the page or the browser tries, no name resolves but loopback's.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".into(),
            "--window-size=1280,900".into(),
            "--lang=en-US".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": args }));
        // An alert left open must fail the test, not be dismissed quietly.
        capabilities.insert("unhandledPromptBehavior".into(), json!("ignore"));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| panic!("cannot start headless Chromium through chromedriver: {e}"));
        Self { client, driver, profile }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script failed ({e}): {script}"))
    }

    /// Runs an async script: its body gets `done` (the last argument) to call with the result.
    pub async fn js_async(&self, script: &str) -> Value {
        let body = format!("const done = arguments[arguments.length - 1]; {script}");
        self.client.execute_async(&body, vec![]).await.unwrap_or_else(|e| panic!("script failed ({e}): {script}"))
    }

    /// The text of the first element matching `css`, or None.
    pub async fn text(&self, css: &str) -> Option<String> {
        let found = self
            .js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", vec![json!(css)])
            .await;
        found.as_str().map(String::from)
    }

    /// An attribute of the first element matching `css`, or None.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let found = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
                vec![json!(css), json!(name)],
            )
            .await;
        found.as_str().map(String::from)
    }

    /// Waits until `check` holds of the page, failing with a screenshot after [`WAIT`].
    pub async fn wait_until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if check().await {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let shot = self.screenshot("failure").await;
                let body = self.text("body").await.unwrap_or_default();
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; the page (screenshot {}) says:\n{body}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until an element matching `css` exists.
    pub async fn wait_for(&self, css: &str) {
        self.wait_until(&format!("an element {css}"), || async { self.text(css).await.is_some() }).await;
    }

    /// Waits until the text of the element matching `css` contains `expected`; returns it.
    pub async fn wait_text(&self, css: &str, expected: &str) -> String {
        let last = std::sync::Mutex::new(None::<String>);
        self.wait_until(&format!("{css} to contain {expected:?}"), || async {
            let text = self.text(css).await;
            let ok = text.as_deref().is_some_and(|t| t.contains(expected));
            *last.lock().unwrap_or_else(|p| p.into_inner()) = text;
            ok
        })
        .await;
        last.into_inner().unwrap_or_else(|p| p.into_inner()).unwrap_or_default()
    }

    /// Waits until an attribute of the element matching `css` is `expected`.
    pub async fn wait_attr(&self, css: &str, name: &str, expected: &str) {
        self.wait_until(&format!("{css} [{name}] to be {expected:?}"), || async {
            self.attr(css, name).await.as_deref() == Some(expected)
        })
        .await;
    }

    /// Clicks the element matching `css` (found afresh, so a re-render between finding and
    /// clicking is retried).
    pub async fn click(&self, css: &str) {
        let mut last_error = String::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => match element.click().await {
                    Ok(()) => return,
                    Err(e) => last_error = e.to_string(),
                },
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let shot = self.screenshot("failure").await;
        panic!("cannot click {css}: {last_error} (screenshot {})", shot.display());
    }

    /// Types `text` into the element matching `css`, after clearing it.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.wait_for(css).await;
        let element = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("find {css}: {e}"));
        element.clear().await.unwrap_or_else(|e| panic!("clear {css}: {e}"));
        element.send_keys(text).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// The page's path (and query).
    pub async fn path(&self) -> String {
        self.js("return location.pathname + location.search;", vec![]).await.as_str().unwrap_or_default().to_string()
    }

    /// Writes a screenshot of the window to `target/ui-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = screenshot_dir();
        let path = dir.join(format!("{name}.png"));
        match self.client.screenshot().await {
            Ok(png) => {
                let _ = std::fs::create_dir_all(&dir);
                if let Err(e) = std::fs::write(&path, png) {
                    eprintln!("cannot write {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("no screenshot {name}: {e}"),
        }
        path
    }

    /// Ends the session (Chromium quits) and chromedriver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        self.stop_processes();
    }

    /// Stops chromedriver, and the Chromium processes of this browser's own profile (found by
    /// their `--user-data-dir`, which no other process has) if the session did not end them.
    fn stop_processes(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let marker = format!("--user-data-dir={}", self.profile.display());
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
                let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
                if cmdline.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()) {
                    let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_file(self.profile.with_extension("chromedriver.log"));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop_processes();
    }
}
