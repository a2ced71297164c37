package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// defaultWatchDelay is the debounce of watch when watch_delay is not set: a restart happens once
// no change was seen for this long.
const defaultWatchDelay = 500 * time.Millisecond

// defaultIgnoredDirs are path components the watcher always ignores, besides dotfiles.
var defaultIgnoredDirs = []string{"node_modules", "logs"}

// watchStats describes a watcher's activity, for `describe`-style debugging and for tests.
type watchStats struct {
	ready    bool // the directories present at start are watched
	dirs     int  // directories added to the watch
	events   int  // changes that (re)armed the debounce
	ignored  int  // changes on ignored paths
	restarts int  // restarts triggered
}

// watcher restarts an app when files change under its watch paths (App.Watch, relative to the
// app's cwd), recursively, debounced by watch_delay. Changes under node_modules, logs and any
// dotfile or dot-directory below a watch path, under ignore_watch (see ignoreRule), and to the
// app's own log and pid files are ignored.
type watcher struct {
	m     *Manager
	a     *app
	key   string // the definition it was made from, to notice changes
	fsw   *fsnotify.Watcher
	cwd   string
	dirs  []string        // directory roots, absolute (only run and what it calls use them)
	files map[string]bool // single-file roots, absolute (likewise)
	rules []ignoreRule
	delay time.Duration
	quit  chan struct{}

	// Guarded by m.mu.
	stopped bool
	timer   *time.Timer // the pending debounce, nil when none
	firing  bool
	last    string // the latest change that armed the debounce
	stats   watchStats
}

// watchKey identifies a watch definition.
func watchKey(cwd string, watch, ignore []string, delay int64) string {
	return cwd + "\x00" + strings.Join(watch, "\x00") + "\x01" + strings.Join(ignore, "\x00") + "\x01" + strconv.FormatInt(delay, 10)
}

// syncWatch starts, replaces or stops a's file watcher: it runs while on is true and the app has
// watch paths. The caller holds m.mu.
func (m *Manager) syncWatch(a *app, on bool) {
	spec := a.spec
	key := watchKey(spec.Cwd, spec.Watch, spec.IgnoreWatch, spec.WatchDelay)
	if w := a.watch; w != nil && (!on || w.key != key) {
		w.stopLocked()
		a.watch = nil
	}
	if !on || len(spec.Watch) == 0 || a.watch != nil {
		return
	}
	w, err := m.newWatcher(a, key)
	if err != nil {
		a.notes = appendNote(a.notes, "watch: "+err.Error())
		m.log.Warn("watch", "app", spec.Name, "err", err)
		return
	}
	a.watch = w
	m.bg.Add(1)
	go w.run()
}

// newWatcher prepares a watcher for a's current definition. The caller holds m.mu.
func (m *Manager) newWatcher(a *app, key string) (*watcher, error) {
	spec := a.spec
	rules, err := compileIgnore(spec.IgnoreWatch, spec.Cwd)
	if err != nil {
		return nil, err
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("start file watcher: %w", err)
	}
	delay := ms(spec.WatchDelay)
	if delay <= 0 {
		delay = defaultWatchDelay
	}
	w := &watcher{m: m, a: a, key: key, fsw: fsw, cwd: spec.Cwd, files: map[string]bool{},
		rules: rules, delay: delay, quit: make(chan struct{})}
	for _, p := range spec.Watch {
		if !filepath.IsAbs(p) {
			p = filepath.Join(spec.Cwd, p)
		}
		w.dirs = append(w.dirs, filepath.Clean(p)) // sorted out into files and directories by run
	}
	return w, nil
}

// stopLocked ends the watcher; its goroutine closes the notifier. The caller holds m.mu.
func (w *watcher) stopLocked() {
	if w.stopped {
		return
	}
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	close(w.quit)
	w.m.changed.Broadcast()
}

// note records a problem of the watcher on its app (shown with the app's instances).
func (w *watcher) note(msg string) {
	w.m.mu.Lock()
	w.a.notes = appendNote(w.a.notes, "watch: "+msg)
	w.m.mu.Unlock()
	w.m.log.Warn("watch", "app", w.a.spec.Name, "problem", msg)
}

