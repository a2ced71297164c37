package cluster

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// wireMsg is a NODE_CLUSTER message in either direction. Pointer and raw fields keep the difference
// between an absent field, null and a value, which Node's key strings depend on.
type wireMsg struct {
	Cmd         string          `json:"cmd"`
	Act         string          `json:"act,omitempty"`
	Errno       json.RawMessage `json:"errno,omitempty"`
	Key         string          `json:"key,omitempty"`
	Ack         *int64          `json:"ack,omitempty"`
	Accepted    *bool           `json:"accepted,omitempty"`
	Index       *int            `json:"index,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`
	Address     json.RawMessage `json:"address,omitempty"`
	Port        json.RawMessage `json:"port,omitempty"`
	AddressType json.RawMessage `json:"addressType,omitempty"`
	FD          json.RawMessage `json:"fd,omitempty"`
	Flags       json.RawMessage `json:"flags,omitempty"`
	Backlog     json.RawMessage `json:"backlog,omitempty"`
	Sockname    *sockname       `json:"sockname,omitempty"`
	Seq         int64           `json:"seq"`
}

type sockname struct {
	Address string          `json:"address"`
	Family  json.RawMessage `json:"family"` // "IPv4"/"IPv6" in Node 18+; a number in older lines
	Port    int             `json:"port"`
}

// jsString renders a raw JSON scalar the way JavaScript's template strings do: absent is
// "undefined", null is "null", strings are unquoted, numbers as written.
func jsString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "undefined"
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}

// handleKey is Node's `${address}:${port}:${addressType}:${fd}:${index}`.
func handleKey(m *wireMsg) string {
	idx := "undefined"
	if m.Index != nil {
		idx = strconv.Itoa(*m.Index)
	}
	return jsString(m.Address) + ":" + jsString(m.Port) + ":" + jsString(m.AddressType) + ":" +
		jsString(m.FD) + ":" + idx
}

func rawString(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
func rawInt(n int) json.RawMessage       { return json.RawMessage(strconv.Itoa(n)) }

var rawNull = json.RawMessage("null")

// rawIsNull reports whether raw is absent or JSON null.
func rawIsNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// rawInt64 decodes a JSON number, reporting false for anything else.
func rawInt64(raw json.RawMessage) (int64, bool) {
	var n int64
	if rawIsNull(raw) || json.Unmarshal(raw, &n) != nil {
		return 0, false
	}
	return n, true
}

// parseAcceptedReply recognises a worker's answer to a newconn exactly as Node writes it,
// {"cmd":"NODE_CLUSTER","ack":N,"accepted":true|false,"seq":M}; anything else reports false and is
// left to encoding/json.
func parseAcceptedReply(b []byte) (ack int64, accepted bool, seq int64, ok bool) {
	rest, found := bytes.CutPrefix(b, []byte(`{"cmd":"NODE_CLUSTER","ack":`))
	if !found {
		return
	}
	if ack, rest, found = cutInt(rest); !found {
		return
	}
	switch {
	case bytes.HasPrefix(rest, []byte(`,"accepted":true,"seq":`)):
		accepted, rest = true, rest[len(`,"accepted":true,"seq":`):]
	case bytes.HasPrefix(rest, []byte(`,"accepted":false,"seq":`)):
		rest = rest[len(`,"accepted":false,"seq":`):]
	default:
		return
	}
	if seq, rest, found = cutInt(rest); !found || string(rest) != "}" {
		return
	}
	return ack, accepted, seq, true
}

// cutInt reads a non-negative decimal integer of at most 15 digits.
func cutInt(b []byte) (int64, []byte, bool) {
	var n int64
	i := 0
	for ; i < len(b) && i < 15 && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n, b[i:], i > 0
}
