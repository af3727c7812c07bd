{{/*
Helpers of the Tempering chart. tests/deploy renders this chart with a small Go-template
renderer (no helm binary on the build machines): keep to the constructs it knows (if/else,
with, define/include, pipelines with quote, default, required, toYaml, nindent, printf, trunc,
trimSuffix, contains, sha256sum); anything else fails the tests loudly.
*/}}

{{- define "tempering.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tempering.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "tempering.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "tempering.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tempering.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ include "tempering.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tempering.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tempering.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The Secret with TEMPERING_BROKER_URL and TEMPERING_DATABASE_URL. */}}
{{- define "tempering.connectionsSecret" -}}
{{- .Values.connections.existingSecret | default (printf "%s-connections" (include "tempering.fullname" .)) -}}
{{- end -}}

{{- define "tempering.redisHost" -}}
{{- printf "%s-redis" (include "tempering.fullname" .) -}}
{{- end -}}

{{- define "tempering.postgresqlHost" -}}
{{- printf "%s-postgresql" (include "tempering.fullname" .) -}}
{{- end -}}

{{- define "tempering.artifactsClaim" -}}
{{- .Values.artifacts.existingClaim | default (printf "%s-artifacts" (include "tempering.fullname" .)) -}}
{{- end -}}

{{/* Pod-level security context shared by the server and the workers (uid of the images). */}}
{{- define "tempering.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tempering.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Where the server and the workers get their settings: the same ConfigMap and Secret. */}}
{{- define "tempering.settingsEnvFrom" -}}
- configMapRef:
    name: {{ include "tempering.fullname" . }}-settings
- secretRef:
    name: {{ include "tempering.connectionsSecret" . }}
{{- end -}}

{{/* Restart pods when the settings change (they are read once, at start). */}}
{{- define "tempering.settingsChecksum" -}}
{{- printf "%s|%s|%s|%s|%s" (toYaml .Values.settings) (toYaml .Values.artifacts) (toYaml .Values.redis) (toYaml .Values.postgresql) (include "tempering.connectionsSecret" .) | sha256sum -}}
{{- end -}}

{{/* The chart refuses what the server refuses: no API keys or no TLS without an explicit waiver. */}}
{{- define "tempering.checkExposure" -}}
{{- if not (or .Values.auth.existingSecret .Values.auth.insecureOpen) -}}
{{- fail "auth: set auth.existingSecret (a Secret with the API key file) or, for a trial on a private network, auth.insecureOpen=true" -}}
{{- end -}}
{{- if not (or .Values.tls.existingSecret .Values.tls.allowInsecureRemote) -}}
{{- fail "tls: set tls.existingSecret (a kubernetes.io/tls Secret) or, behind a mesh or proxy that terminates TLS, tls.allowInsecureRemote=true" -}}
{{- end -}}
{{- if and .Values.tls.clientCASecret (not .Values.tls.existingSecret) -}}
{{- fail "tls.clientCASecret (mutual TLS) needs tls.existingSecret" -}}
{{- end -}}
{{- if and .Values.tls.clientCASecret (not .Values.tls.probe.clientSecret) -}}
{{- fail "mutual TLS: the probes need a client certificate, set tls.probe.clientSecret" -}}
{{- end -}}
{{- end -}}

{{/*
How probes reach the health service: Kubernetes' own grpc probe on plaintext, else the
healthcheck script of the image over TLS (grpc probes cannot speak TLS).
*/}}
{{- define "tempering.probeHandler" -}}
{{- if .Values.tls.existingSecret -}}
exec:
  command:
    - python
    - /opt/tempering/healthcheck.py
    - --quiet
    - --server-name
    - {{ .Values.tls.probe.serverName | default (printf "%s.%s.svc" (include "tempering.fullname" .) .Release.Namespace) | quote }}
    {{- if .Values.tls.probe.caKey }}
    - --ca-cert
    - {{ printf "/etc/tempering/tls/%s" .Values.tls.probe.caKey | quote }}
    {{- end }}
    {{- if .Values.tls.clientCASecret }}
    - --client-cert
    - /etc/tempering/probe/tls.crt
    - --client-key
    - /etc/tempering/probe/tls.key
    {{- end }}
{{- else -}}
grpc:
  port: {{ .Values.service.grpcPort }}
{{- end -}}
{{- end -}}
