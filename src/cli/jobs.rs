//! `launch` (and `--wait`), `get`, `list`, `cancel` and `logs`.

use futures::StreamExt;
use jiff::Timestamp;
use reqwest::{Method, StatusCode, header::HeaderValue};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    CliError,
    args::{JobCommand, LaunchCommand, ListCommand, LogsCommand, OutputFormat},
    client::ApiClient,
    output::{self, Table, fields, stderr, stdout, when},
    session::Session,
};
use crate::{
    api::{JobState, JobView},
    keys,
    selector::Selector,
};

/// How often `launch --wait` and `logs -f` look again.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a Job that was just created may still be unknown to the replica answering (it may
/// not be the one that created it).
const NOT_YET_SEEN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// How long `--wait` rides out a launcher it cannot reach.
const UNREACHABLE_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

fn job_view(value: &Value) -> Result<JobView, CliError> {
    serde_json::from_value(value.clone())
        .map_err(|e| CliError::Unexpected(format!("the launcher's answer is not a JobView: {e}")))
}

pub async fn launch(command: LaunchCommand, session: &Session) -> Result<(), CliError> {
    let mut request = command.request.to_request(command.template.clone())?;
    let client = session.client()?;
    let mut post = client.request(Method::POST, client.url(&["v1", "jobs"]));
    // The key travels as the Idempotency-Key header; one a header cannot carry goes in the body.
    if let Some(key) = &request.idempotency_key
        && let Ok(header) = HeaderValue::from_str(key)
    {
        post = post.header("idempotency-key", header);
        request.idempotency_key = None;
    }
    let (status, value) = client.json(post.json(&request)).await?;
    let view = job_view(&value)?;
    let format = session.format();
    if status == StatusCode::OK {
        stderr(&format!("{}: an earlier request with this idempotency key created it; nothing new", view.name));
    }
    if !command.wait {
        return match format {
            OutputFormat::Table | OutputFormat::Wide | OutputFormat::Name => stdout(&format!("{}\n", view.name)),
            OutputFormat::Json | OutputFormat::Yaml => stdout(&output::encode(&value, format)?),
        };
    }
    let name = view.name.clone();
    let (last, value) = follow(&client, Some((view, value)), &name, command.timeout, format).await?;
    outcome(&last, &value, format)
}

/// One progress line: `name: pending -> running (pod x on kwok-node-1)`.
pub fn progress_line(from: Option<JobState>, view: &JobView) -> String {
    let states = match from {
        Some(from) => format!("{} -> {}", from.as_str(), view.state.as_str()),
        None => view.state.as_str().to_string(),
    };
    let detail = match (view.state, view.queue_position) {
        (JobState::Queued, Some(position)) => Some(format!("{position} ahead in the queue")),
        _ => pod_detail(view),
    };
    match detail {
        Some(detail) => output::cell(&format!("{}: {states} ({detail})", view.name)),
        None => output::cell(&format!("{}: {states}", view.name)),
    }
}

/// What the Job's newest pod is doing.
fn pod_detail(view: &JobView) -> Option<String> {
    let pod = view.pods.last()?;
    let mut text = match (pod.exit_code, &pod.node) {
        (Some(code), _) => format!("pod {} exited with code {code}", pod.name),
        (None, Some(node)) => format!("pod {} on {node}", pod.name),
        (None, None) => format!("pod {}", pod.name),
    };
    if let Some(reason) = &pod.reason {
        text.push_str(&format!(": {reason}"));
    }
    Some(text)
}

