package systemd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/statefile"
)

// DefaultStopTimeout is how long systemd waits for the daemon to stop its apps before it kills
// everything left in the service's cgroup.
const DefaultStopTimeout = 90 * time.Second

// UnitOptions describes the service unit that runs the corral daemon.
type UnitOptions struct {
	// ServiceName is the unit's name without ".service"; "corral-<User>" by default ("corral"
	// when User is empty too).
	ServiceName string
	// User is the account the daemon runs as; no User= line is written when empty.
	User string
	// Home is the daemon's CORRAL_HOME; not set in the unit when empty.
	Home string
	// Binary is the absolute path of the corral executable.
	Binary string
	// Path is the PATH the daemon and its apps see; not set in the unit when empty.
	Path string
	// StopTimeout is TimeoutStopSec; DefaultStopTimeout when zero.
	StopTimeout time.Duration
}

// Name returns the unit's file name, ServiceName (or its default) plus ".service".
func (o UnitOptions) Name() string {
	return o.serviceName() + ".service"
}

// Validate reports options that would produce a broken unit: a Binary that is not an absolute
// path, a Home that is not absolute, or a service or user name systemd would reject.
func (o UnitOptions) Validate() error {
	if o.Binary == "" || !filepath.IsAbs(o.Binary) {
		return fmt.Errorf("unit options: Binary %q is not an absolute path", o.Binary)
	}
	if o.Home != "" && !filepath.IsAbs(o.Home) {
		return fmt.Errorf("unit options: Home %q is not an absolute path", o.Home)
	}
	if bad := strings.IndexFunc(o.serviceName(), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":-_.\\", r))
	}); bad >= 0 || len(o.Name()) > 255 {
		return fmt.Errorf("unit options: service name %q is not a valid unit name (only letters, digits and any of `:-_.\\`; at most 255 bytes)", o.serviceName())
	}
	if strings.ContainsFunc(o.User, func(r rune) bool { return r <= ' ' || r == ':' || r == '/' || r == 0x7f }) {
		return fmt.Errorf("unit options: user %q is not a valid user name", o.User)
	}
	return nil
}

func (o UnitOptions) serviceName() string {
	switch {
	case o.ServiceName != "":
		return o.ServiceName
	case o.User != "":
		return "corral-" + o.User
	}
	return "corral"
}

// Unit returns the text of a systemd service unit that runs the corral daemon in the foreground
// and resurrects the saved process list at start. Values are quoted and escaped for systemd, so a
// path with spaces, '%', '$' or quotes comes through unchanged.
func Unit(opts UnitOptions) string {
	stop := opts.StopTimeout
	if stop <= 0 {
		stop = DefaultStopTimeout
	}
	var b strings.Builder
	line := func(s ...string) { b.WriteString(strings.Join(s, "") + "\n") }

	line("[Unit]")
	desc := "Corral process manager"
	if opts.User != "" {
		desc += " for " + opts.User
	}
	line("Description=", escapeSpecifiers(desc))
	line("Documentation=https://github.com/corralhq/corral")
	line("After=network.target")
	line()
	line("[Service]")
	line("# The main process is corral's keeper, which runs the daemon and restarts it if it dies")
	line("# (the apps keep running meanwhile). The daemon sends READY=1 over $NOTIFY_SOCKET once the")
	line("# saved apps are resurrected; NotifyAccess=all lets it, as it is not the main process.")
	line("Type=notify")
	line("NotifyAccess=all")
	if opts.User != "" {
		line("User=", escapeSpecifiers(opts.User))
	}
	var env []string
	if opts.Path != "" {
		env = append(env, quote("PATH="+opts.Path, false))
	}
	if opts.Home != "" {
		env = append(env, quote("CORRAL_HOME="+opts.Home, false))
	}
	if len(env) > 0 {
		line("Environment=", strings.Join(env, " "))
	}
	// The program path of ExecStart= gets specifier expansion but no $VAR expansion, so '$' stays.
	bin := quote(opts.Binary, false)
	line("ExecStart=", bin, " __keeper --foreground --resurrect")
	line("ExecReload=", bin, " reload all")
	line("# On stop the keeper tells the daemon, which stops every app gracefully (each app's")
	line("# kill_signal, then SIGKILL after its kill_timeout). KillMode=mixed sends SIGTERM to the")
	line("# keeper only, so apps are not signalled twice or out of order; whatever is still in the")
	line("# cgroup when TimeoutStopSec expires gets SIGKILL.")
	line("KillMode=mixed")
	line("TimeoutStopSec=", strconv.FormatInt(int64((stop+time.Second-1)/time.Second), 10))
	line("Restart=on-failure")
	line("RestartSec=1")
	line("LimitNOFILE=infinity")
	line()
	line("[Install]")
	line("WantedBy=multi-user.target")
	return b.String()
}

