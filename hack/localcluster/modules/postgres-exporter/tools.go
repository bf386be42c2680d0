//go:build tools

// Package tools pins the commands this module builds.
package tools

import (
	_ "github.com/prometheus-community/postgres_exporter/cmd/postgres_exporter"
)
