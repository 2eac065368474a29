package schema

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
// a few hundred bytes; the limit keeps a bad producer from costing memory,
// and it is the only bound on a field's length or an unknown field's depth.
const MaxEventBytes = 64 << 10

// Limits of the Auth Service's own V1 profile fields, in characters; a
// longer value is not one it sent, so it is dropped.
const (
	maxDisplayNameRunes = 100
	maxAvatarRunes      = 500
)

// UserEvent is the identity event as the real Auth Service sends it
// (DESIGN §2), after validation. Identity fields are as sent; the delivery
// fields are bounded printable text; the cosmetic V1 fields are either
// usable or empty. Fields the Auth Service owns (role, isActive,
// permissions) are deliberately absent so they cannot leak into commands.
type UserEvent struct {
	ID       string `json:"id"`       // canonical lower-case UUID string
	Email    string `json:"email"`    // as sent; may be "" (a Facebook sign-up without e-mail)
	Username string `json:"username"` // as sent; may be anything but NUL
	Action   string `json:"action"`   // ActionCreated, ActionUpdated or ActionDeleted
	// RequestID is PrintableText of the request_id sent, at most
	// MaxRequestIDBytes; "" when absent, empty or unusable.
	RequestID string    `json:"request_id"`
	Timestamp time.Time `json:"timestamp"` // parsed RFC 3339, converted to UTC
	// ServiceName is PrintableText of the service_name sent, at most
	// MaxServiceNameBytes.
	ServiceName string  `json:"service_name,omitempty"`
	Sequence    *uint64 `json:"sequence,omitempty"`
	// Schema V1 leftovers, profile defaults on created. "" when absent or
	// dropped as unusable (see Dropped): the handler's default applies.
	DisplayName string `json:"displayName,omitempty"`
	Avatar      string `json:"avatar,omitempty"`

	// Dropped lists the optional values DecodeEvent ignored, each with the
	// reason (a wrong type, a displayName with control characters, an
	// avatar that is not an http(s) URL, …), so that the event's log line
	// can say what became of them. Messages never repeat the value.
	Dropped []Problem `json:"-"`
}

// The fields DecodeEvent reads, indexing eventFields.
const (
	fieldID = iota
	fieldEmail
	fieldUsername
	fieldAction
	fieldTimestamp
	fieldRequestID
	fieldServiceName
	fieldSequence
	fieldDisplayName
	fieldAvatar
	numFields
)

// eventFields are the JSON names of the fields the router reads; every
// other member of an event is skipped unread.
var eventFields = [numFields]string{
	"id", "email", "username", "action", "timestamp",
	"request_id", "service_name", "sequence", "displayName", "avatar",
}

// fieldIndex returns the eventFields index of a member's key, or -1.
func fieldIndex(data []byte, key value) int {
	name := data[key.start:key.end]
	if key.escaped {
		if len(name) > 6*len("service_name") {
			return -1 // no escaped form of a field name is that long
		}
		var buf [6 * len("service_name")]byte
		name, _ = unquote(buf[:0], name)
	}
	for f, field := range eventFields {
		if string(name) == field {
			return f
		}
	}
	return -1
}

