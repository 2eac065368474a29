package schema_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/social/user-events-router/schema"
)

// compile compiles one of the package's JSON Schema documents with format
// assertion on, as a strict consumer would.
func compile(t *testing.T, name string, doc []byte) *jsonschema.Schema {
	t.Helper()
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	url := "https://github.com/social/user-events-router/schema/" + name
	if err := c.AddResource(url, parsed); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return sch
}

// validate reports the schema's verdict on a JSON document.
func validate(t *testing.T, sch *jsonschema.Schema, doc []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("instance %s: %v", doc, err)
	}
	return sch.Validate(inst)
}

// TestEventJSONSchema checks the event document against samples, and that
// DecodeEvent gives the same verdict on each: the samples are limited to
// rules both can express.
func TestEventJSONSchema(t *testing.T) {
	t.Parallel()
	sch := compile(t, "event.schema.json", schema.EventJSONSchema())
	p := producerBody()
	tests := []struct {
		name  string
		body  string
		valid bool
	}{
		{"producer payload", producerPayload, true},
		{"schema V1 payload", p.with("displayName", `"Alice"`).with("avatar", `""`).with("role", `"user"`).with("isActive", "true").String(), true},
		{"optional nulls", p.with("request_id", "null").with("service_name", "null").with("sequence", "null").with("displayName", "null").with("avatar", "null").String(), true},
		{"sequence", p.with("sequence", "18446744073709551615").String(), true},
		{"upper-case id", p.with("id", `"78AF4BC4-AFCE-4676-B373-5B802A2DFD2E"`).String(), true},
		{"offset timestamp with fraction", p.with("timestamp", `"2026-11-28T14:28:17.123456+01:00"`).String(), true},
		{"unknown fields", p.with("permissions", `{"a":[1,2]}`).String(), true},

		{"request_id number", p.with("request_id", "1").String(), true},
		{"service_name object", p.with("service_name", `{"a":1}`).String(), true},
		{"sequence string", p.with("sequence", `"1"`).String(), true},
		{"sequence negative", p.with("sequence", "-1").String(), true},
		{"sequence too large", p.with("sequence", "18446744073709551616").String(), true},
		{"displayName array", p.with("displayName", "[]").String(), true},
		{"displayName with control characters", p.with("displayName", `"\u001b[31m"`).String(), true},
		{"avatar not a URL", p.with("avatar", `"javascript:alert(1)"`).String(), true},
		{"email empty", p.with("email", `""`).String(), true},
		{"email without at", p.with("email", `"alice"`).String(), true},
		{"email domain without dot", p.with("email", `"line_U1234abcd@localhost"`).String(), true},
		{"email with space", p.with("email", `"alice @example.com"`).String(), true},
		{"email long", p.with("email", `"`+strings.Repeat("a", 243)+`@example.com"`).String(), true},
		{"username empty", p.with("username", `""`).String(), true},
		{"username blank", p.with("username", `"   "`).String(), true},
		{"username control character", p.with("username", `"a\u0007b"`).String(), true},
		{"username Thai", p.with("username", `"สมชาย_ใจดี_1a2b3c4d"`).String(), true},
		{"username long", p.with("username", `"`+strings.Repeat("u", 1000)+`"`).String(), true},
		{"deep unknown field", p.with("x", strings.Repeat("[", 100)+strings.Repeat("]", 100)).String(), true},
		{"offset -23:59", p.with("timestamp", `"2026-11-28T13:28:17-23:59"`).String(), true},

		{"missing id", p.without("id").String(), false},
		{"missing email", p.without("email").String(), false},
		{"missing username", p.without("username").String(), false},
		{"missing action", p.without("action").String(), false},
		{"missing timestamp", p.without("timestamp").String(), false},
		{"id number", p.with("id", "1").String(), false},
		{"id null", p.with("id", "null").String(), false},
		{"email boolean", p.with("email", "true").String(), false},
		{"email null", p.with("email", "null").String(), false},
		{"username number", p.with("username", "1").String(), false},
		{"id not a UUID", p.with("id", `"abc"`).String(), false},
		{"id without hyphens", p.with("id", `"78af4bc478af4bc478af4bc478af4bc4"`).String(), false},
		{"id nil UUID", p.with("id", `"00000000-0000-0000-0000-000000000000"`).String(), false},
		{"email NUL", p.with("email", `"alice\u0000@example.com"`).String(), false},
		{"username NUL", p.with("username", `"\u0000"`).String(), false},
		{"action unknown", p.with("action", `"renamed"`).String(), false},
		{"timestamp not RFC 3339", p.with("timestamp", `"2026-11-28 13:28:17"`).String(), false},
		{"timestamp comma fraction", p.with("timestamp", `"2026-11-28T13:28:17,5Z"`).String(), false},
		{"timestamp hour 24", p.with("timestamp", `"2026-11-28T24:00:00Z"`).String(), false},
		{"timestamp offset +24:00", p.with("timestamp", `"2026-11-28T13:28:17+24:00"`).String(), false},
		{"timestamp offset minutes 60", p.with("timestamp", `"2026-11-28T13:28:17+01:60"`).String(), false},
		{"array body", "[" + producerPayload + "]", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := validate(t, sch, []byte(tt.body))
			if got := err == nil; got != tt.valid {
				t.Errorf("schema valid = %v, want %v (%v)", got, tt.valid, err)
			}
			_, err = schema.DecodeEvent("", []byte(tt.body))
			if got := err == nil; got != tt.valid {
				t.Errorf("DecodeEvent valid = %v, want %v (%v)", got, tt.valid, err)
			}
		})
	}
}

