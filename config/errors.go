package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// posError is one problem at file:line ("file: msg" when the line is unknown).
type posError struct {
	file string
	line int
	msg  string
	err  error // wrapped cause, if any
}

func (e *posError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg)
	}
	return fmt.Sprintf("%s: %s", e.file, e.msg)
}

func (e *posError) Unwrap() error { return e.err }

// checker collects errors positioned by a dotted YAML path ("bus.duplicate_window").
type checker struct {
	file string
	root *yaml.Node // nil for configs built in code
	errs []error
}

// errorf records a problem at path; the line is the value's (the nearest written parent's when
// the key is absent, e.g. a default).
func (c *checker) errorf(path, format string, args ...any) {
	c.add(path, nil, format, args...)
}

// wrapf is errorf with a cause for errors.Is/As; format should end in %v for it.
func (c *checker) wrapf(path string, err error, format string, args ...any) {
	c.add(path, err, format, args...)
}

func (c *checker) add(path string, err error, format string, args ...any) {
	c.errs = append(c.errs, &posError{
		file: c.file,
		line: lineOf(c.root, path),
		msg:  path + ": " + fmt.Sprintf(format, args...),
		err:  err,
	})
}

func (c *checker) err() error { return errors.Join(c.errs...) }

// lineOf returns the line of the value at the dotted path ("a.b", "a.b[2]"), or of its nearest
// present ancestor; 0 when nothing of it is written. A map key holding dots (a console user
// "alice.smith" in "web.users.alice.smith.role") is found by joining the parts that follow.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return 0
		}
		n = n.Content[0]
	}
	line := 0
	parts := strings.Split(path, ".")
	for i := 0; i < len(parts); i++ {
		var v *yaml.Node
		var idx int
		for j := i; v == nil && j < len(parts); j++ {
			var key string
			key, idx = splitIndex(strings.Join(parts[i:j+1], "."))
			if v = mapValue(n, key); v != nil {
				i = j
			}
		}
		if v == nil {
			return line
		}
		n, line = v, v.Line
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

// splitIndex splits "key[2]" into "key" and 2; a part without an index gives -1.
func splitIndex(part string) (string, int) {
	if i := strings.IndexByte(part, '['); i > 0 && strings.HasSuffix(part, "]") {
		v, err := strconv.Atoi(part[i+1 : len(part)-1])
		if err != nil {
			v = -1
		}
		return part[:i], v
	}
	return part, -1
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v := n.Content[i+1]
			if v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			return v
		}
	}
	return nil
}

var (
	reLine       = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	reUnknown    = regexp.MustCompile(`^field (.*) not found in type (\S+)$`)
	reStructType = regexp.MustCompile(`\bconfig\.[A-Za-z]+\b`)
)

// sectionOf maps the struct types of Config to their YAML path ("config.WebhookConfig" → "webhook").
var sectionOf = func() map[string]string {
	m := map[string]string{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
			return
		}
		m[t.String()] = path
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			if path != "" {
				name = path + "." + name
			}
			walk(f.Type, name)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return m
}()

// decodeError turns yaml.v3's errors ("line 12: field x not found in type config.WebhookConfig")
// into positioned ones ("file:12: unknown key "x" in webhook").
func decodeError(file string, data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return positioned(file, nil, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // decoding got this far, so parsing succeeds
	idx := keysByLine(&root)
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		errs = append(errs, positioned(file, idx, msg))
	}
	return errors.Join(errs...)
}

func positioned(file string, keys map[int][]string, msg string) error {
	e := &posError{file: file, msg: msg}
	if m := reLine.FindStringSubmatch(msg); m != nil {
		e.line, _ = strconv.Atoi(m[1])
		e.msg = m[2]
	}
	if m := reUnknown.FindStringSubmatch(e.msg); m != nil {
		if sec := sectionOf[m[2]]; sec != "" {
			e.msg = fmt.Sprintf("unknown key %q in %s", m[1], sec)
		} else {
			e.msg = fmt.Sprintf("unknown key %q", m[1])
		}
		return e
	}
	e.msg = reStructType.ReplaceAllStringFunc(e.msg, func(t string) string {
		if _, ok := sectionOf[t]; ok {
			return "a mapping"
		}
		return t
	})
	// The outermost key written on the line: exact in block style, the section in flow style.
	if k := keys[e.line]; len(k) > 0 && !strings.HasPrefix(e.msg, k[0]+":") {
		e.msg = k[0] + ": " + e.msg
	}
	return e
}

// keysByLine indexes the dotted paths of the mapping keys written on each line, outermost first.
func keysByLine(root *yaml.Node) map[int][]string {
	idx := map[int][]string{}
	seen := map[*yaml.Node]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				idx[n.Content[i].Line] = append(idx[n.Content[i].Line], p)
				walk(n.Content[i+1], p)
			}
		}
	}
	walk(root, "")
	return idx
}
