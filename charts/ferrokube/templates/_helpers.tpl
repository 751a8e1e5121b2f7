{{/* The chart name, or nameOverride. */}}
{{- define "ferrokube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else the release name when it already
contains the chart name, else <release>-<chart>. Kept to 40 characters so that
"<prefix>-kube-controller-manager" stays a valid 63-character name.
*/}}
{{- define "ferrokube.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of a component's resources: (dict "root" $ "component" "kube-proxy"). */}}
{{- define "ferrokube.componentName" -}}
{{- printf "%s-%s" (include "ferrokube.fullname" .root) .component }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "ferrokube.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select a component's pods: (dict "root" $ "component" "kube-proxy"). */}}
{{- define "ferrokube.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferrokube.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every resource's labels: (dict "root" $ "component" "kube-proxy"). */}}
{{- define "ferrokube.labels" -}}
helm.sh/chart: {{ include "ferrokube.chart" .root }}
{{ include "ferrokube.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: ferrokube
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The image reference; the tag defaults to appVersion. */}}
{{- define "ferrokube.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* A component's service account name: (dict "root" $ "component" "kube-proxy" "values" .Values.kubeProxy). */}}
{{- define "ferrokube.serviceAccountName" -}}
{{- if .values.serviceAccount.create }}
{{- default (include "ferrokube.componentName" .) .values.serviceAccount.name }}
{{- else }}
{{- required (printf "%s.serviceAccount.name is required when serviceAccount.create is false" .component) .values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Container env pointing the in-cluster client at apiServer.host/port, when set. */}}
{{- define "ferrokube.apiServerEnv" -}}
{{- if or .Values.apiServer.host .Values.apiServer.port }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ required "apiServer.host is required with apiServer.port" .Values.apiServer.host | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ required "apiServer.port is required with apiServer.host" .Values.apiServer.port | toString | quote }}
{{- end }}
{{- end }}

{{/* imagePullSecrets of a pod spec. */}}
{{- define "ferrokube.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
HTTPS probes of a control-plane component on /healthz, timings as kubeadm's static pods:
(dict "port" 10259).
*/}}
{{- define "ferrokube.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
    scheme: HTTPS
  initialDelaySeconds: 1
  periodSeconds: 2
  timeoutSeconds: 15
  failureThreshold: 60
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
    scheme: HTTPS
  periodSeconds: 10
  timeoutSeconds: 15
  failureThreshold: 8
readinessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
    scheme: HTTPS
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}

{{/*
Role + RoleBinding letting a component use a Lease the system:* ClusterRoles do not name
(they grant get/update on their own Lease name only):
(dict "root" $ "component" "kube-scheduler" "values" .Values.kubeScheduler "default" "kube-scheduler").
Renders nothing for the default Lease name or without leader election.
*/}}
{{- define "ferrokube.leaseRole" -}}
{{- $le := .values.leaderElection }}
{{- if and $le.leaderElect (ne $le.resourceName .default) }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ include "ferrokube.componentName" . }}-leader-election
  namespace: {{ $le.resourceNamespace }}
  labels:
    {{- include "ferrokube.labels" . | nindent 4 }}
rules:
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    resourceNames: [{{ $le.resourceName | quote }}]
    verbs: [get, list, watch, update]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "ferrokube.componentName" . }}-leader-election
  namespace: {{ $le.resourceNamespace }}
  labels:
    {{- include "ferrokube.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ include "ferrokube.componentName" . }}-leader-election
subjects:
  - kind: ServiceAccount
    name: {{ include "ferrokube.serviceAccountName" . }}
    namespace: {{ .root.Release.Namespace }}
{{- end }}
{{- end }}

{{/*
ClusterRoleBindings of a component's service account to upstream's bootstrap ClusterRoles:
(dict "root" $ "component" "kube-proxy" "values" .Values.kubeProxy "roles" (list "system:node-proxier")).
*/}}
{{- define "ferrokube.clusterRoleBindings" -}}
{{- $ctx := . }}
{{- range .roles }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ include "ferrokube.componentName" $ctx }}-{{ trimPrefix "system:" . | replace ":" "-" }}
  labels:
    {{- include "ferrokube.labels" $ctx | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ . }}
subjects:
  - kind: ServiceAccount
    name: {{ include "ferrokube.serviceAccountName" $ctx }}
    namespace: {{ $ctx.root.Release.Namespace }}
{{- end }}
{{- end }}

{{/*
RoleBinding in kube-system to extension-apiserver-authentication-reader: delegated
authentication reads the client CA from kube-system/extension-apiserver-authentication.
*/}}
{{- define "ferrokube.authReaderBinding" -}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "ferrokube.componentName" . }}-authentication-reader
  namespace: kube-system
  labels:
    {{- include "ferrokube.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: extension-apiserver-authentication-reader
subjects:
  - kind: ServiceAccount
    name: {{ include "ferrokube.serviceAccountName" . }}
    namespace: {{ .root.Release.Namespace }}
{{- end }}

{{/* A component's ServiceAccount, when serviceAccount.create. */}}
{{- define "ferrokube.serviceAccount" -}}
{{- if .values.serviceAccount.create }}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "ferrokube.serviceAccountName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "ferrokube.labels" . | nindent 4 }}
{{- end }}
{{- end }}
