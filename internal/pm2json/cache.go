package pm2json

import (
	"reflect"
	"slices"
	"sync"

	"github.com/corralhq/corral/internal/api"
)

// EnvCache renders jlist as JList does — the same bytes — but encodes each instance's
// environment (most of an entry: ~4 KB for an ordinary shell's) only when it changed since the
// last JList: the daemon keeps one, so that a monitor polling `jlist` does not cost it a
// re-encoding of every environment each time (issue 13). Everything else in an entry (status,
// pid, monit, restarts, uptime...) is rendered afresh on every call.
//
// An environment is known by the identity of the maps it is made of (Proc.Env and Proc.App.Env):
// the caller must never change such a map in place once it gave it to JList, only replace it (the
// daemon's instance and app environments are replaced whole at each restart). The cache holds the
// maps it encoded, so their addresses cannot be reused by others while cached. Safe for
// concurrent use (JList calls are serialised).
type EnvCache struct {
	mu    sync.Mutex
	m     map[any]*cachedEnv
	spare map[any]*cachedEnv // the map of the call before last, emptied, for the next call
	// keySets are the distinct lists of pm2_env's own keys the entries' skip lists were computed
	// for (a few: most instances have the same), shared by the entries.
	keySets [][]string
}

// maxKeySets bounds keySets; past it, it starts again (the entries keep the lists they hold).
const maxKeySets = 64

// keysFor returns the list of keySets equal to keys, adding a copy when there is none.
func (c *EnvCache) keysFor(keys []string) []string {
	for _, ks := range c.keySets {
		if slices.Equal(ks, keys) {
			return ks
		}
	}
	if len(c.keySets) >= maxKeySets {
		c.keySets = nil
	}
	ks := slices.Clone(keys)
	c.keySets = append(c.keySets, ks)
	return ks
}

type cachedEnv struct {
	env, appEnv map[string]string // the maps encoded
	enc         encodedEnv
}

// JList returns JList(procs). keys[i] identifies the instance of procs[i] (any comparable
// value, the same from call to call); the entries of keys not given are dropped.
func (c *EnvCache) JList(procs []api.Proc, keys []any) ([]byte, error) {
	return c.AppendJList(nil, procs, keys)
}

// AppendJList is JList appending to dst (whose capacity is used when it is enough: the daemon
// reuses one buffer from call to call instead of allocating the whole answer each time).
func (c *EnvCache) AppendJList(dst []byte, procs []api.Proc, keys []any) ([]byte, error) {
	if len(keys) != len(procs) {
		out, err := JList(procs)
		return append(dst, out...), err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m
	c.m = c.spare // emptied at the end of the last call
	if c.m == nil {
		c.m = make(map[any]*cachedEnv, len(procs))
	}
	c.spare = nil
	n := 2 // room for about what the entries take, as JList makes
	for i, p := range procs {
		n += 1024
		if ce := old[keys[i]]; ce != nil {
			n += 2 * len(ce.enc.pairs)
		} else {
			for k, v := range p.Env {
				n += 2*len(k) + 2*len(v) + 12
			}
		}
	}
	buf := dst
	if cap(buf)-len(buf) < n {
		buf = make([]byte, len(dst), len(dst)+n)
		copy(buf, dst)
	}
	buf = append(buf, '[')
	var kvs []envKV
	var o Object
	for i, p := range procs {
		if i > 0 {
			buf = append(buf, ',')
		}
		key := keys[i]
		ce := old[key]
		var err error
		buf, err = appendEntryEnv(buf, p, &o, func() (*encodedEnv, error) {
			if ce != nil && sameMap(ce.env, p.Env) && sameMap(ce.appEnv, p.App.Env) {
				return &ce.enc, nil
			}
			ce = &cachedEnv{env: p.Env, appEnv: p.App.Env}
			return &ce.enc, ce.enc.encode(p, &kvs)
		}, c.keysFor)
		if err != nil {
			c.m = nil
			return nil, err
		}
		if ce != nil {
			c.m[key] = ce
		}
	}
	clear(old) // the next call's map
	c.spare = old
	return append(buf, ']'), nil
}

// sameMap reports whether a and b are the same map (or both nil).
func sameMap(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
