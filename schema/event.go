package schema

import (
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
)

// Actions the Auth Service emits; each is also the last token of the NATS
// subject the event is published on (user.events.<action>).
const (
	ActionCreated = "created"
	ActionUpdated = "updated"
	ActionDeleted = "deleted"
)

// MaxEventBytes is the largest event body accepted (64 KiB). Real events are
// a few hundred bytes; the limit keeps a bad producer from costing memory.
const MaxEventBytes = 64 << 10

// Limits on identity fields, shared with event.schema.json.
const (
	maxEmailBytes    = 254 // RFC 5321 path limit
	maxUsernameBytes = 255
)

// UserEvent is the identity event as the real Auth Service sends it
// (DESIGN §2), after validation: every field holds a checked, normalised
// value. Fields the Auth Service owns (role, isActive, permissions) are
// deliberately absent so they cannot leak into commands.
type UserEvent struct {
	ID          string    `json:"id"`         // canonical lower-case UUID string
	Email       string    `json:"email"`      // as sent
	Username    string    `json:"username"`   // as sent, never blank
	Action      string    `json:"action"`     // ActionCreated, ActionUpdated or ActionDeleted
	RequestID   string    `json:"request_id"` // may be ""
	Timestamp   time.Time `json:"timestamp"`  // parsed RFC 3339, converted to UTC
	ServiceName string    `json:"service_name,omitempty"`
	Sequence    *uint64   `json:"sequence,omitempty"`
	// Schema V1 leftovers; accepted, used as profile defaults on created.
	DisplayName string `json:"displayName,omitempty"`
	Avatar      string `json:"avatar,omitempty"`
}

// DecodeEvent parses and validates one event body. subject is the NATS
// subject it arrived on ("user.events.created"); "" means no subject (HTTP
// ingress) and skips the subject check.
//
// Every problem of the event is reported at once in an *InvalidEventError
// (errors.Is(err, ErrInvalidEvent)), except when the body is not a complete
// JSON object, where the one structural reason is reported. Unknown fields
// are ignored; optional fields treat JSON null as absent. DecodeEvent never
// panics and never recurses on the body's nesting.
func DecodeEvent(subject string, data []byte) (UserEvent, error) {
	if p, ok := checkBody(data); !ok {
		return UserEvent{}, &InvalidEventError{Problems: []Problem{p}}
	}
	fields, ok := readFlat(data)
	var problems []Problem
	if !ok {
		fields, problems, ok = readObject(data)
		if !ok {
			return UserEvent{}, &InvalidEventError{Problems: problems}
		}
	}

	d := eventDecoder{fields: fields, problems: problems}
	var ev UserEvent
	if s, ok := d.required("id"); ok {
		ev.ID = d.check("id", s, checkID)
	}
	if s, ok := d.required("email"); ok {
		ev.Email = d.check("email", s, checkEmail)
	}
	if s, ok := d.required("username"); ok {
		ev.Username = d.check("username", s, checkUsername)
	}
	if s, ok := d.required("action"); ok {
		ev.Action = d.check("action", s, func(s string) (string, string) { return checkAction(subject, s) })
	}
	ev.RequestID = d.optional("request_id")
	if s, ok := d.required("timestamp"); ok {
		ev.Timestamp = d.timestamp("timestamp", s)
	}
	ev.ServiceName = d.optional("service_name")
	ev.Sequence = d.sequence("sequence")
	ev.DisplayName = d.optional("displayName")
	ev.Avatar = d.optional("avatar")

	if len(d.problems) > 0 {
		return UserEvent{}, &InvalidEventError{Problems: d.problems}
	}
	return ev, nil
}

