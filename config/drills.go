package config

import (
	"strings"

	"github.com/responder-sre/responder/vocab"
)

// DrillsConfig is the `drills:` section: how drills page and spend, and the scenarios run on a
// schedule under the leader lease. It is written either as a list of scenarios (the short form)
// or as a mapping with page, budget and scenarios.
type DrillsConfig struct {
	// Page is the Slack channel (`#drills` or a channel id) that pages of drills go to instead
	// of the real on-call, unless a scenario says `page: real`. Empty: drill pages to other
	// targets are recorded, never sent.
	Page string `yaml:"page,omitempty"`
	// Budget bounds the disruptive actions of drills, apart from safety.budgets: a drill never
	// spends a production budget.
	Budget DrillBudget `yaml:"budget,omitempty"`
	// Scenarios are the drills with a schedule (and any others the CLI may name).
	Scenarios []Drill `yaml:"scenarios,omitempty"`
}

// DrillBudgetName is the name the drills' budget counts under (engine budget counters, the
// status); no safety.budgets entry may take it.
const DrillBudgetName = "drills"

// DrillBudget is the drills' own budget: at most Max disruptive drill actions per Window, over
// all drills.
type DrillBudget struct {
	Max    int      `yaml:"max,omitempty"`
	Window Duration `yaml:"window,omitempty"`
}

// Drill is one drill scenario (the `drills:` section of the config or a drill file).
type Drill struct {
	Name string `yaml:"name"`
	// Schedule is a standard 5-field cron expression (or a descriptor such as @daily); empty:
	// run only from the CLI.
	Schedule string `yaml:"schedule,omitempty"`
	// RTO is the recovery time objective: recover must not exceed it.
	RTO Duration `yaml:"rto"`
	// Timeout bounds how long the drill waits for its expectations; default RTO + 2m.
	Timeout Duration    `yaml:"timeout,omitempty"`
	Inject  DrillInject `yaml:"inject"`
	// Approve is auto (the drill approves its actions as drill:<name>) or wait (a human does).
	Approve DrillApprove `yaml:"approve,omitempty"`
	// Expect is the chain of actions that must happen, in order.
	Expect []DrillExpect `yaml:"expect"`
	// Resolve sends the resolve of the synthetic alerts after the last expected step.
	Resolve bool `yaml:"resolve,omitempty"`
	// Page is "" (pages go to drills.page) or "real" (pages go where the rules say).
	Page DrillPage `yaml:"page,omitempty"`
}

// DrillInject is the fault a drill injects: synthetic alerts through the intake path, or a
// command that breaks something real in a test environment (then Probes name the probes that
// must detect it).
type DrillInject struct {
	Alerts []DrillAlert `yaml:"alerts,omitempty"`
	Exec   []string     `yaml:"exec,omitempty"`
	Probes []string     `yaml:"probes,omitempty"`
}

// DrillAlert is one synthetic alert; the drill adds the responder_drill label.
type DrillAlert struct {
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// DrillExpect is one step of the chain a drill expects: an action of Rule by Handler that ends
// in State (default succeeded).
type DrillExpect struct {
	Rule    string      `yaml:"rule"`
	Handler string      `yaml:"handler"`
	State   vocab.State `yaml:"state,omitempty"`
}

// DrillApprove says who approves a drill's actions that need approval.
type DrillApprove string

// The approval modes of a drill.
const (
	DrillApproveAuto DrillApprove = "auto"
	DrillApproveWait DrillApprove = "wait"
)

// DrillPage says where a drill's pages go.
type DrillPage string

// DrillPageReal sends a drill's pages where its rules say, to the real on-call.
const DrillPageReal DrillPage = "real"

// UnmarshalYAML accepts the list form (scenarios only) and the mapping form. It takes the
// decoder's own unmarshal function, so unknown keys stay errors (KnownFields).
func (d *DrillsConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain DrillsConfig
	err := unmarshal((*plain)(d))
	if err == nil || !strings.Contains(err.Error(), "!!seq") {
		return err
	}
	*d = DrillsConfig{Budget: d.Budget} // the list form keeps the default budget
	return unmarshal(&d.Scenarios)
}
