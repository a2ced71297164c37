package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"sync"
	"unsafe"

	"github.com/corralhq/corral/internal/appspec"
)

// The keeper link's state snapshot (keeperstore.go) re-encodes the whole process table every
// time it changes, at most every stateGap: during a start of 100 apps that is several snapshots of
// up to 100 apps, and most of each one is the apps' environments (the shell's environment of the
// CLI, ~40 variables, in every app's spec and again, merged, in every instance's state). JSON
// encoding of a map sorts its keys through reflection: that was most of a snapshot's CPU time.
//
// envCache keeps the JSON of every environment map of the last snapshot, keyed by the map's
// identity, with a private copy of the map as it was encoded. A snapshot takes the table's env
// maps under m.mu, as before, but instead of copying each one it compares it with the cached copy
// (maps.Equal: exact, whatever changed the map, in place or not) and copies only those that differ
// or are new; outside m.mu it encodes only those, and splices every map's JSON into the state
// (savedStateOut: the same JSON object as savedState, the env fields shadowed by json.RawMessage).
// An entry no snapshot used in its last pass is dropped.
//
// Concurrency: the cache has its own lock, a leaf taken under m.mu (prepare) and without it
// (resolve). Snapshots are serialised by the keeper link's flushMu anyway; the lock only keeps a
// test or a second caller honest. The encoded bytes are never changed once stored.
type envCache struct {
	mu      sync.Mutex
	gen     uint64
	entries map[unsafe.Pointer]*envEntry
	// last is the entry stored last for each kind of map (envSpec...): a map that is not cached
	// but equal to it (the next app's shell environment in a start of many apps from one CLI)
	// takes its JSON without encoding it.
	last   [envKinds]*envEntry
	misses int // maps encoded, for tests
	shared int // maps that took last's JSON, for tests
}

type envEntry struct {
	m   map[string]string // a private copy of the map as encoded
	raw []byte            // its JSON
	gen uint64            // the last snapshot that used it
}

// envRef is one environment map of a snapshot: its JSON when the cache had it, else a private
// copy to encode (nil map: isNil).
type envRef struct {
	isNil bool
	key   unsafe.Pointer
	raw   []byte
	m     map[string]string
}

// The encoded form of savedState: the same fields (embedded), with what holds the environment maps
// shadowed by empty json.RawMessage fields (omitted) and written by hand after the rest of each
// object (appendState), the maps' JSON copied as is: encoding/json would re-validate every
// RawMessage, which costs as much as encoding the map. A field added to savedState, savedApp,
// savedInstance, appspec.App or InstanceState is encoded without a change here; the shadowed
// fields are left empty in the embedded values.
type savedStateOut struct {
	savedState
	Apps json.RawMessage `json:"apps,omitempty"` // written by appendState
	apps []savedAppOut
}

type savedAppOut struct {
	savedApp
	Spec      json.RawMessage `json:"spec,omitempty"`      // written by appendState
	Instances json.RawMessage `json:"instances,omitempty"` // written by appendState
	spec      specOut
	instances []savedInstanceOut
}

type specOut struct {
	appspec.App
	Env      json.RawMessage `json:"env,omitempty"`       // written by appendState
	ShellEnv json.RawMessage `json:"shell_env,omitempty"` // written by appendState
	env      envRef
	shell    envRef
}

type savedInstanceOut struct {
	savedInstance
	State json.RawMessage `json:"state,omitempty"` // written by appendState
	state instanceStateOut
}

type instanceStateOut struct {
	InstanceState
	Env json.RawMessage `json:"env,omitempty"` // written by appendState
	env envRef
}

// ref returns m's JSON if the cache has it for this very map with this content, else a copy of
// m to encode. The caller holds c.mu (and m.mu: m is the table's).
func (c *envCache) ref(m map[string]string) envRef {
	if m == nil {
		return envRef{isNil: true}
	}
	key := reflect.ValueOf(m).UnsafePointer()
	if e := c.entries[key]; e != nil && len(e.m) == len(m) && maps.Equal(e.m, m) {
		e.gen = c.gen
		return envRef{raw: e.raw}
	}
	return envRef{key: key, m: maps.Clone(m)}
}

// prepare turns a snapshot whose environment maps are still the table's into its encoded form,
// taking what the cache has. The caller holds m.mu; st must not be used afterwards.
func (c *envCache) prepare(st savedState) savedStateOut {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[unsafe.Pointer]*envEntry{}
	}
	c.gen++
	out := savedStateOut{savedState: st}
	if st.Apps != nil {
		out.apps = make([]savedAppOut, len(st.Apps))
	}
	out.savedState.Apps = nil
	for i, sa := range st.Apps {
		ao := &out.apps[i]
		ao.savedApp = sa
		ao.spec.App = sa.Spec
		ao.spec.env, ao.spec.shell = c.ref(sa.Spec.Env), c.ref(sa.Spec.ShellEnv)
		ao.spec.App.Env, ao.spec.App.ShellEnv = nil, nil // no reference to the table's maps
		ao.savedApp.Spec, ao.savedApp.Instances = appspec.App{}, nil
		if sa.Instances != nil {
			ao.instances = make([]savedInstanceOut, len(sa.Instances))
		}
		for j, si := range sa.Instances {
			io := &ao.instances[j]
			io.savedInstance = si
			io.state.InstanceState = si.State
			io.state.env = c.ref(si.State.Env)
			io.state.InstanceState.Env = nil
			io.savedInstance.State = InstanceState{}
		}
	}
	return out
}

