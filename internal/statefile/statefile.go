// Package statefile stores the saved process list that `corral save` writes and `corral resurrect`
// reads back.
//
// The list is the one thing a process manager must never lose, so every write is atomic (a
// temporary file in the same directory, fsync, rename, fsync of the directory), the previous good
// copy is kept as path+".bak", an empty list never replaces a non-empty one unless forced, and a
// dump that is missing or corrupt is recovered from the backup.
package statefile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/corralhq/corral/internal/appspec"
)

// Version is the format version written in the envelope. Load rejects dumps from a newer version.
const Version = 1

// BackupSuffix is appended to a dump's path to name its backup copy.
const BackupSuffix = ".bak"

// ErrWouldEmpty is returned (wrapped) by Save when an empty list would replace a non-empty dump
// and force was not given.
var ErrWouldEmpty = errors.New("refusing to overwrite a non-empty dump with an empty process list (use force to clear it)")

// envelope is the on-disk form of a dump.
type envelope struct {
	Version int           `json:"version"`
	SavedAt time.Time     `json:"saved_at"`
	Apps    []appspec.App `json:"apps"`
}

// Save writes apps to path as a versioned JSON dump with mode 0600.
//
// If path already holds a readable dump, it is first copied to path+".bak"; a corrupt dump is not
// copied, so it never replaces a good backup. When apps is empty and the existing dump (or its
// backup) lists any app, Save returns an error wrapping ErrWouldEmpty unless force is true. Any
// write error, a full disk included, leaves the existing dump untouched.
func Save(path string, apps []appspec.App, force bool) error {
	for i := range apps {
		if err := checkApp(apps, i); err != nil {
			return fmt.Errorf("save %s: %w", path, err)
		}
	}
	if apps == nil {
		apps = []appspec.App{}
	}
	data, err := json.MarshalIndent(envelope{Version: Version, SavedAt: time.Now().UTC(), Apps: apps}, "", "  ")
	if err != nil {
		return fmt.Errorf("save %s: encode: %w", path, err)
	}
	data = append(data, '\n')

	old, oldErr := os.ReadFile(path)
	oldApps, decErr := decode(old)
	oldGood := oldErr == nil && decErr == nil

	if len(apps) == 0 && !force {
		prev := oldApps
		if !oldGood {
			// The dump is missing or broken; what Load would resurrect is the backup.
			if bak, err := os.ReadFile(path + BackupSuffix); err == nil {
				if bakApps, err := decode(bak); err == nil {
					prev = bakApps
				}
			}
		}
		if len(prev) > 0 {
			return fmt.Errorf("save %s: %d app(s) saved: %w", path, len(prev), ErrWouldEmpty)
		}
	}
	if oldErr != nil && !errors.Is(oldErr, fs.ErrNotExist) {
		return fmt.Errorf("save %s: read current dump: %w", path, oldErr)
	}

	if oldGood {
		if err := WriteFileAtomic(path+BackupSuffix, old, 0o600); err != nil {
			return fmt.Errorf("save %s: keep backup: %w", path, err)
		}
	} else if oldErr == nil && len(bytes.TrimSpace(old)) > 0 {
		// A dump corral cannot read (damaged, or another tool's, such as PM2's own dump.pm2) is
		// not overwritten before it is kept aside.
		if _, err := keepAside(path, old); err != nil {
			return fmt.Errorf("save %s: %w", path, err)
		}
	}
	if err := WriteFileAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// Load reads the dump at path.
//
// If the dump is missing or corrupt, Load reads path+".bak" instead and returns a non-empty
// warning that names both files and says why the dump was not used. If neither file can be used,
// the error names both; it wraps fs.ErrNotExist only when both are missing, which is the normal
// state before the first save.
func Load(path string) (apps []appspec.App, warning string, err error) {
	bakPath := path + BackupSuffix
	apps, err = loadFile(path)
	if err == nil {
		return apps, "", nil
	}
	bakApps, bakErr := loadFile(bakPath)
	if bakErr == nil {
		what := "is corrupt"
		if errors.Is(err, fs.ErrNotExist) {
			what = "is missing"
		}
		return bakApps, fmt.Sprintf("dump %s %s (%v); restored %d app(s) from backup %s", path, what, err, len(bakApps), bakPath), nil
	}
	if errors.Is(err, fs.ErrNotExist) && errors.Is(bakErr, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("load %s: no dump and no backup %s: %w", path, bakPath, fs.ErrNotExist)
	}
	// Not %w: the result must not look like fs.ErrNotExist when one of the files exists.
	return nil, "", fmt.Errorf("load %s: dump unusable: %v; backup unusable: %v", path, err, bakErr)
}

// CorruptSuffix, followed by a UTC time stamp, names the copy of an unreadable dump kept aside by
// Save and Repair before they replace it.
const CorruptSuffix = ".corrupt-"

// keepAside copies data, the content of the unreadable dump at path, to a new file
// path+CorruptSuffix+<time stamp> and returns its name.
func keepAside(path string, data []byte) (string, error) {
	name := path + CorruptSuffix + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := WriteFileAtomic(name, data, 0o600); err != nil {
		return "", fmt.Errorf("keep the unreadable dump: %w", err)
	}
	return name, nil
}

// LoadRepair is Load for resurrect: when the dump at path exists but is corrupt and its backup was
// read instead, the dump is replaced by the backup's content, as PM2 does after restoring from its
// backup (PM2 deletes the broken dump; corral keeps a copy of it, named in the warning).
func LoadRepair(path string) (apps []appspec.App, warning string, err error) {
	apps, warning, err = Load(path)
	if err != nil || warning == "" {
		return apps, warning, err
	}
	bad, rerr := os.ReadFile(path)
	if rerr != nil {
		return apps, warning, nil // missing: nothing to replace
	}
	if _, derr := decode(bad); derr == nil {
		return apps, warning, nil // written meanwhile
	}
	bak, berr := os.ReadFile(path + BackupSuffix)
	if berr != nil {
		return apps, warning, nil
	}
	kept, kerr := keepAside(path, bad)
	if kerr == nil {
		kerr = WriteFileAtomic(path, bak, 0o600)
	}
	if kerr != nil {
		return apps, warning + "; the dump could not be repaired: " + kerr.Error(), nil
	}
	return apps, warning + "; the dump was replaced by the backup (the damaged one is kept as " + kept + ")", nil
}

// loadFile reads and decodes one dump file; the error names the file.
func loadFile(path string) ([]appspec.App, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *fs.PathError names the file
	}
	apps, err := decode(data)
	if err != nil {
		if de := (*dumpError)(nil); errors.As(err, &de) && de.line > 0 {
			return nil, fmt.Errorf("%s:%w", path, err) // path:line:col: msg
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return apps, nil
}

// dumpError is a problem with a dump's content, with its position when one is known.
type dumpError struct {
	line, col int // 1-based; line 0 means no position
	err       error
}

func (e *dumpError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%d:%d: %v", e.line, e.col, e.err)
	}
	return e.err.Error()
}

func (e *dumpError) Unwrap() error { return e.err }

// errAt builds a dumpError for the byte offset off of data.
func errAt(data []byte, off int64, err error) error {
	line, col := position(data, off)
	return &dumpError{line: line, col: col, err: err}
}

// decode parses a dump.
func decode(data []byte) ([]appspec.App, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &dumpError{err: errors.New("empty file")}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var env struct {
		Version *int           `json:"version"`
		Apps    *[]appspec.App `json:"apps"`
	}
	if err := dec.Decode(&env); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, errAt(data, syn.Offset, err)
		case errors.As(err, &typ):
			return nil, errAt(data, typ.Offset, err)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, errAt(data, int64(len(data)), fmt.Errorf("truncated: %w", err))
		}
		return nil, &dumpError{err: err}
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		end += int64(len(data[end:]) - len(bytes.TrimLeft(data[end:], " \t\r\n")))
		return nil, errAt(data, end, errors.New("trailing data after the dump"))
	}
	switch {
	case env.Version == nil:
		return nil, &dumpError{err: errors.New(`missing "version"`)}
	case *env.Version < 1 || *env.Version > Version:
		return nil, &dumpError{err: fmt.Errorf(`unsupported "version" %d (this corral reads version %d)`, *env.Version, Version)}
	case env.Apps == nil:
		return nil, &dumpError{err: errors.New(`missing "apps"`)}
	}
	apps := *env.Apps
	for i := range apps {
		if err := checkApp(apps, i); err != nil {
			return nil, &dumpError{err: err}
		}
	}
	return apps, nil
}

// checkApp reports an app that could not be started again.
func checkApp(apps []appspec.App, i int) error {
	if apps[i].Script == "" {
		return fmt.Errorf(`apps[%d] (name %q): empty "script"`, i, apps[i].Name)
	}
	return nil
}

// position converts a byte offset into a 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// WriteFileAtomic replaces the file at path with data so that a reader sees either the old or the
// new content, never a mix, even after a crash: it writes a temporary file in the same directory,
// syncs it, renames it over path and syncs the directory. The file gets mode perm. On any error
// path is left as it was and the temporary file is removed.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		// The rename happened; the data is in place but may not survive a power loss.
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}