// quote returns s as one word for a unit file: '%' (specifiers) is doubled and, in command-line
// arguments (dollar is true), so is '$' (variable expansion). A word that is empty or holds white space,
// quotes, backslashes, ';' or control characters is double-quoted with C escapes.
func quote(s string, dollar bool) string {
	var b strings.Builder
	plain := s != "" && s != ";" && !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\'
	})
	if plain {
		for _, r := range s {
			switch {
			case r == '%':
				b.WriteString("%%")
			case r == '$' && dollar:
				b.WriteString("$$")
			default:
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '\\' || r == '"':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r == '%':
			b.WriteString("%%")
		case r == '$' && dollar:
			b.WriteString("$$")
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// escapeSpecifiers doubles '%' and drops line breaks in a free-text value.
func escapeSpecifiers(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	return strings.ReplaceAll(s, "%", "%%")
}

// Runner runs an external command and returns an error that includes its output when it fails.
// ExecRunner is the real one; tests pass a fake.
type Runner func(ctx context.Context, name string, args ...string) error

// ExecRunner runs name with args and waits for it.
func ExecRunner(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Install writes content to unitPath (mode 0644, atomically). If run is not nil it then runs
// `systemctl daemon-reload` and `systemctl enable <unit>`; with a nil run only the file is written.
func Install(ctx context.Context, unitPath, content string, run Runner) error {
	unit, err := unitName(unitPath)
	if err != nil {
		return err
	}
	if err := statefile.WriteFileAtomic(unitPath, []byte(content), 0o644); err != nil {
		return fmt.Errorf("install unit: %w", err)
	}
	if run == nil {
		return nil
	}
	if err := run(ctx, "systemctl", "daemon-reload"); err != nil {
		return fmt.Errorf("install %s: %w", unit, err)
	}
	if err := run(ctx, "systemctl", "enable", unit); err != nil {
		return fmt.Errorf("install %s: %w", unit, err)
	}
	return nil
}

// Uninstall removes the unit at unitPath. If run is not nil it first runs
// `systemctl disable <unit>` and afterwards `systemctl daemon-reload`. A missing unit file is an
// error wrapping fs.ErrNotExist.
func Uninstall(ctx context.Context, unitPath string, run Runner) error {
	unit, err := unitName(unitPath)
	if err != nil {
		return err
	}
	if _, err := os.Stat(unitPath); err != nil {
		return fmt.Errorf("uninstall %s: %w", unit, err)
	}
	if run != nil {
		if err := run(ctx, "systemctl", "disable", unit); err != nil {
			return fmt.Errorf("uninstall %s: %w", unit, err)
		}
	}
	if err := os.Remove(unitPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("uninstall %s: %w", unit, err)
	}
	if run != nil {
		if err := run(ctx, "systemctl", "daemon-reload"); err != nil {
			return fmt.Errorf("uninstall %s: %w", unit, err)
		}
	}
	return nil
}

// unitName checks that unitPath names a service unit file and returns its base name.
func unitName(unitPath string) (string, error) {
	base := filepath.Base(unitPath)
	if !strings.HasSuffix(base, ".service") || base == ".service" {
		return "", fmt.Errorf("unit path %q: the file name must end in .service", unitPath)
	}
	return base, nil
}
