package schema

import (
	"bytes"
	_ "embed"
)

//go:embed event.schema.json
var eventJSONSchema []byte

//go:embed command.schema.json
var commandJSONSchema []byte

// EventJSONSchema returns the JSON Schema (draft 2020-12) of the event as the
// producer sends it, for producers and contract tests. The caller owns the
// returned copy.
func EventJSONSchema() []byte {
	return bytes.Clone(eventJSONSchema)
}

// CommandJSONSchema returns the JSON Schema (draft 2020-12) of the
// profile-sync command, for the monolith and contract tests. The caller owns
// the returned copy.
func CommandJSONSchema() []byte {
	return bytes.Clone(commandJSONSchema)
}
