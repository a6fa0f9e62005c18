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
{{- include "responder.noInlineSecrets" . }}
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
{{- range include "responder.extraSecrets" . | fromYamlArray }}
{{- $files = append $files (dict "key" .key "path" .path) }}
{{- end }}
{{- range include "responder.apiTokens" . | fromYamlArray }}
{{- $files = append $files (dict "key" .key "path" .path) }}
{{- end }}
{{- if .Values.nats.url }}
{{- $files = append $files (dict "key" (default "bus-signing-key" $k.busSigningKey) "path" "bus-signing-key") }}
{{- end }}
{{- if .Values.slack.enabled }}
{{- $files = append $files (dict "key" $k.slackBotToken "path" "slack-bot-token") }}
{{- $files = append $files (dict "key" $k.slackSigningSecret "path" "slack-signing-secret") }}
{{- if .Values.slack.socketMode }}
{{- $files = append $files (dict "key" $k.slackAppToken "path" "slack-app-token") }}
{{- end }}
{{- end }}
{{- $paths := dict }}
{{- range $files }}
{{- if hasKey $paths .path }}
{{- fail (printf "two secrets would be mounted at secrets/%s: rename a web user or API token (an '@' in a name is written '_at_' in its Secret key)" .path) }}
{{- end }}
{{- $_ := set $paths .path true }}
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
{{- $nats := dict "url" .Values.nats.url }}
{{- with .Values.nats.user }}
{{- $_ := set $nats "user" . }}
{{- end }}
{{- with (default dict .Values.nats.tls).serverName }}
{{- $_ := set $nats "tls" (dict "server_name" .) }}
{{- end }}
{{- $_ := set $cfg "nats" $nats }}
{{- if .Values.nats.url }}
{{- /* Every replica signs and verifies bus messages with the one key of the Secret. */}}
{{- $bus := default dict (get $cfg "bus") }}
{{- $_ := set $bus "signing_key_file" (printf "%s/bus-signing-key" $dir) }}
{{- $_ := set $cfg "bus" $bus }}
{{- end }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- /* HA: the stream survives the loss of one JetStream server of three (unless config.bus.replicas says otherwise). */}}
{{- $bus := default dict (get $cfg "bus") }}
{{- if not (hasKey $bus "replicas") }}
{{- $_ := set $bus "replicas" 3 }}
{{- end }}
{{- $_ := set $cfg "bus" $bus }}
{{- end }}
{{- $_ := set $cfg "database" (dict "url_file" (printf "%s/database-url" $dir)) }}
{{- $webhook := default dict (get $cfg "webhook") }}
{{- $_ := set $webhook "bearer_token_file" (printf "%s/webhook-token" $dir) }}
{{- $_ := set $cfg "webhook" $webhook }}
{{- $api := dict "token_file" (printf "%s/api-token" $dir) }}
{{- if or (and .Values.existingSecret .Values.secretKeys.apiReadToken) (and (not .Values.existingSecret) .Values.auth.apiReadToken) }}
{{- $_ := set $api "read_token_file" (printf "%s/api-read-token" $dir) }}
{{- end }}
{{- $tokens := list }}
{{- range include "responder.apiTokens" . | fromYamlArray }}
{{- $t := dict "name" .name "token_file" (printf "%s/%s" $dir .path) }}
{{- if .role }}
{{- $_ := set $t "role" .role }}
{{- end }}
{{- $tokens = append $tokens $t }}
{{- end }}
{{- if $tokens }}
{{- $_ := set $api "tokens" $tokens }}
{{- end }}
{{- $_ := set $cfg "api" $api }}
{{- $_ := set $cfg "rule_files" (list "rules/*.yml") }}
{{- include "responder.secretConfig" (dict "cfg" $cfg "dir" $dir "Values" .Values) }}
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