/// Follows the Job's event stream until it ends, printing a line on each change of state: to
/// standard output for people (a table), to standard error when standard output carries JSON,
/// YAML or the name. A dropped stream is opened again with the last event's id, so no end is
/// missed. Returns the Job's last view and its JSON.
async fn follow(
    client: &ApiClient,
    first: Option<(JobView, Value)>,
    name: &str,
    timeout: Option<std::time::Duration>,
    format: OutputFormat,
) -> Result<(JobView, Value), CliError> {
    let progress = |line: String| {
        if format.is_table() {
            // Best effort: a closed pipe must not hide the Job's outcome, which the exit code
            // still tells.
            let _ = stdout(&format!("{line}\n"));
        } else {
            stderr(&line);
        }
    };
    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    let mut last: Option<(JobView, Value)> = first;
    if let Some((view, _)) = &last {
        progress(progress_line(None, view));
    }
    let mut last_id: Option<u64> = None;
    let mut unreachable_since: Option<Instant> = None;
    let followed = async {
        loop {
            if last.as_ref().is_some_and(|(v, _)| v.state.is_finished()) {
                return Ok(());
            }
            let mut request = client.request_without_deadline(Method::GET, client.url(&["v1", "jobs", name, "events"]));
            if let Some(id) = last_id {
                request = request.header("last-event-id", id.to_string());
            }
            let response = match client.send(request).await {
                Ok(response) => response,
                Err(e) if e.status() == Some(404) && last.is_none() && started.elapsed() < NOT_YET_SEEN_GRACE => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue;
                }
                Err(e) if e.status() == Some(404) => {
                    let was = last.as_ref().map_or("unknown", |(v, _)| v.state.as_str());
                    return Err(CliError::Failed(format!(
                        "Job {name} is gone (cancelled or cleaned up); it was {was}"
                    )));
                }
                Err(e) if e.is_transient() => {
                    let since = *unreachable_since.get_or_insert_with(|| {
                        stderr(&format!("warning: {e}; trying again"));
                        Instant::now()
                    });
                    if since.elapsed() > UNREACHABLE_GRACE {
                        return Err(e);
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            unreachable_since = None;
            read_job_events(response, &mut last, &mut last_id, &progress).await?;
            // The stream ended: after the terminal state, or cut (a restart, a slow reader); then
            // it is opened again from the last event.
        }
    };
    let outcome = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, followed).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let was = last.as_ref().map_or("unknown", |(v, _)| v.state.as_str());
                return Err(CliError::GaveUp(format!(
                    "gave up waiting for Job {name} after {}; it is {was}",
                    humantime(timeout.unwrap_or_default())
                )));
            }
        },
        None => followed.await,
    };
    outcome?;
    last.ok_or_else(|| CliError::Unexpected(format!("no view of Job {name}")))
}

/// Reads one opened event stream to its end, printing a line on each change of state, and keeps
/// the last view and event id.
async fn read_job_events(
    response: reqwest::Response,
    last: &mut Option<(JobView, Value)>,
    last_id: &mut Option<u64>,
    progress: &impl Fn(String),
) -> Result<(), CliError> {
    let mut parser = super::sse::Parser::default();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        for event in parser.feed(&chunk) {
            if event.event != "job" {
                continue;
            }
            let value: Value = serde_json::from_str(&event.data)
                .map_err(|e| CliError::Unexpected(format!("an event that is not a JobView: {e}")))?;
            let view = job_view(&value)?;
            let from = last.as_ref().map(|(v, _)| v.state);
            if from != Some(view.state) {
                progress(progress_line(from, &view));
            }
            *last_id = event.id.or(*last_id);
            *last = Some((view, value));
        }
    }
    Ok(())
}

/// The exit of a followed Job: its result printed for people, success only when it succeeded.
fn outcome(last: &JobView, last_value: &Value, format: OutputFormat) -> Result<(), CliError> {
    match format {
        OutputFormat::Json | OutputFormat::Yaml => stdout(&output::encode(last_value, format)?)?,
        OutputFormat::Name => stdout(&format!("{}\n", last.name))?,
        OutputFormat::Table | OutputFormat::Wide => {
            if let Some(result) = &last.result {
                stdout(&format!("result: {}\n", output::cell(result)))?;
            }
        }
    }
    match last.state {
        JobState::Succeeded => Ok(()),
        state => Err(CliError::Failed(format!(
            "Job {} {}: {}",
            last.name,
            state.as_str(),
            last.message.clone().or_else(|| pod_detail(last)).unwrap_or_else(|| "no reason given".into())
        ))),
    }
}

