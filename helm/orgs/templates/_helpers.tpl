{{/*
Chart name, overridable with nameOverride. Truncated to 63 characters (DNS label).
*/}}
{{- define "orgs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name used as the prefix of every resource name.
*/}}
{{- define "orgs.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "orgs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "orgs.labels" -}}
helm.sh/chart: {{ include "orgs.chart" . }}
{{ include "orgs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: orgs
{{- end }}

{{/*
Selector labels of the server pods. Immutable on a Deployment: do not change.
*/}}
{{- define "orgs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orgs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/*
Labels of the migration Job and its pod. The component differs from the server's,
so the Service, PDB and NetworkPolicy never select the migration pod.
*/}}
{{- define "orgs.migrationLabels" -}}
helm.sh/chart: {{ include "orgs.chart" . }}
app.kubernetes.io/name: {{ include "orgs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: migration
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: orgs
{{- end }}

{{/*
Selector labels of the migration pod.
*/}}
{{- define "orgs.migrationSelectorLabels" -}}
app.kubernetes.io/name: {{ include "orgs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: migration
{{- end }}

{{/*
Name of the ServiceAccount the server pods run as.
*/}}
{{- define "orgs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "orgs.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the ServiceAccount the migration Job runs as: a hook-scoped account when the
chart creates accounts (the release's own account does not exist yet at pre-install),
otherwise the configured existing account.
*/}}
{{- define "orgs.migrationServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- printf "%s-migrate" (include "orgs.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "orgs.serviceAccountName" . }}
{{- end }}
{{- end }}

{{/*
Image reference: repository:tag, plus @digest when a digest is given.
The tag defaults to the chart's appVersion.
*/}}
{{- define "orgs.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding ORGS_AUTH_HS256_SECRET / ORGS_DATABASE_URL / the public key.
*/}}
{{- define "orgs.secretName" -}}
{{- default (include "orgs.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{/*
True ("true") when the auth algorithm verifies with a PEM public key.
*/}}
{{- define "orgs.usesPublicKey" -}}
{{- if and (has .Values.auth.algorithm (list "RS256" "ES256")) (not .Values.auth.jwksUrl) }}true{{ end }}
{{- end }}

{{/*
Where the TLS Secret is mounted (ORGS_TLS_CERT_FILE, ORGS_TLS_KEY_FILE,
ORGS_TLS_CLIENT_CA_FILE). The whole directory is mounted, never a subPath: the kubelet
updates a Secret volume in place only without subPath, and the server reloads the files.
*/}}
{{- define "orgs.tlsDir" -}}/etc/orgs/tls{{- end }}

{{/*
The port the probes ask: the plaintext health-only listener when the gRPC port speaks
TLS (Kubernetes gRPC probes do not), else the gRPC port.
*/}}
{{- define "orgs.probePort" -}}
{{- if .Values.tls.enabled }}{{ .Values.ports.health }}{{ else }}{{ .Values.ports.grpc }}{{ end }}
{{- end }}

{{/*
True ("true") when the migration Job runs: PostgreSQL mode with migration.enabled.
*/}}
{{- define "orgs.migrationJobEnabled" -}}
{{- if and (eq .Values.database.type "postgresql") .Values.migration.enabled }}true{{ end }}
{{- end }}

{{/*
Where the PEM public key is mounted (ORGS_AUTH_PUBLIC_KEY_FILE).
*/}}
{{- define "orgs.publicKeyDir" -}}/etc/orgs/auth{{- end }}
{{- define "orgs.publicKeyFile" -}}{{ include "orgs.publicKeyDir" . }}/public-key.pem{{- end }}

{{/*
terminationGracePeriodSeconds = preStop sleep + ORGS_SHUTDOWN_GRACE_PERIOD + margin.
The kubelet's countdown starts before preStop runs, so the sum must cover both the
sleep and the server's drain, with a margin for process exit.
*/}}
{{- define "orgs.terminationGracePeriodSeconds" -}}
{{- add (int .Values.shutdown.preStopSleepSeconds) (int .Values.shutdown.gracePeriodSeconds) (int .Values.shutdown.terminationMarginSeconds) }}
{{- end }}

{{/*
Combinations the values schema cannot express. Rendering fails with a message that
says what to change.
*/}}
{{- define "orgs.validate" -}}
{{- if eq .Values.database.type "sqlite" }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail (printf "database.type=sqlite supports exactly one replica, but replicaCount=%d. SQLite is a single file on a ReadWriteOnce volume and cannot be shared between pods: set replicaCount=1, or use database.type=postgresql to run several replicas." (int .Values.replicaCount)) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- fail "database.type=sqlite cannot be combined with autoscaling.enabled=true: SQLite supports exactly one replica. Disable autoscaling, or use database.type=postgresql." }}
{{- end }}
{{- end }}
{{- if and (eq .Values.database.type "postgresql") (not .Values.secret.existingSecret) (not .Values.database.postgresql.url) }}
{{- fail "database.type=postgresql needs a connection URL: set secret.existingSecret (a Secret with the key named by secret.keys.databaseUrl) or database.postgresql.url." }}
{{- end }}
{{- if and (include "orgs.usesPublicKey" .) (not .Values.secret.existingSecret) (not .Values.auth.publicKey) }}
{{- fail (printf "auth.algorithm=%s needs a PEM public key: set auth.publicKey (or secret.existingSecret with the key named by secret.keys.publicKey), or auth.jwksUrl." .Values.auth.algorithm) }}
{{- end }}
{{- if and .Values.auth.jwksUrl (eq .Values.auth.algorithm "HS256") }}
{{- fail "auth.jwksUrl holds RS256 or ES256 keys: set auth.algorithm to the algorithm of the identity provider's tokens." }}
{{- end }}
{{- if and .Values.auth.jwksUrl .Values.auth.publicKey }}
{{- fail "set either auth.publicKey or auth.jwksUrl, not both." }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled=true needs tls.secretName: the name of a kubernetes.io/tls Secret with tls.crt and tls.key (for example a cert-manager Certificate's spec.secretName)." }}
{{- end }}
{{- if and .Values.tls.clientAuth (not .Values.tls.enabled) }}
{{- fail "tls.clientAuth=true needs tls.enabled=true." }}
{{- end }}
{{- if and .Values.tls.enabled (eq (int .Values.ports.health) (int .Values.ports.grpc)) }}
{{- fail "ports.health must differ from ports.grpc: with TLS the probes use a separate plaintext port." }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not be greater than autoscaling.maxReplicas." }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled=true needs autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage." }}
{{- end }}
{{- if and .Values.console.ingress.enabled (not .Values.console.enabled) }}
{{- fail "console.ingress.enabled=true needs console.enabled=true: the Ingress routes to the console port." }}
{{- end }}
{{- if and .Values.console.enabled (or (eq (int .Values.ports.console) (int .Values.ports.grpc)) (eq (int .Values.ports.console) (int .Values.ports.metrics)) (and .Values.tls.enabled (eq (int .Values.ports.console) (int .Values.ports.health)))) }}
{{- fail "ports.console must differ from the gRPC, metrics and health ports." }}
{{- end }}
{{- end }}

{{/*
checkov suppressions for the workloads (Deployment, migration Job), as
"checkov.io/skipN: CHECK_ID=reason" annotations. checkov reports each as SKIPPED with
its reason. A skip is rendered only while its reason holds (e.g. the digest skips
disappear once image.digest is set). Reasons must not contain "=".
*/}}
{{- define "orgs.checkovSkips" -}}
{{- $skips := list }}
{{- $skips = append $skips "CKV_K8S_35=orgs reads ORGS_AUTH_HS256_SECRET and ORGS_DATABASE_URL only from its environment; they come from secretKeyRef and never appear in the pod spec" }}
{{- if not .Values.image.digest }}
{{- $skips = append $skips "CKV_K8S_43=image.digest is optional and unset here; the tag is pinned to a release version and production values set the digest" }}
{{- $skips = append $skips "CKV_K8S_15=the tag is pinned to an immutable release version so IfNotPresent pulls the same image; Always would make every restart depend on the registry" }}
{{- end }}
{{- if not .Values.networkPolicy.enabled }}
{{- $skips = append $skips "CKV2_K8S_6=networkPolicy.enabled is off by default because enforcement depends on the cluster network plugin; production values enable it" }}
{{- end }}
{{- range $index, $skip := $skips }}
checkov.io/skip{{ add1 $index }}: {{ $skip | quote }}
{{- end }}
{{- end }}
