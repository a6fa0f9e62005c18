package store

import (
	"strings"

	"github.com/responder-sre/responder/vocab"
)

// The SQL of this package spells states, reasons, phases and classes from package vocab through
// lit and list, so each value is written once (in vocab and in the migrations that constrain the
// columns). The fragments are SQL literals, not parameters: the partial indexes on state
// (one running action per target, the claim index) only match a query whose predicate is the
// same literal.

// lit is v as an SQL string literal. vocab's values are plain lowercase words: nothing to escape.
func lit[T ~string](v T) string { return "'" + string(v) + "'" }

// list is vs as a parenthesised SQL list of literals, for IN.
func list[T ~string](vs ...T) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = lit(v)
	}
	return "(" + strings.Join(q, ", ") + ")"
}

// Lists used in several queries.
var (
	// sqlWaiting: actions that have not started (planned, awaiting approval, approved).
	sqlWaiting = list(vocab.Waiting...)
	// sqlClaimable: actions the executor may start.
	sqlClaimable = list(vocab.Claimable...)
	// sqlOpen: incidents that have not ended (pending, firing).
	sqlOpen = list(vocab.Open...)
	// sqlUnended: open incidents and suppressed ones (retention may abandon them).
	sqlUnended = list(append(vocab.Open[:len(vocab.Open):len(vocab.Open)], vocab.IncidentSuppressed)...)
	// sqlPassed: the states of a finished step that lets the next step run.
	sqlPassed = list(vocab.StateSucceeded, vocab.StateDryRun)
)
