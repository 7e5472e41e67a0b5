package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Reproducible releases: the release build of the plugin (scripts/release.sh,
// what `make release` runs) gives the same bytes from two copies of the
// checkout in different directories, the second compiled from scratch
// (an empty build cache), so an operator can check a binary built anywhere
// against the published SHA256SUMS. The binary holds neither directory's
// path, and SHA256SUMS names it with its sha256.
func TestReleaseReproducible(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	const version = "v0.0.0-repro"
	name := "vault-plugin-jwt-rotor_" + version + "_" + runtime.GOOS + "_" + runtime.GOARCH

	ls := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	ls.Dir = root
	list, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var files []string
	for _, f := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		// The plugin's module: the root package, cmd/ and what the release
		// script reads.
		if strings.HasPrefix(f, "tests/") || strings.HasPrefix(f, "terraform-provider-jwtrotor/") || strings.HasPrefix(f, "tools/") {
			continue
		}
		files = append(files, f)
	}

	build := func(dir string, env ...string) []byte {
		t.Helper()
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(root, f))
			if os.IsNotExist(err) {
				continue // deleted in the work tree
			}
			if err != nil {
				t.Fatal(err)
			}
			info, err := os.Stat(filepath.Join(root, f))
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(dir, f)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, info.Mode().Perm()); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(filepath.Join(dir, "scripts", "release.sh"), "--native", "out")
		cmd.Dir = dir
		cmd.Env = append(append(os.Environ(), "VERSION="+version), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("release build in %s: %v\n%s", dir, err, out)
		}
		bin, err := os.ReadFile(filepath.Join(dir, "out", name))
		if err != nil {
			t.Fatal(err)
		}
		sums, err := os.ReadFile(filepath.Join(dir, "out", "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(bin)
		if want := hex.EncodeToString(sum[:]) + "  " + name + "\n"; string(sums) != want {
			t.Errorf("SHA256SUMS in %s is %q, want %q", dir, sums, want)
		}
		if bytes.Contains(bin, []byte(dir)) {
			t.Errorf("the binary built in %s contains that path (-trimpath missing?)", dir)
		}
		return bin
	}

	a := build(filepath.Join(t.TempDir(), "a"))
	b := build(filepath.Join(t.TempDir(), "second", "checkout"), "GOCACHE="+t.TempDir())
	sa, sb := sha256.Sum256(a), sha256.Sum256(b)
	if sa != sb {
		t.Fatalf("the same source built in two directories differs: sha256 %x (%d bytes) and %x (%d bytes)", sa, len(a), sb, len(b))
	}
	t.Logf("%s: sha256 %x from both directories (%d bytes)", name, sa, len(a))
}