// TestEventJSONSchemaRequired checks that the schema requires exactly the
// fields DecodeEvent reports missing from an empty object.
func TestEventJSONSchemaRequired(t *testing.T) {
	t.Parallel()
	doc := parseDoc(t, schema.EventJSONSchema())
	var required []string
	for _, r := range doc["required"].([]any) {
		required = append(required, r.(string))
	}
	_, err := schema.DecodeEvent("", []byte(`{}`))
	var invalid *schema.InvalidEventError
	if !errors.As(err, &invalid) {
		t.Fatalf("DecodeEvent({}) error = %v", err)
	}
	var missing []string
	for _, p := range invalid.Problems {
		if p.Message == "missing" {
			missing = append(missing, p.Field)
		}
	}
	if !slices.Equal(sorted(missing), sorted(required)) {
		t.Errorf("schema requires %v, DecodeEvent requires %v", sorted(required), sorted(missing))
	}
}

func TestCommandJSONSchema(t *testing.T) {
	t.Parallel()
	sch := compile(t, "command.schema.json", schema.CommandJSONSchema())

	t.Run("Go commands validate", func(t *testing.T) {
		t.Parallel()
		for _, typ := range []schema.CommandType{schema.CommandCreateProfile, schema.CommandSyncIdentity, schema.CommandDeleteProfile} {
			for _, ingress := range []string{schema.IngressNATS, schema.IngressHTTP, schema.IngressReplay} {
				data, err := json.Marshal(sampleCommand(typ, ingress))
				if err != nil {
					t.Fatal(err)
				}
				if err := validate(t, sch, data); err != nil {
					t.Errorf("%s via %s: %v\n%s", typ, ingress, err, data)
				}
			}
		}
	})

	// What the Auth Service's OAuth sign-ups yield (DESIGN §2).
	t.Run("OAuth identities validate", func(t *testing.T) {
		t.Parallel()
		for _, id := range [][2]string{
			{"", "สมชาย_ใจดี_1a2b3c4d"}, {"line_U1234abcd@oauth.local", "line_u1234abcd_1a2b3c4d"},
			{"root@localhost", "🦄_unicorn_1a2b3c4d"}, {"a\x1b@example.com", "x\x1b\u202e"}, {"", ""},
		} {
			cmd := sampleCommand(schema.CommandCreateProfile, schema.IngressHTTP)
			cmd.Email, cmd.Username, cmd.DisplayName = id[0], id[1], id[1]
			data, err := json.Marshal(cmd)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(t, sch, data); err != nil {
				t.Errorf("email %q, username %q: %v", id[0], id[1], err)
			}
		}
	})

	bad := []struct {
		name   string
		cmd    schema.Command
		mutate func(map[string]any)
	}{
		{"create_profile without defaults", withoutDefaults(sampleCommand(schema.CommandCreateProfile, schema.IngressHTTP)), nil},
		{"sync_identity with defaults", withDefaults(sampleCommand(schema.CommandSyncIdentity, schema.IngressHTTP)), nil},
		{"delete_profile with defaults", withDefaults(sampleCommand(schema.CommandDeleteProfile, schema.IngressHTTP)), nil},
		{"unknown type", sampleCommand("rename_profile", schema.IngressHTTP), nil},
		{"schema version 2", withVersion(sampleCommand(schema.CommandSyncIdentity, schema.IngressHTTP), 2), nil},
		{"upper-case user id", withUserID(sampleCommand(schema.CommandSyncIdentity, schema.IngressHTTP), "78AF4BC4-AFCE-4676-B373-5B802A2DFD2E"), nil},
		{"empty correlation id", withCorrelationID(sampleCommand(schema.CommandSyncIdentity, schema.IngressHTTP), ""), nil},
		{"unknown ingress", withIngress(sampleCommand(schema.CommandSyncIdentity, schema.IngressHTTP), "kafka"), nil},
		{"nats without stream sequence", withIngress(sampleCommand(schema.CommandSyncIdentity, schema.IngressHTTP), schema.IngressNATS), nil},
		{"auth-owned role leaks in", sampleCommand(schema.CommandSyncIdentity, schema.IngressHTTP), func(m map[string]any) { m["role"] = "admin" }},
		{"missing email", sampleCommand(schema.CommandSyncIdentity, schema.IngressHTTP), func(m map[string]any) { delete(m, "email") }},
		{"missing source", sampleCommand(schema.CommandSyncIdentity, schema.IngressHTTP), func(m map[string]any) { delete(m, "source") }},
		{"occurred_at not a time", sampleCommand(schema.CommandSyncIdentity, schema.IngressHTTP), func(m map[string]any) { m["occurred_at"] = "yesterday" }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := json.Marshal(tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if tt.mutate != nil {
				m := parseDoc(t, data)
				tt.mutate(m)
				if data, err = json.Marshal(m); err != nil {
					t.Fatal(err)
				}
			}
			if err := validate(t, sch, data); err == nil {
				t.Errorf("schema accepted %s", data)
			}
		})
	}
}

