package apply_test

import (
	"os"
	"strings"
	"testing"

	"github.com/social/user-events-router/apply"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
)

// The README's recipe and tables are what apply runs: a monolith copying
// them gets the behaviour TestConvergesInAnyOrder checks.
func TestREADMERecipeIsApplied(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for typ, stmts := range apply.Recipe {
		block := "```sql\n" + strings.Join(stmts, ";\n") + ";\n```"
		if !strings.Contains(readme, "`"+typ+"`:\n\n"+block) {
			t.Errorf("README's recipe for %s is not apply.Recipe[%q]; want:\n%s", typ, typ, block)
		}
	}
	for _, d := range []store.Dialect{store.Postgres, store.MySQL, store.SQLite} {
		block := "```sql\n" + strings.Join(apply.DDL(d), ";\n") + ";\n```"
		if !strings.Contains(readme, block) {
			t.Errorf("README lacks the %s tables as apply creates them:\n%s", d, block)
		}
	}
}

// Every command type schema lists has its statements: a new action reaches
// the monolith's tables, or this fails.
func TestRecipeCoversEveryCommandType(t *testing.T) {
	t.Parallel()
	for _, typ := range schema.CommandTypes() {
		if len(apply.Recipe[string(typ)]) == 0 {
			t.Errorf("apply.Recipe has no statements for %s", typ)
		}
	}
	if len(apply.Recipe) != len(schema.CommandTypes()) {
		t.Errorf("apply.Recipe has %d command types, schema %d", len(apply.Recipe), len(schema.CommandTypes()))
	}
}
