package daemon

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
)

// execMode is how an app's instances are run.
type execMode int

const (
	// modeFork: each instance is a plain child process (with a Node IPC channel for node apps).
	modeFork execMode = iota
	// modeCluster: instances are workers of one cluster.Primary per app, which owns the sockets.
	modeCluster
	// modeListen: the daemon binds App.Listen once and passes the sockets to every instance by
	// socket activation (LISTEN_FDS), through the `__activate` shim.
	modeListen
)

func (m execMode) String() string {
	switch m {
	case modeCluster:
		return "cluster"
	case modeListen:
		return "listen"
	}
	return "fork"
}

// resolved is what the daemon derives from an App before starting it.
type resolved struct {
	mode        execMode
	interpreter string   // as reported: "node", "python3", "none", ...
	execPath    string   // absolute path of the script or program (pm_exec_path)
	cwd         string   // absolute working directory
	argv        []string // argv[0] is the absolute path of the executable
	ipc         bool     // fork/listen: give the process a Node IPC channel
	cred        *syscall.Credential
	home        string // HOME of the uid, when uid is set
	notes       []string
}

// nodeInterpreter reports whether interpreter (a name or a path) is Node.js.
func nodeInterpreter(interpreter string) bool {
	return filepath.Base(interpreter) == "node" || filepath.Base(interpreter) == "nodejs"
}

// bunInterpreter and denoInterpreter report whether interpreter (a name or a path) is Bun or Deno, both
// of which can be cluster workers under corral's primary (docs/protocol.md §9).
func bunInterpreter(interpreter string) bool { return filepath.Base(interpreter) == "bun" }

func denoInterpreter(interpreter string) bool { return filepath.Base(interpreter) == "deno" }

// clusterWorkerEnv is what a Deno worker must be allowed to read to join a cluster: Deno's cluster
// bootstrap reads these, and panics without the permission.
const clusterWorkerEnv = "NODE_UNIQUE_ID,NODE_CHANNEL_FD,NODE_CHANNEL_SERIALIZATION_MODE"

// denoArgs returns the interpreter arguments Deno needs in front of a script: its `run` subcommand
// unless the user gave a subcommand, and, for a cluster worker whose arguments grant no environment
// access, read access to the variables of the cluster protocol.
func denoArgs(args []string, cluster bool) []string {
	out := args
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		out = append([]string{"run"}, args...)
	}
	if !cluster {
		return out
	}
	out = slices.Clone(out)
	for i, a := range out {
		switch {
		case a == "-A" || a == "--allow-all" || a == "--allow-env":
			return out
		case strings.HasPrefix(a, "--allow-env="):
			out[i] = a + "," + clusterWorkerEnv
			return out
		}
	}
	return append(append(out[:1:1], "--allow-env="+clusterWorkerEnv), out[1:]...)
}

// bunReusePortNote is the note of a Bun app in cluster mode on a host where the kernel does not move the
// connections queued on a closed SO_REUSEPORT listener to the others (docs/protocol.md §9).
const bunReusePortNote = "Bun's node:http servers bind the port in each worker (SO_REUSEPORT) instead of taking connections from corral: " +
	"a reload resets the connections queued on a stopping worker unless net.ipv4.tcp_migrate_req=1 (sysctl -w net.ipv4.tcp_migrate_req=1)"

// tcpMigrateReqPath is where Linux (5.14 and later) says whether it migrates the requests queued on a
// closed SO_REUSEPORT listener to another listener of the group.
var tcpMigrateReqPath = "/proc/sys/net/ipv4/tcp_migrate_req"

// tcpMigrateReq reports whether net.ipv4.tcp_migrate_req is 1.
func tcpMigrateReq() bool {
	b, err := os.ReadFile(tcpMigrateReqPath)
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// denoMayListen reports whether Deno's arguments grant network access (or name a permission set).
func denoMayListen(args []string) bool {
	for _, a := range args {
		if a == "-A" || a == "--allow-all" || a == "-N" || a == "--allow-net" || strings.HasPrefix(a, "--allow-net=") ||
			a == "-P" || strings.HasPrefix(a, "--permission-set") || strings.HasPrefix(a, "-P=") {
			return true
		}
	}
	return false
}

// lookPath finds an executable like exec.LookPath, but in the PATH the app will run with.
func lookPath(file, pathEnv string) (string, error) {
	if strings.Contains(file, "/") {
		if err := isExecutable(file); err != nil {
			return "", err
		}
		return filepath.Abs(file)
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // never look in the current directory implicitly
		}
		p := filepath.Join(dir, file)
		if isExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w in PATH", file, fs.ErrNotExist)
}

func isExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: %w (not executable)", path, fs.ErrPermission)
	}
	return nil
}

