{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "vaultsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, prefixed to the chart name unless it contains it. */}}
{{- define "vaultsync.fullname" -}}
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

{{- define "vaultsync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vaultsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vaultsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vaultsync.labels" -}}
helm.sh/chart: {{ include "vaultsync.chart" . }}
{{ include "vaultsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: vaultsync
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "vaultsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vaultsync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vaultsync.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Plural names of the vaultsync.io custom resources, read from the chart's own crds/
(generated from the API models), so that RBAC always covers exactly the kinds shipped.
*/}}
{{- define "vaultsync.crPlurals" -}}
{{- $plurals := list }}
{{- range $path, $_ := .Files.Glob "crds/*.yaml" }}
{{- $crd := $.Files.Get $path | fromYaml }}
{{- if eq $crd.spec.group "vaultsync.io" }}
{{- $plurals = append $plurals $crd.spec.names.plural }}
{{- end }}
{{- end }}
{{- if not $plurals }}
{{- fail "no vaultsync.io CRDs found in the chart's crds/" }}
{{- end }}
{{- $plurals | sortAlpha | toJson }}
{{- end }}

{{/*
Sharding (`vaultsync run --shards`): "true" when sharding.replicas > 0, else empty. The
sharded replicas share the work through Leases; `replicas` is then unused.
*/}}
{{- define "vaultsync.sharded" -}}
{{- if gt (int .Values.sharding.replicas) 0 }}true{{ end }}
{{- end }}

{{/* Active/standby (`--peering`): "true" with replicas > 1 and no sharding, else empty. */}}
{{- define "vaultsync.peered" -}}
{{- if and (not (include "vaultsync.sharded" .)) (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}

{{/* The operator's pods: sharding.replicas when sharding is on, else replicas. */}}
{{- define "vaultsync.replicas" -}}
{{- if include "vaultsync.sharded" . }}
{{- int .Values.sharding.replicas }}
{{- else }}
{{- int .Values.replicas }}
{{- end }}
{{- end }}

{{/*
The operator's namespace: its HMAC key Secret, its own VaultAuths and, with sharding, its
Leases live there (VAULTSYNC_NAMESPACE, else the release namespace).
*/}}
{{- define "vaultsync.operatorNamespace" -}}
{{- default .Release.Namespace .Values.config.namespace }}
{{- end }}
