package alert

// DrillLabel marks the alerts of a drill: its value is the drill run's id (see package drill).
// Rules see it as alert.drill; the store, the API, Slack and the console mark what it caused.
const DrillLabel = "responder_drill"

// DrillPageLabel is set to "real" on a drill's alerts to send the drill's pages where its rules
// say (the scenario's `page: real`) instead of to drills.page.
const DrillPageLabel = "responder_drill_page"

// Drill returns the drill run id the alert belongs to, or "" when it is not a drill's.
func (a Alert) Drill() string { return a.Labels[DrillLabel] }

// DrillPageReal reports whether a drill alert's pages go to the real on-call.
func (a Alert) DrillPageReal() bool { return a.Drill() != "" && a.Labels[DrillPageLabel] == "real" }
