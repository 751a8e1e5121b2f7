{{/* The KubeProxyConfiguration file: the chart's values, then kubeProxy.config merged over them. */}}
{{- define "ferrokube.kubeProxy.config" -}}
{{- $v := .Values.kubeProxy }}
{{- $cfg := dict
  "apiVersion" "kubeproxy.config.k8s.io/v1alpha1"
  "kind" "KubeProxyConfiguration"
  "clientConnection" (dict "kubeconfig" "")
  "mode" $v.mode
  "healthzBindAddress" $v.healthzBindAddress
  "metricsBindAddress" $v.metricsBindAddress
}}
{{- with $v.clusterCIDR }}
{{- $_ := set $cfg "clusterCIDR" . }}
{{- end }}
{{- toYaml (mergeOverwrite $cfg (deepCopy $v.config)) }}
{{- end }}