// keyErr marks err as a problem with the app's key (a client mistake: see appFieldError).
func keyErr(key string, err error) error { return &appspec.KeyError{Key: key, Err: err} }

// appFieldError marks an error resolving the i-th app of a request as the client's mistake, naming
// the field: "apps[i].<key>" when err names the key, else "apps[i]".
func appFieldError(i int, err error) error {
	field := fmt.Sprintf("apps[%d]", i)
	if ke := (*appspec.KeyError)(nil); errors.As(err, &ke) {
		field += "." + ke.Key
	}
	return api.BadField(field, err)
}

// resolveApp fills defaults into spec, validates it and works out how to run it. The returned App
// has Defaults applied and Interpreter, ExecMode, Cwd and Name resolved.
func resolveApp(spec appspec.App, selfPath string) (appspec.App, resolved, error) {
	var r resolved
	pm2Defaults(&spec)
	spec.Defaults()
	if err := spec.Validate(); err != nil {
		return spec, r, fmt.Errorf("app %q: %w", spec.Name, err)
	}
	if spec.Name == "" {
		base := filepath.Base(strings.Fields(spec.Script)[0])
		spec.Name = strings.TrimSuffix(base, filepath.Ext(base))
		if err := appspec.ValidateName(spec.Name); err != nil {
			return spec, r, keyErr("name", fmt.Errorf("%w (taken from the script: name the app)", err))
		}
	}
	pathEnv, ok := spec.RunEnv()["PATH"]
	if !ok {
		pathEnv = os.Getenv("PATH")
	}

	// Working directory.
	cwd := spec.Cwd
	if cwd == "" {
		if filepath.IsAbs(spec.Script) {
			cwd = filepath.Dir(spec.Script)
		} else if wd, err := os.Getwd(); err == nil {
			cwd = wd
		}
	}
	cwd, err := filepath.Abs(cwd)
	if err != nil {
		return spec, r, keyErr("cwd", fmt.Errorf("app %s: cwd %q: %w", spec.Name, spec.Cwd, err))
	}
	if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
		return spec, r, keyErr("cwd", fmt.Errorf("app %s: cwd %s is not a directory", spec.Name, cwd))
	}
	spec.Cwd = cwd
	r.cwd = cwd
	if _, err := compileIgnore(spec.IgnoreWatch, cwd); err != nil {
		return spec, r, keyErr("ignore_watch", fmt.Errorf("app %s: %w", spec.Name, err))
	}

	// Script: a file relative to cwd, a program on PATH, or a command string run by bash -c.
	script := spec.Script
	scriptPath := script
	if !filepath.IsAbs(scriptPath) {
		scriptPath = filepath.Join(cwd, scriptPath)
	}
	_, statErr := os.Stat(scriptPath)
	commandString := statErr != nil && strings.ContainsAny(strings.TrimSpace(script), " \t")
	interp := spec.Interpreter
	switch {
	case commandString:
		bash, err := lookPath("bash", pathEnv)
		if err != nil {
			return spec, r, fmt.Errorf("app %s: command string %q needs bash: %w", spec.Name, script, err)
		}
		r.interpreter = "none"
		r.execPath = bash
		r.argv = append([]string{bash, "-c", script, spec.Name}, spec.Args...)
		spec.Interpreter = "none"
	case statErr == nil:
		r.execPath = scriptPath
	default:
		if !errors.Is(statErr, fs.ErrNotExist) {
			return spec, r, keyErr("script", fmt.Errorf("app %s: script %s: %w", spec.Name, scriptPath, statErr))
		}
		p, err := lookPath(script, pathEnv)
		if err != nil {
			return spec, r, keyErr("script", fmt.Errorf("app %s: script %q not found in %s nor in PATH", spec.Name, script, cwd))
		}
		r.execPath = p
		if interp == "" {
			interp = "none"
		}
	}
	if !commandString {
		if interp == "" {
			interp = appspec.DetectFileInterpreter(r.execPath) // by extension, else by content
		}
		spec.Interpreter = interp
		r.interpreter = interp
		if interp == "none" {
			if err := isExecutable(r.execPath); err != nil {
				return spec, r, keyErr("script", fmt.Errorf("app %s: %s cannot be run directly (set an interpreter): %w", spec.Name, r.execPath, err))
			}
			r.argv = append([]string{r.execPath}, spec.Args...)
		} else {
			ip, err := lookPath(interp, pathEnv)
			if err != nil {
				return spec, r, keyErr("interpreter", fmt.Errorf("app %s: interpreter %q not found: %w", spec.Name, interp, err))
			}
			r.argv = append([]string{ip}, spec.InterpreterArgs...)
			if nodeInterpreter(interp) && appspec.SourceMaps(spec, r.execPath) && !slices.Contains(r.argv, "--enable-source-maps") {
				r.argv = append(r.argv, "--enable-source-maps") // PM2's source_map_support
			}
			r.argv = append(r.argv, r.execPath)
			r.argv = append(r.argv, spec.Args...)
		}
	}

	// Exec mode, by PM2's rule: cluster when asked for (or several instances) and the program is
	// Node, Bun or Deno — or a binary built with corral's cluster package, when cluster is asked for
	// explicitly.
	node := nodeInterpreter(r.interpreter)
	js := node || bunInterpreter(r.interpreter) || denoInterpreter(r.interpreter)
	switch {
	case len(spec.Listen) > 0:
		r.mode = modeListen
		if selfPath == "" {
			return spec, r, fmt.Errorf("app %s: listen needs the corral binary (daemon Config.Self is empty)", spec.Name)
		}
	case spec.ExecMode == "cluster" && (js || r.interpreter == "none") && !commandString:
		r.mode = modeCluster
	case spec.ExecMode == "cluster":
		r.notes = append(r.notes, fmt.Sprintf("exec_mode cluster needs a Node, Bun or Deno script or a program built with corral's cluster package; %s runs in fork mode (use listen to share a socket)", r.interpreter))
		r.mode = modeFork
	case spec.ExecMode == "" && spec.Instances > 1 && js:
		r.mode = modeCluster
	default:
		r.mode = modeFork
	}
	if r.mode == modeCluster {
		spec.ExecMode = "cluster"
	} else {
		spec.ExecMode = "fork"
	}
	r.ipc = node && r.mode != modeCluster
	if spec.Sticky && r.mode != modeCluster {
		r.notes = append(r.notes, "sticky applies to cluster mode only (the primary picks the instance of each connection); this app runs in "+r.mode.String()+" mode")
	}
	if r.mode == modeCluster && denoInterpreter(r.interpreter) && !denoMayListen(spec.InterpreterArgs) {
		r.notes = append(r.notes, "deno: no --allow-net, -A or -P in the interpreter arguments: the workers cannot listen (NotCapable) unless deno.json grants it; add --interpreter-args \"--allow-net\"")
	}
	if r.mode == modeCluster && bunInterpreter(r.interpreter) && !tcpMigrateReq() {
		r.notes = append(r.notes, bunReusePortNote)
	}
	if denoInterpreter(r.interpreter) && len(r.argv) > 0 {
		// deno needs its run subcommand before the script, and a cluster worker needs to read the
		// protocol's variables.
		argv := append([]string{r.argv[0]}, denoArgs(spec.InterpreterArgs, r.mode == modeCluster)...)
		argv = append(argv, r.execPath)
		r.argv = append(argv, spec.Args...)
	}
	r.notes = append(r.notes, probeNotes(spec, r.mode)...) // health.go

	if spec.UID != "" || spec.GID != "" {
		cred, home, err := credential(spec.UID, spec.GID)
		if err != nil {
			return spec, r, keyErr("uid", fmt.Errorf("app %s: %w", spec.Name, err))
		}
		r.cred, r.home = cred, home
	}
	return spec, r, nil
}

