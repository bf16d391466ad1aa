//! `templates` and `render`.

use std::io::Read;

use reqwest::Method;
use serde_json::Value;

use super::{
    CliError,
    args::{OutputFormat, RenderCommand, TemplatesCommand},
    output::{self, Table, fields, stderr, stdout},
    render::{OfflineTemplate, render_offline},
    session::Session,
};
use crate::api::{TemplateView, Validity};

fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, CliError> {
    serde_json::from_value(value).map_err(|e| CliError::Unexpected(format!("the launcher's answer is not {what}: {e}")))
}

pub async fn templates(command: TemplatesCommand, session: &Session) -> Result<(), CliError> {
    let client = session.client()?;
    let format = session.format();
    match &command.name {
        Some(name) => {
            let value = client.get_json(&["v1", "templates", name]).await?;
            match format {
                OutputFormat::Table | OutputFormat::Wide => stdout(&describe(&decode(value, "a template")?)),
                OutputFormat::Name => stdout(&format!("{}\n", decode::<TemplateView>(value, "a template")?.name)),
                format => stdout(&output::encode(&value, format)?),
            }
        }
        None => {
            let value = client.get_json(&["v1", "templates"]).await?;
            if format.is_document() {
                return stdout(&output::encode(&value, format)?);
            }
            let statuses: Vec<TemplateView> = decode(value, "a list of templates")?;
            if format == OutputFormat::Name {
                return stdout(&statuses.iter().map(|s| format!("{}\n", s.name)).collect::<String>());
            }
            if statuses.is_empty() {
                stderr("No templates found.");
                return Ok(());
            }
            stdout(&templates_table(&statuses, format == OutputFormat::Wide, session.headers()))
        }
    }
}

fn validity(status: &TemplateView) -> &'static str {
    match status.status {
        Validity::Valid => "valid",
        Validity::Invalid => "invalid",
    }
}

/// The templates as rows, then (with the header) the error of each invalid one. Parameters:
/// `name*` is required, `name=value` has a default. `wide` adds the env containers, the cap and
/// the number of warnings.
pub fn templates_table(statuses: &[TemplateView], wide: bool, headers: bool) -> String {
    let mut columns = vec!["NAME", "STATUS", "SERVING", "PARAMETERS", "SOURCE"];
    if wide {
        columns.extend(["ENV CONTAINERS", "MAX ACTIVE", "WARNINGS"]);
    }
    let mut table = Table::new(&columns);
    for s in statuses {
        let params: Vec<String> = s
            .parameters
            .iter()
            .map(|p| match (&p.default, p.required) {
                (_, true) => format!("{}*", p.name),
                (Some(default), false) => format!("{}={default}", p.name),
                (None, false) => p.name.clone(),
            })
            .collect();
        let mut row = vec![
            s.name.clone(),
            validity(s).to_string(),
            if s.serving { "yes" } else { "no" }.to_string(),
            params.join(", "),
            format!("{}/{}", s.source.config_map, s.source.key),
        ];
        if wide {
            row.extend([
                s.env_containers.join(","),
                s.max_active.map(|m| m.to_string()).unwrap_or_default(),
                s.warnings.len().to_string(),
            ]);
        }
        table.row(row);
    }
    let mut text = table.render_with(headers);
    if !headers {
        return text;
    }
    for s in statuses {
        if let Some(error) = &s.error {
            text.push_str(&output::cell(&format!("{}: {error}", s.name)));
            text.push('\n');
        }
    }
    text
}

/// One template in detail, for people.
pub fn describe(s: &TemplateView) -> String {
    let mut text = fields(&[
        ("Name", s.name.clone()),
        ("Status", validity(s).to_string()),
        ("Error", s.error.clone().unwrap_or_default()),
        ("Serving", if s.serving { "yes" } else { "no (it never had a valid version)" }.to_string()),
        ("Source", format!("ConfigMap {}, key {}", s.source.config_map, s.source.key)),
        ("Env containers", s.env_containers.join(", ")),
        ("Max active", s.max_active.map(|m| m.to_string()).unwrap_or_default()),
    ]);
    if s.parameters.is_empty() {
        text.push_str("Parameters: none\n");
    } else {
        let mut table = Table::new(&["NAME", "REQUIRED", "DEFAULT", "PATTERN", "DESCRIPTION"]);
        for p in &s.parameters {
            table.row(vec![
                p.name.clone(),
                if p.required { "yes" } else { "no" }.to_string(),
                p.default.clone().unwrap_or_default(),
                p.pattern.clone().unwrap_or_default(),
                p.description.clone().unwrap_or_default(),
            ]);
        }
        text.push_str(&table.render_section("Parameters"));
    }
    text
}

