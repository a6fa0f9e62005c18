// Package builtin is the registry of the handlers responder ships. serve (app), `rules check`
// and `rules test` build their handlers here, from the same list, so that a rule is checked,
// tested and run against the same Specs and params.
//
// Each handler package has one constructor of the same shape, a handlers.Constructor:
//
//	func Handlers(env handlers.Env) ([]handlers.Handler, error)
//
// and the list below holds it on one line. Adding a handler is its package and that line. This
// package links no bus, no HTTP API and no app: what it links is the handlers themselves and the
// clients they act through.
package builtin

import (
	"log/slog"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/httpreq"
	"github.com/responder-sre/responder/handlers/k8s"
	"github.com/responder-sre/responder/handlers/page"
	"github.com/responder-sre/responder/handlers/postgres"
	notifyslack "github.com/responder-sre/responder/notify/slack"
)

// constructors are the built-in handler packages, one line each.
var constructors = []handlers.Constructor{
	httpreq.Handlers,     // http.request
	page.Handlers,        // page.webhook, page.teams, page.email
	notifyslack.Handlers, // page.slack
	k8s.Handlers,         // k8s.restart_pod, k8s.rollout_restart, k8s.scale
	postgres.Handlers,    // postgres.switchover, postgres.failover, postgres.promote
}

// Registry builds every built-in handler from env and returns them as a registry that also knows
// the config's secret and probe names. A nil env.Config is config.Default(), a nil env.Logger discards, and
// a nil env.Secrets is the config's secrets. Without env.Clients the handlers validate and build
// actions exactly as serve's do, and fail with bad_param when an action runs.
func Registry(env handlers.Env) (*handlers.Registry, error) {
	if env.Config == nil {
		env.Config = config.Default()
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	secrets := env.Config.SecretFiles()
	if env.Secrets == nil {
		env.Secrets = secrets
	}
	var hs []handlers.Handler
	for _, c := range constructors {
		h, err := c(env)
		if err != nil {
			return nil, err
		}
		hs = append(hs, h...)
	}
	reg, err := handlers.NewRegistry(hs...)
	if err != nil {
		return nil, err
	}
	reg.SetSecretNames(secrets.Names())
	probes := make([]string, len(env.Config.Probes))
	for i, p := range env.Config.Probes {
		probes[i] = p.Name
	}
	reg.SetProbeNames(probes)
	return reg, nil
}
