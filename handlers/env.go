package handlers

import (
	"log/slog"

	"github.com/responder-sre/responder/config"
)

// Env is what every handler package's constructor gets: the configuration and what the process
// around it provides. serve passes the clients it opened; `rules check` and `rules test` pass
// none, and the handlers then validate params and build actions exactly as in serve but fail
// with bad_param when an action runs.
type Env struct {
	// Config is the loaded configuration (config.Default() when there is no file).
	Config *config.Config
	// Version goes into what handlers send (User-Agent).
	Version string
	// Logger receives the handlers' lines.
	Logger *slog.Logger
	// Secrets resolves the config's named secrets (secrets:) when a handler calls out; nil makes
	// a reference fail the action with bad_param.
	Secrets Secrets
	// Clients are the connections handlers act through, each of its own type (a Kubernetes
	// clientset, the Slack notifier). A handler package takes its own with ClientOf; this package
	// names none of their types, so it links none of their libraries.
	Clients []any
}

// Constructor is the one constructor shape of a handler package: it builds the package's
// handlers from env. handlers/builtin lists one per package.
type Constructor func(env Env) ([]Handler, error)

// ClientOf returns the first of env's clients that is a T, or T's zero value and false when
// there is none.
func ClientOf[T any](env Env) (T, bool) {
	for _, c := range env.Clients {
		if t, ok := c.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}
