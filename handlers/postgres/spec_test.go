package postgres

import (
	"fmt"
	"strings"
	"testing"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

func testRegistry(t *testing.T) *handlers.Registry {
	t.Helper()
	hs, err := New(config.PostgresHandlerConfig{Clusters: map[string]config.PostgresCluster{
		"billing": {Patroni: []string{"http://127.0.0.1:8008"}, MaxLag: 1_000_000},
		"legacy": {
			Primary:  &config.PostgresNode{Name: "primary", DSN: "postgres://u:SECRET@127.0.0.1:1/postgres"},
			Standbys: []config.PostgresNode{{Name: "standby-1", DSN: "postgres://u:SECRET@127.0.0.1:2/postgres"}},
			Detect:   config.PostgresDetect{Failures: 3},
		},
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := handlers.NewRegistry(hs...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSpecs(t *testing.T) {
	r := testRegistry(t)
	for _, tc := range []struct {
		name   string
		forbid bool
	}{{SwitchoverName, false}, {FailoverName, true}, {PromoteName, false}} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := r.Get(tc.name)
			s := h.Spec()
			if s.Class != vocab.ClassDisruptive || s.DefaultApproval != handlers.ApprovalRequired || s.ForbidNoApproval != tc.forbid {
				t.Errorf("class %s approval %s forbid %t", s.Class, s.DefaultApproval, s.ForbidNoApproval)
			}
			if s.Target != "postgres/<cluster>" || s.Scope != "postgres/<cluster>" || s.Example == "" || s.DefaultTimeout == 0 {
				t.Errorf("spec %+v", s)
			}
		})
	}
}

// TestCheckAction is what `rules check` runs at load: approval none is refused for failover,
// clusters and candidates must exist and be of the right kind.
func TestCheckAction(t *testing.T) {
	r := testRegistry(t)
	for _, tc := range []struct {
		handler, approval string
		params            map[string]any
		want              string // "" = accepted
	}{
		{FailoverName, "none", map[string]any{"cluster": "billing"}, "approval: none is not allowed"},
		{FailoverName, "required", map[string]any{"cluster": "billing", "candidate": "m2"}, ""},
		{FailoverName, "", map[string]any{"cluster": "{{ alert.labels.cluster }}"}, ""},
		{SwitchoverName, "none", map[string]any{"cluster": "billing"}, ""},
		{SwitchoverName, "", map[string]any{"cluster": "legacy"}, "plain streaming replication, not Patroni"},
		{SwitchoverName, "", map[string]any{"cluster": "nope"}, `"nope" is not a Patroni cluster`},
		{SwitchoverName, "", map[string]any{"cluster": "billing", "verify_timeout": "-1s"}, "verify_timeout"},
		{PromoteName, "", map[string]any{"cluster": "legacy", "candidate": "standby-1"}, ""},
		{PromoteName, "", map[string]any{"cluster": "legacy", "candidate": "{{ alert.labels.standby }}"}, ""},
		{PromoteName, "", map[string]any{"cluster": "billing"}, "managed by Patroni"},
		{PromoteName, "", map[string]any{"cluster": "legacy", "candidate": "standby-9"}, `"standby-9" is not a standby`},
		{PromoteName, "", map[string]any{"cluster": "legacy", "require_primary_down": "yes"}, "must be a boolean"},
		{PromoteName, "", map[string]any{}, `needs param "cluster"`},
	} {
		t.Run(fmt.Sprintf("%s/%v/%s", tc.handler, tc.params, tc.approval), func(t *testing.T) {
			err := r.CheckAction(tc.handler, tc.approval, tc.params)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error prints a secret: %v", err)
			}
		})
	}
}

func TestBuildRendered(t *testing.T) {
	r := testRegistry(t)
	h, _ := r.Get(PromoteName)
	if _, err := h.Build(handlers.Params{"cluster": "legacy", "candidate": "standby-2"}); handlers.ReasonOf(err) != vocab.ReasonBadParam {
		t.Errorf("rendered unknown candidate: %v, want bad_param", err)
	}
	a, err := h.Build(handlers.Params{"cluster": "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	if pa := a.(*PromoteAction); pa.candidate.name != "standby-1" || !pa.requireDown {
		t.Errorf("defaults: candidate %q requireDown %t", pa.candidate.name, pa.requireDown)
	}
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "", "/", "1/", "x/1", "1/2/3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		back, err := ParseLSN(l.String())
		if err != nil || back != l {
			t.Errorf("%q → %v → %v (%v)", s, l, back, err)
		}
	})
}

func TestParseLSN(t *testing.T) {
	l, err := ParseLSN("16/B374D848")
	if err != nil || uint64(l) != 0x16B374D848 || l.String() != "16/B374D848" {
		t.Errorf("ParseLSN = %v %v", l, err)
	}
}