// DecodeEvent parses and validates one event body. subject is the NATS
// subject it arrived on ("user.events.created"); "" means no subject (HTTP
// ingress) and skips the subject check.
//
// It refuses only what cannot be carried (see the README, "What the router
// refuses"): a body that is not one JSON object within MaxEventBytes of
// UTF-8; a required field (id, email, username, action, timestamp) missing,
// repeated, not a string, or holding a lone surrogate escape; an id that is
// not a UUID; NUL in id, email or username; an unknown action or one the
// subject contradicts; a timestamp that is not RFC 3339. Every such problem
// is reported at once in an *InvalidEventError (errors.Is(err,
// ErrInvalidEvent)), except when the body is not a complete JSON object,
// where the one structural reason is reported.
//
// Everything else is accepted: unknown members of any shape and depth
// are skipped; an optional field that is unusable (wrong type, repeated,
// out of its rules) is treated as absent and listed in UserEvent.Dropped;
// JSON null is absent. DecodeEvent never panics and never recurses on the
// body's nesting.
func DecodeEvent(subject string, data []byte) (UserEvent, error) {
	if p, ok := checkBody(data); !ok {
		return UserEvent{}, &InvalidEventError{Problems: []Problem{p}}
	}
	d := eventDecoder{data: data}
	sc := scanner{data: data}
	if k := sc.begin(); k != kindObject {
		if sc.err != nil {
			return UserEvent{}, &InvalidEventError{Problems: []Problem{sc.err.problem()}}
		}
		return UserEvent{}, &InvalidEventError{Problems: []Problem{{Message: notAnObject(k)}}}
	}
	for sc.next() {
		if f := fieldIndex(data, sc.key); f >= 0 {
			m := &d.fields[f]
			if m.count == 0 {
				m.val = sc.val
			}
			m.count++
		}
	}
	if sc.err != nil {
		return UserEvent{}, &InvalidEventError{Problems: []Problem{sc.err.problem()}}
	}
	if end := sc.end(); end < len(data) {
		d.problems = append(d.problems, Problem{Message: fmt.Sprintf("unexpected data after the JSON object at byte %d", end+1)})
	}

	var ev UserEvent
	if s, ok := d.required(fieldID); ok {
		ev.ID = d.check(fieldID, s, checkID)
	}
	if s, ok := d.required(fieldEmail); ok {
		ev.Email = d.check(fieldEmail, s, checkIdentityText)
	}
	if s, ok := d.required(fieldUsername); ok {
		ev.Username = d.check(fieldUsername, s, checkIdentityText)
	}
	if s, ok := d.required(fieldAction); ok {
		if problem := checkAction(subject, s); problem != "" {
			d.fail(fieldAction, problem)
		} else {
			ev.Action = s
		}
	}
	if s, ok := d.required(fieldTimestamp); ok {
		ev.Timestamp = d.timestamp(fieldTimestamp, s)
	}
	if len(d.problems) > 0 {
		return UserEvent{}, &InvalidEventError{Problems: d.problems}
	}

	if s, ok := d.optional(fieldRequestID); ok {
		ev.RequestID = PrintableText(s, MaxRequestIDBytes)
	}
	if s, ok := d.optional(fieldServiceName); ok {
		ev.ServiceName = PrintableText(s, MaxServiceNameBytes)
	}
	ev.Sequence = d.sequence(fieldSequence)
	if s, ok := d.optional(fieldDisplayName); ok {
		ev.DisplayName = d.cosmetic(fieldDisplayName, s, checkDisplayName)
	}
	if s, ok := d.optional(fieldAvatar); ok {
		ev.Avatar = d.cosmetic(fieldAvatar, s, checkAvatar)
	}
	ev.Dropped = d.dropped
	return ev, nil
}

