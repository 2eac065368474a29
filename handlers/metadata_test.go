package handlers

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestMetadataKeysOnlyThroughAccessors holds the rule of metadata.go: no
// other (non-test) file of the module declares a Meta… key, or reads or
// writes one with Get/Set — by its constant or by its string value — so
// each key's type and meaning are said in one place.
func TestMetadataKeysOnlyThroughAccessors(t *testing.T) {
	t.Parallel()
	keys := metadataKeys(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(root, "handlers", "metadata.go")
	scanned := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || path == own {
			return nil
		}
		fset := token.NewFileSet()
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, filepath.ToSlash(rel), src, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		scanned++
		for _, v := range metadataViolations(fset, f, keys) {
			t.Errorf("%s: use the accessors of handlers/metadata.go", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 20 {
		t.Fatalf("scanned %d files under %s: not the module", scanned, root)
	}
}

// TestMetadataViolationsFound makes sure the scan above finds what it is
// meant to.
func TestMetadataViolationsFound(t *testing.T) {
	t.Parallel()
	const src = `package x
const MetaOwn = "own"
func f(msg *message.Message, md message.Metadata) {
	_ = msg.Metadata.Get(handlers.MetaStreamSeq)
	md.Set(MetaIngress, "http")
	msg.Metadata.Set("correlation_id", "x")
	md.Set("header_x", "fine")
	_ = query.Get("subject")
	handlers.SetIngress(md, "fine")
}`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	got := metadataViolations(fset, f, metadataKeys(t))
	if len(got) != 4 {
		t.Errorf("violations %q, want 4 (a declared key, two by constant, one by value)", got)
	}
}

// metadataKeys are the string values of the Meta… constants of metadata.go.
func metadataKeys(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "metadata.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, decl := range f.Decls {
		g, ok := decl.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if isMetaKey(name.Name) && i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
						v, _ := strconv.Unquote(lit.Value)
						keys[v] = true
					}
				}
			}
		}
	}
	if len(keys) < 15 {
		t.Fatalf("found %d metadata keys in metadata.go", len(keys))
	}
	return keys
}

// metadataViolations lists where f declares a Meta… key, or calls Get or
// Set with one (by name or by value) as the first argument.
func metadataViolations(fset *token.FileSet, f *ast.File, keys map[string]bool) []string {
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			for _, name := range n.Names {
				if isMetaKey(name.Name) {
					out = append(out, fset.Position(name.Pos()).String()+": declares "+name.Name)
				}
			}
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Get" && sel.Sel.Name != "Set") || len(n.Args) == 0 {
				return true
			}
			switch a := n.Args[0].(type) {
			case *ast.Ident:
				if isMetaKey(a.Name) {
					out = append(out, fset.Position(n.Pos()).String()+": "+sel.Sel.Name+"("+a.Name+")")
				}
			case *ast.SelectorExpr:
				if isMetaKey(a.Sel.Name) {
					out = append(out, fset.Position(n.Pos()).String()+": "+sel.Sel.Name+"("+a.Sel.Name+")")
				}
			case *ast.BasicLit:
				// By value only on what is plainly metadata (x.Metadata,
				// md): url.Values and headers share some of the names.
				if v, err := strconv.Unquote(a.Value); err == nil && keys[v] && isMetadata(sel.X) {
					out = append(out, fset.Position(n.Pos()).String()+": "+sel.Sel.Name+"("+a.Value+")")
				}
			}
		}
		return true
	})
	return out
}

// isMetadata reports whether x reads as message metadata: x.Metadata or md.
func isMetadata(x ast.Expr) bool {
	switch x := x.(type) {
	case *ast.SelectorExpr:
		return x.Sel.Name == "Metadata"
	case *ast.Ident:
		return x.Name == "md"
	}
	return false
}

// isMetaKey reports whether name is a metadata key constant's: Meta and an
// upper-case letter (not Metadata).
func isMetaKey(name string) bool {
	return len(name) > 4 && strings.HasPrefix(name, "Meta") && name[4] >= 'A' && name[4] <= 'Z' && !strings.HasPrefix(name, "Metadata")
}
