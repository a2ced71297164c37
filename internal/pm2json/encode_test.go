package pm2json

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
)

// refMarshal is the encoding jlist had before appendValue: encoding/json for every key and leaf.
func refMarshal(t *testing.T, v any) []byte {
	t.Helper()
	switch x := v.(type) {
	case *Object:
		if x == nil {
			return []byte("null")
		}
		var b bytes.Buffer
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(refMarshal(t, k))
			b.WriteByte(':')
			b.Write(refMarshal(t, x.vals[i]))
		}
		b.WriteByte('}')
		return b.Bytes()
	case []*Object:
		var b bytes.Buffer
		b.WriteByte('[')
		for i, o := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(refMarshal(t, o))
		}
		b.WriteByte(']')
		return b.Bytes()
	}
	out, err := marshalStd(v)
	if err != nil {
		t.Fatalf("reference encoding of %#v: %v", v, err)
	}
	return out
}

// TestAppendValueMatchesEncodingJSON: the direct encoder writes exactly what encoding/json
// (HTML escaping off) writes, for every kind of value jlist holds and awkward strings and numbers.
func TestAppendValueMatchesEncodingJSON(t *testing.T) {
	strs := []string{"", "plain", "it's <b>&amp;", `q"uote`, `back\slash`, "tab\there", "nl\n", "cr\r",
		"\b\f\x00\x01\x1f", "del\x7f", "é ü 日本", "line\u2028sep\u2029", "bad\xffutf8", "\xc3", "emoji 🐄", "/slash/"}
	floats := []float64{0, math.Copysign(0, -1), 0.54, 12, 1e-6, 9.99e-7, 1e20, 1e21, 123456789.125, -3.5, 1.0 / 3, 5e-324}
	o := &Object{}
	for i, s := range strs {
		o.Set(fmt.Sprintf("s%d", i), s)
		o.Set(s, i) // awkward keys too
	}
	for i, f := range floats {
		o.Set(fmt.Sprintf("f%d", i), f)
	}
	o.Set("int", -42)
	o.Set("int64", int64(1)<<60)
	o.Set("uint64", uint64(math.MaxUint64))
	o.Set("true", true)
	o.Set("false", false)
	o.Set("nil strs", []string(nil))
	o.Set("strs", strs)
	o.Set("empty strs", []string{})
	o.Set("nil", nil)
	o.Set("nil object", (*Object)(nil))
	o.Set("any", map[string]int{"b": 2, "a": 1})
	o.Set("ints", []int{1, 2})
	inner := &Object{}
	inner.Set("x", "y")
	o.Set("inner", inner)
	for _, v := range []any{o, []*Object{o, inner}, []*Object{}, strs[5], floats[3]} {
		got, err := marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if want := refMarshal(t, v); !bytes.Equal(got, want) {
			t.Errorf("encodings differ:\n got %s\nwant %s", got, want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1)} {
		if _, err := marshal(f); err == nil {
			t.Errorf("%v: no error (encoding/json refuses it)", f)
		}
	}
}

func benchProcs(n int) []api.Proc {
	env := map[string]string{}
	for i := 0; i < 40; i++ {
		env[fmt.Sprintf("VAR_%02d", i)] = strings.Repeat("v", 30)
	}
	procs := make([]api.Proc, n)
	for i := range procs {
		procs[i] = api.Proc{PMID: i, Name: fmt.Sprintf("s%03d", i), Namespace: "default", PID: 1000 + i, Status: "online",
			App:         appspec.App{Name: fmt.Sprintf("s%03d", i), Script: "/bin/sleep", Args: []string{"100000"}, Env: map[string]string{"PORT": "3000"}},
			Interpreter: "none", ExecPath: "/bin/sleep", Cwd: "/tmp", StartedAt: time.Now(), CreatedAt: time.Now(),
			OutLog: "/h/logs/s-out.log", ErrLog: "/h/logs/s-error.log", PidFile: "/h/pids/s.pid", CPU: 0.3, Memory: 1 << 20, Env: env}
	}
	return procs
}

func BenchmarkJList100(b *testing.B) {
	procs := benchProcs(100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := JList(procs); err != nil {
			b.Fatal(err)
		}
	}
}

// TestJListMatchesEntry: JList, which writes the environment straight from the map, gives the
// bytes of the Entry objects encoded, also when environment keys collide with PM2's keys, the
// instance variable is named like one of them (or "env"), and values are numbers of the app's own.
func TestJListMatchesEntry(t *testing.T) {
	procs := append(sample(), benchProcs(3)...)
	odd := sample()[0]
	odd.Env = map[string]string{"name": "x", "env": "e", "status": "s", "PORT": "3000", "F": "1.5", "B": "true",
		"Z": "007", "E": "", "U": "é\n\"", "instance_var": "iv", "NODE_APP_INSTANCE": "3"}
	odd.App.Env = map[string]string{"PORT": "3000", "F": "1.5", "B": "true", "Z": "007", "E": ""}
	procs = append(procs, odd)
	for _, iv := range []string{"env", "name", "PORT", "status"} {
		p := odd
		p.App.InstanceVar = iv
		procs = append(procs, p)
	}
	empty := sample()[1]
	empty.Env = nil
	procs = append(procs, empty)
	got, err := JList(procs)
	if err != nil {
		t.Fatal(err)
	}
	entries := make([]*Object, 0, len(procs))
	for _, p := range procs {
		entries = append(entries, Entry(p))
	}
	want := refMarshal(t, entries)
	if !bytes.Equal(got, want) {
		t.Errorf("JList differs from its entries:\n got %s\nwant %s", got, want)
	}
}

// BenchmarkEnvCacheJList100 is BenchmarkJList100 with the environments encoded once (the
// daemon's jlist after the first).
func BenchmarkEnvCacheJList100(b *testing.B) {
	procs := benchProcs(100)
	keys := make([]any, len(procs))
	for i := range keys {
		keys[i] = i
	}
	var c EnvCache
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.JList(procs, keys); err != nil {
			b.Fatal(err)
		}
	}
}
