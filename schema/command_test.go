package schema_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/social/user-events-router/schema"
)

func TestCommandJSONShape(t *testing.T) {
	t.Parallel()
	common := []string{"command_id", "type", "schema_version", "user_id", "email", "username", "occurred_at", "generation", "user_sequence", "correlation_id", "source"}
	defaults := []string{"display_name", "avatar", "bio"}
	tests := []struct {
		name       string
		cmd        schema.Command
		wantKeys   []string
		wantSource []string
	}{
		{
			name:       "create_profile carries profile defaults at the top level",
			cmd:        sampleCommand(schema.CommandCreateProfile, schema.IngressNATS),
			wantKeys:   append(slices.Clone(common), defaults...),
			wantSource: []string{"service", "subject", "ingress", "stream_sequence", "delivery_attempt", "request_id"},
		},
		{
			name:       "sync_identity has no profile defaults",
			cmd:        sampleCommand(schema.CommandSyncIdentity, schema.IngressHTTP),
			wantKeys:   common,
			wantSource: []string{"service", "subject", "ingress", "request_id"},
		},
		{
			name:       "delete_profile has no profile defaults",
			cmd:        sampleCommand(schema.CommandDeleteProfile, schema.IngressReplay),
			wantKeys:   common,
			wantSource: []string{"service", "subject", "ingress", "request_id"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := json.Marshal(tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(data, &top); err != nil {
				t.Fatal(err)
			}
			if got := sortedKeys(top); !slices.Equal(got, sorted(tt.wantKeys)) {
				t.Errorf("keys = %v, want %v", got, sorted(tt.wantKeys))
			}
			var source map[string]json.RawMessage
			if err := json.Unmarshal(top["source"], &source); err != nil {
				t.Fatal(err)
			}
			if got := sortedKeys(source); !slices.Equal(got, sorted(tt.wantSource)) {
				t.Errorf("source keys = %v, want %v", got, sorted(tt.wantSource))
			}

			var back schema.Command
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			if (back.ProfileDefaults == nil) != (tt.cmd.ProfileDefaults == nil) ||
				back.ProfileDefaults != nil && *back.ProfileDefaults != *tt.cmd.ProfileDefaults {
				t.Errorf("round trip ProfileDefaults = %+v, want %+v", back.ProfileDefaults, tt.cmd.ProfileDefaults)
			}
		})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return sorted(keys)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
