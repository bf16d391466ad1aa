{{/*
Names. Every object is named after the release (the fullname), so two releases, or this chart used
as a dependency of a worker application's chart, never collide. Cluster-scoped objects carry the
namespace too: the same release name may be installed in two namespaces.
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

{{/*
The `helm test` pod's selector labels: a name of its own, so that the launcher's Services,
PodDisruptionBudget and NetworkPolicy never select it.
*/}}
{{- define "kube-job-launcher.testSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" (include "kube-job-launcher.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}

{{/* The labels of the launcher's pods: the selector's, commonLabels, podLabels (which win). */}}
{{- define "kube-job-launcher.podLabels" -}}
{{- $labels := merge (dict) (include "kube-job-launcher.selectorLabels" . | fromYaml) }}
{{- $labels = merge $labels (.Values.podLabels | default dict) (.Values.commonLabels | default dict) }}
{{- toYaml $labels }}
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

{{/* --instance: instance, else the fullname. */}}
{{- define "kube-job-launcher.instance" -}}
{{- .Values.instance | default (include "kube-job-launcher.fullname" .) }}
{{- end }}

{{/* The Secret holding the API's bearer tokens (auth.mode=token-file). */}}
{{- define "kube-job-launcher.tokenSecretName" -}}
{{- if .Values.auth.existingSecret }}
{{- tpl .Values.auth.existingSecret . }}
{{- else }}
{{- printf "%s-tokens" (include "kube-job-launcher.fullname" .) }}
{{- end }}
{{- end }}

{{/* The key of the token Secret that holds the tokens. */}}
{{- define "kube-job-launcher.tokenSecretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}tokens{{ end }}
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

{{/* The TLS Secret of the API port (tls.enabled). */}}
{{- define "kube-job-launcher.tlsSecretName" -}}
{{- if .Values.tls.secretName }}
{{- tpl .Values.tls.secretName . }}
{{- else }}
{{- printf "%s-tls" (include "kube-job-launcher.fullname" .) }}
{{- end }}
{{- end }}

{{/* The API port's name in the container and the Service: https with TLS, else http. */}}
{{- define "kube-job-launcher.apiPortName" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/*
The chart's own template ConfigMap (templates.configMapName): null picks `<fullname>-templates`
when the chart creates it and the original launcher's `job-template-cm` when it does not; a
string goes through tpl ("" for none).
*/}}
{{- define "kube-job-launcher.templateConfigMapName" -}}
{{- $name := .Values.templates.configMapName }}
{{- if kindIs "invalid" $name }}
{{- if .Values.templates.create }}
{{- printf "%s-templates" (include "kube-job-launcher.fullname" .) }}
{{- else }}
{{- print "job-template-cm" }}
{{- end }}
{{- else }}
{{- tpl (toString $name) . }}
{{- end }}
{{- end }}

{{/*
The ConfigMaps the launcher reads templates from: the chart's own (see above) and
templates.extraConfigMaps (tpl too, so a parent chart can say "{{ .Release.Name }}-job-templates").
A comma-separated list.
*/}}
{{- define "kube-job-launcher.templateConfigMaps" -}}
{{- $names := list }}
{{- with include "kube-job-launcher.templateConfigMapName" . }}
{{- $names = append $names . }}
{{- end }}
{{- range .Values.templates.extraConfigMaps }}
{{- $names = append $names (tpl . $) }}
{{- end }}
{{- $names | uniq | join "," }}
{{- end }}

{{/*
The leader-election Lease's name: admission.leaderLease (tpl), else `<instance>-leader`: one leader
per instance, since the leader admits the instance's Jobs (releases sharing an instance share it).
*/}}
{{- define "kube-job-launcher.leaseName" -}}
{{- if .Values.admission.leaderLease }}
{{- tpl .Values.admission.leaderLease . }}
{{- else }}
{{- printf "%s-leader" (include "kube-job-launcher.instance" .) }}
{{- end }}
{{- end }}

{{/* Kubernetes auth: the TokenReview audience ("" for none; see auth.kubernetes.audience). */}}
{{- define "kube-job-launcher.authAudience" -}}
{{- $audience := .Values.auth.kubernetes.audience }}
{{- if kindIs "invalid" $audience }}
{{- include "kube-job-launcher.fullname" . }}
{{- else }}
{{- tpl (toString $audience) . }}
{{- end }}
{{- end }}

{{/*
Kubernetes auth: the virtual resource callers need verbs on. Rendered as flags whatever the
launcher's defaults, because the user ClusterRole must name the same ones. A removed (null) group
is the launcher's default; "" is the core group.
*/}}
{{- define "kube-job-launcher.authGroup" -}}
{{- $group := .Values.auth.kubernetes.group }}
{{- if kindIs "invalid" $group }}job-launcher.dev{{ else }}{{ $group }}{{ end }}
{{- end }}
{{- define "kube-job-launcher.authResource" -}}
{{- .Values.auth.kubernetes.resource | default "launches" }}
{{- end }}

{{/* The cluster-scoped ClusterRole callers are bound to (auth.mode=kubernetes). */}}
{{- define "kube-job-launcher.userClusterRoleName" -}}
{{- printf "%s-%s-user" (include "kube-job-launcher.fullname" .) .Release.Namespace }}
{{- end }}

{{/*
auth.mode=none: the Host names the API answers besides loopback ones: the API Service's names,
the ingress hosts and auth.allowedHosts. A comma-separated list.
*/}}
{{- define "kube-job-launcher.allowedHosts" -}}
{{- $svc := include "kube-job-launcher.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns (.Values.clusterDomain | trimSuffix ".")) }}
{{- if .Values.ingress.enabled }}
{{- range .Values.ingress.hosts }}
{{- with .host }}
{{- $hosts = append $hosts (tpl . $) }}
{{- end }}
{{- end }}
{{- end }}
{{- range .Values.auth.allowedHosts }}
{{- $hosts = append $hosts (tpl . $) }}
{{- end }}
{{- $hosts | uniq | join "," }}
{{- end }}

{{/*
Whether Helm's lookup reaches the cluster ("true" or ""). `helm template`, `helm lint`, a
client-side `--dry-run`, Argo CD and Flux render without a cluster: their lookup returns an empty
map for everything. A list always answers a non-empty map (kind, items) when the cluster is
there, even in a namespace that does not exist yet (`helm install --create-namespace` renders
before it creates the namespace) and for a deployer who may not read Namespace objects (they are
cluster-scoped); ServiceAccounts are what the chart itself creates, so the deployer may list them.
*/}}
{{- define "kube-job-launcher.lookupWorks" -}}
{{- if lookup "v1" "ServiceAccount" .Release.Namespace "" }}true{{ end }}
{{- end }}

{{/*
A duration (500ms, 10s, 1.5m, 1h, a compound such as 1m30s, or bare seconds) in milliseconds,
as the launcher reads it. "" for an empty value; fails on anything else.
*/}}
{{- define "kube-job-launcher.durationMs" -}}
{{- $what := index . 0 }}
{{- $text := index . 1 | toString | trim }}
{{- if $text }}
{{- if regexMatch "^[0-9]+(\\.[0-9]+)?$" $text }}
{{- mulf (float64 $text) 1000 | int64 }}
{{- else if regexMatch "^([0-9]+(\\.[0-9]+)?(ms|h|m|s))+$" $text }}
{{- $ms := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ms|h|m|s)" $text -1 }}
{{- $number := float64 (regexFind "^[0-9]+(\\.[0-9]+)?" .) }}
{{- $unit := regexFind "(ms|h|m|s)$" . }}
{{- $factor := get (dict "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0) $unit }}
{{- $ms = addf $ms (mulf $number $factor) }}
{{- end }}
{{- $ms | int64 }}
{{- else }}
{{- fail (printf "%s: %q is not a duration (500ms, 10s, 5m, 1h, 1m30s)" $what $text) }}
{{- end }}
{{- end }}
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

{{/* Where the token and TLS Secrets are mounted in the launcher's container. */}}
{{- define "kube-job-launcher.tokenDir" -}}/etc/kube-job-launcher/tokens{{- end }}
{{- define "kube-job-launcher.tlsDir" -}}/etc/kube-job-launcher/tls{{- end }}

{{/*
The container's args: `serve` (the image's entrypoint is the bare binary, so the same image runs
the CLI), then its flags.
*/}}
{{- define "kube-job-launcher.args" -}}
{{- $v := .Values }}
{{- $flags := list
  (list "listen" (printf "%s:%d" $v.listenAddress (int $v.ports.http)))
  (list "admin-listen" (printf "%s:%d" $v.listenAddress (int $v.ports.admin)))
  (list "log" $v.log.filter)
  (list "log-format" $v.log.format)
  (list "instance" (include "kube-job-launcher.instance" .))
  (list "adopt-unlabelled-jobs" $v.upgrade.adoptUnlabelledJobs)
  (list "template-configmap" (include "kube-job-launcher.templateConfigMaps" .))
  (list "default-template" $v.templates.default)
  (list "default-ttl-seconds" $v.launch.defaultTtlSeconds)
  (list "launch-timeout" $v.launch.timeout)
  (list "shutdown-delay" $v.shutdownDelay)
  (list "shutdown-grace" $v.shutdownGrace) }}
{{- if $v.tls.enabled }}
{{- $dir := include "kube-job-launcher.tlsDir" . }}
{{- $flags = concat $flags (list (list "tls-cert-file" (printf "%s/tls.crt" $dir)) (list "tls-key-file" (printf "%s/tls.key" $dir))) }}
{{- end }}
{{- if eq $v.auth.mode "token-file" }}
{{- $flags = append $flags (list "auth-token-file" (printf "%s/tokens" (include "kube-job-launcher.tokenDir" .))) }}
{{- else if eq $v.auth.mode "kubernetes" }}
{{- $k := $v.auth.kubernetes }}
{{- /* group: "" is the core group, so it is rendered too. */}}
{{- $flags = concat $flags (list
  (list "auth" "kubernetes")
  (list "auth-audience" (include "kube-job-launcher.authAudience" .))
  (list "auth-group" (include "kube-job-launcher.authGroup" .) true)
  (list "auth-resource" (include "kube-job-launcher.authResource" .))
  (list "auth-verb" $k.verb)
  (list "auth-cache-ttl" $k.cacheTtl)) }}
{{- else }}
{{- $flags = concat $flags (list (list "insecure-no-auth" true) (list "allowed-hosts" (include "kube-job-launcher.allowedHosts" .))) }}
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
  (list "leader-lease" (include "kube-job-launcher.leaseName" .))
  (list "leader-lease-duration" $v.admission.leaderLeaseDuration)
  (list "admission-resync" $v.admission.resync)) }}
{{- $args := list "serve" }}
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

{{/* The launcher's own default --shutdown-grace (hack/chart-test.sh checks it against `serve --help`). */}}
{{- define "kube-job-launcher.defaultShutdownGrace" -}}25s{{- end }}

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
{{- if and .Values.templates.create (not (include "kube-job-launcher.templateConfigMapName" .)) }}
{{- fail "templates.create needs a templates.configMapName (null picks <fullname>-templates)" }}
{{- end }}
{{- $instance := include "kube-job-launcher.instance" . }}
{{- if or (gt (len $instance) 63) (not (regexMatch "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" $instance)) }}
{{- fail (printf "instance %q must be a label value that can also name the Lease: at most 63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit" $instance) }}
{{- end }}
{{- /*
Shutdown: on SIGTERM readiness turns false, the listeners close after shutdownDelay, then in-flight
work has shutdownGrace. All of it (and a preStop sleep, which runs before the SIGTERM) must end
before the kubelet's SIGKILL at terminationGracePeriodSeconds, with 2s to spare for the exit.
*/}}
{{- $delayMs := include "kube-job-launcher.durationMs" (list "shutdownDelay" .Values.shutdownDelay) | default "0" | int64 }}
{{- $graceMs := include "kube-job-launcher.durationMs" (list "shutdownGrace" (.Values.shutdownGrace | default (include "kube-job-launcher.defaultShutdownGrace" .))) | int64 }}
{{- $preStopMs := mul (dig "preStop" "sleep" "seconds" 0 (.Values.lifecycle | default dict) | int64) 1000 }}
{{- $marginMs := 2000 }}
{{- $periodMs := mul (int64 .Values.terminationGracePeriodSeconds) 1000 }}
{{- if ge (add $preStopMs $delayMs $graceMs $marginMs) $periodMs }}
{{- fail (printf "shutdown does not fit in terminationGracePeriodSeconds (%ds): shutdownDelay (%s) + shutdownGrace (%s)%s + a 2s margin must stay below it; lower them or raise terminationGracePeriodSeconds" (int64 .Values.terminationGracePeriodSeconds) (.Values.shutdownDelay | default "0s") (.Values.shutdownGrace | default (printf "%s, the launcher's default" (include "kube-job-launcher.defaultShutdownGrace" .))) (ternary (printf " + the preStop sleep (%ds)" (div $preStopMs 1000)) "" (gt $preStopMs 0))) }}
{{- end }}
{{- if and (eq .Values.auth.mode "token-file") (not .Values.auth.existingSecret) (not .Values.auth.tokens) (not (include "kube-job-launcher.lookupWorks" .)) }}
{{- fail "auth.mode=token-file without auth.tokens or auth.existingSecret makes the chart generate a token and keep it across upgrades, which needs Helm's lookup, and lookup does not reach a cluster here (helm template, helm lint, a client-side --dry-run, Argo CD and Flux render without one; a generated token would change at every render). Give auth.existingSecret (e.g. made by External Secrets or Sealed Secrets), or auth.tokens, or install with helm install/upgrade against the cluster (or --dry-run=server)." }}
{{- end }}
{{- end }}
