//go:build tools

// Package k8s pins the Kubernetes commands this project builds from source:
// kube-apiserver for envtest, and the seven binaries of the offline kind node
// image. One module means one set of versions and one build cache for both.
// etcd lives in the nested module ./etcd.
package k8s

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
