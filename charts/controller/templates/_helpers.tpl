{{/*
Name of the chart, overridable with nameOverride. Truncated to 63 characters (DNS labels).
*/}}
{{- define "controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: `<release>-controller`, or the release name when it already contains the
chart name. Truncated to 63 characters.
*/}}
{{- define "controller.fullname" -}}
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
{{- define "controller.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: only name and instance (selectors are immutable).
*/}}
{{- define "controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Standard labels.
*/}}
{{- define "controller.labels" -}}
{{ include "controller.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: ml-operator
helm.sh/chart: {{ include "controller.chart" . }}
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Name of the ServiceAccount, created by the umbrella chart with the same rule
("ml-operator.serviceAccountName"): global.serviceAccountName, else `<release name>-controller`.
*/}}
{{- define "controller.serviceAccountName" -}}
{{- if .Values.global.serviceAccountName }}
{{- .Values.global.serviceAccountName }}
{{- else }}
{{- printf "%s-controller" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Controller image: `repository@digest` when a digest is set, else `repository:tag` (tag defaults to
the chart's appVersion).
*/}}
{{- define "controller.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Whether leader election is on: when asked, and always with more than one replica.
*/}}
{{- define "controller.leaderElect" -}}
{{- or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}
{{- end }}

{{/*
Namespace of the Lease.
*/}}
{{- define "controller.leaderElectionNamespace" -}}
{{- .Values.leaderElection.namespace | default .Release.Namespace }}
{{- end }}

{{/*
Name of the Lease.
*/}}
{{- define "controller.leaderElectionId" -}}
{{- .Values.leaderElection.id | default (include "controller.fullname" .) }}
{{- end }}

{{/*
The config file: the `config` value, with the fetcher image resolved to the controller's own image
when empty (the controller image carries the fetcher).
*/}}
{{- define "controller.configJson" -}}
{{- $config := deepCopy .Values.config }}
{{- if not $config.fetcher.image }}
{{- $_ := set $config.fetcher "image" (include "controller.image" .) }}
{{- end }}
{{- toPrettyJson $config }}
{{- end }}
