// Command score reads the report gremlins writes (-o) for one scope and
// prints, per file, how many mutants the tests killed. It fails when a file
// is below the scope's minimum.
//
//	score -scope lifecycle -min 85 -equivalent tools/mutation/equivalent.txt bin/mutation/lifecycle.json
//
// The score of a file is killed / (killed + lived + not covered), counting a
// mutant whose tests ran past gremlins' timeout as killed (the test run
// fails on it) and leaving out mutants that do not compile, survivors listed
// in the equivalent file (mutants that change no behaviour, each with its
// reason), and mutants gremlins cannot run: those in a constant declaration
// or a switch case's expressions, which Go's coverage profile never marks
// as run (they are compiled into the code around them), so gremlins reports
// them as not covered whatever the tests do. Any other mutant no test
// reaches counts against the score like one that lived.
//
// gremlins writes its report only when every mutant has run. Given the log
// instead (REPORT.log, one line per mutant as it is tested), score reads the
// mutants tested so far: with one worker they come file by file, so every
// file but the last one seen is complete, and the last is marked partial
// unless the log records the end of the run.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

type report struct {
	Files   []reportFile `json:"files"`
	Elapsed float64      `json:"elapsed_time"`
}

type reportFile struct {
	Name      string           `json:"file_name"`
	Mutations []reportMutation `json:"mutations"`
}

type reportMutation struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
}

// equivalent is one entry of the equivalent file: a surviving mutant named
// by file, mutant type, column and the text of its source line (so that an
// entry survives lines moving up or down), and why it changes nothing.
type equivalent struct {
	file, typ string
	col       int
	text      string
	reason    string
	used      bool
}

func main() {
	scope := flag.String("scope", "", "name of the scope, for the report")
	min := flag.Float64("min", 80, "lowest score (percent) a file may have")
	eqPath := flag.String("equivalent", "", "file listing the survivors judged equivalent")
	root := flag.String("root", ".", "directory the report's file names are relative to")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: score -scope NAME -min PERCENT [-equivalent FILE] REPORT.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fatal(err)
	}
	var rep report
	partial := ""
	if strings.HasSuffix(flag.Arg(0), ".log") {
		rep, partial = readLog(string(raw))
	} else if err := json.Unmarshal(raw, &rep); err != nil {
		fatal(fmt.Errorf("%s: %w", flag.Arg(0), err))
	}
	var eqs []*equivalent
	if *eqPath != "" {
		if eqs, err = readEquivalent(*eqPath); err != nil {
			fatal(err)
		}
	}
	sort.Slice(rep.Files, func(i, j int) bool { return rep.Files[i].Name < rep.Files[j].Name })
	fmt.Printf("scope %s (minimum %.0f%% per file), %.0fs\n", *scope, *min, rep.Elapsed)
	fmt.Printf("  %-16s %6s %6s %6s %6s %6s %6s %6s %7s\n", "file", "killed", "timed", "lived", "uncov", "equiv", "unrun", "n/v", "score")
	failed := false
	var survivors, unrunList []string
	for _, f := range rep.Files {
		lines, err := readLines(filepath.Join(*root, f.Name))
		if err != nil {
			fatal(err)
		}
		unrunnable, err := outsideCoverage(filepath.Join(*root, f.Name))
		if err != nil {
			fatal(err)
		}
		var killed, timed, lived, uncovered, equiv, unrun, notViable int
		for _, m := range f.Mutations {
			text := ""
			if m.Line >= 1 && m.Line <= len(lines) {
				text = strings.TrimSpace(lines[m.Line-1])
			}
			switch m.Status {
			case "KILLED":
				killed++
				continue
			case "TIMED OUT":
				timed++
				continue
			case "NOT VIABLE":
				notViable++
				continue
			}
			if e := match(eqs, f.Name, m.Type, m.Column, text); e != nil {
				e.used = true
				equiv++
				continue
			}
			if m.Status == "NOT COVERED" && unrunnable(m.Line, m.Column) {
				unrun++
				unrunList = append(unrunList, fmt.Sprintf("    %s:%d:%d %s\t%s", f.Name, m.Line, m.Column, m.Type, text))
				continue
			}
			if m.Status == "NOT COVERED" {
				uncovered++
			} else {
				lived++
			}
			survivors = append(survivors, fmt.Sprintf("    %-11s %s:%d:%d %s\t%s", m.Status, f.Name, m.Line, m.Column, m.Type, text))
		}
		counted := killed + timed + lived + uncovered
		score := 100.0
		if counted > 0 {
			score = 100 * float64(killed+timed) / float64(counted)
		}
		mark := ""
		switch {
		case f.Name == partial:
			mark, failed = "  partial: the run stopped in this file", true
		case score < *min:
			mark, failed = "  below the minimum", true
		}
		fmt.Printf("  %-16s %6d %6d %6d %6d %6d %6d %6d %6.1f%%%s\n", f.Name, killed, timed, lived, uncovered, equiv, unrun, notViable, score, mark)
	}
	if len(survivors) > 0 {
		fmt.Println("  survivors (not listed as equivalent):")
		for _, s := range survivors {
			fmt.Println(s)
		}
	}
	if len(unrunList) > 0 {
		fmt.Println("  not run by gremlins (a constant or a switch case's expressions, outside every coverage block):")
		for _, s := range unrunList {
			fmt.Println(s)
		}
	}
	for _, e := range eqs {
		inScope := false
		for _, f := range rep.Files {
			inScope = inScope || f.Name == e.file
		}
		if inScope && !e.used {
			fmt.Printf("  note: equivalent entry %s %s col %d %q matched no surviving mutant; remove it or update it\n", e.file, e.typ, e.col, e.text)
		}
	}
	if failed {
		os.Exit(1)
	}
}

