package handlers

import (
	"strings"
	"testing"

	"github.com/social/user-events-router/schema"
)

// An action is half-added when schema.Actions lists it without a handler,
// or a handler is registered for an action schema does not list (every
// such event would be poisoned as "unknown action"). Both fail here.
func TestEveryActionHasOneHandler(t *testing.T) {
	t.Parallel()
	reg := DefaultRegistry()
	for _, a := range schema.Actions() {
		h, ok := reg[a.Name]
		if !ok {
			t.Errorf("schema lists action %q but DefaultRegistry has no handler for it: add handlers/%s.go and register it", a.Name, a.Name)
			continue
		}
		body := strings.Replace(producerPayload, `"action":"created"`, `"action":"`+a.Name+`"`, 1)
		cmd, v, err := newTestDispatcher(t).Preview(incoming("user.events."+a.Name, body, nil))
		if err != nil || !v.Write {
			t.Errorf("action %q: %v (verdict %+v)", a.Name, err, v)
			continue
		}
		if cmd.Type != a.Command || h.Action != a.Name {
			t.Errorf("action %q builds %q (handler for %q), schema says %q", a.Name, cmd.Type, h.Action, a.Command)
		}
	}
	for name := range reg {
		if _, ok := schema.LookupAction(name); !ok {
			t.Errorf("DefaultRegistry has a handler for %q, which schema.Actions does not list", name)
		}
	}
}

func TestNewDispatcherRefusesAnUnlistedAction(t *testing.T) {
	t.Parallel()
	reg := DefaultRegistry()
	reg["suspended"] = Handler{Name: "user_suspended", Action: "suspended", Build: buildUpdated}
	if _, err := NewDispatcher(reg, NewMemoryCommitter(&recorder{}), "t"); err == nil || !strings.Contains(err.Error(), "schema.Actions") {
		t.Errorf("a handler for an action schema does not list: err = %v", err)
	}
}

func newTestDispatcher(t *testing.T) *Dispatcher {
	t.Helper()
	d, err := NewDispatcher(DefaultRegistry(), NewMemoryCommitter(&recorder{}), "profile_sync_commands")
	if err != nil {
		t.Fatal(err)
	}
	return d
}
