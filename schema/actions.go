package schema

import "strings"

// Kind is what an action does to a user. The router's ledger
// (handlers/ledger.go) tells copies from new events by kind, not by name,
// so a new action needs no new rule there.
type Kind int

// The kinds of action.
const (
	// KindRegistration opens a registration (created).
	KindRegistration Kind = iota + 1
	// KindIdentity changes a living registration (updated).
	KindIdentity
	// KindDeletion ends a registration (deleted).
	KindDeletion
)

// Action is one kind of event the Auth Service emits.
type Action struct {
	// Name is the event's action field and the last token of its subject
	// (user.events.<name>).
	Name string
	// Command is the type of the command it becomes.
	Command CommandType
	Kind    Kind
}

// actions is the one list of actions. Everything else derives from it or is
// checked against it by a test that fails on a half-added action: the
// decoder accepts exactly these; handlers.DefaultRegistry has one handler
// for each (handlers tests; NewDispatcher refuses a handler for an action
// not listed here); `publish -action` offers them; the metrics label them;
// apply.Recipe has statements for each command type (apply tests); and
// event.schema.json's action enum and command.schema.json's type enum list
// them (schema tests).
var actions = []Action{
	{Name: ActionCreated, Command: CommandCreateProfile, Kind: KindRegistration},
	{Name: ActionUpdated, Command: CommandSyncIdentity, Kind: KindIdentity},
	{Name: ActionDeleted, Command: CommandDeleteProfile, Kind: KindDeletion},
}

// Actions returns the actions, in lifecycle order (registration first,
// deletion last).
func Actions() []Action { return append([]Action(nil), actions...) }

// LookupAction returns the action called name.
func LookupAction(name string) (Action, bool) {
	for _, a := range actions {
		if a.Name == name {
			return a, true
		}
	}
	return Action{}, false
}

// ActionNames lists the actions' names, in lifecycle order.
func ActionNames() []string {
	names := make([]string, len(actions))
	for i, a := range actions {
		names[i] = a.Name
	}
	return names
}

// CommandTypes lists the command types, in lifecycle order.
func CommandTypes() []CommandType {
	types := make([]CommandType, len(actions))
	for i, a := range actions {
		types[i] = a.Command
	}
	return types
}

// orList writes names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
