package cluster

import "testing"

func TestParseAcceptedReply(t *testing.T) {
	for _, c := range []struct {
		in           string
		ack, seq     int64
		accepted, ok bool
	}{
		{`{"cmd":"NODE_CLUSTER","ack":2,"accepted":true,"seq":3}`, 2, 3, true, true},
		{`{"cmd":"NODE_CLUSTER","ack":17,"accepted":false,"seq":0}`, 17, 0, false, true},
		{`{"cmd":"NODE_CLUSTER","ack":2,"accepted":true,"seq":3,"x":1}`, 0, 0, false, false},
		{`{"cmd":"NODE_CLUSTER","ack":-2,"accepted":true,"seq":3}`, 0, 0, false, false},
		{`{"cmd":"NODE_CLUSTER","ack":2,"accepted":1,"seq":3}`, 0, 0, false, false},
		{`{"cmd":"NODE_CLUSTER","act":"online","seq":0}`, 0, 0, false, false},
		{`{"cmd":"NODE_CLUSTER","ack":`, 0, 0, false, false},
	} {
		ack, accepted, seq, ok := parseAcceptedReply([]byte(c.in))
		if ok != c.ok || ok && (ack != c.ack || seq != c.seq || accepted != c.accepted) {
			t.Errorf("%s: %d %v %d %v", c.in, ack, accepted, seq, ok)
		}
	}
}

func TestHandleKey(t *testing.T) {
	m := &wireMsg{Address: rawString("127.0.0.1"), Port: rawInt(18080), AddressType: rawInt(4)}
	i := 0
	m.Index = &i
	if k := handleKey(m); k != "127.0.0.1:18080:4:undefined:0" {
		t.Fatalf("key %s", k)
	}
	m = &wireMsg{Address: rawNull, Port: rawInt(0), AddressType: rawString("udp4"), FD: rawInt(-1), Index: &i}
	if k := handleKey(m); k != "null:0:udp4:-1:0" {
		t.Fatalf("key %s", k)
	}
}
