package rules

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/responder-sre/responder/alert"
)

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yml")
	bad, _ := filepath.Glob("testdata/bad/*.yml")
	for _, p := range append(seeds, bad...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	env := NewEnv(crashloop(alert.StatusFiring), t0, firingSet{{"alertname": "Watchdog"}})
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data, "fuzz.yml", fakeCatalog{})
		if err != nil {
			// Every error is located in the file.
			var list []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				list = j.Unwrap()
			} else {
				list = []error{err}
			}
			for _, e := range list {
				var le *Error
				if !errors.As(e, &le) || le.File != "fuzz.yml" {
					t.Fatalf("error not located in the file: %v", e)
				}
			}
		}
		for _, r := range rs {
			if r.Name == "" || r.when == nil {
				t.Fatalf("loaded rule without name or when: %+v", r)
			}
			_, _ = r.Match(env)
			for _, as := range [][]*Action{r.Actions, r.Escalate, r.OnResolved} {
				for _, a := range as {
					_, _ = a.Render(env)
				}
			}
		}
	})
}