// run adds the watch paths and handles changes until the watcher is stopped.
func (w *watcher) run() {
	defer w.m.bg.Done()
	defer w.fsw.Close()
	roots := w.dirs
	w.dirs = nil
	for _, p := range roots {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			w.note(fmt.Sprintf("%s: %v (not watched)", p, errors.Unwrap(err)))
		case fi.IsDir():
			w.dirs = append(w.dirs, p)
		default:
			w.files[p] = true
		}
	}
	for _, p := range w.dirs {
		w.addTree(p)
	}
	for p := range w.files {
		// Watch the directory, not the file: editors replace files by renaming over them.
		if err := w.fsw.Add(filepath.Dir(p)); err != nil {
			w.note(fmt.Sprintf("%s: %v", p, err))
		}
	}
	w.m.mu.Lock()
	w.stats.ready = true
	w.m.changed.Broadcast()
	w.m.mu.Unlock()
	for {
		select {
		case <-w.quit:
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			w.handle(ev)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.m.log.Warn("watch", "app", w.a.spec.Name, "err", err)
		}
	}
}

// addTree watches dir and every directory below it that is not ignored.
func (w *watcher) addTree(dir string) {
	added := 0
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if d != nil && d.IsDir() && p != dir {
				return fs.SkipDir // unreadable: skip it
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if _, ok := w.relevant(p); !ok {
			return fs.SkipDir
		}
		if err := w.fsw.Add(p); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				w.note(fmt.Sprintf("%s: too many watches (raise fs.inotify.max_user_watches)", p))
				return fs.SkipAll
			}
			if !errors.Is(err, fs.ErrNotExist) {
				w.note(fmt.Sprintf("%s: %v", p, err))
			}
			return nil
		}
		added++
		return nil
	})
	w.m.mu.Lock()
	w.stats.dirs += added
	w.m.changed.Broadcast()
	w.m.mu.Unlock()
}

// relevant reports whether a change at path p concerns the app, and p relative to the cwd.
func (w *watcher) relevant(p string) (string, bool) {
	rel := w.relToCwd(p)
	if w.files[p] {
		return rel, true
	}
	for _, root := range w.dirs {
		below, ok := strings.CutPrefix(p, root)
		if !ok || (below != "" && below[0] != filepath.Separator && !strings.HasSuffix(root, string(filepath.Separator))) {
			continue
		}
		if defaultIgnored(below) {
			return rel, false
		}
		for _, r := range w.rules {
			if r.match(rel) {
				return rel, false
			}
		}
		return rel, true
	}
	return rel, false
}

// relToCwd returns p relative to the app's cwd, slash-separated, or p itself when it is not
// below the cwd.
func (w *watcher) relToCwd(p string) string {
	rel, err := filepath.Rel(w.cwd, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return filepath.ToSlash(p)
	}
	return filepath.ToSlash(rel)
}

// ownFile reports whether p is a log file (or a rotated log file) or pid file of the app's
// instances, which would otherwise restart the app each time it writes a line.
func (w *watcher) ownFile(p string) bool {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	for _, in := range w.a.instances {
		for _, f := range []string{in.st.OutLog, in.st.ErrLog, in.st.CombinedLog, in.st.PidFile} {
			if f == "" || f == os.DevNull {
				continue
			}
			if p == f || strings.HasPrefix(p, strings.TrimSuffix(f, ".log")+"__") {
				return true
			}
		}
	}
	return false
}

// defaultIgnored reports whether the part of a path below a watch root has a component that is
// always ignored: node_modules, logs, or a name starting with a dot.
func defaultIgnored(below string) bool {
	for _, c := range strings.Split(filepath.ToSlash(below), "/") {
		if c == "" || c == "." || c == ".." {
			continue
		}
		if c[0] == '.' {
			return true
		}
		for _, d := range defaultIgnoredDirs {
			if c == d {
				return true
			}
		}
	}
	return false
}

// handle processes one notification: new directories are watched, and a relevant change (re)arms
// the debounce.
func (w *watcher) handle(ev fsnotify.Event) {
	rel, ok := w.relevant(ev.Name)
	m := w.m
	if ok && w.ownFile(ev.Name) {
		ok = false
	}
	if !ok {
		m.mu.Lock()
		w.stats.ignored++
		m.changed.Broadcast()
		m.mu.Unlock()
		return
	}
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			w.addTree(ev.Name)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.stopped {
		return
	}
	w.stats.events++
	w.last = rel
	if w.timer != nil {
		w.timer.Stop()
	}
	w.timer = time.AfterFunc(w.delay, w.fire)
	m.changed.Broadcast()
}

