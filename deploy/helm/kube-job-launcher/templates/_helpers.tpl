{{/*
Names. Every object is named after the release (the fullname), so two releases, or this chart used
as a dependency of a worker application's chart, never collide.
*/}}
{{- define "kube-job-launcher.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-job-launcher.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kube-job-launcher.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-job-launcher.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-job-launcher.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kube-job-launcher.labels" -}}
helm.sh/chart: {{ include "kube-job-launcher.chart" . }}
{{ include "kube-job-launcher.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: launcher
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "kube-job-launcher.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kube-job-launcher.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kube-job-launcher.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding the API's bearer tokens (auth.mode=token-file). */}}
{{- define "kube-job-launcher.tokenSecretName" -}}
{{- if .Values.auth.existingSecret }}
{{- tpl .Values.auth.existingSecret . }}
{{- else }}
{{- printf "%s-tokens" (include "kube-job-launcher.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Secret holding static AWS keys, when any are configured ("" when none). */}}
{{- define "kube-job-launcher.awsSecretName" -}}
{{- $c := .Values.aws.credentials }}
{{- if $c.existingSecret }}
{{- tpl $c.existingSecret . }}
{{- else if or $c.accessKeyId $c.secretAccessKey }}
{{- printf "%s-aws" (include "kube-job-launcher.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The ConfigMaps the launcher reads templates from: the chart's own (templates.configMapName, created
when templates.create, else expected to exist) and templates.extraConfigMaps. Names go through tpl,
so a parent chart can say "{{ .Release.Name }}-job-templates". A comma-separated list.
*/}}
{{- define "kube-job-launcher.templateConfigMaps" -}}
{{- $names := list }}
{{- with .Values.templates.configMapName }}
{{- $names = append $names (tpl . $) }}
{{- end }}
{{- range .Values.templates.extraConfigMaps }}
{{- $names = append $names (tpl . $) }}
{{- end }}
{{- $names | uniq | join "," }}
{{- end }}

{{/* The leader-election Lease's name (the launcher's default when not set). */}}
{{- define "kube-job-launcher.leaseName" -}}
{{- .Values.admission.leaderLease | default "kube-job-launcher" }}
{{- end }}

{{/*
One command-line flag, "--name=value", or "" when its value is not set (null or ""): a setting
left empty is not rendered, so the launcher's own default applies (as linkerd's chart does).
Whole numbers print as integers (YAML numbers reach templates as floats: 1000000, not 1e+06).
A boolean gives the bare flag when true. A third element true renders an empty value too.
*/}}
{{- define "kube-job-launcher.flag" -}}
{{- $name := index . 0 }}
{{- $value := index . 1 }}
{{- $keepEmpty := and (gt (len .) 2) (index . 2) }}
{{- if kindIs "bool" $value }}
{{- if $value }}--{{ $name }}{{ end }}
{{- else if and (not (kindIs "invalid" $value)) (or $keepEmpty (ne (toString $value) "")) }}
{{- if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) }}
{{- $value = int64 $value }}
{{- end }}
{{- printf "--%s=%v" $name $value }}
{{- end }}
{{- end }}

{{/* The container's args: the flags of `kube-job-launcher serve` (the image's entrypoint). */}}
{{- define "kube-job-launcher.args" -}}
{{- $v := .Values }}
{{- $flags := list
  (list "listen" (printf "%s:%d" $v.listenAddress (int $v.ports.http)))
  (list "admin-listen" (printf "%s:%d" $v.listenAddress (int $v.ports.admin)))
  (list "log" $v.log.filter)
  (list "log-format" $v.log.format)
  (list "template-configmap" (include "kube-job-launcher.templateConfigMaps" .))
  (list "default-template" $v.templates.default)
  (list "default-ttl-seconds" $v.launch.defaultTtlSeconds)
  (list "launch-timeout" $v.launch.timeout)
  (list "shutdown-grace" $v.shutdownGrace) }}
{{- if eq $v.auth.mode "token-file" }}
{{- $flags = append $flags (list "auth-token-file" "/etc/kube-job-launcher/tokens/tokens") }}
{{- else if eq $v.auth.mode "kubernetes" }}
{{- $k := $v.auth.kubernetes }}
{{- /* group: null is the launcher's default (batch); "" is the core group, so it counts as set. */}}
{{- $flags = concat $flags (list (list "auth" "kubernetes") (list "auth-verb" $k.verb) (list "auth-group" $k.group true) (list "auth-resource" $k.resource) (list "auth-cache-ttl" $k.cacheTtl)) }}
{{- else }}
{{- $flags = append $flags (list "insecure-no-auth" true) }}
{{- end }}
{{- with $v.sqs }}
{{- if .queueUrl }}
{{- $flags = concat $flags (list
  (list "sqs-queue-url" .queueUrl)
  (list "sqs-mode" .mode)
  (list "sqs-template" .template)
  (list "sqs-concurrency" .concurrency)
  (list "sqs-dead-letter-queue-url" .deadLetterQueueUrl)
  (list "sqs-max-receives" .maxReceives)
  (list "sqs-endpoint" .endpoint)
  (list "sqs-visibility-timeout" .visibilityTimeout)
  (list "sqs-wait-time" .waitTime)
  (list "sqs-poll-interval" .pollInterval)
  (list "sqs-max-jobs-per-poll" .maxJobsPerPoll)
  (list "sqs-start-grace" .startGrace)) }}
{{- end }}
{{- end }}
{{- $flags = concat $flags (list
  (list "max-active" $v.admission.maxActive)
  (list "max-queued" $v.admission.maxQueued)
  (list "leader-lease" $v.admission.leaderLease)
  (list "leader-lease-duration" $v.admission.leaderLeaseDuration)
  (list "admission-resync" $v.admission.resync)) }}
{{- $args := list }}
{{- range $flags }}
{{- with include "kube-job-launcher.flag" . }}
{{- $args = append $args . }}
{{- end }}
{{- end }}
{{- range $v.extraArgs }}
{{- $args = append $args (tpl (toString .) $) }}
{{- end }}
{{- toYaml $args }}
{{- end }}

{{/* Fails the render, with a clear message, for settings that cannot work together. */}}
{{- define "kube-job-launcher.validate" -}}
{{- $modes := list "token-file" "kubernetes" "none" }}
{{- if not (has .Values.auth.mode $modes) }}
{{- fail (printf "auth.mode must be one of %s, not %q" (join ", " $modes) (toString .Values.auth.mode)) }}
{{- end }}
{{- if and .Values.auth.existingSecret .Values.auth.tokens }}
{{- fail "auth.tokens and auth.existingSecret exclude each other: give the tokens in one place" }}
{{- end }}
{{- with .Values.sqs.mode }}
{{- if not (has . (list "dispatch" "scale")) }}
{{- fail (printf "sqs.mode must be dispatch or scale, not %q" .) }}
{{- end }}
{{- end }}
{{- $c := .Values.aws.credentials }}
{{- if and (not $c.existingSecret) (or $c.accessKeyId $c.secretAccessKey) (not (and $c.accessKeyId $c.secretAccessKey)) }}
{{- fail "aws.credentials: give both accessKeyId and secretAccessKey (or existingSecret), or neither" }}
{{- end }}
{{- if not (has .Values.resourceQuota.resource (list "count/pods" "pods")) }}
{{- fail (printf "resourceQuota.resource must be count/pods or pods, not %q" (toString .Values.resourceQuota.resource)) }}
{{- end }}
{{- if not (has .Values.log.format (list "text" "json")) }}
{{- fail (printf "log.format must be text or json, not %q" (toString .Values.log.format)) }}
{{- end }}
{{- if and .Values.templates.create (not .Values.templates.configMapName) }}
{{- fail "templates.create needs templates.configMapName" }}
{{- end }}
{{- end }}
