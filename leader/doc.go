// Package leader elects one replica per name to run singleton work (health probes, ...) through a
// leader lease row in the store.
//
// Contract:
//   - At most one holder per name at a time, by the store's clock discipline: lease times come
//     from the replicas' clocks, a lease is taken only after its expires_at, and a holder believes
//     it leads (Leading) only while its last successful acquire or renew, timed from before the
//     call, is younger than the TTL by its own clock. Replicas' clocks must agree to well within
//     the TTL; a process paused past its TTL stops believing it leads when it wakes.
//   - The fencing token grows by one at every change of holder and is never reused, so any effect
//     taken by an old leader is recognisable.
//   - Leadership can be lost between a Leading check and the effect it guards (a pause, clock
//     skew, a slow network). Callers must therefore fence every side effect: in the transaction
//     that records the effect, call store.CheckFence with the token Leading returned, and roll
//     back on store.ErrStaleToken.
//   - Holders must be unique per process incarnation (e.g. host, pid and a random suffix): a
//     holder re-acquiring its own lease keeps the token.
//
// An Elector tries to acquire its lease every RenewEvery, renews it every RenewEvery while
// leading, steps down when a renewal is refused, and releases the lease when Run's context ends
// so another replica takes over at once. responder_leader{name} is 1 while Leading.
package leader