func withoutDefaults(c schema.Command) schema.Command { c.ProfileDefaults = nil; return c }
func withDefaults(c schema.Command) schema.Command {
	c.ProfileDefaults = &schema.ProfileDefaults{DisplayName: c.Username}
	return c
}
func withVersion(c schema.Command, v int) schema.Command           { c.SchemaVersion = v; return c }
func withUserID(c schema.Command, id string) schema.Command        { c.UserID = id; return c }
func withIngress(c schema.Command, in string) schema.Command       { c.Source.Ingress = in; return c }
func withCorrelationID(c schema.Command, id string) schema.Command { c.CorrelationID = id; return c }

// TestJSONSchemaPropertiesMatchGoTypes keeps the documents from drifting
// from the code: each object's properties are exactly the JSON names of the
// Go type it describes.
func TestJSONSchemaPropertiesMatchGoTypes(t *testing.T) {
	t.Parallel()
	event := parseDoc(t, schema.EventJSONSchema())
	command := parseDoc(t, schema.CommandJSONSchema())
	source := properties(t, command)["source"].(map[string]any)
	tests := []struct {
		name   string
		object map[string]any
		goType reflect.Type
	}{
		{"event", event, reflect.TypeFor[schema.UserEvent]()},
		{"command", command, reflect.TypeFor[schema.Command]()},
		{"command source", source, reflect.TypeFor[schema.Source]()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := sortedKeys(properties(t, tt.object))
			want := sorted(jsonNames(tt.goType))
			if !slices.Equal(got, want) {
				t.Errorf("schema properties %v\nGo JSON fields    %v", got, want)
			}
		})
	}
}

// jsonNames lists the JSON member names encoding/json uses for struct type
// typ, following untagged embedded structs as it does.
func jsonNames(typ reflect.Type) []string {
	var names []string
	for f := range typ.Fields() {
		tag, hasTag := f.Tag.Lookup("json")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case name == "-":
			continue
		case f.Anonymous && !hasTag:
			embedded := f.Type
			if embedded.Kind() == reflect.Pointer {
				embedded = embedded.Elem()
			}
			names = append(names, jsonNames(embedded)...)
			continue
		case !f.IsExported():
			continue
		case name == "":
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

func parseDoc(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func properties(t *testing.T, object map[string]any) map[string]any {
	t.Helper()
	props, ok := object["properties"].(map[string]any)
	if !ok {
		t.Fatalf("object schema has no properties: %v", object)
	}
	return props
}

func TestJSONSchemaAccessorsReturnCopies(t *testing.T) {
	t.Parallel()
	for name, get := range map[string]func() []byte{"event": schema.EventJSONSchema, "command": schema.CommandJSONSchema} {
		a := get()
		a[0] = 'x'
		if b := get(); b[0] != '{' {
			t.Errorf("%s: changing the returned bytes changed the embedded document", name)
		}
	}
}
