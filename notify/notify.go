// Package notify holds what the notifiers share; each notifier is a package below it (slack/).
// A notifier tells humans what responder is doing from the store, never from the engine's hot
// path: an outage of the chat service delays its messages and never holds or loses an action.
package notify

import "context"

// Notifier keeps an outside channel in step with the store.
type Notifier interface {
	// Run syncs until ctx ends (on the leader only: one replica talks to the channel).
	Run(ctx context.Context) error
	// Kick asks for a prompt pass (something changed); it never blocks.
	Kick()
}
