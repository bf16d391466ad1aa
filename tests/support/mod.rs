//! Shared set-up for the integration tests: a client for the local control plane that
//! `make dev-up` starts, and a namespace per test that goes away when the test ends.
//!
//! These tests need the real cluster. When it is not there they fail with a message that says how
//! to start it; they never skip.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Config,
    api::{DeleteParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

/// The kubeconfig of the local control plane: `KJL_TEST_KUBECONFIG`, else `.local/kubeconfig`.
/// `KUBECONFIG` is deliberately not used, so a test run never touches a developer's real cluster.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KJL_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/kubeconfig"))
}

/// A client for the local control plane. Panics, saying what to do, when it is not running.
pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!("no local control plane: cannot read {} ({e}). Start it with `make dev-up`.", path.display())
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()));
    let client = Client::try_from(config).expect("a client for the local control plane");
    if let Err(e) = client.apiserver_version().await {
        panic!("the local control plane does not answer ({e}). Start it with `make dev-up`.");
    }
    client
}

/// A namespace of the test's own, deleted (with everything in it) when dropped.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    pub async fn create(prefix: &str) -> Self {
        let client = client().await;
        let name = format!("t-{prefix}-{}", random_suffix());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "kube-job-launcher.test": "true" } }
        }))
        .expect("namespace manifest");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        // Pods need the namespace's default ServiceAccount, which a controller creates.
        wait_until(Duration::from_secs(30), "default ServiceAccount", || async {
            Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &name)
                .get_opt("default")
                .await
                .ok()
                .flatten()
                .is_some()
        })
        .await;
        Self { name, client }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: delete from a thread
        // with a runtime and a client of its own.
        let name = self.name.clone();
        let done = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                let client = client().await;
                let _ = Api::<Namespace>::all(client).delete(&name, &DeleteParams::background()).await;
            });
        });
        let _ = done.join();
    }
}

/// Polls `check` until it is true; panics after `timeout` naming what it waited for.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Eight lowercase letters and digits, from the std library's randomly seeded hasher (tests need
/// unique names, not cryptographic randomness).
pub fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default(),
    );
    let mut n = hasher.finish();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| {
            let c = alphabet[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}
