package ecosystem

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// kind is the JSON type of a value.
type kind int

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k kind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "an array", "an object"}[k]
}

// value is a parsed configuration value that remembers where it was written, so that the
// normaliser can name a line in its errors. JSON, YAML and evaluated JS all become values.
type value struct {
	line, col int // 1-based position of the value (of the key, for object members); 0 if unknown
	kind      kind
	text      string         // scalars: "true", "12.5", "hello"
	items     []*value       // arrays
	keys      []string       // objects, in file order
	vals      []*value       // objects, parallel to keys
	index     map[string]int // objects: key -> position in keys, kept by add
}

// get returns the member named key of an object value, or nil.
func (v *value) get(key string) *value {
	if v.index != nil {
		if i, ok := v.index[key]; ok {
			return v.vals[i]
		}
		return nil
	}
	for i, k := range v.keys {
		if k == key {
			return v.vals[i]
		}
	}
	return nil
}

// add appends the member key to an object value, in constant time. It returns false, leaving v as
// it was, when v already has a member named key.
func (v *value) add(key string, item *value) bool {
	if v.index == nil {
		v.index = make(map[string]int, len(v.keys)+1)
		for i, k := range v.keys {
			v.index[k] = i
		}
	}
	if _, dup := v.index[key]; dup {
		return false
	}
	v.index[key] = len(v.keys)
	v.keys = append(v.keys, key)
	v.vals = append(v.vals, item)
	return true
}

// lineIndex converts byte offsets into 1-based line and column numbers.
type lineIndex []int // offsets at which lines start

func newLineIndex(src []byte) lineIndex {
	idx := lineIndex{0}
	for i, b := range src {
		if b == '\n' {
			idx = append(idx, i+1)
		}
	}
	return idx
}

func (idx lineIndex) pos(off int64) (line, col int) {
	o := int(off)
	l := sort.Search(len(idx), func(i int) bool { return idx[i] > o }) // first line start after o
	return l, o - idx[l-1] + 1
}

// parseJSON parses strict JSON, recording the position of every value.
func parseJSON(src []byte) (*value, error) {
	idx := newLineIndex(src)
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	p := &jsonParser{dec: dec, idx: idx}
	v, err := p.value()
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			line, col := idx.pos(dec.InputOffset())
			return nil, &Error{Line: line, Column: col, Msg: "unexpected data after the top-level value"}
		}
		return v, nil
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := idx.pos(max(se.Offset-1, 0))
		return nil, &Error{Line: line, Column: col, Msg: "invalid JSON", Err: err}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		line, col := idx.pos(int64(len(src)))
		return nil, &Error{Line: line, Column: col, Msg: "invalid JSON: unexpected end of file"}
	}
	return nil, err
}

type jsonParser struct {
	dec *json.Decoder
	idx lineIndex
}

// here returns the position of the token just read (its last byte).
func (p *jsonParser) here() (int, int) { return p.idx.pos(max(p.dec.InputOffset()-1, 0)) }

func (p *jsonParser) value() (*value, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, err
	}
	v := &value{}
	v.line, v.col = p.here()
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			v.kind = kindArray
			for p.dec.More() {
				item, err := p.value()
				if err != nil {
					return nil, err
				}
				v.items = append(v.items, item)
			}
		} else { // '{'
			v.kind = kindObject
			for p.dec.More() {
				kt, err := p.dec.Token()
				if err != nil {
					return nil, err
				}
				line, col := p.here()
				item, err := p.value()
				if err != nil {
					return nil, err
				}
				item.line, item.col = line, col
				if !v.add(kt.(string), item) {
					return nil, &Error{Line: line, Column: col, Msg: fmt.Sprintf("duplicate key %q", kt)}
				}
			}
		}
		if _, err := p.dec.Token(); err != nil { // closing delimiter
			return nil, err
		}
	case string:
		v.kind, v.text = kindString, t
	case json.Number:
		v.kind, v.text = kindNumber, t.String()
	case bool:
		v.kind, v.text = kindBool, strconv.FormatBool(t)
	case nil:
		v.kind, v.text = kindNull, "null"
	}
	return v, nil
}

var yamlLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`line (\d+)`) }) // compiled on first use, not at every command's start

// parseYAML parses the first YAML document, recording the line of every value.
func parseYAML(src []byte) (*value, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		e := &Error{Msg: "invalid YAML", Err: err}
		if m := yamlLine().FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Line = yamlErrorLine(src, e.Line)
			e.Err = errors.New(strings.TrimPrefix(strings.Replace(err.Error(), m[0]+": ", "", 1), "yaml: "))
		}
		return nil, e
	}
	if len(doc.Content) == 0 {
		return nil, &Error{Msg: "the file is empty"}
	}
	return fromYAML(doc.Content[0], 0)
}

// yamlErrorLine finds the line of a YAML syntax error. yaml.v3 often reports the line where the
// enclosing collection starts instead, so this looks for the longest run of leading lines that
// parses: the problem is on the line after it. Large files keep yaml.v3's answer.
func yamlErrorLine(src []byte, reported int) int {
	lines := bytes.SplitAfter(src, []byte("\n"))
	if len(lines) > 2000 {
		return reported
	}
	var n yaml.Node
	for k := len(lines) - 1; k > 0; k-- {
		if yaml.Unmarshal(bytes.Join(lines[:k], nil), &n) == nil {
			return k + 1
		}
	}
	return 1
}

func fromYAML(n *yaml.Node, depth int) (*value, error) {
	if depth > 100 {
		return nil, &Error{Line: n.Line, Column: n.Column, Msg: "YAML nested too deeply (alias loop?)"}
	}
	if n.Kind == yaml.AliasNode {
		v, err := fromYAML(n.Alias, depth+1)
		if err != nil {
			return nil, err
		}
		c := *v
		c.line, c.col = n.Line, n.Column
		return &c, nil
	}
	v := &value{line: n.Line, col: n.Column}
	switch n.Kind {
	case yaml.SequenceNode:
		v.kind = kindArray
		for _, c := range n.Content {
			item, err := fromYAML(c, depth+1)
			if err != nil {
				return nil, err
			}
			v.items = append(v.items, item)
		}
	case yaml.MappingNode:
		v.kind = kindObject
		var merges []*value
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, c := n.Content[i], n.Content[i+1]
			item, err := fromYAML(c, depth+1)
			if err != nil {
				return nil, err
			}
			if k.Tag == "!!merge" {
				merges = append(merges, item)
				continue
			}
			item.line, item.col = k.Line, k.Column
			if !v.add(k.Value, item) {
				return nil, &Error{Line: k.Line, Column: k.Column, Msg: fmt.Sprintf("duplicate key %q", k.Value)}
			}
		}
		// "<<: *base" (or a list of them) adds the keys the mapping does not set itself.
		for _, m := range merges {
			srcs := []*value{m}
			if m.kind == kindArray {
				srcs = m.items
			}
			for _, s := range srcs {
				if s.kind != kindObject {
					return nil, &Error{Line: s.line, Column: s.col, Msg: "YAML merge key \"<<\" needs a mapping"}
				}
				for i, k := range s.keys {
					v.add(k, s.vals[i]) // a key the mapping sets itself wins
				}
			}
		}
	case yaml.ScalarNode:
		v.text = n.Value
		switch n.ShortTag() {
		case "!!null":
			v.kind, v.text = kindNull, "null"
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, &Error{Line: n.Line, Column: n.Column, Msg: "invalid boolean", Err: err}
			}
			v.kind, v.text = kindBool, strconv.FormatBool(b)
		case "!!int", "!!float":
			v.kind = kindNumber // text as written, as for JSON
		default:
			v.kind = kindString
		}
	default:
		return nil, &Error{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf("unsupported YAML node kind %d", n.Kind)}
	}
	return v, nil
}
