package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/logs"
)

// sharedFile is a log file opened once however many instances write to it (merge_logs, or the
// same custom path given to several apps), so that rotation happens in one place.
type sharedFile struct {
	f    *logs.File
	refs int
}

// openLog returns the shared log file at path, opening it if needed, or nil when path is empty
// or disables the log. The caller holds m.mu.
func (m *Manager) openLog(path string, spec *appSpecLogs) (*logs.File, error) {
	if path == "" || path == os.DevNull {
		return nil, nil
	}
	if sf := m.files[path]; sf != nil {
		sf.refs++
		return sf.f, nil
	}
	f, err := logs.Open(logs.Options{
		Path:     path,
		MaxSize:  spec.maxSize,
		MaxFiles: spec.maxFiles,
		Daily:    spec.daily,
		OnError:  func(err error) { m.log.Warn("log file", "path", path, "err", err) },
	})
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	m.files[path] = &sharedFile{f: f, refs: 1}
	return f, nil
}

// closeLog drops one reference to the log file at path. The caller holds m.mu.
func (m *Manager) closeLog(path string) {
	sf := m.files[path]
	if sf == nil {
		return
	}
	sf.refs--
	if sf.refs > 0 {
		return
	}
	delete(m.files, path)
	if err := sf.f.Close(); err != nil {
		m.log.Warn("close log file", "path", path, "err", err)
	}
}

// appSpecLogs is the rotation part of an app's definition.
type appSpecLogs struct {
	maxSize  int64
	maxFiles int
	daily    bool
}

// openInstanceLogs opens the out, error and combined log files of a new instance. The caller
// holds m.mu.
func (m *Manager) openInstanceLogs(in *instance) error {
	spec := in.app.spec
	rot := &appSpecLogs{maxSize: spec.LogMaxSize, maxFiles: spec.LogMaxFiles, daily: spec.LogRotateDaily}
	if *rot == (appSpecLogs{}) {
		*rot = m.moduleRotation() // `set pm2-logrotate:...`, for apps without rotation of their own
	}
	var opened []string
	for _, p := range []string{in.st.OutLog, in.st.ErrLog, in.st.CombinedLog} {
		f, err := m.openLog(p, rot)
		if err != nil {
			for _, q := range opened {
				m.closeLog(q)
			}
			return fmt.Errorf("%s (pm_id %d): %w", in.st.Name, in.st.PMID, err)
		}
		if f != nil {
			opened = append(opened, p)
		}
	}
	return nil
}

// closeInstanceLogs releases an instance's log files. The caller holds m.mu.
func (m *Manager) closeInstanceLogs(in *instance) {
	for _, p := range []string{in.st.OutLog, in.st.ErrLog, in.st.CombinedLog} {
		if p != "" && p != os.DevNull {
			m.closeLog(p)
		}
	}
}

// logFile returns the open log file at path, or nil. The caller holds m.mu.
func (m *Manager) logFile(path string) *logs.File {
	if sf := m.files[path]; sf != nil {
		return sf.f
	}
	return nil
}

// lineWriters returns fresh line writers for a new process of in: stdout to the out and
// combined logs, stderr to the error and combined logs, both to the live subscribers. The
// caller holds m.mu.
func (m *Manager) lineWriters(in *instance) (out, errw *logs.LineWriter) {
	spec := in.app.spec
	dateFormat := spec.LogDateFormat
	if dateFormat == "" && spec.Time {
		dateFormat = "YYYY-MM-DDTHH:mm:ss"
	}
	dsts := func(paths ...string) []io.Writer {
		var ws []io.Writer
		for _, p := range paths {
			if f := m.logFile(p); f != nil {
				ws = append(ws, f)
			}
		}
		return ws
	}
	opts := func(stream string) logs.LineOptions {
		return logs.LineOptions{
			App: in.st.Name, ID: in.st.PMID, Stream: stream,
			DateFormat: dateFormat, JSON: spec.LogType == "json",
			Broadcaster: m.bc, PartialDelay: logs.DefaultPartialDelay,
			WatchBlocks: true, // isAddrInUse searches one line's text: a block of lines will do
			Watch: func(line []byte) {
				if isAddrInUse(line) {
					in.addrInUse.Store(true)
				}
			},
			OnError: func(err error) {
				if !errors.Is(err, os.ErrClosed) {
					m.log.Warn("write log", "pm_id", in.st.PMID, "err", err)
				}
			},
		}
	}
	out = logs.NewLineWriter(opts("out"), dsts(in.st.OutLog, in.st.CombinedLog)...)
	in.errTail.take() // a new process: its own last lines
	errw = logs.NewLineWriter(opts("err"), append(dsts(in.st.ErrLog, in.st.CombinedLog), &in.errTail)...)
	return out, errw
}

// Flush empties the log files of the targeted instances (all instances when targets is empty).
func (m *Manager) Flush(ctx context.Context, targets []string) error {
	var ins []*instance
	if len(targets) == 0 {
		m.mu.Lock()
		ins = m.sortedProcs()
		m.mu.Unlock()
	} else {
		var err error
		if ins, err = m.targets(targets); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	done := map[string]bool{}
	var errs []error
	for _, in := range ins {
		for _, p := range []string{in.st.OutLog, in.st.ErrLog, in.st.CombinedLog} {
			f := m.logFile(p)
			if f == nil || done[p] {
				continue
			}
			done[p] = true
			if err := f.Truncate(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ReloadLogs reopens every log file, for use after an external tool moved them away.
func (m *Manager) ReloadLogs(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, sf := range m.files {
		if err := sf.f.Reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Logs streams the output lines of the targeted instances (all when targets is empty) until
// ctx ends; the channel is closed then. Lines of instances added later to a targeted app or
// namespace are included. A reader that falls behind loses lines rather than slowing apps.
func (m *Manager) Logs(ctx context.Context, targets []string) (<-chan api.LogLine, error) {
	all := len(targets) == 0
	ids := map[int]bool{}
	names := map[string]bool{}
	if !all {
		ins, err := m.targets(targets)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		for _, t := range targets {
			if t == "all" {
				all = true
			}
			if _, err := strconv.Atoi(t); err != nil && m.apps[t] != nil {
				names[t] = true
			}
		}
		for _, in := range ins {
			ids[in.st.PMID] = true
			if namespaceTargeted(targets, in.st.Namespace) {
				names[in.st.Name] = true
			}
		}
		m.mu.Unlock()
	}
	src, cancel := m.bc.Subscribe()
	out := make(chan api.LogLine, 64)
	go func() {
		defer close(out)
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case l, ok := <-src:
				if !ok {
					return
				}
				if !all && !ids[l.ID] && !names[l.App] {
					continue
				}
				select {
				case out <- api.LogLine{PMID: l.ID, Name: l.App, Stream: l.Stream, Text: l.Text, Time: l.Time}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func namespaceTargeted(targets []string, ns string) bool {
	return slices.Contains(targets, ns)
}
