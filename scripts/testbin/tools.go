//go:build tools

// Package testbin pins the main packages that scripts/install-test-deps.sh builds.
package testbin

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
