package jwtrotor

import (
	"go/parser"
	"go/token"
	"strconv"
	"testing"
)

// The lifecycle (rotation.go: states and schedule; operations.go: rotate,
// revoke, rollback, settings changes, delete; bounds.go: the bounds) is pure:
// a function of a ring's stored timestamps and a time. It reads no storage,
// clock or randomness, and knows nothing of Vault, so the same answer comes
// out on every node and in tests that drive days in milliseconds. This test
// keeps it so: those files may import only these packages.
func TestLifecycleIsPure(t *testing.T) {
	allowed := map[string]bool{"encoding/json": true, "fmt": true, "math": true, "sort": true}
	for _, file := range []string{"rotation.go", "operations.go", "bounds.go"} {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Imports) == 0 {
			t.Fatalf("%s: no imports parsed (the test would prove nothing)", file)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !allowed[path] {
				t.Errorf("%s imports %s: the lifecycle must not depend on Vault, storage, clocks or randomness", file, path)
			}
		}
	}
}
