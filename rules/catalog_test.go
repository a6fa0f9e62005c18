package rules

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// fakeCatalog is a test double for the handler registry: it knows http.request (url, method,
// headers, body, class; the url host may not be templated) and k8s.delete_pod (namespace, pod;
// approval none forbidden).
type fakeCatalog struct{}

type fakeParam struct {
	kind     string // string | map
	required bool
}

var fakeHandlers = map[string]map[string]fakeParam{
	"http.request": {
		"url":     {kind: "string", required: true},
		"method":  {kind: "string"},
		"headers": {kind: "map"},
		"body":    {kind: "any"},
		"class":   {kind: "string"},
	},
	"k8s.delete_pod": {
		"namespace": {kind: "string", required: true},
		"pod":       {kind: "string", required: true},
	},
	"db.promote": {
		"cluster":   {kind: "string", required: true},
		"candidate": {kind: "string"},
	},
}

// fakeResults are the result fields of fakeHandlers (StepCatalog), fakeTargets their target params.
var (
	fakeResults = map[string][]string{
		"http.request": {"status"},
		"db.promote":   {"new_primary", "timeline"},
	}
	fakeTargets = map[string][]string{
		"http.request":   {"url", "method"},
		"k8s.delete_pod": {"namespace", "pod"},
		"db.promote":     {"cluster"},
	}
)

func (fakeCatalog) ResultFields(handler string) ([]string, bool) {
	_, ok := fakeHandlers[handler]
	return fakeResults[handler], ok
}

func (fakeCatalog) TargetParam(handler, param string) bool {
	return slices.Contains(fakeTargets[handler], param)
}

func (fakeCatalog) CheckAction(handler, approval string, raw map[string]any) error {
	params, ok := fakeHandlers[handler]
	if !ok {
		return fmt.Errorf("unknown handler %q", handler)
	}
	var errs []error
	if handler == "k8s.delete_pod" && approval == "none" {
		errs = append(errs, fmt.Errorf("handler %q requires approval; approval: none is not allowed", handler))
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p, ok := params[k]
		if !ok {
			errs = append(errs, fmt.Errorf("handler %q has no param %q", handler, k))
			continue
		}
		if s, ok := raw[k].(string); ok && strings.Contains(s, "{{") {
			continue
		}
		switch p.kind {
		case "string":
			if _, ok := raw[k].(string); !ok {
				errs = append(errs, fmt.Errorf("param %q must be a string, not %T", k, raw[k]))
			}
		case "map":
			if _, ok := raw[k].(map[string]any); !ok {
				errs = append(errs, fmt.Errorf("param %q must be a map, not %T", k, raw[k]))
			}
		}
	}
	for name, p := range params {
		if _, ok := raw[name]; p.required && !ok {
			errs = append(errs, fmt.Errorf("handler %q needs param %q", handler, name))
		}
	}
	if u, ok := raw["url"].(string); ok && strings.Contains(authority(u), "{{") {
		errs = append(errs, errors.New("the url host may not be templated"))
	}
	return errors.Join(errs...)
}

// authority returns the host part of u as written: after "://", up to the next '/'.
func authority(u string) string {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		rest = u
	}
	host, _, _ := strings.Cut(rest, "/")
	return host
}
