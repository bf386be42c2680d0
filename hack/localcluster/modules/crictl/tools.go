//go:build tools

// Package tools pins crictl, the CRI client the node's teardown uses to stop every pod sandbox.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
