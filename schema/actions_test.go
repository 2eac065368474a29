package schema_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/social/user-events-router/schema"
)

// Both JSON Schema documents list exactly schema.Actions: an action added
// to the list but not to the documents (or the reverse) fails here.
func TestJSONSchemaEnumsMatchActions(t *testing.T) {
	t.Parallel()
	enum := func(doc []byte, path ...string) []string {
		t.Helper()
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			t.Fatal(err)
		}
		for _, p := range path {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		raw, _ := v.([]any)
		out := make([]string, len(raw))
		for i, r := range raw {
			out[i], _ = r.(string)
		}
		return out
	}
	if got := enum(schema.EventJSONSchema(), "properties", "action", "enum"); !slices.Equal(got, schema.ActionNames()) {
		t.Errorf("event.schema.json action enum = %v, schema.Actions = %v", got, schema.ActionNames())
	}
	var types []string
	for _, c := range schema.CommandTypes() {
		types = append(types, string(c))
	}
	if got := enum(schema.CommandJSONSchema(), "properties", "type", "enum"); !slices.Equal(got, types) {
		t.Errorf("command.schema.json type enum = %v, schema.Actions' commands = %v", got, types)
	}
}

func TestUnknownActionNamesTheListed(t *testing.T) {
	t.Parallel()
	_, err := schema.DecodeEvent("", []byte(`{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"a@example.com","username":"a","action":"suspended","timestamp":"2026-11-28T13:28:17Z"}`))
	if err == nil || err.Error() != `invalid event: action: unknown action "suspended" (want created, updated or deleted)` {
		t.Errorf("err = %v", err)
	}
}