// outsideCoverage returns whether a position of file lies in a constant
// declaration or in the expressions of a switch case, where no coverage
// block reaches.
func outsideCoverage(file string) (func(line, col int) bool, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		return nil, err
	}
	type span struct{ from, to token.Position }
	var spans []span
	add := func(from, to token.Pos) { spans = append(spans, span{fset.Position(from), fset.Position(to)}) }
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GenDecl:
			if n.Tok == token.CONST {
				add(n.Pos(), n.End())
			}
		case *ast.CaseClause:
			if len(n.List) > 0 {
				add(n.List[0].Pos(), n.List[len(n.List)-1].End())
			}
		}
		return true
	})
	before := func(a, b token.Position) bool { return a.Line < b.Line || a.Line == b.Line && a.Column <= b.Column }
	return func(line, col int) bool {
		p := token.Position{Line: line, Column: col}
		for _, s := range spans {
			if before(s.from, p) && before(p, s.to) {
				return true
			}
		}
		return false
	}, nil
}

// logLine is one mutant's line in gremlins' log: its status, type and
// position ("      KILLED CONDITIONALS_NEGATION at rotation.go:40:12").
var logLine = regexp.MustCompile(`^\s*(KILLED|LIVED|TIMED OUT|NOT COVERED|NOT VIABLE|SKIPPED|RUNNABLE) ([A-Z_]+) at (.+):(\d+):(\d+)\s*$`)

// readLog builds a report from gremlins' log, and names the file the run
// stopped in ("" when the log records the end of the run).
func readLog(log string) (report, string) {
	var rep report
	last, done := "", false
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Mutation testing completed in") {
			done = true
			continue
		}
		m := logLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ln, _ := strconv.Atoi(m[4])
		col, _ := strconv.Atoi(m[5])
		i := slices.IndexFunc(rep.Files, func(f reportFile) bool { return f.Name == m[3] })
		if i < 0 {
			i = len(rep.Files)
			rep.Files = append(rep.Files, reportFile{Name: m[3]})
		}
		rep.Files[i].Mutations = append(rep.Files[i].Mutations, reportMutation{Type: m[2], Status: m[1], Line: ln, Column: col})
		last = m[3]
	}
	if done {
		last = ""
	}
	return rep, last
}

func match(eqs []*equivalent, file, typ string, col int, text string) *equivalent {
	for _, e := range eqs {
		if e.file == file && e.typ == typ && e.col == col && e.text == text {
			return e
		}
	}
	return nil
}

// readEquivalent reads tab-separated lines: file, mutant type, column, the
// trimmed source line, and the reason. Blank lines and lines starting with
// # are ignored.
func readEquivalent(path string) ([]*equivalent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*equivalent
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "\t")
		if len(parts) != 5 || strings.TrimSpace(parts[4]) == "" {
			return nil, fmt.Errorf("%s:%d: want file, type, column, source line and reason separated by tabs", path, n)
		}
		col, err := strconv.Atoi(parts[2])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: column: %w", path, n, err)
		}
		out = append(out, &equivalent{file: parts[0], typ: parts[1], col: col, text: strings.TrimSpace(parts[3]), reason: parts[4]})
	}
	return out, sc.Err()
}

func readLines(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return strings.Split(string(raw), "\n"), nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "score:", err)
	os.Exit(2)
}
