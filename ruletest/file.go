package ruletest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// DefaultNow is the clock of a test file that does not set `now`.
var DefaultNow = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// File is a parsed test file.
type File struct {
	Path      string
	RuleFiles []string // as written, relative to the file's directory
	Now       time.Time
	Tests     []Test
}

// Test is one test case of a file.
type Test struct {
	Name      string
	Line      int
	EvalAfter time.Duration
	// ResolveAfter, when set, resolves the input alerts that long after now (before eval_after
	// moves the clock on): a rule's verify sees its incident resolve.
	ResolveAfter  time.Duration
	InputAlerts   []InputAlert
	Firing        []InputAlert
	ActionsInLast []PriorAction
	ExpActions    []Action
	// Approve approves every action that awaits approval, as a human would, so the steps after
	// it run (approve: true).
	Approve bool
	// StepResults are the result fields the steps with these ids report when they run, by id
	// (step_results); StepResultsLines says on which line each id is written.
	StepResults      map[string]map[string]any
	StepResultsLines map[string]int
}

// InputAlert is an alert a test feeds to the engine (input_alerts, input_probes, firing).
type InputAlert struct {
	Line        int
	Source      string // alertmanager or probe
	Labels      map[string]string
	Annotations map[string]string
	Status      string
	Value       *float64
	StartsAt    time.Duration // relative to now
	EndsAt      *time.Duration
}

// PriorAction is a rule's action that ran before now (actions_in_last).
type PriorAction struct {
	Line   int
	Rule   string
	Ago    time.Duration
	Source string
	Labels map[string]string
	Annots map[string]string
	Value  *float64
}

// Action is an action as a test expects it, or as the engine planned it. Params of an expected
// action hold only the keys the test compares.
type Action struct {
	Rule     string         `yaml:"rule"`
	Handler  string         `yaml:"handler"`
	Phase    string         `yaml:"phase,omitempty"`
	Params   map[string]any `yaml:"params,omitempty"`
	Approval string         `yaml:"approval,omitempty"`
	// Failed is set on a planned action that failed (bad_param: a template that did not render).
	Failed string `yaml:"failed,omitempty"`
	// Verify is where the rule's verify left the action: verifying, recovered (succeeded) or
	// not_recovered (failed); "" for an action that was not verified. An expectation compares it
	// when it names one, and only an expectation of not_recovered matches that failure.
	Verify string `yaml:"verify,omitempty"`
}

// Verify outcomes an expected action may name.
const (
	VerifyVerifying    = "verifying"
	VerifyRecovered    = "recovered"
	VerifyNotRecovered = "not_recovered"
)

// The YAML shapes, decoded strictly (unknown keys are errors).
type fileYAML struct {
	RuleFiles []string   `yaml:"rule_files"`
	Now       *time.Time `yaml:"now"`
	Tests     []testYAML `yaml:"tests"`
}

type testYAML struct {
	Name          string                    `yaml:"name"`
	EvalAfter     durationYAML              `yaml:"eval_after"`
	ResolveAfter  durationYAML              `yaml:"resolve_after"`
	InputAlerts   []alertYAML               `yaml:"input_alerts"`
	InputProbes   []probeYAML               `yaml:"input_probes"`
	Firing        []alertYAML               `yaml:"firing"`
	ActionsInLast []priorYAML               `yaml:"actions_in_last"`
	ExpActions    []expYAML                 `yaml:"exp_actions"`
	Approve       bool                      `yaml:"approve"`
	StepResults   map[string]map[string]any `yaml:"step_results"`
}

type alertYAML struct {
	Source      string            `yaml:"source"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	Status      statusYAML        `yaml:"status"`
	Value       *float64          `yaml:"value"`
	StartsAt    *relYAML          `yaml:"starts_at"`
	EndsAt      *relYAML          `yaml:"ends_at"`
}

type probeYAML struct {
	Probe       string            `yaml:"probe"`
	Kind        string            `yaml:"kind"`
	Instance    string            `yaml:"instance"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	Status      statusYAML        `yaml:"status"`
	Value       *float64          `yaml:"value"`
	StartsAt    *relYAML          `yaml:"starts_at"`
	EndsAt      *relYAML          `yaml:"ends_at"`
}

