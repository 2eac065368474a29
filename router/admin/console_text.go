package admin

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"unicode/utf8"

	"github.com/social/user-events-router/schema"
)

// visible is how the console shows text that came from outside (payloads,
// subjects, reasons, ids, stacks), before html/template escapes its markup:
// every control character (C0, C1, DEL; ESC starts terminal escapes),
// format character (category Cf: the bidi overrides and isolates such as
// U+202E, which make text read in another order than it is written,
// zero-width characters, BOM), line and paragraph separator, and every byte
// that is not UTF-8 is written as a Go escape (\x1b, \u202e, \xff). So a
// page shows what is stored, and nothing in it can reorder or hide what is
// around it. With layout, newlines and tabs stay (a stack, a payload). The
// CLI's terminalText writes the same escapes for a terminal.
func visible(s string, layout bool) string { return schema.VisibleText(s, layout) }

// payloadView is a payload as an entry page shows it: JSON pretty-printed,
// anything else as text and as a hex dump, each cut to a size a browser
// shows at once (the download has every byte).
type payloadView struct {
	Size int
	JSON bool
	// Text is the pretty-printed JSON, or the bytes as text; TextCut says
	// it is only the first payloadTextShown bytes of it.
	Text    string
	TextCut bool
	// Hex is a hex dump of (the first payloadHexShown bytes of) a payload
	// that is not JSON.
	Hex    string
	HexCut bool
}

func newPayloadView(p []byte) payloadView {
	v := payloadView{Size: len(p)}
	var pretty bytes.Buffer
	if json.Valid(p) && json.Indent(&pretty, p, "", "  ") == nil {
		v.JSON = true
		v.Text, v.TextCut = cutText(pretty.Bytes(), payloadTextShown)
		return v
	}
	v.Text, v.TextCut = cutText(p, payloadTextShown)
	n := min(len(p), payloadHexShown)
	v.Hex, v.HexCut = hex.Dump(p[:n]), n < len(p)
	return v
}

// cutText is the first n bytes of p or fewer, not splitting a character.
func cutText(p []byte, n int) (string, bool) {
	if len(p) <= n {
		return string(p), false
	}
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(p[i]) {
			n = i
			break
		}
	}
	return string(p[:n]), true
}