{{/*
The secrets the config references besides the chart's own: named secrets (secrets.NAME, for
secret("NAME") in rules and fence headers), the pager routing key, and the Patroni passwords and
DSNs of postgres.clusters. A list of {key, path, value, configKey}: key in the Secret, file under
/etc/responder/secrets, value for the chart's Secret (ignored with existingSecret).
*/}}
{{- define "responder.extraSecrets" -}}
{{- $out := list }}
{{- range $name, $v := .Values.secrets }}
{{- $out = append $out (dict "key" (printf "secret-%s" $name) "path" (printf "secret-%s" $name) "value" (toString $v) "what" (printf "secrets.%s" $name)) }}
{{- end }}
{{- if or .Values.pager.routingKey (and .Values.existingSecret .Values.secretKeys.pagerRoutingKey) }}
{{- $out = append $out (dict "key" (default "pager-routing-key" .Values.secretKeys.pagerRoutingKey) "path" "pager-routing-key" "value" .Values.pager.routingKey "what" "pager.routingKey") }}
{{- end }}
{{- if or .Values.teams.webhookURL (and .Values.existingSecret .Values.secretKeys.teamsWebhookURL) }}
{{- $out = append $out (dict "key" (default "teams-webhook-url" .Values.secretKeys.teamsWebhookURL) "path" "teams-webhook-url" "value" .Values.teams.webhookURL "what" "teams.webhookURL" "config" (list "handlers" "page" "teams" "url_file")) }}
{{- end }}
{{- if or .Values.email.smtpPassword (and .Values.existingSecret .Values.secretKeys.smtpPassword) }}
{{- $out = append $out (dict "key" (default "smtp-password" .Values.secretKeys.smtpPassword) "path" "smtp-password" "value" .Values.email.smtpPassword "what" "email.smtpPassword" "config" (list "handlers" "page" "email" "smtp" "password_file")) }}
{{- end }}
{{- range $name, $u := .Values.web.users }}
{{- if hasKey $u "passwordHash" }}
{{- $key := printf "web-user-%s-password-hash" (include "responder.keyName" $name) }}
{{- $out = append $out (dict "key" $key "path" $key "value" (toString (default "" $u.passwordHash)) "what" (printf "web.users.%s.passwordHash" $name) "config" (list "web" "users" $name "password_hash_file")) }}
{{- end }}
{{- end }}
{{- /* The bus credentials (nats.*): each in the Secret, referenced by the nats.*_file key of issue 18. */}}
{{- $tls := default dict .Values.nats.tls }}
{{- range list (list "password" "nats-password" "natsPassword" (list "nats" "password_file") .Values.nats.password) (list "token" "nats-token" "natsToken" (list "nats" "token_file") .Values.nats.token) (list "creds" "nats-creds" "natsCreds" (list "nats" "creds_file") .Values.nats.creds) (list "nkeySeed" "nats-nkey-seed" "natsNkeySeed" (list "nats" "nkey_seed_file") .Values.nats.nkeySeed) (list "tls.ca" "nats-tls-ca" "natsTLSCA" (list "nats" "tls" "ca_file") $tls.ca) (list "tls.cert" "nats-tls-cert" "natsTLSCert" (list "nats" "tls" "cert_file") $tls.cert) (list "tls.key" "nats-tls-key" "natsTLSKey" (list "nats" "tls" "key_file") $tls.key) }}
{{- $value := toString (default "" (index . 4)) }}
{{- $userKey := get $.Values.secretKeys (index . 2) }}
{{- if or $value (and $.Values.existingSecret $userKey) }}
{{- $out = append $out (dict "key" (default (index . 1) $userKey) "path" (index . 1) "value" $value "what" (printf "nats.%s" (index . 0)) "config" (index . 3)) }}
{{- end }}
{{- end }}
{{- range $cl, $c := .Values.postgres.clusters }}
{{- if hasKey $c "patroniPassword" }}
{{- $out = append $out (dict "key" (printf "pg-%s-patroni-password" $cl) "path" (printf "pg-%s-patroni-password" $cl) "value" (toString $c.patroniPassword) "what" (printf "postgres.clusters.%s.patroniPassword" $cl)) }}
{{- end }}
{{- if hasKey $c "primaryDSN" }}
{{- $out = append $out (dict "key" (printf "pg-%s-primary-dsn" $cl) "path" (printf "pg-%s-primary-dsn" $cl) "value" (toString $c.primaryDSN) "what" (printf "postgres.clusters.%s.primaryDSN" $cl)) }}
{{- end }}
{{- range $sb, $dsn := $c.standbyDSNs }}
{{- $out = append $out (dict "key" (printf "pg-%s-%s-dsn" $cl $sb) "path" (printf "pg-%s-%s-dsn" $cl $sb) "value" (toString $dsn) "what" (printf "postgres.clusters.%s.standbyDSNs.%s" $cl $sb)) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The named API tokens (apiTokens): a list of {name, role, token, key, path}: key in the Secret
(api-token-NAME), file under /etc/responder/secrets. An empty token is generated by secret.yaml.
*/}}
{{- define "responder.apiTokens" -}}
{{- $out := list }}
{{- range .Values.apiTokens }}
{{- $key := printf "api-token-%s" (include "responder.keyName" (toString .name)) }}
{{- $out = append $out (dict "name" (toString .name) "role" (toString (default "" .role)) "token" (toString (default "" .token)) "key" $key "path" $key) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
A principal's name (web user, API token: letters, digits and ._@-) as part of a Secret key, which
may not hold '@': it is written '_at_'.
*/}}
{{- define "responder.keyName" -}}
{{- replace "@" "_at_" . }}
{{- end }}