// ActionFromSubject returns the last dot-separated token of subject ("" if
// none): the action a user.events.<action> subject carries.
func ActionFromSubject(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// member is what the scan found of one field: its first value and how
// many times the key occurred.
type member struct {
	val   value
	count int
}

// eventDecoder collects the problems of one event while its fields are read.
type eventDecoder struct {
	data     []byte
	fields   [numFields]member
	problems []Problem
	dropped  []Problem
}

func (d *eventDecoder) fail(field int, message string) {
	d.problems = append(d.problems, Problem{Field: eventFields[field], Message: message})
}

func (d *eventDecoder) drop(field int, message string) {
	d.dropped = append(d.dropped, Problem{Field: eventFields[field], Message: message})
}

// stringField returns a field's decoded text and the body offset of its
// first lone surrogate escape (-1 if none), or why it has no text: absent,
// repeated (which of the values was meant cannot be known), or not a
// string.
func (d *eventDecoder) stringField(field int) (s string, lone int, why string) {
	m := d.fields[field]
	switch {
	case m.count == 0:
		return "", -1, "missing"
	case m.count > 1:
		return "", -1, "duplicate key"
	case m.val.kind != kindString:
		return "", -1, "must be a string, got " + m.val.kind.String()
	}
	s, lone = text(d.data, m.val)
	return s, lone, ""
}

// required returns the text of a required field; otherwise it records why
// there is none. A lone surrogate escape is refused too: no character
// carries it, and encoding/json would quietly make it U+FFFD.
func (d *eventDecoder) required(field int) (string, bool) {
	s, lone, why := d.stringField(field)
	if why == "" && lone >= 0 {
		why = fmt.Sprintf("lone surrogate escape %s at byte %d: half of a UTF-16 pair, not a character", d.data[lone:lone+6], lone+1)
	}
	if why != "" {
		d.fail(field, why)
		return "", false
	}
	return s, true
}

// optional returns the text of an optional field, with lone surrogates in
// their WTF-8 form; absent and null yield false, and so does a value that
// is repeated or not a string, which is also recorded as dropped.
func (d *eventDecoder) optional(field int) (string, bool) {
	if m := d.fields[field]; m.count == 0 || m.count == 1 && m.val.kind == kindNull {
		return "", false
	}
	s, _, why := d.stringField(field)
	if why != "" {
		d.drop(field, why)
		return "", false
	}
	return s, true
}

// check runs a rule that returns the normalised value or a problem message.
func (d *eventDecoder) check(field int, s string, rule func(string) (value, problem string)) string {
	value, problem := rule(s)
	if problem != "" {
		d.fail(field, problem)
		return ""
	}
	return value
}

// cosmetic keeps s when rule finds nothing wrong with it, and otherwise
// drops it: the handler's default takes its place. "" is no value, as the
// producer writes it when it has none.
func (d *eventDecoder) cosmetic(field int, s string, rule func(string) string) string {
	if s == "" {
		return ""
	}
	if why := rule(s); why != "" {
		d.drop(field, why)
		return ""
	}
	return s
}

// timestamp parses an RFC 3339 time into UTC. The zero time and years a
// command's JSON cannot carry are refused.
func (d *eventDecoder) timestamp(field int, s string) time.Time {
	if ok, detail := rfc3339Syntax(s); !ok {
		d.fail(field, "not an RFC 3339 timestamp: "+quote(s)+detail)
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

// rfc3339Syntax checks the syntax RFC 3339 allows, with upper-case T and Z
// as the producer writes them: YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM), the
// offset within ±23:59 (time.Parse alone also takes a comma before the
// fraction and offsets up to ±24:59). time.Parse then checks the calendar.
// detail, when there is one, explains a refusal: " (offset … )".
func rfc3339Syntax(s string) (ok bool, detail string) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return false, ""
	}
	for i := range 19 {
		switch i {
		case 4, 7:
			ok = s[i] == '-'
		case 10:
			ok = s[i] == 'T'
		case 13, 16:
			ok = s[i] == ':'
		default:
			ok = isDigit(s[i])
		}
		if !ok {
			return false, ""
		}
	}
	zone := s[19:]
	if zone[0] == '.' {
		n := 1
		for n < len(zone) && isDigit(zone[n]) {
			n++
		}
		if n == 1 {
			return false, ""
		}
		zone = zone[n:]
	}
	switch {
	case zone == "Z":
		return true, ""
	case len(zone) == 6 && (zone[0] == '+' || zone[0] == '-') && isDigit(zone[1]) && isDigit(zone[2]) &&
		zone[3] == ':' && isDigit(zone[4]) && isDigit(zone[5]):
		if zone[1:3] > "23" || zone[4] > '5' {
			return false, " (offset " + zone + " is beyond ±23:59)"
		}
		return true, ""
	}
	return false, ""
}

// sequence reads an optional non-negative integer, written as encoding/json
// writes a uint64: digits only, no sign, fraction or exponent. Any other
// value is dropped.
func (d *eventDecoder) sequence(field int) *uint64 {
	m := d.fields[field]
	lit := string(d.data[m.val.start:m.val.end])
	switch {
	case m.count == 0 || m.count == 1 && m.val.kind == kindNull:
		return nil
	case m.count > 1:
		d.drop(field, "duplicate key")
		return nil
	case m.val.kind != kindNumber:
		d.drop(field, "must be a non-negative integer, got "+m.val.kind.String())
		return nil
	case strings.HasPrefix(lit, "-"):
		d.drop(field, "must not be negative, got "+truncate(lit))
		return nil
	case strings.ContainsAny(lit, ".eE"):
		d.drop(field, "must be a whole number without fraction or exponent, got "+truncate(lit))
		return nil
	}
	n, err := strconv.ParseUint(lit, 10, 64)
	if err != nil {
		d.drop(field, fmt.Sprintf("must be at most %d, got %s", uint64(1<<64-1), truncate(lit)))
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
	case strings.IndexFunc(s, unicode.IsUpper) < 0:
		return s, "" // canonical already: the producer's form
	}
	return id.String(), ""
}

// checkIdentityText accepts an e-mail address or a username as the Auth
// Service sent it — empty, without a dot in the domain, any script, any
// length — but for NUL: the Auth Service keeps users in PostgreSQL text
// columns, which cannot hold it, so no real user has one, and a command
// holding it could not be stored as jsonb.
func checkIdentityText(s string) (string, string) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return "", fmt.Sprintf("contains NUL (U+0000) at byte %d of the value, which no stored user can hold", i+1)
	}
	return s, ""
}