// credential resolves uid and gid (names or numbers) for a child process. Only root may use them.
func credential(uid, gid string) (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		return nil, "", fmt.Errorf("uid/gid (%q/%q) need the daemon to run as root", uid, gid)
	}
	cred := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}
	home := ""
	if uid != "" {
		u, err := user.Lookup(uid)
		if err != nil {
			u, err = user.LookupId(uid)
		}
		if err != nil {
			return nil, "", fmt.Errorf("uid %q: no such user", uid)
		}
		n, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, "", fmt.Errorf("uid %q: %w", uid, err)
		}
		g, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			return nil, "", fmt.Errorf("uid %q: group %w", uid, err)
		}
		cred.Uid, cred.Gid, home = uint32(n), uint32(g), u.HomeDir
	}
	if gid != "" {
		g, err := user.LookupGroup(gid)
		if err != nil {
			g, err = user.LookupGroupId(gid)
		}
		if err != nil {
			return nil, "", fmt.Errorf("gid %q: no such group", gid)
		}
		n, err := strconv.ParseUint(g.Gid, 10, 32)
		if err != nil {
			return nil, "", fmt.Errorf("gid %q: %w", gid, err)
		}
		cred.Gid = uint32(n)
	}
	return cred, home, nil
}

// logPaths returns an instance's log and pid file paths, by PM2's rules: the default logs are
// <home>/logs/<name>-out.log and -error.log, with the name escaped by appspec.LogName; a -<pm_id> suffix is added (before the extension
// of a custom path) when the app has several instances and merge_logs is off; "/dev/null" or
// "NULL" disables a log ("" is returned as its path, and "/dev/null" reported).
func logPaths(home string, spec appspec.App, pmID int) (out, errLog, combined, pid string) {
	safe := appspec.LogName(spec.Name) // injective: "a/b", "a b" and "a_b" get files of their own
	suffix := ""
	if spec.Instances > 1 && !spec.MergeLogs {
		suffix = "-" + strconv.Itoa(pmID)
	}
	path := func(custom, def string) string {
		if custom == "" {
			if def == "" {
				return ""
			}
			return filepath.Join(home, "logs", def+suffix+".log")
		}
		if custom == "NULL" || custom == os.DevNull {
			return os.DevNull
		}
		if !filepath.IsAbs(custom) {
			custom = filepath.Join(spec.Cwd, custom)
		}
		if suffix == "" {
			return custom
		}
		ext := filepath.Ext(custom)
		return strings.TrimSuffix(custom, ext) + suffix + ext
	}
	out = path(spec.OutFile, safe+"-out")
	errLog = path(spec.ErrorFile, safe+"-error")
	combined = path(spec.LogFile, "")
	pid = filepath.Join(home, "pids", safe+"-"+strconv.Itoa(pmID)+".pid")
	if custom := spec.PidFile; custom != "" { // PM2's pid_file (-p/--pid)
		if !filepath.IsAbs(custom) {
			custom = filepath.Join(spec.Cwd, custom)
		}
		if spec.Instances > 1 {
			ext := filepath.Ext(custom)
			custom = strings.TrimSuffix(custom, ext) + "-" + strconv.Itoa(pmID) + ext
		}
		pid = custom
	}
	return out, errLog, combined, pid
}

