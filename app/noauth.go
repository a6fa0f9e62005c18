package app

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// DefaultNoAuthWarnInterval is how often a replica serving with --web.no-auth says so.
const DefaultNoAuthWarnInterval = time.Minute

// checkNoAuthAddress refuses --web.no-auth on a listen address other hosts can reach, unless
// --web.no-auth.unsafe-any-address: without tokens, anyone who reaches the port can post alerts,
// approve actions and pause responder. Loopback IPs and "localhost" are fine; an empty host
// (":9095") listens on every interface; another host name is refused rather than resolved (what it
// resolves to may change).
func checkNoAuthAddress(addr string, unsafeAnyAddress bool) error {
	if unsafeAnyAddress {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--web.listen-address %q: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil && ip.IsLoopback() {
		return nil
	}
	where := host
	if host == "" || net.ParseIP(host).IsUnspecified() {
		where = "every interface"
	}
	return fmt.Errorf("refusing --web.no-auth on --web.listen-address=%s (%s): without authentication anyone who reaches it can post alerts, approve actions and pause responder; listen on 127.0.0.1, [::1] or localhost, or add --web.no-auth.unsafe-any-address if you really mean it", addr, where)
}

// warnNoAuth logs, when serving without authentication, a warning at start and then every
// NoAuthWarnInterval, so that a forgotten --web.no-auth shows in the logs of a running replica.
func (a *App) warnNoAuth(ctx context.Context) {
	if !a.o.NoAuth {
		return
	}
	every := a.o.NoAuthWarnInterval
	if every <= 0 {
		every = DefaultNoAuthWarnInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		a.log.Warn("serving WITHOUT authentication (--web.no-auth): anyone who can reach the listener can post alerts, approve actions and pause responder",
			"listen_address", a.Addr(), "unsafe_any_address", a.o.NoAuthUnsafeAnyAddress)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
