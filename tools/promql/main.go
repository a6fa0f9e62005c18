// Command promql-metrics prints the metric names that PromQL expressions
// reference, one per line, sorted and deduplicated. It reads expressions from
// the files named (or standard input): one per line (blank lines and lines
// starting with # are skipped), or, with -json, a JSON array of strings.
// Grafana's interval variables ($__rate_interval, $__interval, $__range and
// their ${...} forms) are replaced by 5m before parsing. An expression that
// does not parse is an error naming it; the exit status is then 1.
//
// It is its own module because github.com/prometheus/prometheus needs a newer
// github.com/prometheus/common than responder's main module uses. The app's
// metrics contract test builds and runs it; nothing imports it.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

var grafanaInterval = regexp.MustCompile(`\$\{__(rate_interval|interval|range)\}|\$__(rate_interval|interval|range)\b`)

func main() {
	jsonIn := flag.Bool("json", false, "read a JSON array of expressions instead of one per line")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-json] [FILE...]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	names, err := run(flag.Args(), *jsonIn, os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "promql-metrics:", err)
		os.Exit(1)
	}
	for _, n := range names {
		fmt.Println(n)
	}
}

func run(files []string, jsonIn bool, stdin io.Reader) ([]string, error) {
	var exprs []string
	read := func(name string, r io.Reader) error {
		es, err := readExprs(r, jsonIn)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		exprs = append(exprs, es...)
		return nil
	}
	if len(files) == 0 {
		if err := read("stdin", stdin); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		err = read(f, fh)
		fh.Close()
		if err != nil {
			return nil, err
		}
	}
	return metricNames(exprs)
}

func readExprs(r io.Reader, jsonIn bool) ([]string, error) {
	if jsonIn {
		var es []string
		if err := json.NewDecoder(r).Decode(&es); err != nil {
			return nil, fmt.Errorf("decode JSON array of strings: %w", err)
		}
		return es, nil
	}
	var es []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		es = append(es, line)
	}
	return es, sc.Err()
}

// metricNames parses each expression and collects the metric names its
// selectors name, either as the selector's name or as a __name__ equality
// matcher.
func metricNames(exprs []string) ([]string, error) {
	p := parser.NewParser(parser.Options{})
	seen := map[string]bool{}
	var errs []error
	for _, e := range exprs {
		ast, err := p.ParseExpr(grafanaInterval.ReplaceAllString(e, "5m"))
		if err != nil {
			errs = append(errs, fmt.Errorf("parse %q: %w", e, err))
			continue
		}
		parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			if vs.Name != "" {
				seen[vs.Name] = true
				return nil
			}
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					seen[m.Value] = true
				}
			}
			return nil
		})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}
