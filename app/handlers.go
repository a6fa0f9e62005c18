package app

import (
	"strings"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
)

// handlerKeys are the config keys each built-in handler is built from, by name or name prefix.
// A reload that changes none of a handler's keys keeps the handler in force, with what it
// remembers: page.teams' and page.email's delivered idempotency keys (a retry in this process
// never sends twice), the k8s handlers' client and owner cache. A handler not listed here is
// built again by every reload.
var handlerKeys = map[string][]string{
	"http.request": {"handlers.http", "secrets"},
	"page.webhook": {"handlers.page.webhook"},
	"page.teams":   {"handlers.page.teams"},
	"page.email":   {"handlers.page.email"},
	"page.slack":   {"slack"},
	"k8s.":         {"handlers.kubernetes"},
	"postgres.":    {"handlers.postgres", "secrets"},
}

// keysOf returns the keys handler name is built from; false when handlerKeys does not list it.
func keysOf(name string) ([]string, bool) {
	for prefix, keys := range handlerKeys {
		if name == prefix || strings.HasSuffix(prefix, ".") && strings.HasPrefix(name, prefix) {
			return keys, true
		}
	}
	return nil, false
}

// handlerChanged reports whether a reload that changed these keys changes handler name.
func handlerChanged(name string, changed []string) bool {
	keys, ok := keysOf(name)
	if !ok {
		return true
	}
	for _, c := range changed {
		for _, k := range keys {
			if c == k || strings.HasPrefix(c, k+".") || strings.HasPrefix(c, k+"[") {
				return true
			}
		}
	}
	return false
}

// reloadHandlers builds the handler registry of a reload: the handlers in force whose keys did
// not change, new ones for the others; and loads cfg's rules against it.
func (a *App) reloadHandlers(cfg *config.Config, old *handlers.Registry, changed []string) (*handlers.Registry, *rules.Set, error) {
	built, err := a.newRegistry(cfg)
	if err != nil {
		return nil, nil, err
	}
	hs, err := keepHandlers(old, built, changed)
	if err != nil {
		return nil, nil, err
	}
	ruleSet, err := loadRules(cfg, hs)
	if err != nil {
		return nil, nil, err
	}
	return hs, ruleSet, nil
}

// keepHandlers is next with the handlers of old whose keys changed does not name.
func keepHandlers(old, next *handlers.Registry, changed []string) (*handlers.Registry, error) {
	var hs []handlers.Handler
	for _, name := range next.Names() {
		h, _ := next.Get(name)
		if o, ok := old.Get(name); ok && !handlerChanged(name, changed) {
			h = o
		}
		hs = append(hs, h)
	}
	reg, err := handlers.NewRegistry(hs...)
	if err != nil {
		return nil, err
	}
	reg.SetSecretNames(next.SecretNames())
	return reg, nil
}
