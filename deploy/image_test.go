// Package deploy_test checks the container image recipe (the Dockerfile at the repository root)
// without a Docker engine: it runs the Dockerfile's own go build (same environment, flags and
// ldflags) into a temporary directory, checks that the binary is static and reports the version
// it was stamped with, and checks the final stage's base, user, entrypoint, command and labels.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/deploy/helmtest"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, ...
	Args string
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// stages splits the instructions at each FROM.
func stages(ins []instruction) [][]instruction {
	var out [][]instruction
	for _, in := range ins {
		if in.Cmd == "FROM" {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], in)
		}
	}
	return out
}

func last(ins []instruction, cmd string) (string, bool) {
	for i := len(ins) - 1; i >= 0; i-- {
		if ins[i].Cmd == cmd {
			return ins[i].Args, true
		}
	}
	return "", false
}

// shellWords splits a shell command line on blanks, honouring double and single quotes.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	in := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in || cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in || cur.Len() > 0 {
		words = append(words, cur.String())
	}
	return words
}

var argRef = regexp.MustCompile(`\$\{([A-Z_]+)\}`)

func TestDockerfileBuildsAStaticVersionedBinary(t *testing.T) {
	root, err := helmtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ins := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	st := stages(ins)
	if len(st) != 2 {
		t.Fatalf("want a two-stage build, got %d stages", len(st))
	}
	builder, final := st[0], st[1]

	// The builder is golang at go.mod's Go version.
	from, _ := last(builder, "FROM")
	goVersion := ""
	for _, in := range ins {
		if v, ok := strings.CutPrefix(in.Args, "GO_VERSION="); in.Cmd == "ARG" && ok {
			goVersion = v
		}
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	modGo := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if !strings.HasPrefix(from, "golang:${GO_VERSION}") || modGo == nil || goVersion != string(modGo[1]) {
		t.Errorf("builder FROM %q with GO_VERSION=%q; want golang at go.mod's go %s", from, goVersion, modGo[1])
	}

	// The go build RUN line, with the build args substituted by test values.
	var build []string
	for _, in := range builder {
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			build = shellWords(in.Args)
		}
	}
	if len(build) == 0 {
		t.Fatal("no RUN go build in the build stage")
	}
	vals := map[string]string{"VERSION": "1.2.3-imagetest", "REVISION": "abc1234", "BRANCH": "release-1.2", "BUILD_DATE": "20260101-00:00:00"}
	for i, w := range build {
		build[i] = argRef.ReplaceAllStringFunc(w, func(m string) string {
			name := argRef.FindStringSubmatch(m)[1]
			v, ok := vals[name]
			if !ok {
				t.Fatalf("go build uses the build arg %s the test does not know", name)
			}
			return v
		})
	}
	var env []string
	i := slices.Index(build, "go")
	if i < 0 || i+1 >= len(build) || build[i+1] != "build" {
		t.Fatalf("cannot find `go build` in %q", build)
	}
	for _, w := range build[:i] {
		if strings.Contains(w, "=") && !strings.HasPrefix(w, "--") {
			env = append(env, w)
		}
	}
	args := build[i+2:]
	if !slices.Contains(env, "CGO_ENABLED=0") || !slices.Contains(args, "-trimpath") {
		t.Errorf("go build env %q args %q: want CGO_ENABLED=0 and -trimpath", env, args)
	}
	oi := slices.Index(args, "-o")
	if oi < 0 || oi+1 >= len(args) {
		t.Fatalf("go build without -o: %q", args)
	}
	outPath := args[oi+1]
	bin := filepath.Join(t.TempDir(), "responder")
	args[oi+1] = bin

	// The same -X variables as the Makefile's LDFLAGS.
	ldflags := ""
	if li := slices.Index(args, "-ldflags"); li >= 0 && li+1 < len(args) {
		ldflags = args[li+1]
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	xvars := regexp.MustCompile(`-X (\S+?)\.(Version|Revision|Branch|BuildDate)=`)
	var fromMake, fromDocker []string
	for _, m := range xvars.FindAllStringSubmatch(strings.ReplaceAll(string(makefile), "$(PKG)", "github.com/prometheus/common/version"), -1) {
		fromMake = append(fromMake, m[1]+"."+m[2])
	}
	for _, m := range xvars.FindAllStringSubmatch(ldflags, -1) {
		fromDocker = append(fromDocker, m[1]+"."+m[2])
	}
	slices.Sort(fromMake)
	slices.Sort(fromDocker)
	if len(fromDocker) != 4 || !slices.Equal(fromMake, fromDocker) {
		t.Errorf("Dockerfile sets %v, the Makefile %v: want the same four version variables", fromDocker, fromMake)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	// Static: no program interpreter, no dynamic section.
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: not static", p.Type)
		}
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Error("binary has a .dynamic section: not static")
	}
	f.Close()

	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	for _, want := range []string{`responder, version 1\.2\.3-imagetest `, `branch: release-1\.2`, `revision: abc1234`, `build date:\s+20260101-00:00:00`} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("responder version does not match %s:\n%s", want, out)
		}
	}

	// The final stage: distroless static nonroot, the binary where ENTRYPOINT looks, user 65532.
	if from, _ := last(final, "FROM"); from != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final FROM %q", from)
	}
	if user, _ := last(final, "USER"); user != "65532" && !strings.HasPrefix(user, "65532:") {
		t.Errorf("USER %q, want 65532", user)
	}
	var entry, cmdArgs []string
	if s, ok := last(final, "ENTRYPOINT"); !ok || json.Unmarshal([]byte(s), &entry) != nil {
		t.Fatalf("ENTRYPOINT %q is not in exec (JSON) form", s)
	}
	if s, ok := last(final, "CMD"); !ok || json.Unmarshal([]byte(s), &cmdArgs) != nil {
		t.Fatalf("CMD %q is not in exec (JSON) form", s)
	}
	if !slices.Equal(entry, []string{"/responder"}) {
		t.Errorf("ENTRYPOINT %q, want [/responder]", entry)
	}
	if want := []string{"serve", "--config.file=/etc/responder/responder.yml", "--storage.path=/var/lib/responder"}; !slices.Equal(cmdArgs, want) {
		t.Errorf("CMD %q, want %q", cmdArgs, want)
	}
	copied := false
	for _, in := range final {
		if in.Cmd == "COPY" && strings.HasPrefix(in.Args, "--from=build "+outPath+" "+entry[0]) {
			copied = true
		}
	}
	if !copied {
		t.Errorf("the final stage does not COPY --from=build %s %s", outPath, entry[0])
	}
	labels, _ := last(final, "LABEL")
	for _, k := range []string{"title", "description", "source", "version", "revision", "created"} {
		if !strings.Contains(labels, "org.opencontainers.image."+k+"=") {
			t.Errorf("LABEL lacks org.opencontainers.image.%s", k)
		}
	}

	// The entrypoint and command are accepted as flags: serve gets as far as reading the config.
	run := exec.CommandContext(ctx, bin, cmdArgs...)
	run.Dir = t.TempDir()
	out, err = run.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/etc/responder/responder.yml") || strings.Contains(string(out), "unknown") {
		t.Errorf("%s %s: want a failure naming the missing config file, got %v:\n%s", entry[0], strings.Join(cmdArgs, " "), err, out)
	}
}

func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`a b`, []string{"a", "b"}},
		{`CGO_ENABLED=0 go build -ldflags "-s -w -X a.B=c" -o /x ./cmd`, []string{"CGO_ENABLED=0", "go", "build", "-ldflags", "-s -w -X a.B=c", "-o", "/x", "./cmd"}},
		{`x '' "y z"`, []string{"x", "", "y z"}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := shellWords(tc.in); !slices.Equal(got, tc.want) {
				t.Fatalf("shellWords(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
