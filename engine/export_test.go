package engine

// FireForTimers fires the due `for` timers only (FireDueTimers without the verifications), for
// the benchmark that compares the two.
var FireForTimers = (*Engine).fireForTimers
