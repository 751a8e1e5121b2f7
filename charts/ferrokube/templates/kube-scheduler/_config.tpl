{{/* The KubeSchedulerConfiguration file: one profile named schedulerName, leader election on
its Lease, then kubeScheduler.config merged over them. */}}
{{- define "ferrokube.kubeScheduler.config" -}}
{{- $v := .Values.kubeScheduler }}
{{- $cfg := dict
  "apiVersion" "kubescheduler.config.k8s.io/v1"
  "kind" "KubeSchedulerConfiguration"
  "clientConnection" (dict "kubeconfig" "")
  "leaderElection" (merge (dict "resourceLock" "leases") (deepCopy $v.leaderElection))
  "profiles" (list (dict "schedulerName" $v.schedulerName))
}}
{{- toYaml (mergeOverwrite $cfg (deepCopy $v.config)) }}
{{- end }}
