// Package pm2json renders processes in PM2's machine formats: the `jlist`
// JSON array and the `prettylist` dump (Node's util.inspect layout), so tools
// and scripts written for PM2 can read corral's output.
package pm2json

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Object is a JSON object whose keys keep their insertion order, as PM2's
// output does. The zero value is an empty object.
type Object struct {
	keys []string
	vals map[string]any
}

// Set adds key with value v, or replaces the value of an existing key
// without moving it.
func (o *Object) Set(key string, v any) {
	if o.vals == nil {
		o.vals = make(map[string]any)
	}
	if _, ok := o.vals[key]; !ok {
		o.keys = append(o.keys, key)
	}
	o.vals[key] = v
}

// SetDefault adds key with value v only if the key is not present.
func (o *Object) SetDefault(key string, v any) {
	if _, ok := o.vals[key]; !ok {
		o.Set(key, v)
	}
}

// Get returns the value of key and whether it is present.
func (o *Object) Get(key string) (any, bool) {
	v, ok := o.vals[key]
	return v, ok
}

// Keys returns the keys in order.
func (o *Object) Keys() []string { return append([]string(nil), o.keys...) }

// MarshalJSON writes the object with its keys in insertion order.
func (o *Object) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, err := marshal(k)
		if err != nil {
			return nil, err
		}
		buf.Write(kb)
		buf.WriteByte(':')
		vb, err := marshal(o.vals[k])
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		buf.Write(vb)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// marshal encodes v like JSON.stringify: no HTML escaping, no newline.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