// protocolVars are environment variables the daemon sets itself when a process needs them, and
// removes from the inherited environment otherwise.
var protocolVars = []string{
	"NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE",
	"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
}

// instanceEnv builds the frozen environment of an instance: the app's environment plus the
// variables PM2 injects (pm_id, name, namespace, the instance variable, the increment variable,
// PM2_HOME, unique_id) and CORRAL_HOME.
func instanceEnv(spec appspec.App, r resolved, home string, pmID, instance int, uniqueID string) map[string]string {
	env := spec.RunEnv()
	for _, k := range protocolVars {
		delete(env, k)
	}
	env["pm_id"] = strconv.Itoa(pmID)
	env["name"] = spec.Name
	env["namespace"] = spec.Namespace
	env[spec.InstanceVar] = strconv.Itoa(instance)
	if spec.IncrementVar != "" {
		base, _ := strconv.Atoi(env[spec.IncrementVar])
		env[spec.IncrementVar] = strconv.Itoa(base + instance)
	}
	env["PM2_HOME"] = home
	env["CORRAL_HOME"] = home
	env["unique_id"] = uniqueID
	if r.home != "" {
		env["HOME"] = r.home
	}
	return env
}

// envList turns env into the KEY=value list exec wants, sorted for reproducibility.
func envList(env map[string]string, extra ...string) []string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, 0, len(keys)+len(extra))
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return append(out, extra...)
}

// newUUID returns a random (version 4) UUID, PM2's unique_id.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
