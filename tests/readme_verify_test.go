package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The README's "Verify a token" snippets verify what the plugin signs, as
// written: the Go (go-jose), Node (jose) and Python (PyJWT PyJWKClient) ones
// accept a token of the role's audience, reading the issuer and the token
// from ISSUER and TOKEN as the README says, and reject the same role's token
// for another audience (the audience setting is live, not decorative). The
// Java one is marked illustrative.
func TestReadmeVerifySnippets(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	blocks, _, err := parseDoc(filepath.Join(root, "README.md"), "README.md")
	if err != nil {
		t.Fatal(err)
	}
	snippets := map[string]*docBlock{}
	for _, b := range blocks {
		switch b.lang {
		case "go", "js", "python", "java":
			if snippets[b.lang] != nil {
				t.Fatalf("%s: a second %s block; the test expects one per library", b.where(), b.lang)
			}
			snippets[b.lang] = b
		}
	}
	for _, lang := range []string{"go", "js", "python", "java"} {
		if snippets[lang] == nil {
			t.Fatalf("README.md has no %s snippet", lang)
		}
	}
	if snippets["java"].marker != "illustrative" {
		t.Errorf("%s: the Java snippet cannot run here and must be marked illustrative", snippets["java"].where())
	}

	const audience = "https://payments.example.com"
	m := newMount(t, "readme-verify", nil)
	env.root.mustWrite(t, m.p("keys/payments"), map[string]any{"algorithm": "ES256"})
	env.root.mustWrite(t, m.p("keys/payments/rotate"), map[string]any{"force": true})
	env.root.mustWrite(t, m.p("roles/payments-api"), map[string]any{
		"key": "payments", "audiences": []string{audience, "https://other.example.com"},
		"ttl": "15m", "max_ttl": "1h",
	})
	sign := func(aud string) (token, jti string) {
		resp := env.signer.mustWrite(t, m.p("sign/payments-api"), map[string]any{"audience": aud})
		return str(t, resp.Data, "token"), str(t, resp.Data, "jti")
	}
	good, goodJTI := sign(audience)
	other, _ := sign("https://other.example.com")

	dir := t.TempDir()
	// The Go snippet builds in this module, which requires go-jose v4; the
	// Node one runs beside tests/node/node_modules (make node-deps).
	goDir, err := os.MkdirTemp(".", ".readme-verify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(goDir) })
	writeFile(t, filepath.Join(goDir, "main.go"), snippets["go"].body)
	goBin := filepath.Join(dir, "verify-go")
	if out, err := exec.Command("go", "build", "-o", goBin, "./"+goDir).CombinedOutput(); err != nil {
		t.Fatalf("%s: the Go snippet does not build: %v\n%s", snippets["go"].where(), err, out)
	}
	nodeFile, err := os.CreateTemp("node", ".readme-verify-*.mjs")
	if err != nil {
		t.Fatal(err)
	}
	nodeFile.Close()
	t.Cleanup(func() { os.Remove(nodeFile.Name()) })
	writeFile(t, nodeFile.Name(), snippets["js"].body)
	pyFile := filepath.Join(dir, "verify.py")
	writeFile(t, pyFile, snippets["python"].body)

	// Debian's python3-jwt installs for the system interpreter.
	python := "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import jwt").CombinedOutput(); err != nil {
		t.Fatalf("%s lacks PyJWT (python3-jwt; make test installs it): %v\n%s", python, err, out)
	}
	runners := []struct {
		lang string
		argv []string
	}{
		{"go", []string{goBin}},
		{"js", []string{"node", nodeFile.Name()}},
		{"python", []string{python, pyFile}},
	}
	for _, r := range runners {
		t.Run(r.lang, func(t *testing.T) {
			run := func(token string) (string, error) {
				cmd := exec.Command(r.argv[0], r.argv[1:]...)
				cmd.Env = append(os.Environ(), "ISSUER="+m.issuer, "TOKEN="+token)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				err := cmd.Run()
				return strings.TrimSpace(out.String()), err
			}
			out, err := run(good)
			want := fmt.Sprintf("verified: sub %s jti %s", env.entityID, goodJTI)
			if err != nil || out != want {
				t.Errorf("%s: a token for %s: %v, printed %q; want %q", snippets[r.lang].where(), audience, err, out, want)
			}
			out, err = run(other)
			if err == nil || !strings.HasPrefix(out, "rejected:") {
				t.Errorf("%s: a token for another audience: exit %v, printed %q; want a non-zero exit and \"rejected: ...\"", snippets[r.lang].where(), err, out)
			}
		})
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