{{/* The path under /etc/responder where the SMTP CA bundle (email.smtpCA or smtpCAFrom) is mounted. */}}
{{- define "responder.smtpCAPath" -}}smtp-ca.pem{{- end }}

{{/*
responder.setPath sets .value at .path (a list of keys) in the map .m, creating the maps on the way.
*/}}
{{- define "responder.setPath" -}}
{{- $m := .m }}
{{- range initial .path }}
{{- $next := get $m . }}
{{- if not (kindIs "map" $next) }}
{{- $next = dict }}
{{- $_ := set $m . $next }}
{{- end }}
{{- $m = $next }}
{{- end }}
{{- $_ := set $m (last .path) .value }}
{{- end }}

{{/*
responder.secretConfig points the config at the mounted extra secrets: secrets.NAME.file,
handlers.page.webhook.routing_key_file, handlers.page.teams.url_file,
handlers.page.email.smtp.password_file (and ca_file), web.users.NAME.password_hash_file, and the
postgres clusters' patroni_password_file and dsn_file keys (a cluster and its standbys must be in
config.handlers.postgres.clusters).
*/}}
{{- define "responder.secretConfig" -}}
{{- $cfg := .cfg }}
{{- $dir := .dir }}
{{- range $name, $u := .Values.web.users }}
{{- $user := dict }}
{{- with $u.role }}
{{- $_ := set $user "role" . }}
{{- end }}
{{- include "responder.setPath" (dict "m" $cfg "path" (list "web" "users" $name) "value" $user) }}
{{- end }}
{{- range $s := include "responder.extraSecrets" (dict "Values" .Values) | fromYamlArray }}
{{- with $s.config }}
{{- include "responder.setPath" (dict "m" $cfg "path" . "value" (printf "%s/%s" $dir $s.path)) }}
{{- end }}
{{- end }}
{{- if or .Values.email.smtpCA .Values.email.smtpCAFrom }}
{{- include "responder.setPath" (dict "m" $cfg "path" (list "handlers" "page" "email" "smtp" "ca_file") "value" (printf "/etc/responder/%s" (include "responder.smtpCAPath" .))) }}
{{- end }}
{{- if .Values.secrets }}
{{- $named := default dict (get $cfg "secrets") }}
{{- range $name, $_ := .Values.secrets }}
{{- $_ := set $named $name (dict "file" (printf "%s/secret-%s" $dir $name)) }}
{{- end }}
{{- $_ := set $cfg "secrets" $named }}
{{- end }}
{{- if or .Values.pager.routingKey (and .Values.existingSecret .Values.secretKeys.pagerRoutingKey) }}
{{- $handlers := default dict (get $cfg "handlers") }}
{{- $page := default dict (get $handlers "page") }}
{{- $hook := default dict (get $page "webhook") }}
{{- $_ := set $hook "routing_key_file" (printf "%s/pager-routing-key" $dir) }}
{{- $_ := set $page "webhook" $hook }}
{{- $_ := set $handlers "page" $page }}
{{- $_ := set $cfg "handlers" $handlers }}
{{- end }}
{{- range $cl, $c := .Values.postgres.clusters }}
{{- $clusters := dig "handlers" "postgres" "clusters" dict $cfg }}
{{- if not (hasKey $clusters $cl) }}
{{- fail (printf "postgres.clusters.%s: no cluster %s in config.handlers.postgres.clusters" $cl $cl) }}
{{- end }}
{{- $cc := get $clusters $cl }}
{{- if hasKey $c "patroniPassword" }}
{{- $_ := set $cc "patroni_password_file" (printf "%s/pg-%s-patroni-password" $dir $cl) }}
{{- end }}
{{- if hasKey $c "primaryDSN" }}
{{- $primary := default dict (get $cc "primary") }}
{{- $_ := set $primary "dsn_file" (printf "%s/pg-%s-primary-dsn" $dir $cl) }}
{{- $_ := set $cc "primary" $primary }}
{{- end }}
{{- range $sb, $_ := $c.standbyDSNs }}
{{- $found := false }}
{{- range $cc.standbys }}
{{- if eq (toString .name) $sb }}
{{- $_ := set . "dsn_file" (printf "%s/pg-%s-%s-dsn" $dir $cl $sb) }}
{{- $found = true }}
{{- end }}
{{- end }}
{{- if not $found }}
{{- fail (printf "postgres.clusters.%s.standbyDSNs.%s: no standby %s in config.handlers.postgres.clusters.%s.standbys" $cl $sb $sb $cl) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
responder.noInlineSecrets refuses secrets written into .Values.config, which becomes the ConfigMap:
they belong in the Secret (secrets, pager, postgres.clusters values, or existingSecret).
*/}}
{{- define "responder.noInlineSecrets" -}}
{{- $cfg := default dict .Values.config }}
{{- if dig "handlers" "page" "webhook" "routing_key" "" $cfg }}
{{- fail "config.handlers.page.webhook.routing_key would land in the ConfigMap: set pager.routingKey (or secretKeys.pagerRoutingKey with existingSecret)" }}
{{- end }}
{{- if dig "handlers" "page" "teams" "url" "" $cfg }}
{{- fail "config.handlers.page.teams.url would land in the ConfigMap (the URL is the credential): set teams.webhookURL (or secretKeys.teamsWebhookURL with existingSecret)" }}
{{- end }}
{{- if dig "handlers" "page" "email" "smtp" "password" "" $cfg }}
{{- fail "config.handlers.page.email.smtp.password would land in the ConfigMap: set email.smtpPassword (or secretKeys.smtpPassword with existingSecret)" }}
{{- end }}
{{- range $k := list "bot_token" "signing_secret" "app_token" }}
{{- if dig "slack" $k "" $cfg }}
{{- fail (printf "config.slack.%s would land in the ConfigMap: set slack.* values (or existingSecret)" $k) }}
{{- end }}
{{- end }}
{{- range $cl, $c := dig "handlers" "postgres" "clusters" dict $cfg }}
{{- if $c.patroni_password }}
{{- fail (printf "config.handlers.postgres.clusters.%s.patroni_password would land in the ConfigMap: set postgres.clusters.%s.patroniPassword" $cl $cl) }}
{{- end }}
{{- if and $c.primary $c.primary.dsn }}
{{- fail (printf "config.handlers.postgres.clusters.%s.primary.dsn would land in the ConfigMap: set postgres.clusters.%s.primaryDSN" $cl $cl) }}
{{- end }}
{{- range $c.standbys }}
{{- if .dsn }}
{{- fail (printf "config.handlers.postgres.clusters.%s.standbys: the dsn of %s would land in the ConfigMap: set postgres.clusters.%s.standbyDSNs.%s" $cl (toString .name) $cl (toString .name)) }}
{{- end }}
{{- end }}
{{- range $h, $v := dig "fence" "headers" dict $c }}
{{- if not (regexMatch "\\{\\{-?\\s*secret\\(" (toString $v)) }}
{{- fail (printf "config.handlers.postgres.clusters.%s.fence.headers.%s would land in the ConfigMap: reference a named secret, e.g. 'Bearer {{ secret(\"fence\") }}' with secrets.fence" $cl $h) }}
{{- end }}
{{- end }}
{{- end }}
{{- include "responder.noInlineIdentity" . }}
{{- include "responder.checkEmail" . }}
{{- range include "responder.extraSecrets" . | fromYamlArray }}
{{- if and (not $.Values.existingSecret) (not .value) }}
{{- fail (printf "%s is empty: give the secret's value (or use existingSecret with the key %s)" .what .key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
responder.noInlineIdentity refuses console password hashes in config.web.users (they belong in
web.users, whose hashes go to the Secret), a user given in both places, a web.users hash that is
not a bcrypt hash (a password pasted by mistake), and apiTokens names given twice or reserved.
*/}}
{{- define "responder.noInlineIdentity" -}}
{{- $cfg := default dict .Values.config }}
{{- $users := default dict .Values.web.users }}
{{- range $name, $_ := $users }}
{{- if has $name (list "api" "api-read") }}
{{- fail (printf "web.users: the name %s is reserved for the legacy API tokens (auth.apiToken is recorded as api, auth.apiReadToken as api-read)" $name) }}
{{- end }}
{{- end }}
{{- range $name, $u := dig "web" "users" dict $cfg }}
{{- if and (kindIs "map" $u) (get $u "password_hash") }}
{{- fail (printf "config.web.users.%s.password_hash would land in the ConfigMap: set web.users.%s.passwordHash (stored in the Secret)" $name $name) }}
{{- end }}
{{- if hasKey $users $name }}
{{- fail (printf "the console user %s is in both web.users and config.web.users: give it once, in web.users" $name) }}
{{- end }}
{{- end }}
{{- if not .Values.existingSecret }}
{{- range $name, $u := $users }}
{{- $hash := toString (default "" $u.passwordHash) }}
{{- if and $hash (not (regexMatch "^\\$2[aby]\\$[0-9]{2}\\$[./A-Za-z0-9]{53}$" $hash)) }}
{{- fail (printf "web.users.%s.passwordHash is not a bcrypt hash: give what `htpasswd -nBC 10 %s` prints after the colon, never the password" $name $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- $names := dict }}
{{- range .Values.apiTokens }}
{{- $n := toString .name }}
{{- if has $n (list "api" "api-read") }}
{{- fail (printf "apiTokens: the name %s is reserved for the legacy tokens (auth.apiToken is recorded as api, auth.apiReadToken as api-read)" $n) }}
{{- end }}
{{- if hasKey $names $n }}
{{- fail (printf "apiTokens: the name %s is given twice" $n) }}
{{- end }}
{{- $_ := set $names $n true }}
{{- end }}
{{- end }}

{{/*
responder.checkEmail checks the email values: a password needs the SMTP user name it goes with, and
the CA bundle comes from one place.
*/}}
{{- define "responder.checkEmail" -}}
{{- $cfg := default dict .Values.config }}
{{- $e := .Values.email }}
{{- if and (or $e.smtpPassword (and .Values.existingSecret .Values.secretKeys.smtpPassword)) (not (dig "handlers" "page" "email" "smtp" "username" "" $cfg)) }}
{{- fail "email.smtpPassword needs config.handlers.page.email.smtp.username (AUTH PLAIN sends both), with the rest of config.handlers.page.email (smtp.host, from, to)" }}
{{- end }}
{{- $from := default dict $e.smtpCAFrom }}
{{- if and $e.smtpCA $from }}
{{- fail "set email.smtpCA (the PEM text) or email.smtpCAFrom (a ConfigMap or Secret key), not both" }}
{{- end }}
{{- if and $from (eq (empty $from.configMap) (empty $from.secret)) }}
{{- fail "email.smtpCAFrom: name either a configMap or a secret (and its key, default ca.crt)" }}
{{- end }}
{{- if and (or $e.smtpCA $from) (dig "handlers" "page" "email" "smtp" "ca_file" "" $cfg) }}
{{- fail "config.handlers.page.email.smtp.ca_file is set by the chart from email.smtpCA or email.smtpCAFrom: set one of them only" }}
{{- end }}
{{- if and $e.smtpCA .Values.existingConfigMap }}
{{- fail "email.smtpCA goes in the chart's ConfigMap, which existingConfigMap replaces: put the CA in your ConfigMap, or use email.smtpCAFrom" }}
{{- end }}
{{- end }}