type priorYAML struct {
	Rule        string            `yaml:"rule"`
	Ago         durationYAML      `yaml:"ago"`
	Source      string            `yaml:"source"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	Value       *float64          `yaml:"value"`
}

type expYAML struct {
	Rule     string         `yaml:"rule"`
	Handler  string         `yaml:"handler"`
	Phase    string         `yaml:"phase"`
	Params   map[string]any `yaml:"params"`
	Approval string         `yaml:"approval"`
	Verify   string         `yaml:"verify"`
}

// posErr returns a yaml.TypeError so the decoder collects it with the others and goes on.
func posErr(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}

// relYAML is a time relative to now: a duration, negative in the past ("-2m", "90s", "-1d").
type relYAML struct{ d time.Duration }

func (r *relYAML) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return posErr(n, "a relative time must be a duration such as -2m, not a %s", kindName(n))
	}
	d, err := parseRelative(n.Value)
	if err != nil {
		return posErr(n, "%v", err)
	}
	r.d = d
	return nil
}

// parseRelative parses a signed Go or Prometheus duration ("-90s", "-1h30m", "-1d", "0").
func parseRelative(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	neg := strings.HasPrefix(s, "-")
	d, err := handlers.ParseDuration(strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+"))
	if err != nil {
		return 0, fmt.Errorf("invalid relative time %q (want a duration such as -2m or 30s)", s)
	}
	if neg {
		d = -d
	}
	return d, nil
}

// durationYAML is a non-negative duration.
type durationYAML struct{ d time.Duration }

func (r *durationYAML) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return posErr(n, "want a duration such as 5m, not a %s", kindName(n))
	}
	d, err := handlers.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil || d < 0 {
		return posErr(n, "invalid duration %q (want a non-negative duration such as 5m)", n.Value)
	}
	r.d = d
	return nil
}

type statusYAML string

func (s *statusYAML) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.Value != "firing" && n.Value != "resolved") {
		return posErr(n, "status must be firing or resolved, not %q", n.Value)
	}
	*s = statusYAML(n.Value)
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "map"
	case yaml.SequenceNode:
		return "list"
	default:
		return "value"
	}
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// fileErrors turns yaml errors ("line N: msg") into "file:N: msg" errors, joined.
func fileErrors(path string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	errs := make([]error, 0, len(msgs))
	for _, m := range msgs {
		if g := lineRE.FindStringSubmatch(m); g != nil {
			errs = append(errs, fmt.Errorf("%s:%s: %s", path, g[1], g[2]))
			continue
		}
		errs = append(errs, fmt.Errorf("%s: %s", path, strings.TrimPrefix(m, "yaml: ")))
	}
	return errors.Join(errs...)
}

// ParseFile parses a test file strictly: unknown keys, bad durations or statuses and missing
// required keys are errors naming file:line (all of them, joined).
func ParseFile(path string, data []byte) (*File, error) {
	doc, fy, err := decodeFile(path, data)
	if err != nil {
		return nil, err
	}
	p := &fileParser{path: path, doc: doc}
	f := &File{Path: path, RuleFiles: fy.RuleFiles, Now: DefaultNow}
	if fy.Now != nil {
		f.Now = fy.Now.UTC()
	}
	if len(fy.RuleFiles) == 0 {
		p.bad(value(doc, "rule_files"), "rule_files: name at least one rule file")
	}
	testsNode := value(doc, "tests")
	if len(fy.Tests) == 0 {
		p.bad(testsNode, "tests: write at least one test")
	}
	names := map[string]int{}
	for i, ty := range fy.Tests {
		f.Tests = append(f.Tests, p.test(item(testsNode, i), i, ty, names))
	}
	if err := errors.Join(p.errs...); err != nil {
		return nil, err
	}
	return f, nil
}

// decodeFile decodes data both as a node tree (for lines) and strictly into a fileYAML; it returns
// the document's top node, which is a mapping.
func decodeFile(path string, data []byte) (*yaml.Node, fileYAML, error) {
	var root yaml.Node
	var fy fileYAML
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fy, fileErrors(path, err)
	}
	if len(root.Content) == 0 {
		return nil, fy, fmt.Errorf("%s: empty test file", path)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fy); err != nil && !errors.Is(err, io.EOF) {
		return nil, fy, fileErrors(path, err)
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, fy, fmt.Errorf("%s:%d: a test file is a map with rule_files, now and tests", path, doc.Line)
	}
	return doc, fy, nil
}

// fileParser collects the errors of one test file's tests, each as "file:line: msg".
type fileParser struct {
	path string
	doc  *yaml.Node
	errs []error
}

// bad records an error at n's line (the document's when n is nil).
func (p *fileParser) bad(n *yaml.Node, format string, args ...any) {
	line := p.doc.Line
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, fmt.Errorf("%s:%d: %s", p.path, line, fmt.Sprintf(format, args...)))
}

// test converts tests[i] (at node tn); names maps the names seen so far to their index.
func (p *fileParser) test(tn *yaml.Node, i int, ty testYAML, names map[string]int) Test {
	t := Test{Name: ty.Name, Line: line(tn), EvalAfter: ty.EvalAfter.d, ResolveAfter: ty.ResolveAfter.d}
	if t.ResolveAfter > 0 && t.EvalAfter > 0 && t.ResolveAfter > t.EvalAfter {
		p.bad(value(tn, "resolve_after"), "test %q: resolve_after (%s) is after eval_after (%s)", ty.Name, t.ResolveAfter, t.EvalAfter)
	}
	if strings.TrimSpace(ty.Name) == "" {
		p.bad(tn, "tests[%d]: name is required", i)
	} else if prev, dup := names[ty.Name]; dup {
		p.bad(tn, "tests[%d]: name %q is also the name of tests[%d]", i, ty.Name, prev)
	} else {
		names[ty.Name] = i
	}
	if value(tn, "exp_actions") == nil {
		p.bad(tn, "test %q: exp_actions is required (write exp_actions: [] for \"must not act\")", ty.Name)
	}
	if len(ty.InputAlerts) == 0 && len(ty.InputProbes) == 0 {
		p.bad(tn, "test %q: give input_alerts or input_probes", ty.Name)
	}
	t.InputAlerts = p.inputs(tn, ty)
	t.Firing = p.firing(tn, ty.Firing)
	t.ActionsInLast = p.priors(tn, ty.ActionsInLast)
	t.ExpActions = p.expected(tn, ty.ExpActions)
	t.Approve = ty.Approve
	if len(ty.StepResults) > 0 {
		t.StepResults, t.StepResultsLines = make(map[string]map[string]any, len(ty.StepResults)), map[string]int{}
		for id, fields := range ty.StepResults {
			t.StepResults[id] = normalize(fields)
		}
		if n := value(tn, "step_results"); n != nil && n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				t.StepResultsLines[n.Content[i].Value] = n.Content[i].Line
			}
		}
	}
	return t
}

// inputs converts a test's input_alerts, then its input_probes.
func (p *fileParser) inputs(tn *yaml.Node, ty testYAML) []InputAlert {
	var ins []InputAlert
	for j, a := range ty.InputAlerts {
		n := item(value(tn, "input_alerts"), j)
		if in, err := a.input(0); err != nil {
			p.bad(n, "input_alerts[%d]: %v", j, err)
		} else {
			in.Line = line(n)
			ins = append(ins, in)
		}
	}
	for j, pr := range ty.InputProbes {
		n := item(value(tn, "input_probes"), j)
		if in, err := pr.input(); err != nil {
			p.bad(n, "input_probes[%d]: %v", j, err)
		} else {
			in.Line = line(n)
			ins = append(ins, in)
		}
	}
	return ins
}

// firing converts a test's firing: prior alerts, firing and started in the past.
func (p *fileParser) firing(tn *yaml.Node, as []alertYAML) []InputAlert {
	var ins []InputAlert
	for j, a := range as {
		n := item(value(tn, "firing"), j)
		in, err := a.input(-time.Hour)
		switch {
		case err != nil:
			p.bad(n, "firing[%d]: %v", j, err)
		case in.Status != "firing":
			p.bad(n, "firing[%d]: a prior firing alert must have status firing", j)
		case in.StartsAt >= 0:
			p.bad(n, "firing[%d]: starts_at must be in the past (e.g. -10m)", j)
		default:
			in.Line = line(n)
			ins = append(ins, in)
		}
	}
	return ins
}

// priors converts a test's actions_in_last.
func (p *fileParser) priors(tn *yaml.Node, ps []priorYAML) []PriorAction {
	var pas []PriorAction
	for j, py := range ps {
		n := item(value(tn, "actions_in_last"), j)
		pa, err := py.prior()
		if err != nil {
			p.bad(n, "actions_in_last[%d]: %v", j, err)
			continue
		}
		pa.Line = line(n)
		pas = append(pas, pa)
	}
	return pas
}

// expected converts a test's exp_actions; never nil (an empty list means "must not act").
func (p *fileParser) expected(tn *yaml.Node, es []expYAML) []Action {
	as := []Action{}
	for j, e := range es {
		n := item(value(tn, "exp_actions"), j)
		a, err := e.action()
		if err != nil {
			p.bad(n, "exp_actions[%d]: %v", j, err)
			continue
		}
		as = append(as, a)
	}
	return as
}

func (a alertYAML) input(defaultStart time.Duration) (InputAlert, error) {
	in := InputAlert{Source: a.Source, Labels: a.Labels, Annotations: a.Annotations, Status: string(a.Status),
		Value: a.Value, StartsAt: defaultStart}
	switch in.Source {
	case "":
		in.Source = "alertmanager"
	case "alertmanager", "probe":
	default:
		return in, fmt.Errorf("source must be alertmanager or probe, not %q", a.Source)
	}
	if strings.TrimSpace(a.Labels["alertname"]) == "" {
		return in, errors.New("labels.alertname is required (for a probe: the probe's name)")
	}
	return in, in.finish(a.Status, a.StartsAt, a.EndsAt)
}

func (p probeYAML) input() (InputAlert, error) {
	in := InputAlert{Source: "probe", Annotations: p.Annotations, Value: p.Value, Labels: map[string]string{}}
	if strings.TrimSpace(p.Probe) == "" {
		return in, errors.New("probe (the probe's name) is required")
	}
	if strings.TrimSpace(p.Kind) == "" {
		return in, errors.New("kind (http, tcp, postgres, redis, disk, tls or prometheus) is required")
	}
	for k, v := range p.Labels {
		in.Labels[k] = v
	}
	if p.Instance != "" {
		in.Labels["instance"] = p.Instance
	}
	in.Labels["alertname"] = p.Probe
	in.Labels["probe_kind"] = p.Kind
	return in, in.finish(p.Status, p.StartsAt, p.EndsAt)
}

func (in *InputAlert) finish(st statusYAML, starts, ends *relYAML) error {
	in.Status = string(st)
	if in.Status == "" {
		in.Status = "firing"
	}
	if in.Value != nil && (math.IsNaN(*in.Value) || math.IsInf(*in.Value, 0)) {
		return errors.New("value must be a finite number (leave it out for no value)")
	}
	if starts != nil {
		in.StartsAt = starts.d
	}
	if ends != nil {
		e := ends.d
		in.EndsAt = &e
		if e < in.StartsAt {
			return errors.New("ends_at is before starts_at")
		}
	}
	return nil
}

func (p priorYAML) prior() (PriorAction, error) {
	pa := PriorAction{Rule: p.Rule, Ago: p.Ago.d, Source: p.Source, Labels: p.Labels, Annots: p.Annotations, Value: p.Value}
	if strings.TrimSpace(p.Rule) == "" {
		return pa, errors.New("rule is required")
	}
	if pa.Ago <= 0 {
		return pa, errors.New("ago is required: how long before now the rule acted, e.g. 5m")
	}
	switch pa.Source {
	case "":
		pa.Source = "alertmanager"
	case "alertmanager", "probe":
	default:
		return pa, fmt.Errorf("source must be alertmanager or probe, not %q", p.Source)
	}
	if strings.TrimSpace(p.Labels["alertname"]) == "" {
		return pa, errors.New("labels.alertname is required: the labels of the alert the rule acted on")
	}
	return pa, nil
}

// phases are the phases an expected action may name, in the order results are compared.
var phases = func() []string {
	out := make([]string, len(vocab.Phases))
	for i, p := range vocab.Phases {
		out[i] = string(p)
	}
	return out
}()

func (e expYAML) action() (Action, error) {
	a := Action{Rule: e.Rule, Handler: e.Handler, Phase: e.Phase, Params: normalize(e.Params), Approval: e.Approval, Verify: e.Verify}
	switch a.Verify {
	case "", VerifyVerifying, VerifyRecovered, VerifyNotRecovered:
	default:
		return a, fmt.Errorf("verify must be %s, %s or %s, not %q", VerifyVerifying, VerifyRecovered, VerifyNotRecovered, e.Verify)
	}
	if a.Params == nil {
		a.Params = map[string]any{}
	}
	if strings.TrimSpace(a.Rule) == "" || strings.TrimSpace(a.Handler) == "" {
		return a, errors.New("rule and handler are required")
	}
	if a.Phase == "" {
		a.Phase = string(vocab.PhaseActions)
	}
	ok := false
	for _, p := range phases {
		ok = ok || p == a.Phase
	}
	if !ok {
		return a, fmt.Errorf("phase must be one of %s, not %q", strings.Join(phases, ", "), e.Phase)
	}
	if a.Approval != "" && a.Approval != "none" && a.Approval != "required" {
		return a, fmt.Errorf("approval must be none or required, not %q", e.Approval)
	}
	return a, nil
}

// value returns the value node of key in mapping n (nil if absent or n is nil).
func value(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// item returns element i of sequence n (or n itself when it is not one).
func item(n *yaml.Node, i int) *yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
		return n
	}
	return n.Content[i]
}

func line(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Line
}
