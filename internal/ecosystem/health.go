package ecosystem

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/corralhq/corral/internal/appspec"
)

// Keys of health checks and start order (issue 12), shaped as Kubernetes probes and
// docker-compose / process-compose depends_on.
func init() {
	setters["readiness_probe"] = probe(func(a *appspec.App) **appspec.Probe { return &a.ReadinessProbe })
	setters["liveness_probe"] = probe(func(a *appspec.App) **appspec.Probe { return &a.LivenessProbe })
	setters["depends_on"] = dependsOn
	setters["watchdog_sec"] = func(_ *normaliser, a *appspec.App, v *value) error {
		f, err := toNumber(v)
		a.WatchdogSec = f
		return err
	}
	aliases["readinessProbe"] = "readiness_probe"
	aliases["livenessProbe"] = "liveness_probe"
}

// probe accepts a probe object. Kubernetes' camelCase keys (httpGet, periodSeconds) are
// accepted beside the snake_case ones; an unknown key is an error.
func probe(field func(*appspec.App) **appspec.Probe) setter {
	return func(_ *normaliser, a *appspec.App, v *value) error {
		if v.kind != kindObject {
			return typeError(v, "an object such as {http_get: {path: \"/health\"}}")
		}
		var p appspec.Probe
		if err := decodeStrict(toAny(v, true), &p); err != nil {
			return err
		}
		*field(a) = &p
		return nil
	}
}

// dependsOn accepts ["db", "migrate"], [{name: "db", condition: "ready"}] or
// {db: {condition: "service_healthy"}} (compose's form).
func dependsOn(_ *normaliser, a *appspec.App, v *value) error {
	a.DependsOn = nil
	switch v.kind {
	case kindString:
		a.DependsOn = []appspec.Dependency{{Name: v.text}}
		return nil
	case kindArray:
		for _, it := range v.items {
			switch it.kind {
			case kindString:
				a.DependsOn = append(a.DependsOn, appspec.Dependency{Name: it.text})
			case kindObject:
				var d appspec.Dependency
				if err := decodeStrict(toAny(it, false), &d); err != nil {
					return err
				}
				a.DependsOn = append(a.DependsOn, d)
			default:
				return typeError(it, "an app name or {name, condition}")
			}
		}
		return nil
	case kindObject:
		for i, name := range v.keys {
			d := appspec.Dependency{Name: name}
			if c := v.vals[i]; c.kind == kindObject {
				for j, k := range c.keys {
					if k != "condition" {
						return fmt.Errorf("%s: unknown key %q (want condition)", name, k)
					}
					s, err := toString(c.vals[j])
					if err != nil {
						return err
					}
					d.Condition = s
				}
			} else if c.kind == kindString {
				d.Condition = c.text
			} else if c.kind != kindNull {
				return typeError(c, "{condition: ...}")
			}
			a.DependsOn = append(a.DependsOn, d)
		}
		return nil
	}
	return typeError(v, "a list of app names or {name: {condition}}")
}

// camel maps Kubernetes' spellings to corral's.
var camel = map[string]string{
	"httpGet": "http_get", "tcpSocket": "tcp_socket", "logLine": "log_line",
	"initialDelaySeconds": "initial_delay_seconds", "periodSeconds": "period_seconds",
	"timeoutSeconds": "timeout_seconds", "successThreshold": "success_threshold",
	"failureThreshold": "failure_threshold", "httpHeaders": "http_headers",
}

// toAny turns a parsed value into plain Go values for encoding/json (numbers stay numbers).
func toAny(v *value, camelKeys bool) any {
	switch v.kind {
	case kindObject:
		m := make(map[string]any, len(v.keys))
		for i, k := range v.keys {
			if c, ok := camel[k]; ok && camelKeys {
				k = c
			}
			m[k] = toAny(v.vals[i], camelKeys)
		}
		return m
	case kindArray:
		out := make([]any, len(v.items))
		for i, it := range v.items {
			out[i] = toAny(it, camelKeys)
		}
		return out
	case kindNumber:
		return json.Number(v.text)
	case kindBool:
		return v.text == "true"
	case kindNull:
		return nil
	}
	return v.text
}

// decodeStrict decodes x into dst, refusing unknown keys.
func decodeStrict(x any, dst any) error {
	raw, err := json.Marshal(x)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}
