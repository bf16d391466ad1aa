//! The local control plane: a client for it, namespaces of a test's own, ConfigMaps, RBAC
//! identities, waiting for conditions, and stopping its components (hack/component.sh).

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

/// Creates or replaces the ConfigMap `name` with `data` (key → text).
pub async fn put_config_map(client: &Client, namespace: &str, name: &str, data: &[(&str, &str)]) {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Patch, PatchParams};
    let data: std::collections::BTreeMap<&str, &str> = data.iter().copied().collect();
    let cm = serde_json::json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": data });
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::apply("kube-job-launcher-tests").force(), &Patch::Apply(&cm))
        .await
        .unwrap_or_else(|e| panic!("apply ConfigMap {name}: {e}"));
}

/// A client that acts as ServiceAccount `name` in `namespace`, bound to a Role with `rules`
/// (JSON PolicyRules). Made with a TokenRequest, so it is exactly what a pod of that account gets.
pub async fn service_account_client(namespace: &str, name: &str, rules: serde_json::Value) -> Client {
    use k8s_openapi::api::{authentication::v1::TokenRequest, core::v1::ServiceAccount, rbac::v1::RoleBinding};
    let admin = client().await;
    let pp = PostParams::default();
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).expect("sa");
    Api::<ServiceAccount>::namespaced(admin.clone(), namespace).create(&pp, &sa).await.expect("create ServiceAccount");
    set_role(namespace, name, rules).await;
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
        "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": namespace }]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(admin.clone(), namespace).create(&pp, &binding).await.expect("create RoleBinding");
    let request: TokenRequest =
        serde_json::from_value(serde_json::json!({ "spec": { "audiences": [], "expirationSeconds": 3600 } }))
            .expect("token request");
    let token = Api::<ServiceAccount>::namespaced(admin, namespace)
        .create_token_request(name, &pp, &request)
        .await
        .expect("token")
        .status
        .expect("token status")
        .token
        .expect("a token");
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).expect("kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    config.auth_info = kube::config::AuthInfo { token: Some(secrecy::SecretString::from(token)), ..Default::default() };
    Client::try_from(config).expect("service account client")
}

/// Creates or replaces Role `name` with `rules`.
pub async fn set_role(namespace: &str, name: &str, rules: serde_json::Value) {
    use k8s_openapi::api::rbac::v1::Role;
    use kube::api::{Patch, PatchParams};
    let role = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": name }, "rules": rules
    });
    Api::<Role>::namespaced(client().await, namespace)
        .patch(name, &PatchParams::apply("kube-job-launcher-tests").force(), &Patch::Apply(&role))
        .await
        .expect("apply Role");
}

/// Runs `hack/component.sh` with `args` (stop NAME | start), failing loudly if it fails.
pub async fn component(args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hack/component.sh");
    let out = tokio::process::Command::new(script).args(args).output().await.expect("hack/component.sh runs");
    assert!(
        out.status.success(),
        "hack/component.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The apiserver's host:port, from the test kubeconfig.
pub async fn apiserver_address() -> String {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    let uri = config.cluster_url;
    format!("{}:{}", uri.host().unwrap_or("127.0.0.1"), uri.port_u16().unwrap_or(443))
}

/// What the launcher needs, but for ConfigMaps when `configmaps` is false.
pub fn launcher_rules(configmaps: bool) -> serde_json::Value {
    let mut rules = vec![
        serde_json::json!({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "patch", "delete"]}),
        serde_json::json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}),
        serde_json::json!({"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}),
        serde_json::json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}),
    ];
    if configmaps {
        rules.push(
            serde_json::json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}),
        );
    }
    serde_json::Value::Array(rules)
}
