package config

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/vocab"
)

// Defaults of the drills: section.
const (
	DefaultDrillBudgetMax    = 10
	DefaultDrillBudgetWindow = time.Hour
)

// drillName is what a drill may be called: it goes into run ids, metric labels and URLs.
var drillName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// drillFile is a drill file: the scenarios under a top-level drills: key.
type drillFile struct {
	Drills []Drill `yaml:"drills"`
}

// LoadDrills reads the drill scenarios of the file at path (a top-level `drills:` list, strict
// like the config) and validates them as the config's drills: section is validated. Errors name
// the file and line. Defaults are filled: an expectation's state is succeeded.
func LoadDrills(path string) ([]Drill, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load drills: %w", err)
	}
	return ParseDrills(data, path)
}

// ParseDrills is LoadDrills on bytes already read; filename names the file in errors.
func ParseDrills(data []byte, filename string) ([]Drill, error) {
	name := filename
	if name == "" {
		name = "<drills>"
	}
	var f drillFile
	root, err := decodeStrict(data, name, &f)
	if err != nil {
		return nil, err
	}
	ch := &checker{file: name, root: root}
	if len(f.Drills) == 0 {
		ch.errorf("drills", "the file holds no drills (want a top-level drills: list)")
		return nil, ch.err()
	}
	fillDrillDefaults(f.Drills)
	validateDrills(ch, "drills", f.Drills)
	if err := ch.err(); err != nil {
		return nil, err
	}
	return f.Drills, nil
}

// fillDrillDefaults sets the state of expectations written without one to succeeded.
func fillDrillDefaults(ds []Drill) {
	for i := range ds {
		for j := range ds[i].Expect {
			if ds[i].Expect[j].State == "" {
				ds[i].Expect[j].State = vocab.StateSucceeded
			}
		}
	}
}

// drillsPath is where the config's scenarios are written: drills (the list form) or
// drills.scenarios (the mapping form, and configs built in code).
func drillsPath(root *yaml.Node) string {
	if root != nil && len(root.Content) > 0 {
		if n := mapValue(root.Content[0], "drills"); n != nil && n.Kind == yaml.SequenceNode {
			return "drills"
		}
	}
	return "drills.scenarios"
}

// validateDrills checks the config's drills: section: its budget, its scenarios, and that the
// probes an exec scenario names are configured.
func (c *Config) validateDrills(ch *checker) {
	b := c.Drills.Budget
	if b.Max < 0 {
		ch.errorf("drills.budget.max", "must not be negative, got %d", b.Max)
	}
	if b.Max > 0 {
		positive(ch, "drills.budget.window", b.Window)
	}
	prefix := drillsPath(ch.root)
	validateDrills(ch, prefix, c.Drills.Scenarios)
	known := map[string]bool{}
	for _, p := range c.Probes {
		known[p.Name] = true
	}
	for i, d := range c.Drills.Scenarios {
		for j, p := range d.Inject.Probes {
			if p != "" && !known[p] {
				ch.errorf(fmt.Sprintf("%s[%d].inject.probes[%d]", prefix, i, j), "probe %q is not configured (probes:)", p)
			}
		}
	}
}

// validateDrills checks scenarios written at prefix (drills or drills.scenarios): a drill file
// and the config's section share it.
func validateDrills(ch *checker, prefix string, ds []Drill) {
	seen := map[string]int{}
	for i := range ds {
		key := fmt.Sprintf("%s[%d]", prefix, i)
		d := &ds[i]
		switch j, dup := seen[d.Name]; {
		case !drillName.MatchString(d.Name):
			ch.errorf(key+".name", "%q: want lower-case letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit)", d.Name)
		case dup:
			ch.errorf(key+".name", "drill %q is already defined by %s[%d]", d.Name, prefix, j)
		default:
			seen[d.Name] = i
		}
		validateDrill(ch, key, d)
	}
}

// validateDrill checks one scenario at key.
func validateDrill(ch *checker, key string, d *Drill) {
	positive(ch, key+".rto", d.RTO)
	if d.Timeout < 0 {
		ch.errorf(key+".timeout", "must not be negative, got %s", d.Timeout)
	}
	if d.Schedule != "" {
		if _, err := cron.ParseStandard(d.Schedule); err != nil {
			ch.wrapf(key+".schedule", err, "%q: %v", d.Schedule, err)
		}
	}
	validateDrillInject(ch, key+".inject", &d.Inject)
	switch d.Approve {
	case "", DrillApproveAuto, DrillApproveWait:
	default:
		ch.errorf(key+".approve", "%q: want auto or wait", d.Approve)
	}
	switch d.Page {
	case "", DrillPageReal:
	default:
		ch.errorf(key+".page", "%q: want real (or leave it out: pages go to drills.page)", d.Page)
	}
	if d.Resolve && len(d.Inject.Alerts) == 0 {
		ch.errorf(key+".resolve", "resolve needs inject.alerts (an exec fault resolves when its probes recover)")
	}
	if len(d.Expect) == 0 {
		ch.errorf(key+".expect", "a drill needs at least one expectation")
	}
	for j, e := range d.Expect {
		ek := fmt.Sprintf("%s.expect[%d]", key, j)
		if strings.TrimSpace(e.Rule) == "" {
			ch.errorf(ek+".rule", "missing: the rule whose action is expected")
		}
		if strings.TrimSpace(e.Handler) == "" {
			ch.errorf(ek+".handler", "missing: the handler of the expected action")
		}
		if e.State != "" && !slices.Contains(vocab.States, e.State) {
			ch.errorf(ek+".state", "%q is not an action state (want one of %s)", e.State, stateList())
		}
	}
}

// validateDrillInject checks inject: exactly one of alerts and exec; exec with probes; alerts
// named, with valid labels, none of the drill's own.
func validateDrillInject(ch *checker, key string, in *DrillInject) {
	switch {
	case len(in.Alerts) > 0 && len(in.Exec) > 0:
		ch.errorf(key+".exec", "set inject.alerts or inject.exec, not both")
	case len(in.Alerts) == 0 && len(in.Exec) == 0:
		ch.errorf(key, "a drill injects alerts or runs exec; set one")
	}
	if len(in.Exec) > 0 {
		if strings.TrimSpace(in.Exec[0]) == "" {
			ch.errorf(key+".exec[0]", "empty command")
		}
		if len(in.Probes) == 0 {
			ch.errorf(key+".probes", "an exec fault needs the probes that must detect it")
		}
	}
	for j, p := range in.Probes {
		if strings.TrimSpace(p) == "" {
			ch.errorf(fmt.Sprintf("%s.probes[%d]", key, j), "empty probe name")
		}
	}
	for j, a := range in.Alerts {
		ak := fmt.Sprintf("%s.alerts[%d]", key, j)
		if a.Labels[model.AlertNameLabel] == "" {
			ch.errorf(ak+".labels", "needs an alertname label")
		}
		for _, k := range sortedKeys(a.Labels) {
			switch {
			case strings.HasPrefix(k, alert.DrillLabel):
				ch.errorf(ak+".labels."+k, "label %q is set by the drill", k)
			case !model.UTF8Validation.IsValidLabelName(k) || strings.ContainsRune(k, 0):
				ch.errorf(ak+".labels", "%q is not a valid label name", k)
			case !utf8.ValidString(a.Labels[k]):
				ch.errorf(ak+".labels."+k, "not a valid label value")
			}
		}
	}
}

// stateList is vocab.States as "a, b, c".
func stateList() string {
	s := make([]string, len(vocab.States))
	for i, st := range vocab.States {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}