// resolve encodes the maps prepare did not find and stores them, and drops the entries this
// snapshot did not use. It runs without m.mu.
func (c *envCache) resolve(out *savedStateOut) error {
	for i := range out.apps {
		ao := &out.apps[i]
		if err := c.encode(&ao.spec.env, envSpec); err != nil {
			return err
		}
		if err := c.encode(&ao.spec.shell, envShell); err != nil {
			return err
		}
		for j := range ao.instances {
			if err := c.encode(&ao.instances[j].state.env, envInstance); err != nil {
				return err
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.gen != c.gen {
			delete(c.entries, k)
		}
	}
	return nil
}

// The kinds of env maps, for envCache.last.
const (
	envSpec = iota
	envShell
	envInstance
	envKinds
)

// encode sets r.raw, encoding and storing the map if prepare did not find it.
func (c *envCache) encode(r *envRef, kind int) error {
	if r.isNil || r.raw != nil {
		return nil
	}
	c.mu.Lock()
	last := c.last[kind]
	c.mu.Unlock()
	var raw []byte
	shared := last != nil && len(last.m) == len(r.m) && maps.Equal(last.m, r.m)
	if shared {
		raw = last.raw // never changed once stored
	} else {
		var err error
		if raw, err = json.Marshal(r.m); err != nil {
			return err
		}
	}
	e := &envEntry{m: r.m, raw: raw, gen: c.gen}
	c.mu.Lock()
	if shared {
		c.shared++
	} else {
		c.misses++
	}
	c.entries[r.key], c.last[kind] = e, e
	c.mu.Unlock()
	r.raw, r.m = raw, nil
	return nil
}

// appendState writes out (resolved) as JSON to b, with a newline, as json.Encoder writes
// savedState: the same object, its members in another order.
func appendState(b *bytes.Buffer, out *savedStateOut) error {
	o := &objectWriter{b: b}
	o.enc = json.NewEncoder(&o.scratch)
	if err := o.open(out); err != nil {
		return err
	}
	member(b, "apps")
	if out.apps == nil {
		b.WriteString("null")
	} else {
		b.WriteByte('[')
		for i := range out.apps {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := o.app(&out.apps[i]); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	}
	b.WriteString("}\n")
	return nil
}

// objectWriter writes the objects of a state into b, each encoded into one reused scratch buffer
// first (json.Marshal would allocate each one's JSON).
type objectWriter struct {
	b       *bytes.Buffer
	scratch bytes.Buffer
	enc     *json.Encoder
}

func (o *objectWriter) app(ao *savedAppOut) error {
	b := o.b
	if err := o.open(ao); err != nil {
		return err
	}
	member(b, "spec")
	if err := o.open(&ao.spec); err != nil {
		return err
	}
	envMember(b, "env", ao.spec.env, true)
	envMember(b, "shell_env", ao.spec.shell, true)
	b.WriteByte('}')
	member(b, "instances")
	if ao.instances == nil {
		b.WriteString("null")
	} else {
		b.WriteByte('[')
		for j := range ao.instances {
			if j > 0 {
				b.WriteByte(',')
			}
			io := &ao.instances[j]
			if err := o.open(io); err != nil {
				return err
			}
			member(b, "state")
			if err := o.open(&io.state); err != nil {
				return err
			}
			envMember(b, "env", io.state.env, false)
			b.WriteString("}}")
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return nil
}

// open writes v's JSON object without its closing brace.
func (o *objectWriter) open(v any) error {
	o.scratch.Reset()
	if err := o.enc.Encode(v); err != nil {
		return err
	}
	j := bytes.TrimSuffix(o.scratch.Bytes(), []byte{'\n'})
	if len(j) < 2 || j[0] != '{' || j[len(j)-1] != '}' {
		return fmt.Errorf("keeper state: %T encodes to %.20q, not an object", v, j)
	}
	o.b.Write(j[:len(j)-1])
	return nil
}

// member writes the name of the next member of the object being written (after a comma unless
// it is the first).
func member(b *bytes.Buffer, name string) {
	if last := b.Bytes()[b.Len()-1]; last != '{' {
		b.WriteByte(',')
	}
	b.WriteByte('"')
	b.WriteString(name) // plain ASCII names, nothing to escape
	b.WriteString(`":`)
}

// envMember writes an env map's member as encoding/json writes the field it replaces: null for
// a nil map, or with omitEmpty nothing for a nil or empty one.
func envMember(b *bytes.Buffer, name string, r envRef, omitEmpty bool) {
	if omitEmpty && (r.isNil || len(r.raw) == 2) { // nil, or {}
		return
	}
	member(b, name)
	if r.isNil {
		b.WriteString("null")
		return
	}
	b.Write(r.raw)
}
