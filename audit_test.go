package jwtrotor

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// The audit rules of docs/testing.md that a program can check, over every
// test file of the repository (the plugin, tests/ and the Terraform
// provider).

// auditSkipAllowed are the only skips allowed, with the reason each is not
// a skip in `make test`.
var auditSkipAllowed = map[string]string{
	"terraform-provider-jwtrotor/internal/acctest/harness_test.go": "terraform-plugin-testing's TF_ACC convention; make test sets TF_ACC=1 and scripts/test-provider.sh fails the run if any test skipped",
}

// auditTestFiles parses every _test.go file of the repository.
func auditTestFiles(t *testing.T) map[string]*ast.File {
	t.Helper()
	files := map[string]*ast.File{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (d.Name() == "node_modules" || d.Name() == "bin" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(path)] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fuzz_test.go", "tests/harness_test.go", "terraform-provider-jwtrotor/internal/acctest/harness_test.go"} {
		if files[want] == nil {
			t.Fatalf("the audit found no %s: it does not see the whole repository", want)
		}
	}
	return files
}

// TestAuditNoSkips: a skip in code that make test runs is a failure, so no
// test skips (a test that cannot run where make test runs fails instead,
// saying why), except the allowed ones above.
func TestAuditNoSkips(t *testing.T) {
	t.Parallel()
	for path, f := range auditTestFiles(t) {
		if auditSkipAllowed[path] != "" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
				switch sel.Sel.Name {
				case "Skip", "Skipf", "SkipNow":
					t.Errorf("%s: a test skips (%s): make it fail with the reason instead", path, sel.Sel.Name)
				}
			}
			return true
		})
	}
}

// TestAuditTestsNameTheirProperty: every test and fuzz target says, in its
// doc comment, the property it guards (a fuzz target: what it checks beyond
// "no panic").
func TestAuditTestsNameTheirProperty(t *testing.T) {
	t.Parallel()
	n := 0
	for path, f := range auditTestFiles(t) {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv != nil {
				continue
			}
			name := fd.Name.Name
			if !(strings.HasPrefix(name, "Test") && name != "TestMain" || strings.HasPrefix(name, "Fuzz")) {
				continue
			}
			n++
			if fd.Doc == nil || len(strings.Fields(fd.Doc.Text())) < 4 {
				t.Errorf("%s: %s has no doc comment naming the property it guards", path, name)
			}
		}
	}
	if n < 100 {
		t.Fatalf("the audit found only %d tests", n)
	}
}
