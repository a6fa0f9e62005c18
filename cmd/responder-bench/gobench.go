package main

import (
	"bufio"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// goBench is what --go-bench read: the metrics of each benchmark (name without the -GOMAXPROCS
// suffix) by unit, one value per run (-count), and the packages that failed.
type goBench struct {
	metrics map[string]map[string][]float64
	failed  []string
}

func readGoBench(path string) (*goBench, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseGoBench(f)
}

// parseGoBench reads standard benchmark lines ("BenchmarkX-2  N  v1 unit1  v2 unit2 ...") and
// "FAIL\tpkg" lines; everything else is ignored.
func parseGoBench(r io.Reader) (*goBench, error) {
	g := &goBench{metrics: map[string]map[string][]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if pkg, ok := strings.CutPrefix(line, "FAIL\t"); ok {
			g.failed = append(g.failed, strings.Fields(pkg)[0])
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := trimProcs(f[0])
		m := g.metrics[name]
		if m == nil {
			m = map[string][]float64{}
			g.metrics[name] = m
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			m[f[i+1]] = append(m[f[i+1]], v)
		}
	}
	return g, sc.Err()
}

// trimProcs drops the -GOMAXPROCS suffix of a benchmark name.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// metric is the median of a benchmark's metric over its runs; ok is false if it was not reported.
// A benchmark with sub-benchmarks is found by its first sub-benchmark that reports the unit.
func (g *goBench) metric(bench, unit string) (float64, bool) {
	if g == nil {
		return 0, false
	}
	vs := g.metrics[bench][unit]
	if len(vs) == 0 {
		names := make([]string, 0, len(g.metrics))
		for name := range g.metrics {
			if strings.HasPrefix(name, bench+"/") {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		for _, name := range names {
			if vs = g.metrics[name][unit]; len(vs) > 0 {
				break
			}
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2], true
}
