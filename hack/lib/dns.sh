#!/usr/bin/env bash
# The cluster DNS, deployed as kubeadm deploys CoreDNS but running ferrokube-dns (from the
# ferrokube image, hack/build-image.sh): ServiceAccount kube-system/coredns bound to the
# ClusterRole system:coredns (kubeadm's rules), Deployment kube-system/coredns (2 replicas,
# k8s-app=kube-dns, system-cluster-critical, control-plane tolerations, /ready on 8181 and
# /health on 8080, metrics on 9153) and the Service kube-system/kube-dns at the cluster DNS
# address with ports dns 53/UDP, dns-tcp 53/TCP, metrics 9153/TCP.
#
# The names are kubeadm's (coredns, system:coredns) so what expects a kubeadm cluster works
# unchanged: `kubectl -n kube-system rollout restart deployment coredns`, kubeadm's and
# Kubernetes' DNS debugging docs, monitoring that selects k8s-app=kube-dns. In a cluster that
# already runs CoreDNS, deploy charts/ferrokube with dns.enabled=true instead (its names are
# release-prefixed).
#
# Usage (sourced):
#   source hack/lib/dns.sh
#   dns::manifest IMAGE [CLUSTER_DNS_IP] [CLUSTER_DOMAIN] [REPLICAS]   # prints the YAML
#   dns::deploy KUBECTL KUBECONFIG IMAGE [CLUSTER_DNS_IP] [CLUSTER_DOMAIN] [REPLICAS]
#   dns::wait KUBECTL KUBECONFIG [TIMEOUT]                # waits for the rollout
# Defaults: CLUSTER_DNS_IP 10.96.0.10, CLUSTER_DOMAIN cluster.local, REPLICAS 2.
# IMAGE is the ferrokube image (e.g. ferrokube:0.1.0) present in every node's containerd
# (imagePullPolicy IfNotPresent; no registry is needed).

dns::manifest() {
  local image="${1:?dns::manifest IMAGE [CLUSTER_DNS_IP] [CLUSTER_DOMAIN] [REPLICAS]}"
  local ip="${2:-10.96.0.10}" domain="${3:-cluster.local}" replicas="${4:-2}"
  cat <<YAML
apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
  - kind: ServiceAccount
    name: coredns
    namespace: kube-system
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
    app.kubernetes.io/part-of: ferrokube
spec:
  replicas: ${replicas}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 1
  selector:
    matchLabels:
      k8s-app: kube-dns
  template:
    metadata:
      labels:
        k8s-app: kube-dns
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      # The node's resolv.conf: the upstreams for names outside the cluster.
      dnsPolicy: Default
      nodeSelector:
        kubernetes.io/os: linux
      tolerations:
        - key: CriticalAddonsOnly
          operator: Exists
        - key: node-role.kubernetes.io/control-plane
          effect: NoSchedule
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    k8s-app: kube-dns
      containers:
        - name: coredns
          image: ${image}
          imagePullPolicy: IfNotPresent
          command:
            - ferrokube-dns
            - --cluster-domain=${domain}
            - --dns-service=kube-system/kube-dns
            - --resolv-conf=/etc/resolv.conf
            - --ttl=30
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
            - {name: metrics, containerPort: 9153, protocol: TCP}
            - {name: liveness-probe, containerPort: 8080, protocol: TCP}
            - {name: readiness-probe, containerPort: 8181, protocol: TCP}
          resources:
            limits:
              memory: 170Mi
            requests:
              cpu: 100m
              memory: 70Mi
          livenessProbe:
            httpGet: {path: /health, port: liveness-probe, scheme: HTTP}
            initialDelaySeconds: 60
            timeoutSeconds: 5
            successThreshold: 1
            failureThreshold: 5
          readinessProbe:
            httpGet: {path: /ready, port: readiness-probe, scheme: HTTP}
            periodSeconds: 2
            timeoutSeconds: 1
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              add: [NET_BIND_SERVICE]
              drop: [ALL]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
    kubernetes.io/cluster-service: "true"
    kubernetes.io/name: CoreDNS
  annotations:
    prometheus.io/port: "9153"
    prometheus.io/scrape: "true"
spec:
  selector:
    k8s-app: kube-dns
  clusterIP: ${ip}
  ports:
    - {name: dns, port: 53, protocol: UDP, targetPort: 53}
    - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
    - {name: metrics, port: 9153, protocol: TCP, targetPort: 9153}
YAML
}

# Applies the manifest (server-side apply: idempotent, safe to re-run).
dns::deploy() {
  local kubectl="${1:?dns::deploy KUBECTL KUBECONFIG IMAGE [CLUSTER_DNS_IP] [CLUSTER_DOMAIN] [REPLICAS]}"
  local kubeconfig="${2:?dns::deploy: KUBECONFIG missing}" image="${3:?dns::deploy: IMAGE missing}"
  dns::manifest "${image}" "${4:-10.96.0.10}" "${5:-cluster.local}" "${6:-2}" |
    "${kubectl}" --kubeconfig="${kubeconfig}" apply --server-side --field-manager=ferrokube-local -f -
}

# Waits until every replica is ready (/ready: the first lists are synced).
dns::wait() {
  local kubectl="${1:?dns::wait KUBECTL KUBECONFIG [TIMEOUT]}" kubeconfig="${2:?dns::wait: KUBECONFIG missing}"
  "${kubectl}" --kubeconfig="${kubeconfig}" -n kube-system rollout status deployment/coredns \
    --timeout="${3:-180s}"
}
