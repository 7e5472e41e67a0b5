package jwtrotor

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// Every relative link in the repository's Markdown files points at a file
// that exists, and every #anchor at a heading of that file (GitHub's
// rules), so a newcomer following the docs never lands nowhere.
func TestMarkdownLinks(t *testing.T) {
	t.Parallel()
	files := map[string][]string{} // path -> lines
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "node_modules", ".dev", ".bench", "testdata":
				return filepath.SkipDir
			}
			if strings.HasPrefix(d.Name(), ".raft-") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".md") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files[path] = strings.Split(string(b), "\n")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("found only %d Markdown files (the test would prove little)", len(files))
	}
	anchors := map[string]map[string]bool{}
	for path, lines := range files {
		anchors[path] = headingAnchors(lines)
	}
	link := regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	checked := 0
	for path, lines := range files {
		fence := false
		for n, line := range lines {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				fence = !fence
				continue
			}
			if fence {
				continue
			}
			for _, m := range link.FindAllStringSubmatch(stripCode(line), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				file, anchor, _ := strings.Cut(target, "#")
				dest := path
				if file != "" {
					dest = filepath.Clean(filepath.Join(filepath.Dir(path), file))
					if _, err := os.Stat(dest); err != nil {
						t.Errorf("%s:%d: link to %s: no such file", path, n+1, target)
						continue
					}
				}
				if anchor == "" {
					continue
				}
				a, ok := anchors[dest]
				if !ok {
					t.Errorf("%s:%d: link to %s: an anchor in a file that is not Markdown", path, n+1, target)
					continue
				}
				if !a[anchor] {
					t.Errorf("%s:%d: link to %s: %s has no heading #%s", path, n+1, target, dest, anchor)
				}
			}
		}
	}
	if checked < 30 {
		t.Fatalf("checked only %d relative links (the test would prove little)", checked)
	}
}

// stripCode removes inline code spans, whose brackets are not links.
func stripCode(line string) string {
	var b strings.Builder
	in := false
	for _, r := range line {
		if r == '`' {
			in = !in
			continue
		}
		if !in {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// htmlAnchor is an anchor written as HTML (<a id="...">), as generated
// provider docs do.
var htmlAnchor = regexp.MustCompile(`<a (?:id|name)="([^"]+)"`)

// headingAnchors returns the anchors GitHub gives a file's headings: lower
// case, punctuation other than - and _ dropped, spaces as hyphens, and -1,
// -2 ... for repeats; and the HTML anchors.
func headingAnchors(lines []string) map[string]bool {
	out := map[string]bool{}
	for _, line := range lines {
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			out[m[1]] = true
		}
	}
	seen := map[string]int{}
	fence := false
	for _, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
			continue
		}
		if fence || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		slug := b.String()
		if n := seen[slug]; n > 0 {
			out[slug+"-"+strconv.Itoa(n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}
