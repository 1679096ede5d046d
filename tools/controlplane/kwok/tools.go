//go:build tools

// Package tools keeps the kwok controller command in this module's go.mod.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
