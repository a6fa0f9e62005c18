{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "responder.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, prefixed with the chart name unless it contains it. */}}
{{- define "responder.fullname" -}}
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

{{- define "responder.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels on every object. */}}
{{- define "responder.labels" -}}
helm.sh/chart: {{ include "responder.chart" . }}
{{ include "responder.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: responder
{{- end }}

{{/* Labels the Service, StatefulSet, PDB and NetworkPolicy select pods by. */}}
{{- define "responder.selectorLabels" -}}
app.kubernetes.io/name: {{ include "responder.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "responder.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "responder.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding responder's secrets. */}}
{{- define "responder.secretName" -}}
{{- default (include "responder.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "responder.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Whether the JetStream storage is a PersistentVolumeClaim. */}}
{{- define "responder.persistent" -}}
{{- if and .Values.persistence.enabled (not .Values.nats.url) }}true{{ end }}
{{- end }}

{{/* Install-time checks values.schema.json cannot phrase clearly. */}}
{{- define "responder.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.nats.url) }}
{{- fail "replicaCount > 1 requires nats.url: replicas share one external JetStream cluster (the embedded JetStream serves one replica only)" }}
{{- end }}
{{- if and (not .Values.existingSecret) (not .Values.database.url) }}
{{- fail "a database is required: set database.url (stored in the chart's Secret) or existingSecret (a Secret with the key secretKeys.databaseURL)" }}
{{- end }}
{{- if and .Values.slack.enabled (not .Values.existingSecret) (or (not .Values.slack.botToken) (not .Values.slack.signingSecret)) }}
{{- fail "slack.enabled requires slack.botToken and slack.signingSecret (or existingSecret)" }}
{{- end }}
{{- if and .Values.slack.enabled .Values.slack.socketMode (not .Values.existingSecret) (not .Values.slack.appToken) }}
{{- fail "slack.socketMode requires slack.appToken (or existingSecret)" }}
{{- end }}
{{- end }}

{{/*
The secret files responder reads: a list of {key, path, configKey} where key is the Secret key,
path the file name under /etc/responder/secrets.
*/}}
{{- define "responder.secretFiles" -}}
{{- $k := .Values.secretKeys }}
{{- $files := list (dict "key" $k.databaseURL "path" "database-url") (dict "key" $k.webhookToken "path" "webhook-token") (dict "key" $k.apiToken "path" "api-token") }}
{{- if or (and .Values.existingSecret $k.apiReadToken) (and (not .Values.existingSecret) .Values.auth.apiReadToken) }}
{{- $files = append $files (dict "key" (default "api-read-token" $k.apiReadToken) "path" "api-read-token") }}
{{- end }}
{{- if .Values.slack.enabled }}
{{- $files = append $files (dict "key" $k.slackBotToken "path" "slack-bot-token") }}
{{- $files = append $files (dict "key" $k.slackSigningSecret "path" "slack-signing-secret") }}
{{- if .Values.slack.socketMode }}
{{- $files = append $files (dict "key" $k.slackAppToken "path" "slack-app-token") }}
{{- end }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/*
responder.yml: .Values.config plus the keys the chart manages. Secrets are *_file references to
the mounted Secret, never values.
*/}}
{{- define "responder.config" -}}
{{- $cfg := deepCopy (default dict .Values.config) }}
{{- $dir := "/etc/responder/secrets" }}
{{- $_ := set $cfg "nats" (dict "url" .Values.nats.url) }}
{{- $_ := set $cfg "database" (dict "url_file" (printf "%s/database-url" $dir)) }}
{{- $webhook := default dict (get $cfg "webhook") }}
{{- $_ := set $webhook "bearer_token_file" (printf "%s/webhook-token" $dir) }}
{{- $_ := set $cfg "webhook" $webhook }}
{{- $api := dict "token_file" (printf "%s/api-token" $dir) }}
{{- if or (and .Values.existingSecret .Values.secretKeys.apiReadToken) (and (not .Values.existingSecret) .Values.auth.apiReadToken) }}
{{- $_ := set $api "read_token_file" (printf "%s/api-read-token" $dir) }}
{{- end }}
{{- $_ := set $cfg "api" $api }}
{{- $_ := set $cfg "rule_files" (list "rules/*.yml") }}
{{- if .Values.kubernetes.namespaces }}
{{- $handlers := default dict (get $cfg "handlers") }}
{{- $k8s := default dict (get $handlers "kubernetes") }}
{{- $_ := set $k8s "namespaces" .Values.kubernetes.namespaces }}
{{- $_ := set $handlers "kubernetes" $k8s }}
{{- $_ := set $cfg "handlers" $handlers }}
{{- end }}
{{- if .Values.slack.enabled }}
{{- $slack := default dict (get $cfg "slack") }}
{{- $_ := set $slack "bot_token_file" (printf "%s/slack-bot-token" $dir) }}
{{- $_ := set $slack "signing_secret_file" (printf "%s/slack-signing-secret" $dir) }}
{{- $_ := set $slack "socket_mode" .Values.slack.socketMode }}
{{- if .Values.slack.socketMode }}
{{- $_ := set $slack "app_token_file" (printf "%s/slack-app-token" $dir) }}
{{- end }}
{{- $_ := set $cfg "slack" $slack }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The rule files: a dict of file name → content, from .Values.rules (a map is rendered with toYaml,
a string is kept as is) and the chart's rules/ directory (.Files.Get). Never passed through tpl:
responder's own `{{ expr }}` templates reach it intact.
*/}}
{{- define "responder.ruleFiles" -}}
{{- $files := dict }}
{{- range $path, $_ := .Files.Glob "rules/*.{yml,yaml}" }}
{{- $_ := set $files (base $path) ($.Files.Get $path) }}
{{- end }}
{{- range $name, $content := .Values.rules }}
{{- if kindIs "string" $content }}
{{- $_ := set $files $name $content }}
{{- else }}
{{- $_ := set $files $name (toYaml $content) }}
{{- end }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/*
The RBAC rules the k8s.* handlers need: exactly what `responder rbac` prints (handlers/k8s
RBACRules over the handlers' Specs). deploy/helm's TestRBACMatchesResponderRBAC diffs them.
*/}}
{{- define "responder.rbacRules" -}}
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
- apiGroups: [""]
  resources: [events]
  verbs: [create, list, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get]
- apiGroups: [apps]
  resources: [daemonsets, deployments, statefulsets]
  verbs: [get, patch]
- apiGroups: [apps]
  resources: [deployments/scale, statefulsets/scale]
  verbs: [get, update]
{{- end }}
