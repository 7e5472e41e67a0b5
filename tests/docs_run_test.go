package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// Docs that run: every shell block of README.md and docs/*.md that a reader
// is meant to run does what the docs say, as written, in order, on a fresh
// `make dev` server per file, in a shell set up the way `make dev` says
// (its $DEV_DIR/env). A block that fails, or whose output lacks what the
// docs show after it, fails the test; a block that cannot run here is marked
// illustrative in the Markdown, with the reason (docs_blocks_test.go).
//
// DOCS_FILES=README.md,docs/operations.md runs only those files.
func TestDocsRun(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md"}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range more {
		files = append(files, "docs/"+filepath.Base(f))
	}
	sort.Strings(files[1:])
	if only := os.Getenv("DOCS_FILES"); only != "" {
		files = strings.Split(only, ",")
	}

	ran, illustrative := 0, 0
	for _, name := range files {
		blocks, continues, err := parseDoc(filepath.Join(root, name), name)
		if err != nil {
			t.Fatal(err)
		}
		var script []*docBlock
		if continues != "" {
			before, _, err := parseDoc(filepath.Join(root, continues), continues)
			if err != nil {
				t.Fatalf("%s continues %s: %v", name, continues, err)
			}
			script = append(script, before...)
		}
		script = append(script, blocks...)
		n := 0
		for _, b := range blocks {
			if b.marker == "illustrative" {
				if b.arg == "" {
					t.Errorf("%s: an illustrative block must say why it cannot run", b.where())
				}
				illustrative++
			}
			if b.runs() {
				n++
			}
		}
		if n == 0 {
			continue
		}
		ran += n
		t.Run(name, func(t *testing.T) { runDoc(t, root, script) })
	}
	t.Logf("%d blocks run, %d illustrative", ran, illustrative)
	if os.Getenv("DOCS_FILES") == "" && ran < 15 {
		t.Fatalf("only %d blocks ran: the parser lost the docs' blocks", ran)
	}
}

// runDoc starts a `make dev` server, then runs the blocks' scripts in one
// shell in a copy of the repository root's layout and checks each block.
func runDoc(t *testing.T, root string, blocks []*docBlock) {
	port, err := testserver.FreePortPair()
	if err != nil {
		t.Fatal(err)
	}
	devDir := t.TempDir()
	devEnv := append(os.Environ(),
		"DEV_LISTEN_ADDRESS=127.0.0.1:"+strconv.Itoa(port),
		"DEV_DIR="+devDir)
	dev := exec.Command("make", "--no-print-directory", "dev")
	dev.Dir, dev.Env = root, devEnv
	t.Cleanup(func() {
		stop := exec.Command("make", "--no-print-directory", "dev-stop")
		stop.Dir, stop.Env = root, devEnv
		if out, err := stop.CombinedOutput(); err != nil {
			t.Errorf("make dev-stop: %v\n%s", err, out)
		}
	})
	if out, err := dev.CombinedOutput(); err != nil {
		t.Fatalf("make dev: %v\n%s", err, out)
	}

	// The reader's shell is at the repository root; files the blocks write
	// land in a directory of links to the root's entries instead.
	work := t.TempDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == ".dev" {
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(work, e.Name())); err != nil {
			t.Fatal(err)
		}
	}

	var sh strings.Builder
	sh.WriteString("set -eo pipefail\n. \"$DEV_DIR/env\"\n")
	var run []*docBlock
	for _, b := range blocks {
		switch {
		case b.marker == "file":
			if err := os.WriteFile(filepath.Join(work, b.arg), []byte(b.body), 0o644); err != nil {
				t.Fatal(err)
			}
		case b.runs():
			fmt.Fprintf(&sh, "printf '\\n%s%d\\n'\n%s", blockMark, len(run), b.body)
			run = append(run, b)
		}
	}
	fmt.Fprintf(&sh, "printf '\\n%s%d\\n'\n", blockMark, len(run))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", sh.String())
	cmd.Dir = work
	// HOME is the work directory, so that a `vault login` in the docs
	// cannot replace the user's ~/.vault-token; Go keeps its caches.
	goEnv, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	g := strings.Fields(string(goEnv))
	if len(g) != 3 {
		t.Fatalf("go env: %q", goEnv)
	}
	cmd.Env = append(devEnv, "HOME="+work, "GOCACHE="+g[0], "GOMODCACHE="+g[1], "GOPATH="+g[2])
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Stdin = nil
	runErr := cmd.Run()

	// Split the output at the marks: part i is block i's.
	parts := map[int]string{}
	last := -1
	for _, l := range strings.SplitAfter(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), blockMark); ok {
			if i, err := strconv.Atoi(rest); err == nil {
				last = i
				continue
			}
		}
		if last >= 0 {
			parts[last] += l
		}
	}
	if runErr != nil {
		if last < 0 || last >= len(run) {
			t.Fatalf("the shell failed outside any block: %v\n%s", runErr, out.String())
		}
		b := run[last]
		t.Fatalf("%s: the block fails as written (%v):\n%s\noutput:\n%s", b.where(), runErr, b.body, parts[last])
	}
	for i, b := range run {
		if b.output == nil {
			continue
		}
		if missing := missingOutput(b.output.body, parts[i]); len(missing) > 0 {
			t.Errorf("%s: the output lacks what %s shows:\n%s\nactual output:\n%s",
				b.where(), b.output.where(), strings.Join(missing, "\n"), parts[i])
		}
	}
	t.Logf("%d blocks ran", len(run))
}

const blockMark = "@@docs-block "
