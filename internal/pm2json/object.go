// Package pm2json renders processes in PM2's machine formats: the `jlist`
// JSON array and the `prettylist` dump (Node's util.inspect layout), so tools
// and scripts written for PM2 can read corral's output.
package pm2json

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Object is a JSON object whose keys keep their insertion order, as PM2's
// output does. The zero value is an empty object.
type Object struct {
	keys []string
	vals []any          // vals[i] is the value of keys[i]
	idx  map[string]int // index of each key, once the object has more than smallObject keys
}

// smallObject is the size up to which a key is looked up by scanning keys.
const smallObject = 8

// newObject returns an object with room for n keys.
func newObject(n int) *Object {
	o := &Object{keys: make([]string, 0, n), vals: make([]any, 0, n)}
	if n > smallObject {
		o.idx = make(map[string]int, n)
	}
	return o
}

// reset empties o, keeping its room (and its index, emptied).
func (o *Object) reset() {
	clear(o.vals)
	o.keys, o.vals = o.keys[:0], o.vals[:0]
	if o.idx != nil {
		clear(o.idx)
	}
}

// find returns the index of key, or -1.
func (o *Object) find(key string) int {
	if o.idx != nil {
		if i, ok := o.idx[key]; ok {
			return i
		}
		return -1
	}
	for i, k := range o.keys {
		if k == key {
			return i
		}
	}
	return -1
}

// Set adds key with value v, or replaces the value of an existing key
// without moving it.
func (o *Object) Set(key string, v any) {
	if i := o.find(key); i >= 0 {
		o.vals[i] = v
		return
	}
	o.add(key, v)
}

func (o *Object) add(key string, v any) {
	o.keys = append(o.keys, key)
	o.vals = append(o.vals, v)
	switch {
	case o.idx != nil:
		o.idx[key] = len(o.keys) - 1
	case len(o.keys) > smallObject:
		o.idx = make(map[string]int, 2*len(o.keys))
		for i, k := range o.keys {
			o.idx[k] = i
		}
	}
}

// SetDefault adds key with value v only if the key is not present.
func (o *Object) SetDefault(key string, v any) {
	if o.find(key) < 0 {
		o.add(key, v)
	}
}

// Get returns the value of key and whether it is present.
func (o *Object) Get(key string) (any, bool) {
	if i := o.find(key); i >= 0 {
		return o.vals[i], true
	}
	return nil, false
}

// Keys returns the keys in order.
func (o *Object) Keys() []string { return append([]string(nil), o.keys...) }

// MarshalJSON writes the object with its keys in insertion order.
func (o *Object) MarshalJSON() ([]byte, error) {
	return o.appendJSON(nil)
}

func (o *Object) appendJSON(buf []byte) ([]byte, error) {
	buf = append(buf, '{')
	for i, k := range o.keys {
		if i > 0 {
			buf = append(buf, ',')
		}
		var err error
		if buf, err = appendString(buf, k); err != nil {
			return nil, err
		}
		buf = append(buf, ':')
		if buf, err = appendValue(buf, o.vals[i]); err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
	}
	return append(buf, '}'), nil
}

// marshal encodes v like JSON.stringify: no HTML escaping, no newline.
func marshal(v any) ([]byte, error) {
	return appendValue(nil, v)
}

// appendValue appends the JSON of v to buf, byte for byte what marshalStd
// writes: the types jlist is built of are encoded here directly (encoding/json
// through reflection, one encoder per key, cost `jlist` most of its time), anything
// else and any string or number whose form is not the plain one go to marshalStd.
func appendValue(buf []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case *Object:
		if x == nil {
			return append(buf, "null"...), nil
		}
		return x.appendJSON(buf)
	case string:
		return appendString(buf, x)
	case int:
		return strconv.AppendInt(buf, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(buf, x, 10), nil
	case uint64:
		return strconv.AppendUint(buf, x, 10), nil
	case bool:
		return strconv.AppendBool(buf, x), nil
	case float64:
		// encoding/json's form for this range ('e' outside it; NaN and Inf are errors there).
		if a := math.Abs(x); a == 0 || a >= 1e-6 && a < 1e21 {
			return strconv.AppendFloat(buf, x, 'f', -1, 64), nil
		}
	case []string:
		if x == nil {
			return append(buf, "null"...), nil
		}
		buf = append(buf, '[')
		for i, s := range x {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendString(buf, s); err != nil {
				return nil, err
			}
		}
		return append(buf, ']'), nil
	case []*Object:
		if x == nil {
			return append(buf, "null"...), nil
		}
		buf = append(buf, '[')
		for i, o := range x {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendValue(buf, o); err != nil {
				return nil, err
			}
		}
		return append(buf, ']'), nil
	}
	b, err := marshalStd(v)
	if err != nil {
		return nil, err
	}
	return append(buf, b...), nil
}

// appendString appends s quoted. Printable ASCII without '"' and '\\' is copied
// as is (encoding/json does the same with HTML escaping off); a string with
// anything else is left to marshalStd.
func appendString(buf []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b, err := marshalStd(s)
			if err != nil {
				return nil, err
			}
			return append(buf, b...), nil
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"'), nil
}

// marshalStd encodes v with encoding/json like JSON.stringify: no HTML
// escaping, no newline.
func marshalStd(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
