{{/* Names, labels and the pieces every workload shares. */}}

{{- define "gridmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "gridmesh.fullname" -}}
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

{{- define "gridmesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gridmesh.labels" -}}
helm.sh/chart: {{ include "gridmesh.chart" . }}
{{ include "gridmesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gridmesh
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gridmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gridmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "portfolio") */}}
{{- define "gridmesh.componentSelector" -}}
{{ include "gridmesh.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "gridmesh.componentLabels" -}}
{{ include "gridmesh.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "gridmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gridmesh.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gridmesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The portfolio's Service and its in-cluster DNS name (the SAN its server certificate needs). */}}
{{- define "gridmesh.portfolio.serviceName" -}}
{{- include "gridmesh.fullname" . }}
{{- end }}

{{- define "gridmesh.portfolio.host" -}}
{{- printf "%s.%s.svc" (include "gridmesh.portfolio.serviceName" .) .Release.Namespace }}
{{- end }}

{{- define "gridmesh.portfolio.tlsSecret" -}}
{{- $tls := .Values.portfolio.tls }}
{{- if $tls.existingSecret }}{{ $tls.existingSecret }}{{ else }}{{ printf "%s-tls" (include "gridmesh.fullname" .) }}{{ end }}
{{- end }}

{{- define "gridmesh.tokensSecret" -}}
{{- default (printf "%s-tokens" (include "gridmesh.fullname" .)) .Values.portfolio.tokens.existingSecret }}
{{- end }}

{{/* KubeRay names the head Service <cluster>-head-svc and cuts names over 50 characters from
the front, so the cluster name stays within 41. */}}
{{- define "gridmesh.ray.clusterName" -}}
{{- printf "%s-ray" (include "gridmesh.fullname" . | trunc 37 | trimSuffix "-") }}
{{- end }}

{{- define "gridmesh.ray.address" -}}
{{- if .Values.ray.address }}
{{- .Values.ray.address }}
{{- else }}
{{- printf "ray://%s-head-svc.%s.svc:10001" (include "gridmesh.ray.clusterName" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/* The image's HEALTHCHECK (Dockerfile), verbatim: grpc.health.v1 Check("") over plaintext
against $GRIDMESH_HEALTH_ADDRESS. tests/helm/test_chart.py keeps the two equal. */}}
{{- define "gridmesh.healthCheckCode" -}}
import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as s; a = os.environ.get('GRIDMESH_HEALTH_ADDRESS', '127.0.0.1:50070'); r = s.HealthStub(grpc.insecure_channel(a)).Check(h.HealthCheckRequest(), timeout=3); sys.exit(r.status != h.HealthCheckResponse.SERVING)
{{- end }}

{{/* A probe's timings: (dict "probe" <values>) */}}
{{- define "gridmesh.probeTimings" -}}
initialDelaySeconds: {{ .initialDelaySeconds }}
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ .timeoutSeconds }}
failureThreshold: {{ .failureThreshold }}
{{- end }}

{{/* Every gridmesh container: non-root, read-only root filesystem, no capabilities. */}}
{{- define "gridmesh.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "gridmesh.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end }}

{{/* Environment for a read-only root: HOME and matplotlib's cache on the /tmp emptyDir. */}}
{{- define "gridmesh.baseEnv" -}}
- name: HOME
  value: /tmp
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
{{- end }}

{{- define "gridmesh.tokenEnv" -}}
- name: GRIDMESH_OPERATOR_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "gridmesh.tokensSecret" . }}
      key: operator-token
      optional: true
- name: GRIDMESH_VIEWER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "gridmesh.tokensSecret" . }}
      key: viewer-token
      optional: true
{{- end }}

{{/* Inline PEMs come all together or not at all, and never with an existing Secret. */}}
{{- define "gridmesh.checkPems" -}}
{{- $given := 0 }}
{{- range .keys }}{{ if index $.tls . }}{{ $given = add1 $given }}{{ end }}{{ end }}
{{- if and $given (lt $given (len .keys)) }}
{{- fail (printf "%s: give all of %s inline, or none" .path (join ", " .keys)) }}
{{- end }}
{{- if and $given .tls.existingSecret }}
{{- fail (printf "%s: give existingSecret or the inline PEMs, not both" .path) }}
{{- end }}
{{- end }}
