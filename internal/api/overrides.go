package api

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/corralhq/corral/internal/appspec"
)

// Overrides are new values for some fields of the definitions of the apps a
// restart or reload targets: the option flags of `restart <targets>
// --<option>...`. PM2's rule: a changed option replaces the app's value and
// sticks across later restarts.
type Overrides struct {
	// Fields are the ecosystem keys (the JSON names of appspec.App's fields)
	// of the fields to replace, e.g. "kill_timeout"; "name" renames the app.
	Fields []string `json:"fields"`
	// App holds the new values of Fields; its other fields are ignored. A zero
	// value clears the field (back to its default).
	App appspec.App `json:"app"`
}

// logFields are the fields holding log file paths: a relative path in them
// is relative to the app's working directory.
var logFields = []string{"out_file", "error_file", "log_file"}

// appFields maps appspec.App's JSON names to field indexes.
var appFields = sync.OnceValue(func() map[string]int {
	m := map[string]int{}
	t := reflect.TypeFor[appspec.App]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
})

// Set records v as the new value of the field whose JSON name is field, and
// adds field to Fields. v must be of the field's type; nil clears the field.
func (o *Overrides) Set(field string, v any) error {
	i, ok := appFields()[field]
	if !ok {
		return fmt.Errorf("override of %q: no such option", field)
	}
	dst := reflect.ValueOf(&o.App).Elem().Field(i)
	if v == nil {
		dst.SetZero()
	} else if rv := reflect.ValueOf(v); rv.Type().AssignableTo(dst.Type()) {
		dst.Set(rv)
	} else {
		return fmt.Errorf("override of %q: a %s is not a %s", field, rv.Type(), dst.Type())
	}
	if !slices.Contains(o.Fields, field) {
		o.Fields = append(o.Fields, field)
	}
	return nil
}

// Apply returns app with the fields named in o.Fields taken from o.App. A
// relative log file path among them is made absolute against the resulting
// app's cwd ("NULL" and "/dev/null" are kept as they are). A field that is
// unknown is an error and app is returned unchanged; "name" renames the app
// (PM2's restart --name). Apply does not validate the result.
func (o *Overrides) Apply(app appspec.App) (appspec.App, error) {
	index := appFields()
	for _, f := range o.Fields {
		if _, ok := index[f]; !ok {
			return app, fmt.Errorf("override of %q: no such option", f)
		}
	}
	out := app
	dst, src := reflect.ValueOf(&out).Elem(), reflect.ValueOf(o.App)
	for _, f := range o.Fields {
		dst.Field(index[f]).Set(src.Field(index[f]))
	}
	for _, f := range logFields {
		if !slices.Contains(o.Fields, f) {
			continue
		}
		v := dst.Field(index[f])
		if p := v.String(); p != "" && p != "NULL" && p != "/dev/null" && !filepath.IsAbs(p) {
			v.SetString(filepath.Join(out.Cwd, p))
		}
	}
	return out, nil
}

// OverridesFrom returns the overrides that give cur every value next sets (a
// non-zero field) and cur does not have: `restart <ecosystem file>` re-applies
// every option of the file this way, as PM2 does. The name, env and
// shell_env are left out (a file's env is re-applied on its own; see
// RestartOptions.AppEnv). Fields that next leaves unset keep cur's value.
func OverridesFrom(cur, next appspec.App) Overrides {
	var ov Overrides
	cv, nv := reflect.ValueOf(cur), reflect.ValueOf(next)
	names := make([]string, 0, len(appFields()))
	for name := range appFields() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if name == "name" || name == "env" || name == "shell_env" {
			continue
		}
		i := appFields()[name]
		if nv.Field(i).IsZero() || reflect.DeepEqual(cv.Field(i).Interface(), nv.Field(i).Interface()) {
			continue
		}
		_ = ov.Set(name, nv.Field(i).Interface())
	}
	return ov
}
