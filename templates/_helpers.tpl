{{/*
Name of the chart, overridable with nameOverride. Truncated to 63 characters: some Kubernetes name
fields are limited to that (DNS labels).
*/}}
{{- define "ml-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, followed by the chart name unless the release name
already contains it. Truncated to 63 characters.
*/}}
{{- define "ml-operator.fullname" -}}
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
{{- define "ml-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: only name and instance, because selectors are immutable and must not change when
the chart or app version does.
*/}}
{{- define "ml-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ml-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Standard labels of every object the chart creates (the CRD templates use them too).
*/}}
{{- define "ml-operator.labels" -}}
{{ include "ml-operator.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ml-operator
helm.sh/chart: {{ include "ml-operator.chart" . }}
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Name of the controller's ServiceAccount. Shared with the controller subchart, which computes it with
the same rule (charts/controller/templates/_helpers.tpl, "controller.serviceAccountName"):
global.serviceAccountName when set, else "<release name>-controller".
*/}}
{{- define "ml-operator.serviceAccountName" -}}
{{- if .Values.global.serviceAccountName }}
{{- .Values.global.serviceAccountName }}
{{- else }}
{{- printf "%s-controller" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Storage mode of the controller (the subchart's config.storage.mode): hostPath needs cluster rights on
PersistentVolumes.
*/}}
{{- define "ml-operator.storageMode" -}}
{{- dig "config" "storage" "mode" "emptyDir" (.Values.controller | default dict) }}
{{- end }}

{{/*
Routing provider of the controller (the subchart's config.routing.provider): the controller gets the
rights of that provider only.
*/}}
{{- define "ml-operator.routingProvider" -}}
{{- dig "config" "routing" "provider" "istio" (.Values.controller | default dict) }}
{{- end }}

{{/*
Rules of the controller on namespaced objects, exactly the verbs of docs/controller-interface.md.
Granted cluster-wide by a ClusterRole, or per watched namespace by a Role.
*/}}
{{- define "ml-operator.namespacedRules" -}}
# Snapshots of configs and models: read before they are first written (an object of that name may be
# someone else's), created and updated by server-side apply (a PATCH that creates is authorized as
# create too), deleted when they leave the history. The same holds for every kind below.
- apiGroups: ["ml-operator.dev"]
  resources:
    - machinelearningmodels
    - machinelearningendpointconfigs
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Endpoints are the users': watched, and patched only for the controller's finalizers (the drain on
# deletion, and the storage finalizer of hostPath mode).
- apiGroups: ["ml-operator.dev"]
  resources: ["machinelearningendpoints"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["ml-operator.dev"]
  resources:
    - machinelearningmodels/status
    - machinelearningendpointconfigs/status
    - machinelearningendpoints/status
  verbs: ["patch"]
# Children carry owner references with blockOwnerDeletion: clusters that enforce
# OwnerReferencesPermissionEnforcement (OpenShift, for one) require this to set them.
- apiGroups: ["ml-operator.dev"]
  resources: ["machinelearningendpoints/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# A PodDisruptionBudget per variant with more than one replica: node drains take its pods one at a time.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- if eq (include "ml-operator.storageMode" .) "hostPath" }}
# hostPath storage: the pods that remove a model's files from the nodes when its version goes (and,
# as below, model pods that do not start are listed for why).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- else }}
# Model pods that do not start are listed for why (the scheduler's message), for the endpoint's status.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
{{- end }}
{{- if eq (include "ml-operator.routingProvider" .) "gatewayAPI" }}
- apiGroups: ["gateway.networking.k8s.io"]
  resources:
    - httproutes
    {{- if not (dig "config" "routing" "gatewayAPI" "sharedGateway" "name" "" (.Values.controller | default dict)) }}
    - gateways
    {{- end }}
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- if eq (dig "config" "routing" "gatewayAPI" "mirroring" "None" (.Values.controller | default dict)) "TraefikService" }}
# Traefik mirrors a shadow's share through a TraefikService around each primary Service.
- apiGroups: ["traefik.io"]
  resources: ["traefikservices"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- else }}
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices", "gateways"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Rollout gates: the capacity check reads the namespace's quotas; the smoke test reads its requests
# from a ConfigMap and sends them to the new version's pods, found through their EndpointSlices.
# Data Capture: the agents of an endpoint read their capture settings from a ConfigMap it writes.
- apiGroups: [""]
  resources: ["resourcequotas"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list"]
# Variants with autoscaling: a HorizontalPodAutoscaler, or a KEDA ScaledObject, per variant.
{{- if eq (dig "config" "autoscaling" "engine" "hpa" (.Values.controller | default dict)) "keda" }}
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- else }}
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- end }}
