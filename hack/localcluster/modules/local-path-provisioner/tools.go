//go:build tools

// Package tools pins the storage provisioner kind ships as its default StorageClass.
package tools

import (
	_ "github.com/rancher/local-path-provisioner"
)
