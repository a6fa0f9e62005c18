package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A file named twice (as rule_files matched it and as given on the command line, by another
// spelling or through a symlink) is loaded once; a name shared by two files is still a duplicate.
func TestLoadFilesSameFileTwice(t *testing.T) {
	abs, err := filepath.Abs("testdata/dup-a.yml")
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "linked.yml")
	if err := os.Symlink(abs, link); err != nil {
		t.Fatal(err)
	}
	for _, paths := range [][]string{
		{"testdata/dup-a.yml", "testdata/dup-a.yml"},
		{abs, "testdata/dup-a.yml"},
		{"testdata/../testdata/dup-a.yml", "./testdata/dup-a.yml"},
		{"testdata/dup-a.yml", link},
	} {
		set, err := LoadFiles(paths, fakeCatalog{})
		if err != nil {
			t.Fatalf("LoadFiles(%q) = %v, want the file loaded once", paths, err)
		}
		if len(set.Rules) != 1 {
			t.Errorf("LoadFiles(%q): %d rules, want 1", paths, len(set.Rules))
		}
		once, _ := LoadFiles(paths[:1], fakeCatalog{})
		if set.Hash != once.Hash {
			t.Errorf("LoadFiles(%q): hash %s, want %s (the file's alone)", paths, set.Hash, once.Hash)
		}
	}
	_, err = LoadFiles([]string{abs, "testdata/dup-b.yml", "testdata/dup-a.yml"}, fakeCatalog{})
	if err == nil || !strings.Contains(err.Error(), `testdata/dup-b.yml:8: duplicate rule name "shared-name" (also at `+abs+`:2)`) {
		t.Fatalf("err = %v, want the duplicate across two files", err)
	}
	if got := UniqueFiles([]string{"testdata/missing.yml", "./testdata/missing.yml", "testdata/dup-b.yml"}); len(got) != 2 {
		t.Errorf("UniqueFiles with a missing file = %q, want it once and dup-b.yml", got)
	}
}
