package appspec

import (
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"api", "my app", "a/b", "a_b", "a-b", ".hidden", "café", "worker.1", "all-api", "0x", "v2", "/x", "x/", "api.js", "50%"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for name, want := range map[string]string{
		"all":                         `"all" means every process`,
		"0":                           "a number is a pm_id",
		"42":                          "a number is a pm_id",
		"+3":                          "a number is a pm_id",
		"-1":                          "a number is a pm_id",
		"/x/":                         "regular expression",
		"/^api/":                      "regular expression",
		"a\nb":                        "control character (U+000A)",
		"tab\there":                   "control character (U+0009)",
		"del\x7f":                     "control character (U+007F)",
		"\xff":                        "not valid UTF-8",
		" api":                        "blank",
		"api ":                        "blank",
		"apps.json":                   "ecosystem file",
		"x.config.js":                 "ecosystem file",
		"x.YAML":                      "ecosystem file",
		strings.Repeat("n", 129):      "at most 128",
		strings.Repeat("é", 64) + "x": "at most 128",
	} {
		err := ValidateName(name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", name, err, want)
		}
	}
	// Validate names the key.
	a := App{Name: "all", Script: "a.js"}
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), `app name "all" is ambiguous`) {
		t.Errorf("Validate: %v", err)
	}
}

// TestLogNameInjective: names that PM2 mapped to one file ("a/b", "a b", "a_b", "a-b" all gave
// a-b-out.log) get files of their own; no file name has a slash or starts with a dot.
func TestLogNameInjective(t *testing.T) {
	names := []string{"a/b", "a b", "a_b", "a-b", "a+b", "a%2Fb", "a.b", ".ab", "%2Eab", "a\\b", "ab", "AB", "café", "caf%C3%A9",
		strings.Repeat("/", MaxNameLen), strings.Repeat("/", MaxNameLen-1) + "x", strings.Repeat("é", 64)}
	seen := map[string]string{}
	for _, n := range names {
		l := LogName(n)
		if prev, dup := seen[l]; dup {
			t.Errorf("%q and %q share the log name %q", prev, n, l)
		}
		seen[l] = n
		if strings.ContainsAny(l, "/\x00") || strings.HasPrefix(l, ".") || l == "" {
			t.Errorf("%q: log name %q", n, l)
		}
		if len(l)+len("-error-99999.log") > 255 {
			t.Errorf("%q: log name %q is %d bytes: too long for a file name", n, l, len(l))
		}
	}
	for n, want := range map[string]string{"api": "api", "my-app.v2": "my-app.v2", "a b": "a+b", "a/b": "a%2Fb", ".env": "%2Eenv", "café": "café"} {
		if got := LogName(n); got != want {
			t.Errorf("LogName(%q) = %q, want %q", n, got, want)
		}
	}
}

func TestFixName(t *testing.T) {
	for in, want := range map[string]string{"0": "0-app", "all": "all-app", "/x/": "/x/-app", "a\nb": "a_b", " a ": "a", "": "app", "x.json": "x.json-app", "ok": "ok"} {
		if got := FixName(in); got != want || ValidateName(got) != nil {
			t.Errorf("FixName(%q) = %q (%v), want %q", in, got, ValidateName(got), want)
		}
	}
	if got := FixName(strings.Repeat("x", 300)); ValidateName(got) != nil {
		t.Errorf("a long name fixed: %v", ValidateName(got))
	}
}
