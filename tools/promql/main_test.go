package main

import (
	"slices"
	"strings"
	"testing"
)

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		exprs []string
		want  []string
		err   string
	}{
		{"selectors and functions", []string{`sum by (le) (rate(a_bucket{job="x"}[$__rate_interval]))`, `up == 0 or absent(up{job="r"})`},
			[]string{"a_bucket", "up"}, ""},
		{"__name__ matcher and subquery", []string{`max_over_time({__name__="b_total"}[1h:${__interval}])`, `c / on() group_left d`},
			[]string{"b_total", "c", "d"}, ""},
		{"regexp __name__ is not a name", []string{`{__name__=~"x.*"}`}, []string{}, ""},
		{"parse error names the expression", []string{`sum(rate(x[5m])`}, nil, `parse "sum(rate(x[5m])"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := metricNames(tc.exprs)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("metricNames = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestReadExprs(t *testing.T) {
	got, err := readExprs(strings.NewReader("# comment\n\nup\n  rate(x[5m])  \n"), false)
	if err != nil || !slices.Equal(got, []string{"up", "rate(x[5m])"}) {
		t.Fatalf("lines: %q, %v", got, err)
	}
	got, err = readExprs(strings.NewReader(`["up", "a\n+ b"]`), true)
	if err != nil || !slices.Equal(got, []string{"up", "a\n+ b"}) {
		t.Fatalf("json: %q, %v", got, err)
	}
	if _, err := readExprs(strings.NewReader(`{"no": 1}`), true); err == nil {
		t.Fatal("a JSON object was accepted")
	}
}