pub async fn render(command: RenderCommand, session: &Session) -> Result<(), CliError> {
    let format = session.format();
    let manifest = match (&command.file, &command.template) {
        (Some(path), _) => {
            let request = command.request.to_request(None)?;
            let (text, key) = if path.as_os_str() == "-" {
                let name = command.name.as_deref().ok_or_else(|| {
                    CliError::Usage("a template read from standard input needs its name: --name".into())
                })?;
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| CliError::Usage(format!("cannot read the template from standard input: {e}")))?;
                (text, format!("{name}.yaml"))
            } else {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
                let key = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                (text, key)
            };
            let template = OfflineTemplate {
                text: &text,
                key: &key,
                name: command.name.as_deref(),
                namespace: &command.namespace,
                instance: &command.instance,
                caller: &command.caller,
                default_ttl_seconds: command.default_ttl_seconds,
            };
            render_offline(&template, &request).map_err(|e| CliError::Failed(e.to_string()))?
        }
        (None, Some(name)) => {
            let client = session.client()?;
            let request = command.request.to_request(None)?;
            let post = client.request(Method::POST, client.url(&["v1", "templates", name, "render"])).json(&request);
            // A 400 is the request not fitting the template: exit 1, as offline.
            client
                .json(post)
                .await
                .map_err(|e| match e {
                    CliError::Problem { status: 400, .. } => CliError::Failed(e.to_string()),
                    e => e,
                })?
                .1
        }
        (None, None) => return Err(CliError::Usage("render needs --file or --template".into())),
    };
    match format {
        OutputFormat::Name => {
            let name = manifest.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            stdout(&format!("{name}\n"))
        }
        format => stdout(&output::encode(&manifest, format)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses() -> Vec<TemplateView> {
        serde_json::from_value(serde_json::json!([
            {"name": "greeting", "status": "valid", "error": null, "serving": true, "envContainers": ["greeter"],
             "maxActive": null, "source": {"configMap": "job-template-cm", "key": "greeting.yaml"},
             "parameters": [
                {"name": "name", "required": true, "default": null, "pattern": "[A-Z]+", "description": "who"},
                {"name": "times", "required": false, "default": "1", "pattern": null, "description": null}]},
            {"name": "broken", "status": "invalid", "error": "the Job has no containers", "serving": false,
             "envContainers": [], "maxActive": 2, "parameters": [],
             "source": {"configMap": "job-template-cm", "key": "broken.yaml"}}
        ]))
        .expect("statuses")
    }

    #[test]
    fn templates_show_as_a_table_with_their_errors() {
        assert_eq!(
            templates_table(&statuses(), true, false),
            "greeting   valid     yes   name*, times=1   job-template-cm/greeting.yaml   greeter   -   0\n\
             broken     invalid   no    -                job-template-cm/broken.yaml     -         2   0\n"
        );
        assert_eq!(
            templates_table(&statuses(), false, true),
            "NAME       STATUS    SERVING   PARAMETERS       SOURCE\n\
             greeting   valid     yes       name*, times=1   job-template-cm/greeting.yaml\n\
             broken     invalid   no        -                job-template-cm/broken.yaml\n\
             broken: the Job has no containers\n"
        );
    }

    #[test]
    fn one_template_shows_its_parameters() {
        let list = statuses();
        let text = describe(&list[0]);
        assert!(text.contains("Source:          ConfigMap job-template-cm, key greeting.yaml\n"), "{text}");
        assert!(text.contains("  name    yes        -         [A-Z]+    who\n"), "{text}");
        let text = describe(&list[1]);
        assert!(text.contains("Error:       the Job has no containers\n"), "{text}");
        assert!(text.contains("Max active:  2\n") && text.contains("Parameters: none\n"), "{text}");
    }
}
