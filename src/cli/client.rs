//! The CLI's HTTP client: requests to the launcher's API, marked as coming from the CLI, with the
//! API's problem+json answers and transport failures turned into [`CliError`]s that say what
//! happened.

use std::time::Duration;

use reqwest::{
    Method, RequestBuilder, Response, StatusCode, Url,
    header::{AUTHORIZATION, HeaderValue},
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    config_file::{Connection, Credential, Tls},
    error::CliError,
};
use crate::api::SOURCE_HEADER;

/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a whole answer (log streams have none).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one launcher.
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    /// The server as the user named it, for messages.
    server: String,
    token: Option<HeaderValue>,
    /// How the server's certificate is checked, for messages.
    tls: Tls,
}

/// What the CLI reads of a problem+json body; lenient, so that any error body with a title or a
/// detail is shown.
#[derive(Debug, Deserialize)]
struct ProblemBody {
    title: Option<String>,
    detail: Option<String>,
}

impl ApiClient {
    pub fn new(connection: &Connection) -> Result<Self, CliError> {
        // reqwest's rustls asks for the process's default crypto provider: make it aws-lc-rs, the
        // one kube uses, so no second provider is built in. Failing means one is set already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let base = parse_server(&connection.server)?;
        let token = match &connection.credential {
            Some(Credential::Token(token)) => Some(token.clone()),
            Some(Credential::File(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| CliError::Usage(format!("cannot read the token file {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let token = token
            .map(|t| {
                let t = t.trim();
                if t.is_empty() {
                    return Err(CliError::Usage("the token is empty".into()));
                }
                let mut value = HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| CliError::Usage("the token holds characters an HTTP header cannot carry".into()))?;
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("kube-job-launcher-cli/", env!("CARGO_PKG_VERSION")));
        match &connection.tls {
            Tls::System => {}
            Tls::CaFile(path) => {
                // As kubectl's --certificate-authority: this CA instead of the system's store.
                builder = builder.tls_built_in_root_certs(false);
                for certificate in ca_certificates(path)? {
                    builder = builder.add_root_certificate(certificate);
                }
            }
            Tls::Insecure => builder = builder.danger_accept_invalid_certs(true),
        }
        let http = builder
            .build()
            .map_err(|e| CliError::Usage(format!("cannot set up the HTTP client: {}", error_chain(&e))))?;
        let server = connection.server.trim().trim_end_matches('/').to_string();
        Ok(Self { http, base, server, token, tls: connection.tls.clone() })
    }

    /// The URL of an API path given as segments, each percent-encoded as needed.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request with the CLI's headers and the usual deadline.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.request_without_deadline(method, url).timeout(REQUEST_TIMEOUT)
    }

    /// A request with the CLI's headers and no deadline (log streams).
    pub fn request_without_deadline(&self, method: Method, url: Url) -> RequestBuilder {
        let mut request = self.http.request(method, url).header(SOURCE_HEADER, "cli");
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, token.clone());
        }
        request
    }

    /// Sends a request; a 2xx answer is returned, anything else is an error.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.error_from(response).await)
    }

    /// Sends a request and reads its JSON answer.
    pub async fn json(&self, request: RequestBuilder) -> Result<(StatusCode, Value), CliError> {
        let response = self.send(request).await?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        let value = serde_json::from_slice(&body).map_err(|e| {
            CliError::Unexpected(format!(
                "the launcher at {} answered {status} with a body that is not JSON: {e}",
                self.server
            ))
        })?;
        Ok((status, value))
    }

    /// GET of a JSON resource.
    pub async fn get_json(&self, segments: &[&str]) -> Result<Value, CliError> {
        Ok(self.json(self.request(Method::GET, self.url(segments))).await?.1)
    }

    /// The error a non-2xx answer means: its problem, else its status and the start of its body.
    async fn error_from(&self, response: Response) -> CliError {
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        let hint = (status == StatusCode::UNAUTHORIZED && self.token.is_none())
            .then(|| "the launcher wants a bearer token: give --token, --token-file or JOB_LAUNCHER_TOKEN".to_string());
        if let Ok(problem) = serde_json::from_slice::<ProblemBody>(&body)
            && (problem.title.is_some() || problem.detail.is_some())
        {
            return CliError::Problem {
                status: status.as_u16(),
                title: problem.title.unwrap_or_else(|| reason(status)),
                detail: problem.detail.unwrap_or_default(),
                hint,
            };
        }
        let text = String::from_utf8_lossy(&body);
        let mut snippet: String = text.trim().chars().take(300).map(|c| if c.is_control() { ' ' } else { c }).collect();
        if snippet.is_empty() {
            snippet = format!("(no body; is {} the launcher's API?)", self.server);
        }
        CliError::Status { server: self.server.clone(), status: status.as_u16(), reason: reason(status), body: snippet }
    }

    /// A request that got no answer: no connection, no answer in time, or a broken one.
    pub fn transport_error(&self, error: &reqwest::Error) -> CliError {
        let server = self.server.clone();
        if error.is_timeout() {
            CliError::Timeout { server }
        } else if error.is_connect() && self.tls != Tls::Insecure && is_certificate_error(error) {
            let trust = match &self.tls {
                Tls::CaFile(path) => format!("the CA in {}", path.display()),
                _ => "the system's trust store".to_string(),
            };
            CliError::Certificate { server, cause: root_cause(error), trust }
        } else if error.is_connect() {
            CliError::Connect { server, cause: root_cause(error) }
        } else {
            CliError::Transport { server, cause: error_chain(error) }
        }
    }
}

/// The certificates of a PEM file: a CA, or a bundle of them.
fn ca_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, CliError> {
    let pem =
        std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read the CA file {}: {e}", path.display())))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| CliError::Usage(format!("the CA file {} is not PEM: {}", path.display(), error_chain(&e))))?;
    if certificates.is_empty() {
        return Err(CliError::Usage(format!("the CA file {} holds no PEM certificate", path.display())));
    }
    Ok(certificates)
}

/// Whether a connection failed on the server's certificate: rustls' error somewhere in the chain,
/// perhaps inside `io::Error`s (whose `source` skips what they wrap).
fn is_certificate_error(error: &(dyn std::error::Error + 'static)) -> bool {
    fn is_rustls_certificate(e: &(dyn std::error::Error + 'static)) -> bool {
        if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref::<rustls::Error>() {
            return true;
        }
        match e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => is_rustls_certificate(inner),
            None => false,
        }
    }
    let mut current = Some(error);
    while let Some(e) = current {
        if is_rustls_certificate(e) {
            return true;
        }
        current = e.source();
    }
    false
}

fn reason(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_string()
}

/// The server's base URL. A bare `host:port` means http.
pub fn parse_server(server: &str) -> Result<Url, CliError> {
    let server = server.trim();
    let with_scheme = if server.contains("://") { server.to_string() } else { format!("http://{server}") };
    let bad =
        |why: &str| CliError::Usage(format!("--server {server:?}: {why}; want a URL such as http://127.0.0.1:8080"));
    let url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http and https are spoken"));
    }
    if url.host_str().is_none_or(str::is_empty) || url.cannot_be_a_base() {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a query or fragment has no place here"));
    }
    Ok(url)
}

/// The innermost cause of an error: for a refused connection, "Connection refused (os error 111)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// An error and its causes, joined with ": ".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        current = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: &str) -> Connection {
        Connection::to(server)
    }

    #[test]
    fn servers_parse_with_or_without_a_scheme_and_paths_are_encoded() {
        let client = ApiClient::new(&args("127.0.0.1:8080")).expect("client");
        assert_eq!(client.url(&["v1", "jobs", "a b/c"]).as_str(), "http://127.0.0.1:8080/v1/jobs/a%20b%2Fc");
        let client = ApiClient::new(&args("https://launcher.example/api/")).expect("client");
        assert_eq!(client.url(&["v1", "templates"]).as_str(), "https://launcher.example/api/v1/templates");
        for bad in ["ftp://x", "http://", "http://x/?a=b", "mailto:me"] {
            assert!(matches!(parse_server(bad), Err(CliError::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn tokens_come_from_the_flag_or_a_file_and_must_fit_a_header() {
        let token = |t: &str| Connection { credential: Some(Credential::Token(t.into())), ..args("x:1") };
        let client = ApiClient::new(&token(" abc \n")).expect("client");
        assert_eq!(client.token.as_ref().and_then(|t| t.to_str().ok()), Some("Bearer abc"));
        assert!(ApiClient::new(&token("a\nb")).is_err());
        assert!(ApiClient::new(&token("  ")).is_err());
        let missing = Connection { credential: Some(Credential::File("/nonexistent/token".into())), ..args("x:1") };
        assert!(matches!(ApiClient::new(&missing), Err(CliError::Usage(m)) if m.contains("/nonexistent/token")));
    }

    #[test]
    fn a_ca_file_must_hold_a_pem_certificate() {
        let missing = Connection { tls: Tls::CaFile("/nonexistent/ca.pem".into()), ..args("https://x:1") };
        assert!(
            matches!(ApiClient::new(&missing), Err(CliError::Usage(m)) if m.contains("cannot read the CA file /nonexistent/ca.pem"))
        );
        let path = std::env::temp_dir().join(format!("kjl-not-a-ca-{}", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("write");
        let empty = Connection { tls: Tls::CaFile(path.clone()), ..args("https://x:1") };
        let result = ApiClient::new(&empty);
        let _ = std::fs::remove_file(&path);
        assert!(matches!(result, Err(CliError::Usage(m)) if m.contains("holds no PEM certificate")));
        assert!(ApiClient::new(&Connection { tls: Tls::Insecure, ..args("https://x:1") }).is_ok());
    }
}
