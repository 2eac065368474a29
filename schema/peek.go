package schema

// Peek returns the user id and request_id of an event body when they are
// strings, without validating the rest: for ordering events per user and
// choosing a correlation id before the body is decoded. Either is "" when
// absent or not a string, and both are when the body is not a JSON object.
// Of repeated keys the last wins, as with json.Unmarshal. A lone surrogate
// escape is kept in its WTF-8 form, as DecodeEvent reads it, so that
// PrintableText renders a peeked request_id exactly as the decoded one.
//
// It is on every message's path: the scanner decodes nothing but these two
// strings and allocates nothing else.
func Peek(data []byte) (id, requestID string) {
	s := scanner{data: data}
	if s.begin() != kindObject {
		return "", ""
	}
	var idVal, reqVal value
	for s.next() {
		switch key := s.data[s.key.start:s.key.end]; {
		case s.key.escaped:
			var buf [16]byte
			switch name, _ := unquote(buf[:0], key); string(name) {
			case "id":
				idVal = s.val
			case "request_id":
				reqVal = s.val
			}
		case string(key) == "id":
			idVal = s.val
		case string(key) == "request_id":
			reqVal = s.val
		}
	}
	if s.err != nil || s.end() != len(data) {
		return "", ""
	}
	if idVal.kind == kindString {
		id, _ = text(data, idVal)
	}
	if reqVal.kind == kindString {
		requestID, _ = text(data, reqVal)
	}
	return id, requestID
}
