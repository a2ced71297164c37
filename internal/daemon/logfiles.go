package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"

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
			Broadcaster: m.bc,
			OnError: func(err error) {
				if !errors.Is(err, os.ErrClosed) {
					m.log.Warn("write log", "pm_id", in.st.PMID, "err", err)
				}
			},
		}
	}
	out = logs.NewLineWriter(opts("out"), dsts(in.st.OutLog, in.st.CombinedLog)...)
	errw = logs.NewLineWriter(opts("err"), dsts(in.st.ErrLog, in.st.CombinedLog)...)
	return out, errw
}
