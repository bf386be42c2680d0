{{/* Names, labels and the little logic the templates share. */}}

{{- define "scaledapp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "scaledapp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "scaledapp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "scaledapp.labels" -}}
helm.sh/chart: {{ include "scaledapp.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scaledapp
{{- end -}}

{{- define "scaledapp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scaledapp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "scaledapp.prometheusSelectorLabels" -}}
app.kubernetes.io/name: prometheus
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: metrics
{{- end -}}

{{- define "scaledapp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "scaledapp.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "scaledapp.prometheusName" -}}
{{- printf "%s-prometheus" (include "scaledapp.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "scaledapp.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The namespaces the bundled Prometheus discovers pods in; empty means all. */}}
{{- define "scaledapp.prometheusNamespaces" -}}
{{- $ns := .Values.prometheus.namespaces | default .Values.watchNamespaces -}}
{{- toJson (default (list) $ns) -}}
{{- end -}}

{{/* The URL the operator's ScaledApps should use, for NOTES. */}}
{{- define "scaledapp.prometheusUrl" -}}
{{- if .Values.prometheus.enabled -}}
{{- printf "http://%s.%s.svc:%v" .Values.prometheus.serviceName .Release.Namespace .Values.prometheus.port -}}
{{- else -}}
{{- .Values.prometheus.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* What every container here must have to pass the `restricted` Pod Security profile. */}}
{{- define "scaledapp.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The leader-election Lease's name (one per release). */}}
{{- define "scaledapp.leaseName" -}}
{{- default (include "scaledapp.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/*
Read-only nodes: a cordoned node (kubectl drain starts so) makes the failover guard move the Postgres write role
off it before the drain evicts the primary, whose PodDisruptionBudget refuses the eviction until then.
*/}}
{{- define "scaledapp.nodeRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
{{- end }}
