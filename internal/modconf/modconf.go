// Package modconf is PM2's module configuration store, module_conf.json in the home: what
// `set`, `get`, `unset`, `multiset` and `conf` read and write. Keys are "module:key" (stored as
// {"module": {"key": "value"}}) or a plain "key" (stored at the top level); values are strings, as
// PM2 stores them. corral has no modules; it reads the pm2-logrotate keys as settings of its
// built-in log rotation (see LogRotate).
package modconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/statefile"
)

// FileName is the store's name in the home.
const FileName = "module_conf.json"

// Conf is the content of module_conf.json: a module name (or a plain key) to its keys and values
// (or to a value).
type Conf map[string]any

// Load reads the store in home; a missing file is an empty store.
func Load(home string) (Conf, error) {
	data, err := os.ReadFile(filepath.Join(home, FileName))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(bytes.TrimSpace(data)) == 0) {
		return Conf{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", FileName, err)
	}
	c := Conf{}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(home, FileName), err)
	}
	return c, nil
}

// Save writes c to home atomically (mode 0600), in PM2's layout (4-space indent).
func (c Conf) Save(home string) error {
	data, err := json.MarshalIndent(c, "", "    ")
	if err != nil {
		return err
	}
	return statefile.WriteFileAtomic(filepath.Join(home, FileName), append(data, '\n'), 0o600)
}

// split splits "module:key" at its first ':'.
func split(key string) (module, sub string, ok bool) {
	return strings.Cut(key, ":")
}

// Set sets key to value.
func (c Conf) Set(key, value string) error {
	if strings.TrimSpace(key) == "" {
		return errors.New("set: empty key")
	}
	module, sub, ok := split(key)
	if !ok {
		c[key] = value
		return nil
	}
	if module == "" || sub == "" {
		return fmt.Errorf("set %s: want module:key", key)
	}
	m, _ := c[module].(map[string]any)
	if m == nil {
		m = map[string]any{}
		c[module] = m
	}
	m[sub] = value
	return nil
}

// Get returns the value of key ("module:key" or a plain key), or of a whole module, as text.
func (c Conf) Get(key string) (string, bool) {
	module, sub, ok := split(key)
	var v any
	if !ok {
		v, ok = c[key]
	} else {
		m, _ := c[module].(map[string]any)
		v, ok = m[sub]
	}
	if !ok {
		return "", false
	}
	if s, isStr := v.(string); isStr {
		return s, true
	}
	out, _ := json.Marshal(v)
	return string(out), true
}

// Unset removes key; it reports whether it was there. A module left empty is removed.
func (c Conf) Unset(key string) bool {
	module, sub, ok := split(key)
	if !ok {
		_, had := c[key]
		delete(c, key)
		return had
	}
	m, _ := c[module].(map[string]any)
	if _, had := m[sub]; !had {
		return false
	}
	delete(m, sub)
	if len(m) == 0 {
		delete(c, module)
	}
	return true
}

// Lines returns every setting as the `set` command that makes it, sorted.
func (c Conf) Lines() []string {
	var out []string
	for k, v := range c {
		if m, ok := v.(map[string]any); ok {
			for sub, sv := range m {
				out = append(out, fmt.Sprintf("%s:%s %s", k, sub, text(sv)))
			}
			continue
		}
		out = append(out, fmt.Sprintf("%s %s", k, text(v)))
	}
	sort.Strings(out)
	return out
}

func text(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// LogRotateModule is the module whose keys configure corral's built-in rotation.
const LogRotateModule = "pm2-logrotate"

// Rotation is the built-in rotation the pm2-logrotate keys ask for.
type Rotation struct {
	MaxSize  int64 // bytes
	MaxFiles int
	Daily    bool
}

// LogRotate maps the pm2-logrotate keys onto corral's rotation, with pm2-logrotate's defaults for
// the keys not set: max_size (10M) -> size rotation, retain (30) -> rotated files kept,
// rotateInterval ("0 0 * * *", the default) -> daily rotation. Other cron expressions are not
// supported (notes says so), nor compress, dateFormat, workerInterval or rotateModule. ok is false
// when no pm2-logrotate key is set.
func (c Conf) LogRotate() (r Rotation, notes []string, ok bool) {
	m, _ := c[LogRotateModule].(map[string]any)
	if len(m) == 0 {
		return r, nil, false
	}
	get := func(k, def string) string {
		if v, ok := m[k]; ok {
			return strings.TrimSpace(text(v))
		}
		return def
	}
	size, err := appspec.ParseMemory(get("max_size", "10M"))
	if err != nil {
		notes = append(notes, fmt.Sprintf("%s:max_size: %v; 10M used", LogRotateModule, err))
		size = 10 << 20
	}
	retain, err := strconv.Atoi(get("retain", "30"))
	if err != nil || retain < 0 {
		notes = append(notes, fmt.Sprintf("%s:retain %q is not a count; 30 used", LogRotateModule, get("retain", "")))
		retain = 30
	}
	r = Rotation{MaxSize: size, MaxFiles: retain}
	switch iv := get("rotateInterval", "0 0 * * *"); iv {
	case "0 0 * * *", "@daily", "@midnight":
		r.Daily = true
	default:
		notes = append(notes, fmt.Sprintf("%s:rotateInterval %q: corral rotates daily at midnight or by size only; size rotation used", LogRotateModule, iv))
	}
	for _, k := range []string{"compress", "dateFormat", "workerInterval", "rotateModule", "TZ"} {
		if _, set := m[k]; set {
			notes = append(notes, fmt.Sprintf("%s:%s has no effect in corral", LogRotateModule, k))
		}
	}
	return r, notes, true
}