/// `watch NAME`: follows the Job until it ends.
pub async fn watch(command: super::args::WatchCommand, session: &Session) -> Result<(), CliError> {
    let client = session.client()?;
    let format = session.format();
    let (last, value) = follow(&client, None, &command.name, command.timeout, format).await?;
    outcome(&last, &value, format)
}

fn humantime(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

pub async fn get(command: JobCommand, session: &Session) -> Result<(), CliError> {
    let client = session.client()?;
    let value = client.get_json(&["v1", "jobs", &command.name]).await?;
    match session.format() {
        OutputFormat::Table | OutputFormat::Wide => stdout(&describe(&job_view(&value)?, Timestamp::now())),
        OutputFormat::Name => stdout(&format!("{}\n", job_view(&value)?.name)),
        format => stdout(&output::encode(&value, format)?),
    }
}

/// One Job in detail, for people.
pub fn describe(view: &JobView, now: Timestamp) -> String {
    let state = match view.queue_position {
        Some(position) => format!("{} ({position} ahead in the queue)", view.state.as_str()),
        None => view.state.as_str().to_string(),
    };
    let labels: Vec<String> = view.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut text = fields(&[
        ("Name", view.name.clone()),
        ("Namespace", view.namespace.clone()),
        ("Template", view.template.clone()),
        ("Source", view.source.clone()),
        ("State", state),
        ("Priority", view.priority.to_string()),
        ("Idempotency key", view.idempotency_key.clone().unwrap_or_default()),
        ("Created", when(view.created_at, now)),
        ("Started", when(view.started_at, now)),
        ("Finished", when(view.finished_at, now)),
        ("Message", view.message.clone().unwrap_or_default()),
        ("Labels", labels.join(", ")),
    ]);
    if !view.pods.is_empty() {
        let mut pods = Table::new(&["POD", "PHASE", "NODE", "EXIT CODE", "REASON"]);
        for pod in &view.pods {
            pods.row(vec![
                pod.name.clone(),
                pod.phase.clone(),
                pod.node.clone().unwrap_or_default(),
                pod.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                pod.reason.clone().unwrap_or_default(),
            ]);
        }
        text.push_str(&pods.render_section("Pods"));
    }
    text
}

pub async fn list(command: ListCommand, session: &Session) -> Result<(), CliError> {
    let client = session.client()?;
    let selector = command.selectors.iter().cloned().fold(Selector::everything(), Selector::and);
    let mut items: Vec<Value> = Vec::new();
    let mut token = command.continue_token.clone();
    let next = loop {
        let mut url = client.url(&["v1", "jobs"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(template) = &command.template {
                query.append_pair("template", template);
            }
            if let Some(state) = &command.state {
                query.append_pair("state", state);
            }
            if !selector.is_empty() {
                query.append_pair("labelSelector", &selector.to_string());
            }
            if let Some(limit) = command.limit {
                query.append_pair("limit", &limit.to_string());
            }
            if let Some(token) = &token {
                query.append_pair("continue", token);
            }
        }
        let (_, page) = client.json(client.request(Method::GET, url)).await?;
        let page_items = page
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| CliError::Unexpected("the launcher's answer has no list of items".into()))?;
        items.extend(page_items.iter().cloned());
        let next = page.get("continue").and_then(Value::as_str).map(String::from);
        match next {
            // A token equal to the last would loop for ever.
            Some(next) if command.all && token.as_ref() != Some(&next) => token = Some(next),
            Some(_) if command.all => break None,
            next => break next,
        }
    };
    let format = session.format();
    if format.is_document() {
        let mut list = json!({ "items": items });
        if let Some(next) = &next {
            list["continue"] = Value::from(next.as_str());
        }
        return stdout(&output::encode(&list, format)?);
    }
    let views = items.iter().map(job_view).collect::<Result<Vec<_>, _>>()?;
    if format == OutputFormat::Name {
        stdout(&views.iter().map(|v| format!("{}\n", v.name)).collect::<String>())?;
    } else if views.is_empty() {
        stderr("No Jobs found.");
    } else {
        let wide = format == OutputFormat::Wide;
        stdout(&jobs_table(&views, Timestamp::now(), wide).render_with(session.headers()))?;
    }
    if let Some(next) = next {
        stderr(&format!("More Jobs: --all for every page, or --continue {next} for the next one."));
    }
    Ok(())
}

/// Jobs as rows, for people. `wide` adds the queue position, the caller, the newest pod's node
/// and the Job's own labels (not the launcher's).
pub fn jobs_table(views: &[JobView], now: Timestamp, wide: bool) -> Table {
    let mut headers = vec!["NAME", "TEMPLATE", "STATE", "SOURCE", "PRIORITY", "AGE"];
    if wide {
        headers.extend(["QUEUE", "REQUESTED BY", "NODE", "LABELS"]);
    }
    let mut table = Table::new(&headers);
    for v in views {
        let mut row = vec![
            v.name.clone(),
            v.template.clone(),
            v.state.as_str().to_string(),
            v.source.clone(),
            v.priority.to_string(),
            v.created_at.map(|t| output::age(t, now)).unwrap_or_default(),
        ];
        if wide {
            let labels: Vec<String> = v
                .labels
                .iter()
                .filter(|(k, _)| !k.starts_with(keys::PREFIX) && k.as_str() != keys::MANAGED_BY)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            row.extend([
                v.queue_position.map(|p| p.to_string()).unwrap_or_default(),
                v.requested_by.clone().unwrap_or_default(),
                v.pods.last().and_then(|p| p.node.clone()).unwrap_or_default(),
                labels.join(","),
            ]);
        }
        table.row(row);
    }
    table
}

pub async fn cancel(command: JobCommand, session: &Session) -> Result<(), CliError> {
    let client = session.client()?;
    let request = client.request(Method::DELETE, client.url(&["v1", "jobs", &command.name]));
    let (_, value) = client.json(request).await?;
    match session.format() {
        OutputFormat::Table | OutputFormat::Wide => {
            let view = job_view(&value)?;
            stdout(&format!("{}: cancelled (it was {})\n", view.name, view.state.as_str()))
        }
        OutputFormat::Name => stdout(&format!("{}\n", job_view(&value)?.name)),
        format => stdout(&output::encode(&value, format)?),
    }
}

pub async fn logs(command: LogsCommand, session: &Session) -> Result<(), CliError> {
    let client = session.client()?;
    let mut url = client.url(&["v1", "jobs", &command.name, "logs"]);
    {
        let mut query = url.query_pairs_mut();
        if command.follow {
            query.append_pair("follow", "true");
        }
        if let Some(container) = &command.container {
            query.append_pair("container", container);
        }
        if let Some(tail) = command.tail {
            query.append_pair("tailLines", &tail.to_string());
        }
    }
    let mut told = false;
    let response = loop {
        match client.send(client.request_without_deadline(Method::GET, url.clone())).await {
            Ok(response) => break response,
            // Following a Job that has no pod yet, or whose container has not started: wait.
            Err(CliError::Problem { status, detail, .. })
                if command.follow && (status == 409 || (status == 400 && detail.contains("waiting to start"))) =>
            {
                if !told {
                    stderr(&format!("waiting for Job {}: {detail}", command.name));
                    told = true;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Err(e) => return Err(e),
        }
    };
    let body = response.bytes_stream().map(|chunk| chunk.map_err(|e| client.transport_error(&e)));
    copy_log(body, &mut std::io::stdout()).await
}

/// Writes a log's chunks to `out` byte for byte as they come, as `kubectl logs` does: a character
/// split across two chunks comes out whole once its second half is written (decoding each chunk
/// on its own would turn both halves into U+FFFD), and a log that is not UTF-8 comes out as the
/// container wrote it.
async fn copy_log<S>(mut chunks: S, out: &mut impl std::io::Write) -> Result<(), CliError>
where
    S: futures::Stream<Item = Result<bytes::Bytes, CliError>> + Unpin,
{
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        out.write_all(&chunk).and_then(|()| out.flush()).map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::BrokenPipe,
            _ => CliError::Unexpected(format!("cannot write to standard output: {e}")),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(value: Value) -> JobView {
        serde_json::from_value(value).expect("a JobView")
    }

    fn sample() -> Value {
        json!({
            "name": "fake-abc", "namespace": "ns", "template": "fake", "source": "cli", "state": "running",
            "priority": 0, "idempotencyKey": null, "createdAt": "1970-01-12T13:45:00Z", "startedAt": null,
            "finishedAt": null, "message": null, "labels": {"team": "odd"},
            "pods": [{"name": "fake-abc-x", "phase": "Running", "node": "kwok-node-1", "exitCode": null, "reason": null}]
        })
    }

    #[tokio::test]
    async fn a_log_character_split_across_chunks_comes_out_whole() {
        // "é" is 0xC3 0xA9 and "✓" 0xE2 0x9C 0x93: each split between two chunks.
        let text = "café ✓ done\n";
        let bytes = text.as_bytes();
        let (e, check) = (text.find('é').unwrap_or_default(), text.find('✓').unwrap_or_default());
        let cuts = [0, e + 1, check + 1, check + 2, bytes.len()];
        let chunks: Vec<Result<bytes::Bytes, CliError>> =
            cuts.windows(2).map(|w| Ok(bytes::Bytes::copy_from_slice(&bytes[w[0]..w[1]]))).collect();
        assert_eq!(chunks.len(), 4);
        let mut out = Vec::new();
        copy_log(futures::stream::iter(chunks), &mut out).await.expect("copied");
        assert_eq!(String::from_utf8(out).expect("UTF-8"), text);

        // Bytes that are not UTF-8 pass as they are.
        let mut out = Vec::new();
        let raw = vec![Ok(bytes::Bytes::from_static(b"\xff\xfe ok\n"))];
        copy_log(futures::stream::iter(raw), &mut out).await.expect("copied");
        assert_eq!(out, b"\xff\xfe ok\n");
    }

    #[test]
    fn progress_lines_name_the_change_and_the_pod() {
        let running = view(sample());
        assert_eq!(
            progress_line(Some(JobState::Pending), &running),
            "fake-abc: pending -> running (pod fake-abc-x on kwok-node-1)"
        );
        let mut failed = sample();
        failed["state"] = json!("failed");
        failed["pods"][0]["exitCode"] = json!(3);
        failed["pods"][0]["reason"] = json!("Error");
        assert_eq!(
            progress_line(Some(JobState::Running), &view(failed)),
            "fake-abc: running -> failed (pod fake-abc-x exited with code 3: Error)"
        );
        let mut queued = sample();
        queued["state"] = json!("queued");
        queued["pods"] = json!([]);
        queued["queuePosition"] = json!(2);
        assert_eq!(progress_line(None, &view(queued)), "fake-abc: queued (2 ahead in the queue)");
    }

    #[test]
    fn a_job_is_described_and_listed_for_people() {
        let now = Timestamp::from_second(1_000_000).expect("ts");
        let text = describe(&view(sample()), now);
        assert!(text.starts_with("Name:       fake-abc\n"), "{text}");
        assert!(text.contains("Created:    1970-01-12 13:45:00Z (100s ago)\n"), "{text}");
        assert!(text.contains("Labels:     team=odd\n"), "{text}");
        assert!(!text.contains("Started"), "{text}");
        assert!(text.contains("  POD          PHASE     NODE          EXIT CODE   REASON\n"), "{text}");
        let table = jobs_table(&[view(sample())], now, false).render();
        assert_eq!(
            table,
            "NAME       TEMPLATE   STATE     SOURCE   PRIORITY   AGE\nfake-abc   fake       running   cli      0          100s\n"
        );
        let mut queued = sample();
        queued["queuePosition"] = json!(2);
        queued["requestedBy"] = json!("ci-bot");
        queued["labels"]["job-launcher.dev/template"] = json!("fake");
        queued["labels"]["app.kubernetes.io/managed-by"] = json!("kube-job-launcher");
        let wide = jobs_table(&[view(queued)], now, true).render_with(false);
        assert_eq!(wide, "fake-abc   fake   running   cli   0   100s   2   ci-bot   kwok-node-1   team=odd\n");
    }
}
