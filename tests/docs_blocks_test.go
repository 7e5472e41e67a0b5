package tests

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// The Markdown conventions the docs test reads (docs/testing.md, "Docs that
// run"). An HTML comment on the last non-blank line before a fence says what
// the block is:
//
//	<!-- illustrative: <reason> -->  not run (a Kubernetes cluster, a real
//	                                 cloud, a second cluster, a production
//	                                 install); the reason is required
//	<!-- file: <name> -->            not run: written to <name> in the
//	                                 working directory before any block runs
//
// and a comment anywhere in a file
//
//	<!-- continues: README.md -->    runs that file's blocks first, on the
//	                                 same server (its examples build on them)
//
// Every other sh, bash or shell block runs. A text block that follows a block
// that runs, with only blank lines between, is the output the docs show.

// docBlock is one fenced block of a Markdown file.
type docBlock struct {
	file   string
	line   int // of the opening fence, 1-based
	lang   string
	body   string
	marker string // "illustrative", "file" or ""
	arg    string // the reason or the file name
	output *docBlock
}

func (b *docBlock) where() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// runs reports whether the docs test executes b.
func (b *docBlock) runs() bool {
	switch b.lang {
	case "sh", "bash", "shell":
		return b.marker == ""
	}
	return false
}

var (
	markerRE    = regexp.MustCompile(`^<!--\s*(illustrative|file):\s*(.*?)\s*-->$`)
	continuesRE = regexp.MustCompile(`<!--\s*continues:\s*(\S+)\s*-->`)
)

// parseDoc returns the fenced blocks of the Markdown file at path (named
// name in messages) and the file it continues, if any.
func parseDoc(path, name string) (blocks []*docBlock, continues string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	text := string(b)
	if m := continuesRE.FindStringSubmatch(text); m != nil {
		continues = m[1]
	}
	lines := strings.Split(text, "\n")
	lastNonBlank := ""
	var prev *docBlock // the previous block, while only blank lines follow it
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		if !strings.HasPrefix(trimmed, "```") {
			if trimmed != "" {
				lastNonBlank = trimmed
				prev = nil
			}
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		blk := &docBlock{file: name, line: i + 1, lang: strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))}
		if m := markerRE.FindStringSubmatch(lastNonBlank); m != nil {
			blk.marker, blk.arg = m[1], m[2]
		}
		var body []string
		closed := false
		for i++; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) == "```" {
				closed = true
				break
			}
			l := lines[i]
			if len(l) >= indent && strings.TrimSpace(l[:indent]) == "" {
				l = l[indent:]
			}
			body = append(body, l)
		}
		if !closed {
			return nil, "", fmt.Errorf("%s: unclosed fence", blk.where())
		}
		blk.body = strings.Join(body, "\n") + "\n"
		if blk.lang == "text" && prev != nil && prev.runs() {
			prev.output = blk
		}
		blocks = append(blocks, blk)
		prev, lastNonBlank = blk, "```"
	}
	return blocks, continues, nil
}

// outputKey is what an actual output line must start with to match the
// shown line l: the status of an HTTP status line, the name of a header,
// the first member of a JSON object, the first column of a table. Values
// (times, kids, tokens, ETags) differ on every run and are not compared.
func outputKey(l string) (key string, fold bool) {
	f := strings.Fields(l)
	switch {
	case strings.HasPrefix(l, "HTTP/") && len(f) >= 2:
		return f[0] + " " + f[1], false
	case regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*: `).MatchString(l):
		return l[:strings.Index(l, ":")+1], true
	case strings.HasPrefix(l, "{"):
		if i := strings.Index(l, ":"); i > 0 {
			return l[:i+1], false
		}
		return "{", false
	}
	return f[0], false
}

// missingOutput returns the lines of the shown output that no line of the
// actual output matches (outputKey).
func missingOutput(shown, actual string) []string {
	var lines []string
	for _, l := range strings.Split(actual, "\n") {
		lines = append(lines, strings.TrimRight(l, "\r "))
	}
	var missing []string
	for _, want := range strings.Split(shown, "\n") {
		if strings.TrimSpace(want) == "" {
			continue
		}
		key, fold := outputKey(want)
		found := false
		for _, got := range lines {
			if len(got) < len(key) {
				continue
			}
			head := got[:len(key)]
			if !(head == key || fold && strings.EqualFold(head, key)) {
				continue
			}
			// A table's first column is a whole field.
			if rest := got[len(key):]; key == strings.Fields(want)[0] && rest != "" && rest[0] != ' ' && rest[0] != '\t' {
				continue
			}
			found = true
			break
		}
		if !found {
			missing = append(missing, want)
		}
	}
	return missing
}