// checkAction accepts the listed actions (Actions) and, when the event came with a
// subject, only the one the subject names; it returns the problem or "".
func checkAction(subject, action string) string {
	if _, ok := LookupAction(action); !ok {
		return fmt.Sprintf("unknown action %s (want %s)", quote(action), orList(ActionNames()))
	}
	if subject != "" && ActionFromSubject(subject) != action {
		return fmt.Sprintf("action %s does not match subject %s", quote(action), quote(subject))
	}
	return ""
}

// checkDisplayName says why a V1 displayName is no use as a profile
// default, or "".
func checkDisplayName(s string) string {
	return checkCosmetic(s, maxDisplayNameRunes)
}

// checkAvatar says why a V1 avatar is no use as a profile default, or "":
// it must be an absolute http or https URL with a host, without white
// space (a URL carries a space as %20).
func checkAvatar(s string) string {
	if why := checkCosmetic(s, maxAvatarRunes); why != "" {
		return why
	}
	if strings.IndexFunc(s, unicode.IsSpace) >= 0 {
		return "contains white space: not a URL"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "not a URL"
	case !strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https"):
		return "not an http or https URL"
	case u.Host == "":
		return "not an absolute URL with a host"
	}
	return ""
}

// checkCosmetic holds what both V1 profile fields need to be shown: text,
// not control characters or a lone surrogate (kept by unquote in its
// non-UTF-8 form); no bidi embedding, override or isolate, which reorder
// the text around them where it is shown; not blank; and within the
// producer's own limit.
func checkCosmetic(s string, maxRunes int) string {
	n := 0
	for i, r := range s {
		n++
		switch {
		case r == utf8.RuneError:
			if _, ok := wtf8Surrogate(s[i:]); ok {
				return fmt.Sprintf("lone surrogate escape at character %d", n)
			}
		case unicode.IsControl(r):
			return fmt.Sprintf("control character %U at character %d", r, n)
		case isBidiFormatting(r):
			return fmt.Sprintf("bidi formatting character %U at character %d", r, n)
		}
	}
	switch {
	case n > maxRunes:
		return fmt.Sprintf("is %d characters, the producer's limit is %d", n, maxRunes)
	case strings.TrimSpace(s) == "":
		return "blank"
	}
	return ""
}

// isBidiFormatting reports the explicit bidi embeddings, overrides and
// isolates (U+202A–U+202E, U+2066–U+2069). The marks U+200E, U+200F and
// U+061C, which real names in right-to-left scripts use, are not among them.
func isBidiFormatting(r rune) bool {
	return 0x202A <= r && r <= 0x202E || 0x2066 <= r && r <= 0x2069
}

// notAnObject names a body that is JSON but not an object.
func notAnObject(k kind) string {
	switch k {
	case kindNull:
		return "body is JSON null, not an object"
	case kindArray:
		return "body is a JSON array, not an object"
	default:
		return "body is a JSON " + k.String() + ", not an object"
	}
}