// fire restarts the app once the debounce is over. While another automatic restart of the app
// is running, it tries again after another delay.
func (w *watcher) fire() {
	m := w.m
	m.mu.Lock()
	if w.stopped || m.closed {
		m.mu.Unlock()
		return
	}
	w.timer = nil
	w.firing = true
	last := w.last
	m.bg.Add(1)
	m.mu.Unlock()
	defer m.bg.Done()
	busy := m.tryAutoRestart(w.a, "watch: "+last+" changed")
	m.mu.Lock()
	defer m.mu.Unlock()
	w.firing = false
	if busy {
		if !w.stopped && w.timer == nil {
			w.timer = time.AfterFunc(w.delay, w.fire)
		}
	} else {
		w.stats.restarts++
	}
	m.changed.Broadcast()
}

// idle reports whether no restart is pending or running. The caller holds m.mu.
func (w *watcher) idle() bool { return w.timer == nil && !w.firing }

// ignoreRule is one ignore_watch entry. A pattern with glob characters (*, ?, [...]) is matched
// as a glob: * and ? do not cross '/', ** does, and "**/" matches any number of directories. A
// plain string matches literally. Either way it is tried against the changed path relative to
// the app's cwd and every leading part of it (so a directory pattern ignores everything below
// it), and, when the pattern has no '/', against every single path component ("*.log" ignores
// log files anywhere, "tmp" every directory called tmp). An absolute pattern is anchored: inside
// the cwd it is made relative to it, so "/srv/app/tmp" ignores only the cwd's tmp.
type ignoreRule struct {
	re    *regexp.Regexp // nil for a plain string
	plain string
	slash bool
}

// compileIgnore compiles ignore_watch patterns, naming the bad one.
func compileIgnore(patterns []string, cwd string) ([]ignoreRule, error) {
	var rules []ignoreRule
	for _, p := range patterns {
		q := strings.TrimSpace(p)
		if q == "" {
			continue
		}
		anchored := filepath.IsAbs(q)
		if anchored {
			if rel, err := filepath.Rel(cwd, q); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
				q = rel
			}
		}
		q = strings.TrimPrefix(filepath.ToSlash(q), "./")
		q = strings.TrimSuffix(q, "/")
		r := ignoreRule{plain: q, slash: anchored || strings.Contains(strings.TrimPrefix(q, "**/"), "/")}
		if strings.ContainsAny(q, "*?[") {
			re, err := globRegexp(q)
			if err != nil {
				return nil, fmt.Errorf("ignore_watch %q: %w", p, err)
			}
			r.re = re
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// globRegexp translates a glob (see ignoreRule) into an anchored regular expression.
func globRegexp(glob string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; c {
		case '*':
			switch {
			case strings.HasPrefix(glob[i:], "**/"):
				b.WriteString("(?:.*/)?")
				i += 2
			case strings.HasPrefix(glob[i:], "**"):
				b.WriteString(".*")
				i++
			default:
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		case '[':
			end := strings.IndexByte(glob[i+1:], ']')
			if end < 0 {
				return nil, errors.New("unclosed [ in glob")
			}
			class := glob[i+1 : i+1+end]
			if class == "" {
				return nil, errors.New("empty [] in glob")
			}
			if class[0] == '!' {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += end + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("bad glob: %w", err)
	}
	return re, nil
}

// match reports whether the rule ignores rel (slash-separated, relative to the cwd).
func (r ignoreRule) match(rel string) bool {
	one := func(s string) bool {
		if r.re != nil {
			return r.re.MatchString(s)
		}
		return s == r.plain
	}
	if one(rel) {
		return true
	}
	comps := strings.Split(rel, "/")
	for i, c := range comps {
		if !r.slash && one(c) {
			return true
		}
		if i < len(comps)-1 && one(strings.Join(comps[:i+1], "/")) {
			return true
		}
	}
	return false
}
