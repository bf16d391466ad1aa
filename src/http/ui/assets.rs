//! The dashboard's files, embedded in the binary: no build step, no npm. Plain ES modules and
//! one stylesheet; no third-party code.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// A strong validator: a hash of the bytes.
    pub etag: String,
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! embedded {
    ($($name:literal => $type:expr),* $(,)?) => {
        [$(($name, $type, include_bytes!(concat!("assets/", $name)).as_slice())),*]
    };
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    embedded![
        "index.html" => "text/html; charset=utf-8",
        "app.css" => "text/css; charset=utf-8",
        "app.js" => JS,
        "api.js" => JS,
        "dom.js" => JS,
        "jobs.js" => JS,
        "job.js" => JS,
        "templates.js" => JS,
        "queue.js" => JS,
        "favicon.svg" => "image/svg+xml",
    ]
    .into_iter()
    .map(|(name, content_type, body)| {
        let hash: String = Sha256::digest(body).iter().take(12).map(|b| format!("{b:02x}")).collect();
        Asset { name, content_type, body, etag: format!("\"{hash}\"") }
    })
    .collect()
});

/// The page shell, served for `/ui/` and every page under it.
pub fn shell() -> &'static Asset {
    find("index.html").unwrap_or(&ASSETS[0])
}

/// An asset by its file name.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

#[cfg(test)]
pub fn all() -> &'static [Asset] {
    &ASSETS
}
