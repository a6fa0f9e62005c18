package rules

import (
	"os"
	"path/filepath"
)

// UniqueFiles returns paths without the ones that name a file listed before them: the same cleaned
// absolute path, or the same file by os.SameFile (a symlink, a hard link, another spelling). The
// first spelling is kept, in order. `rules check --config.file=F rules.yml` passes a file that F's
// rule_files also match: loaded twice, its rules would be reported as duplicates of themselves.
// A path that cannot be resolved or read is kept, so that loading it reports the error.
func UniqueFiles(paths []string) []string {
	type seen struct {
		abs string
		fi  os.FileInfo
	}
	var kept []seen
	out := make([]string, 0, len(paths))
next:
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			abs = filepath.Clean(p)
		}
		fi, _ := os.Stat(p)
		for _, k := range kept {
			if k.abs == abs || (fi != nil && k.fi != nil && os.SameFile(k.fi, fi)) {
				continue next
			}
		}
		kept = append(kept, seen{abs: abs, fi: fi})
		out = append(out, p)
	}
	return out
}
