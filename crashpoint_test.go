//go:build !crashhook

package jwtrotor

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Tests of crashpoint.go: in every build without the crashhook tag, each
// crash point the plugin names lets the write go on.

// Every crashPoint call of the plugin's source returns nil in this build,
// even with JWT_ROTOR_CRASH_AT naming it.
func TestCrashPointsAreInertWithoutTheHook(t *testing.T) {
	// Not parallel: it sets the variable the crashhook build obeys.
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") || strings.HasPrefix(n, "crashpoint") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(x ast.Node) bool {
			if c, ok := x.(*ast.CallExpr); ok {
				if id, ok := c.Fun.(*ast.Ident); ok && id.Name == "crashPoint" && len(c.Args) == 1 {
					if lit, ok := c.Args[0].(*ast.BasicLit); ok {
						name, _ := strconv.Unquote(lit.Value)
						names = append(names, name)
					}
				}
			}
			return true
		})
	}
	if len(names) == 0 {
		t.Fatal("no crash points found (the test would prove nothing)")
	}
	for _, n := range names {
		t.Setenv("JWT_ROTOR_CRASH_AT", n)
		if err := crashPoint(n); err != nil {
			t.Errorf("crash point %s: %v", n, err)
		}
	}
}