// ActionFromSubject returns the last dot-separated token of subject ("" if
// none): the action a user.events.<action> subject carries.
func ActionFromSubject(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// eventDecoder collects the problems of one event while its fields are read.
type eventDecoder struct {
	fields   map[string]jsonValue
	problems []Problem
}

func (d *eventDecoder) fail(field, message string) {
	d.problems = append(d.problems, Problem{Field: field, Message: message})
}

// required returns the string value of a required field; otherwise it
// records why there is none.
func (d *eventDecoder) required(field string) (string, bool) {
	v, present := d.fields[field]
	switch {
	case !present:
		d.fail(field, "missing")
		return "", false
	case v.kind != kindString:
		d.fail(field, "must be a string, got "+v.kind)
		return "", false
	}
	return v.text, true
}

// optional returns the string value of an optional field; absent and null
// both yield "".
func (d *eventDecoder) optional(field string) string {
	v, present := d.fields[field]
	switch {
	case !present || v.kind == kindNull:
		return ""
	case v.kind != kindString:
		d.fail(field, "must be a string, got "+v.kind)
		return ""
	}
	return v.text
}

// check runs a rule that returns the normalised value or a problem message.
func (d *eventDecoder) check(field, s string, rule func(string) (value, problem string)) string {
	value, problem := rule(s)
	if problem != "" {
		d.fail(field, problem)
		return ""
	}
	return value
}

// rfc3339 is the syntax RFC 3339 allows (upper-case T and Z, as the producer
// writes them). time.Parse alone also takes a comma before the fraction.
var rfc3339 = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`)

// timestamp parses an RFC 3339 time into UTC. The zero time and years a
// command's JSON cannot carry are refused.
func (d *eventDecoder) timestamp(field, s string) time.Time {
	if !rfc3339.MatchString(s) {
		d.fail(field, "not an RFC 3339 timestamp: "+quote(s))
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		d.fail(field, "not an RFC 3339 timestamp: "+quote(s))
		return time.Time{}
	}
	t = t.UTC()
	switch {
	case t.IsZero():
		d.fail(field, "is the zero time: "+quote(s))
		return time.Time{}
	case t.Year() < 1 || t.Year() > 9999:
		d.fail(field, "out of range (years 0001 to 9999 in UTC): "+quote(s))
		return time.Time{}
	}
	return t
}

// sequence reads an optional non-negative integer, written as encoding/json
// writes a uint64: digits only, no sign, fraction or exponent.
func (d *eventDecoder) sequence(field string) *uint64 {
	v, present := d.fields[field]
	switch {
	case !present || v.kind == kindNull:
		return nil
	case v.kind != kindNumber:
		d.fail(field, "must be a non-negative integer, got "+v.kind)
		return nil
	case strings.HasPrefix(v.text, "-"):
		d.fail(field, "must not be negative, got "+truncate(v.text))
		return nil
	case strings.ContainsAny(v.text, ".eE"):
		d.fail(field, "must be a whole number without fraction or exponent, got "+truncate(v.text))
		return nil
	}
	n, err := strconv.ParseUint(v.text, 10, 64)
	if err != nil {
		d.fail(field, fmt.Sprintf("must be at most %d, got %s", uint64(1<<64-1), truncate(v.text)))
		return nil
	}
	return &n
}

// checkID accepts the 36-character hyphenated UUID form only (the one the
// Auth Service writes) and returns it lower-case.
func checkID(s string) (string, string) {
	id, err := uuid.Parse(s)
	switch {
	case err != nil:
		return "", "not a UUID: " + quote(s)
	case len(s) != 36:
		return "", "not a UUID in the 36-character hyphenated form: " + quote(s)
	case id == uuid.Nil:
		return "", "is the nil UUID"
	}
	return id.String(), ""
}

// checkEmail accepts a plausible single address, not everything RFC 5322
// allows: no display name, comments, quoting or white space, and a domain
// with a dot.
func checkEmail(s string) (string, string) {
	if s == "" {
		return "", "must not be empty"
	}
	if len(s) > maxEmailBytes {
		return "", fmt.Sprintf("is %d bytes, limit is %d", len(s), maxEmailBytes)
	}
	bad := func(why string) (string, string) {
		return "", "not an email address: " + quote(s) + " (" + why + ")"
	}
	local, domain, _ := strings.Cut(s, "@")
	switch {
	case strings.Count(s, "@") != 1:
		return bad("want exactly one '@'")
	case local == "":
		return bad("empty local part")
	case !strings.Contains(domain, "."):
		return bad("domain has no dot")
	case strings.IndexFunc(s, isSpaceOrControl) >= 0:
		return bad("contains white space or a control character")
	}
	if addr, err := mail.ParseAddress(s); err != nil || addr.Name != "" || addr.Address != s {
		return bad("not a plain RFC 5322 address")
	}
	return s, ""
}

// checkUsername accepts any printable name that is not blank.
func checkUsername(s string) (string, string) {
	switch {
	case s == "":
		return "", "must not be empty"
	case strings.TrimSpace(s) == "":
		return "", "must not be blank: " + quote(s)
	case len(s) > maxUsernameBytes:
		return "", fmt.Sprintf("is %d bytes, limit is %d", len(s), maxUsernameBytes)
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		return "", fmt.Sprintf("contains a control character at byte %d: %s", i+1, quote(s))
	}
	return s, ""
}

// checkAction accepts the three actions and, when the event came with a
// subject, only the one the subject names.
func checkAction(subject, action string) (string, string) {
	switch action {
	case ActionCreated, ActionUpdated, ActionDeleted:
	default:
		return "", fmt.Sprintf("unknown action %s (want %s, %s or %s)", quote(action), ActionCreated, ActionUpdated, ActionDeleted)
	}
	if subject != "" && ActionFromSubject(subject) != action {
		return "", fmt.Sprintf("action %s does not match subject %s", quote(action), quote(subject))
	}
	return action, ""
}

func isSpaceOrControl(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r)
}
