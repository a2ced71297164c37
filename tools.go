//go:build tools

// Package tools pins the modules that packages of this repository are being built on, so that
// concurrent work does not race on go.mod. It is never compiled.
package tools

import (
	_ "github.com/dop251/goja"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/common/expfmt"
	_ "github.com/robfig/cron/v3"
	_ "github.com/rogpeppe/go-internal/testscript"
	_ "github.com/shirou/gopsutil/v4/process"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/sys/unix"
	_ "gopkg.in/yaml.v3"
)
